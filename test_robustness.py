"""
Faults around a run: damaged or missing files, a full disk, two trainers on one run directory,
Ctrl-C and SIGKILL, flags that cannot work. Each ends in one `error:` line and exit code 2 (or a
warning), loses nothing, and never prints a traceback; and the flags a user sets carry the defaults
along.

    python -m pytest -q test_robustness.py

The scripts run in this process, as `__main__` (see cli): importing torch in a new process costs
~2 s, which would make this file take minutes. Only what needs a second process (a lock held by a
live trainer, Ctrl-C, SIGKILL) starts one.
"""

import ast
import atexit
import contextlib
import csv
import errno
import fcntl
import glob
import importlib.util
import io
import json
import os
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

import configurator
import train
import rundir
from rundir import load_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ['--n_dims=3', '--n_points=6', '--n_layer=1', '--n_head=2', '--n_embd=16', '--mlp_size=32',
        '--n_loops=2', '--loss_window=0', '--dims_start=0', '--points_start=0', '--val_prompts=32',
        '--batch_size=16', '--warmup_iters=0', '--log_interval=5', '--eval_interval=5',
        # a fixed recipe, whatever train.py's defaults: every loop trained, one b, a constant lr
        '--loops_start=0', '--n_loops_random=False', '--lr_schedule=constant', '--learning_rate=5e-4',
        '--device=cpu']
EVAL = ['--max_loops=3', '--n_prompts=16', '--device=cpu']
# tiny models: one thread is as fast, and far faster on cores shared with other jobs
torch.set_num_threads(1)
ONE_THREAD = {**os.environ, 'OMP_NUM_THREADS': '1'}


# -----------------------------------------------------------------------------
# running the scripts

def cli(script, *args, stdout=None):
    """`python script args`, in this process: (exit code, stdout, stderr). The script runs as
    __main__, so an exception it does not catch goes through the excepthook it installs, as in a
    process of its own; the atexit functions it registers (the lock's release) run when it ends."""
    out, err = stdout or io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved = sys.argv, sys.excepthook, handlers
    at_exit = []

    def register(f, *a, **kw):  # what the script registers (the lock's release, say) runs at its end
        at_exit.append((f, a, kw))
        return f
    sys.argv = [script, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch.object(atexit, 'register', register):
            try:
                try:
                    runpy.run_path(os.path.join(HERE, script), run_name='__main__')
                    code = 0
                except SystemExit:
                    raise
                except BaseException:
                    sys.excepthook(*sys.exc_info())  # the default one prints a traceback
                    code = 1
            except SystemExit as end:  # sys.exit('text') exits 1, as the interpreter's does
                code = end.code if isinstance(end.code, int) else int(end.code is not None)
            for f, a, kw in at_exit:
                f(*a, **kw)
    finally:
        sys.argv, sys.excepthook = saved[0], saved[1]
        for s, handler in saved[2].items():
            signal.signal(s, handler)
    return code, out.getvalue(), err.getvalue()


def one_line_error(result, *words):
    """Exit code 2 and a single `error:` line holding each of words; the line is returned."""
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith('error: '), result
    assert 'Traceback' not in err and all(w in lines[0] for w in words), (lines, words)
    return lines[0]


def locked(directory):
    """Whether a process holds the run directory's flock (a try from here to take it fails)."""
    if not os.path.isdir(directory):
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it any lock this try took
    return False


def files(directory):
    """{name: bytes} of a run directory: to show that nothing in it changed."""
    contents = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), 'rb') as f:
            contents[name] = f.read()
    return contents


def log_rows(directory):
    with open(os.path.join(directory, 'log.csv')) as f:
        return [line.split(',')[0] for line in f.read().splitlines()]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny run of 10 steps (a row in log.csv and a checkpoint every 5) to copy and damage."""
    out = tmp_path_factory.mktemp('trained')
    result = cli('train.py', *TINY, '--max_iters=10', f'--out_dir={out}', '--run_name=r')
    assert result[0] == 0, result
    return str(out / 'r')


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run, and the flags that resume it to step 15."""
    directory = str(tmp_path / 'out' / 'r')
    shutil.copytree(trained, directory)
    return directory, [*TINY, f'--out_dir={tmp_path / "out"}', '--run_name=r', '--init_from=resume',
                       '--max_iters=15']


# -----------------------------------------------------------------------------
# log.csv

@pytest.mark.parametrize('damage', ['iter,x\n', 'garbage\n', '15,2.5,1.0\n', 'blank'])
def test_malformed_log_is_refused_and_left_as_it_was(run, damage):
    directory, resume = run
    path = os.path.join(directory, 'log.csv')
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    with open(path, 'w') as f:  # a blank line inside, or a line that is not a row at the end
        f.write(''.join(lines[:2] + ['\n'] + lines[2:] if damage == 'blank' else lines + [damage]))
    before = files(directory)
    one_line_error(cli('train.py', *resume), path, 'malformed', 'line')
    assert files(directory) == before


@pytest.mark.parametrize('how', ['deleted', 'empty'])
def test_lost_or_empty_log_resumes_and_says_so(run, how):
    directory, resume = run
    path = os.path.join(directory, 'log.csv')
    os.remove(path) if how == 'deleted' else open(path, 'w').close()
    code, out, err = cli('train.py', *resume)
    assert code == 0 and 'Traceback' not in err, err
    assert f'note: {path} is missing or empty: a new log starts at step 10' in out
    assert log_rows(directory) == ['iter', '15']
    assert load_checkpoint(os.path.join(directory, 'ckpt.pt'))['iter'] == 15


# -----------------------------------------------------------------------------
# checkpoints and resume

def test_zero_byte_checkpoint_is_one_line_error(run):
    directory, resume = run
    path = os.path.join(directory, 'ckpt.pt')
    open(path, 'w').close()
    before = files(directory)
    one_line_error(cli('train.py', *resume), path, 'not a readable checkpoint')
    one_line_error(cli('eval_extrapolation.py', directory, *EVAL), path, 'not a readable checkpoint')
    assert files(directory) == before


@pytest.mark.parametrize('flags', [['--learning_rate=1e-3'], ['--task=quadratic'],
                                   ['--learning_rate=1e-3', '--task=quadratic'], ['--seed=7']])
def test_resume_refuses_flags_that_change_the_run(run, flags):
    directory, resume = run
    before = files(directory)
    line = one_line_error(cli('train.py', *resume, *flags), 'another run')
    # each flag named, with what the checkpoint was trained with
    assert all(flag.split('=')[0] + '=' in line for flag in flags)
    assert files(directory) == before


def test_resume_with_a_larger_max_iters_continues_and_records_it(run):
    directory, resume = run
    assert cli('train.py', *resume)[0] == 0
    with open(os.path.join(directory, 'config.json')) as f:
        assert json.load(f)['max_iters'] == 15
    assert load_checkpoint(os.path.join(directory, 'ckpt.pt'))['iter'] == 15
    assert log_rows(directory) == ['iter', '5', '10', '15']


def test_a_checkpoint_from_before_the_optimizer_flag_resumes_as_adamw(run):
    """Its config has no optimizer and its optimizer state is AdamW's alone: it continues as AdamW, and
    --optimizer=muon is refused as another run."""
    directory, resume = run
    path = os.path.join(directory, 'ckpt.pt')
    ckpt = torch.load(path, weights_only=True)
    del ckpt['config']['optimizer']
    [ckpt['optimizer']] = ckpt['optimizer']
    torch.save(ckpt, path)
    one_line_error(cli('train.py', *resume, '--optimizer=muon'), "--optimizer='muon' (trained with 'adamw')")
    assert cli('train.py', *resume)[0] == 0
    assert log_rows(directory) == ['iter', '5', '10', '15']


def fake_full_disk(after):
    """torch.save that writes part of a file and fails as on a full disk, from call after + 1 on."""
    calls, real = [], torch.save

    def save(obj, f, *args, **kw):
        calls.append(1)
        if len(calls) > after:
            f.write(b'half a checkpoint')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kw)
    return save


def test_full_disk_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    directory = str(tmp_path / 'r')
    args = [*TINY, '--max_iters=20', f'--out_dir={tmp_path}', '--run_name=r']
    monkeypatch.setattr(torch, 'save', fake_full_disk(after=1))  # the save at step 5 works, 10 fails
    line = one_line_error(cli('train.py', *args), 'No space left on device',
                          'the checkpoint of step 5 is kept')
    assert 'ckpt.pt' in line
    monkeypatch.undo()
    assert sorted(os.listdir(directory)) == ['ckpt.pt', 'config.json', 'log.csv']  # no .tmp
    assert not locked(directory)
    assert load_checkpoint(os.path.join(directory, 'ckpt.pt'))['iter'] == 5
    # space again: the run resumes from step 5, and the row of step 10 is logged once
    assert cli('train.py', *args, '--init_from=resume')[0] == 0
    assert log_rows(directory) == ['iter', '5', '10', '15', '20']


def test_full_disk_while_logging_leaves_no_half_row(run, monkeypatch):
    directory, resume = run
    real = rundir.csv.writer

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def writerows(self, rows):
            self.f.write('15,2.')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(rundir.csv, 'writer',  # appends fail: the header's rewrite on resume works
                        lambda f, *a, **kw: HalfWriter(f) if f.mode == 'a' else real(f, *a, **kw))
    before = files(directory)
    one_line_error(cli('train.py', *resume), 'log.csv', 'No space left on device')
    monkeypatch.undo()
    assert files(directory)['log.csv'] == before['log.csv']  # the half row is undone
    assert cli('train.py', *resume)[0] == 0  # so that the resume is not refused


# -----------------------------------------------------------------------------
# two processes, Ctrl-C, SIGKILL

def start(args):
    """train.py in a process of its own, once it trains (it holds the lock and traps signals)."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'train.py'), *args], cwd=HERE,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ONE_THREAD)
    lines = []
    while not lines or not lines[-1].startswith('device'):
        lines.append(proc.stdout.readline())
        assert lines[-1], (lines, proc.stderr.read())
    return proc


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory):
    """A run named 'my run', resumed in a process of its own (--init_from=resume) and stopped by
    Ctrl-C; while it trains, a second trainer on the same directory. Returns what each said."""
    out = tmp_path_factory.mktemp('sig')
    directory = str(out / 'my run')
    common = [*TINY, f'--out_dir={out}', '--run_name=my run']
    assert cli('train.py', *common, '--max_iters=5')[0] == 0
    first = start([*common, '--init_from=resume', '--max_iters=1000000', '--eval_interval=1000000',
                   '--log_interval=1000000'])
    with contextlib.suppress(FileNotFoundError):  # a lock file removed by hand must not let a second one in
        os.remove(os.path.join(directory, 'lock'))
    second = cli('train.py', *common, '--max_iters=10', '--overwrite=True')  # would start over
    ckpt_during = os.path.exists(os.path.join(directory, 'ckpt.pt'))
    first.send_signal(signal.SIGINT)
    try:
        stdout, stderr = first.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # Ctrl-C did not stop it: fail, but leave no trainer behind
        first.kill()
        stdout, stderr = first.communicate()
    return dict(directory=directory, pid=first.pid, second=second, ckpt_during=ckpt_during,
                code=first.returncode, stdout=stdout, stderr=stderr)


def test_a_second_trainer_on_a_run_directory_is_refused(interrupted):
    one_line_error(interrupted['second'], 'is in use by another process', 'lock')
    assert interrupted['ckpt_during']  # the second one deleted nothing


def test_ctrl_c_prints_a_resume_command_that_pastes(interrupted):
    assert interrupted['code'] == 128 + signal.SIGINT, (interrupted['stdout'], interrupted['stderr'])
    assert interrupted['stdout'].count('Resume with:') == 1
    args = shlex.split(interrupted['stdout'].splitlines()[-1])
    assert args[0] == 'python' and os.path.basename(args[1]) == 'train.py'  # as it was named
    assert args.count('--init_from=resume') == 1
    assert '--run_name=my run' in args and not any(a.startswith('--overwrite') for a in args)
    step = load_checkpoint(os.path.join(interrupted['directory'], 'ckpt.pt'))['iter']
    assert step > 5
    # pasted, it runs: here in this process, a few steps further (the later --max_iters wins)
    code, out, err = cli(*args[1:], f'--max_iters={step + 3}')
    assert code == 0 and f'steps {step}..{step + 3}' in out, err


def test_ctrl_c_with_the_output_closed_still_saves(tmp_path):
    """`python train.py ... | tee log`, then Ctrl-C: the terminal's SIGINT has ended tee already, so
    every line train.py prints fails. The checkpoint must be saved before any of them."""
    common = [*TINY, f'--out_dir={tmp_path}', '--run_name=r']
    assert cli('train.py', *common, '--max_iters=5')[0] == 0
    proc = start([*common, '--init_from=resume', '--max_iters=1000000', '--eval_interval=1000000',
                  '--log_interval=1000000'])
    proc.stdout.close()  # the reader is gone
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    step = load_checkpoint(str(tmp_path / 'r' / 'ckpt.pt'))['iter']
    assert step > 5 and 'Traceback' not in stderr, (proc.returncode, stderr)


def test_a_closed_stdout_saves_and_stops_the_run(tmp_path):
    """`python train.py ... | head`: once the reader is gone, the next line fails; the run saves, says so on
    stderr and exits as SIGPIPE would (141), and resumes from there."""
    common = [*TINY, f'--out_dir={tmp_path}', '--run_name=r', '--eval_interval=1000000', '--log_interval=50']
    proc = start([*common, '--max_iters=1000000'])
    proc.stdout.close()  # the reader is gone
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGPIPE and 'Traceback' not in stderr, (proc.returncode, stderr)
    assert 'stopped by SIGPIPE' in stderr and '--init_from=resume' in stderr, stderr
    step = load_checkpoint(str(tmp_path / 'r' / 'ckpt.pt'))['iter']
    assert step == 50  # the step whose line failed
    assert cli('train.py', *common, '--init_from=resume', f'--max_iters={step + 2}')[0] == 0


def test_the_lock_of_a_sigkilled_trainer_does_not_block_the_next(interrupted):
    directory = interrupted['directory']
    step = load_checkpoint(os.path.join(directory, 'ckpt.pt'))['iter']
    common = [*TINY, f'--out_dir={os.path.dirname(directory)}', '--run_name=my run',
              '--init_from=resume']
    proc = start([*common, '--max_iters=1000000', '--eval_interval=1000000',
                  '--log_interval=1000000'])
    assert locked(directory)  # held while it trains
    proc.kill()
    proc.communicate()
    assert not locked(directory)  # the kernel dropped it with the process
    code, _, err = cli('train.py', *common, f'--max_iters={step + 2}')
    assert code == 0, err
    assert not locked(directory)  # released at the end


# -----------------------------------------------------------------------------
# eval.json, and damaged files under eval_extrapolation.py and plot.py

@pytest.fixture
def evaluated(run):
    directory, _ = run
    code, out, err = cli('eval_extrapolation.py', directory, *EVAL)
    assert code == 0, err
    return directory


def test_stale_eval_json_is_computed_again(evaluated, run):
    _, resume = run
    code, out, _ = cli('eval_extrapolation.py', evaluated, *EVAL)
    assert code == 0 and 'reused' in out
    assert cli('train.py', *resume)[0] == 0  # the checkpoint changes after the evaluation
    code, out, _ = cli('eval_extrapolation.py', evaluated, *EVAL)
    assert code == 0 and 'reused' not in out and 'on cpu' in out
    with open(os.path.join(evaluated, 'eval.json')) as f:
        assert json.load(f)['checkpoint']['iter'] == 15


def test_plot_says_when_an_evaluation_is_older_than_the_log(evaluated, run, tmp_path):
    _, resume = run
    code, out, err = cli('plot.py', evaluated, f'--out={tmp_path / "a"}')
    assert code == 0 and 'warning' not in out + err, (out, err)
    assert cli('train.py', *resume)[0] == 0  # extended to step 15 after its evaluation at step 10
    code, out, err = cli('plot.py', evaluated, f'--out={tmp_path / "b"}')
    assert code == 0 and 'eval.json is of step 10 and its log runs to step 15' in out, (out, err)


def test_a_long_evaluation_says_where_it_is(evaluated):
    code, out, err = cli('eval_extrapolation.py', evaluated, *EVAL, '--reuse=False')
    assert code == 0, err
    assert '  loop sweep to b = 3: ' in out and '  lens: ' in out and 'k sweep over k = 0..6' in out


@pytest.mark.parametrize('name,text', [
    ('config.json', '{"n_dims": 3,'), ('config.json', '[1]'),
    ('log.csv', 'iter,train_loss,val_err\n5,x,1\n'), ('log.csv', 'a,b\n1,2\n'),
    ('eval.json', '{bad'), ('eval.json', '{"loops": [1, 2]}')])
def test_damaged_files_under_plot_and_eval(evaluated, tmp_path, name, text):
    path = os.path.join(evaluated, name)
    with open(path, 'w') as f:
        f.write(text)
    one_line_error(cli('plot.py', evaluated, f'--out={tmp_path / "fig"}'), path)
    assert not (tmp_path / 'fig').exists()
    # eval_extrapolation.py reads its config from the checkpoint and never reads log.csv; a damaged
    # eval.json is computed again
    code, out, err = cli('eval_extrapolation.py', evaluated, *EVAL)
    assert code == 0 and 'Traceback' not in err, err
    assert ('computing it again' in out) == (name == 'eval.json')
    if name == 'eval.json':
        with open(path) as f:
            assert json.load(f)['checkpoint']['iter'] == 10


@pytest.mark.parametrize('field,damage,refused', [
    ('checkpoint', lambda ev: ev.update(checkpoint=None), False),  # read as no checkpoint
    ('checkpoint', lambda ev: ev.update(checkpoint='x'), True),
    ('a curve all null', lambda ev: ev['err_vs_loops'].update(mean=[None] * len(ev['loops'])), False),
    ('spectrum', lambda ev: ev['lens']['spectrum'].update(model=None), True),
    ('spectrum', lambda ev: ev['lens']['spectrum']['gd'][0].append(1.0), True),
    ('explains', lambda ev: ev['lens'].update(explains=ev['lens']['explains'][:-1]), True)])
def test_damaged_eval_json_fields_are_drawn_or_refused(evaluated, tmp_path, field, damage, refused):
    path = os.path.join(evaluated, 'eval.json')
    with open(path) as f:
        ev = json.load(f)
    damage(ev)
    with open(path, 'w') as f:
        json.dump(ev, f)
    result = cli('plot.py', evaluated, f'--out={tmp_path / "fig"}')
    if refused:
        one_line_error(result, path)
    else:
        assert result[0] == 0 and 'Traceback' not in result[2], result
    assert not glob.glob(str(tmp_path / 'fig' / '*.tmp'))  # no half-written figure left behind


@pytest.mark.parametrize('script', ['train.py', 'bench.py', 'eval_extrapolation.py', 'plot.py', 'sweep.py'])
def test_help_into_a_closed_pipe_is_no_traceback(script):
    """`python SCRIPT --help | head -1`: the reader goes after one line."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, script), '--help'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ONE_THREAD, bufsize=1)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() in (0, 2) and 'Traceback' not in err, err


def test_the_logs_ms_per_step_counts_every_step_since_the_last_row(tmp_path, monkeypatch):
    """A 1 s stall at step 3 of 10 shows in the row of step 10 (at least 100 ms a step), though progress lines
    came after it at every step."""
    import data
    real, calls = data.sample_batch, []

    def stalls(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(1.0)
        return real(*args, **kwargs)
    monkeypatch.setattr(data, 'sample_batch', stalls)
    args = [*TINY, '--max_iters=10', '--eval_interval=10', '--log_interval=1', f'--out_dir={tmp_path}']
    assert cli('train.py', *args, '--run_name=r')[0] == 0
    with open(tmp_path / 'r' / 'log.csv') as f:
        row = list(csv.DictReader(f))[-1]
    assert row['iter'] == '10' and float(row['ms_per_step']) >= 100, row


def test_a_log_that_is_a_folder_is_refused_before_anything_is_written(run):
    directory, resume = run
    os.remove(os.path.join(directory, 'log.csv'))
    os.makedirs(os.path.join(directory, 'log.csv'))
    before = {f: os.path.getmtime(os.path.join(directory, f)) for f in os.listdir(directory)}
    one_line_error(cli('train.py', *resume), 'log.csv is not a file')
    assert {f: os.path.getmtime(os.path.join(directory, f)) for f in os.listdir(directory)} == before


def test_names_past_255_bytes_and_paths_that_are_not_utf8(tmp_path):
    """A config file named in 80 three-byte characters makes a name of 200 bytes at most; a folder with a byte
    that is not UTF-8 prints escaped, where stdout is strict UTF-8, and the run trains."""
    config = tmp_path / ('配' * 80 + '.py')
    config.write_text('n_dims = 3\n')
    stray = os.fsdecode(b'a\xff')  # a folder name with a byte that is not UTF-8
    for args in ([str(config), f'--out_dir={tmp_path / "out"}'], [f'--out_dir={stray}']):
        script = os.path.join(HERE, 'train.py')
        result = subprocess.run([sys.executable, script, *TINY, '--max_iters=5', *args],
                                capture_output=True, text=True, cwd=tmp_path,
                                env={**ONE_THREAD, 'PYTHONIOENCODING': 'utf-8'})
        assert result.returncode == 0 and 'Traceback' not in result.stderr, result.stderr
    [name] = os.listdir(tmp_path / 'out')
    assert len(os.fsencode(name)) <= 255 and name.startswith('配') and ',+' in name
    assert os.path.isdir(tmp_path / stray)


def test_a_write_that_fails_leaves_no_temporary_file_and_the_old_one_whole(tmp_path):
    path = str(tmp_path / 'figure.svg')
    rundir.write_file(path, lambda f: f.write('old'))
    def fails(f):
        f.write('half')
        raise ValueError('a bug halfway through')
    with pytest.raises(ValueError):  # not an I/O error: raised as it is, and cleaned up after
        rundir.write_file(path, fails)
    assert os.listdir(tmp_path) == ['figure.svg'] and open(path).read() == 'old'


def test_an_eval_json_with_a_word_for_a_number_is_refused(evaluated, tmp_path):
    path = os.path.join(evaluated, 'eval.json')
    with open(path) as f:
        ev = json.load(f)
    ev['err_vs_k']['ridge']['mean'][1] = 'low'  # the right length, one value not a number
    with open(path, 'w') as f:
        json.dump(ev, f)
    one_line_error(cli('plot.py', evaluated, f'--out={tmp_path / "fig"}'), path, 'is not 7 numbers')
    code, out, err = cli('eval_extrapolation.py', evaluated, *EVAL)
    assert code == 0 and 'computing it again' in out, (code, out, err)


# -----------------------------------------------------------------------------
# flags and files that cannot work: one line, nothing written

@pytest.mark.parametrize('flags,words', [
    (['--learning_rate=1e999'], 'finite'), (['--learning_rate=nan'], 'learning_rate'),
    (['--max_iters=1e999'], 'max_iters'), (['--seed=100000000000000000000000'], 'seed'),
    (['--run_name=..'], 'plain name'), (['--run_name=.'], 'plain name'),
    (['--run_name=a/../..'], 'plain name'), (['--run_name=/tmp/elsewhere'], 'plain name'),
    (['--learning_rate=1e39'], 'learning_rate'), (['--out_dir='], 'out_dir'),
    (['--lr_schedule=cosine', '--learning_rate=1e-5', '--min_lr=5e-5'], 'min_lr'),
    (['--n_loops=2', '--loss_window=5'], 'loss_window'), (['--n_loops=1001'], 'at most 1000'),
    (['--n_loops_random=True', '--n_loops_draw=100000'], 'n_loops_draw'), (['--max_iters=0'], 'max_iters'),
    (['--inject=none', '--loss_window=1'], 'first loop only'), (['--n_loops_draw=-1'], 'n_loops_draw'),
    (['--curriculum_gate=-0.5'], 'curriculum_gate'),
    (['--inject=none', '--loss_window=2', '--n_loops_random=True', '--n_loops_draw=3'],
     'must be 0 (all loops):')])
def test_bad_values_are_one_line_errors(tmp_path, monkeypatch, flags, words):
    # --max_iters=5 first: a flag under test wins, and a regression ends soon instead of training
    monkeypatch.chdir(tmp_path)  # an empty --out_dir would write here
    one_line_error(cli('train.py', *TINY, '--max_iters=5', f'--out_dir={tmp_path / "out"}', *flags),
                   words)
    assert os.listdir(tmp_path) == []


def test_bench_checks_a_given_loss_window_as_train_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an explicit window above b is refused, not clipped, as train.py refuses it
    result = cli('bench.py', '--n_loops=2', '--loss_window=5', '--steps=1', '--warmup=0')
    one_line_error(result, '--loss_window=5')


@pytest.mark.parametrize('script,flag', [('sweep.py', '--max_parallel=0'), ('bench.py', '--steps=0'),
                                         ('eval_extrapolation.py', '--n_prompts=1')])
def test_a_flag_below_its_lowest_value_is_refused(tmp_path, monkeypatch, script, flag):
    # each script hands configurator.parse its own lowest values; the sweep only plans (--dry_run), so that a
    # check that regresses fails here instead of starting the grid's full-size runs
    monkeypatch.chdir(tmp_path)
    args = {'sweep.py': [os.path.join(HERE, 'config/exp5_grid.py'), '--dry_run=True'],
            'eval_extrapolation.py': [str(tmp_path)]}
    one_line_error(cli(script, *args.get(script, []), flag), flag, 'must be at least')
    assert os.listdir(tmp_path) == []


def test_flags_a_schedule_never_reads_are_not_checked(tmp_path):
    # min_lr is where cosine and wsd end: the constant schedule takes a learning rate below it
    code, _, err = cli('train.py', *TINY, '--max_iters=5', f'--out_dir={tmp_path}', '--learning_rate=1e-5')
    assert code == 0, err


def test_defaults_the_user_did_not_set_follow_the_flags_that_did():
    """An unset min_lr follows a small lr to a tenth of it; an unset loss window follows a smaller b, and with
    inject=none covers every loop. Set by hand (even to the default's value), each is checked as given."""
    def configured(*flags):
        return train.configure([*TINY, *flags])[0]
    assert configured('--lr_schedule=cosine', '--learning_rate=1e-5')['min_lr'] == pytest.approx(1e-6)
    assert configured('--lr_schedule=cosine', '--learning_rate=3e-3')['min_lr'] == 5e-5  # the recipe's
    assert configured('--loss_window=0', '--n_loops=3')['loss_window'] == 0
    defaults = [f for f in TINY if not f.startswith('--loss_window=')]
    assert train.configure([*defaults, '--n_loops=3'])[0]['loss_window'] == 3  # the default 5 follows b
    assert train.configure([*defaults, '--inject=none'])[0]['loss_window'] == 0
    with pytest.raises(configurator.ConfigError, match='loss_window'):
        train.configure([*defaults, '--n_loops=3', '--loss_window=5'])  # 5 given, though it is the default


def test_flags_that_change_nothing_are_said_and_keep_the_run_name():
    base, directory, _ = train.configure(TINY)
    for flags in (['--decay_iters=7'], ['--n_keep=0', '--select=random'], ['--n_loops_draw=9'],
                  ['--n_loops_random=True', '--n_loops_draw=1', '--loss_window=1']):
        config, named, said = train.configure([*TINY, *flags])
        assert said and 'changes nothing' in said[-1] or 'as with n_loops_draw' in said[-1], (flags, said)
        assert named == directory or flags[0] == '--n_loops_random=True', (flags, named)
    wsd = train.configure([*TINY, '--lr_schedule=wsd', '--max_iters=30', '--warmup_iters=10',
                           '--decay_iters=25'])
    assert 'decay starts at the end of warmup' in wsd[2][0]
    lrs = [train.get_lr(it, SimpleNamespace(**wsd[0])) for it in range(30)]
    assert lrs[10] == pytest.approx(5e-4) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # no jump


def test_config_file_that_exits_is_an_error(tmp_path):
    path = tmp_path / 'leaves.py'
    path.write_text('import sys\nn_dims = 3\nsys.exit(0)\n')
    one_line_error(cli('train.py', *TINY, '--max_iters=5', str(path), f'--out_dir={tmp_path / "out"}'),
                   str(path), 'SystemExit')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('where,words', [
    ('under a file', 'blocker is a file, not a directory'),
    ('is a file', 'blocker is a file, not a directory'),
    ('run_name is a file', 'blocker exists and is not a directory')])
def test_out_dir_that_cannot_be_made_is_one_line_error(tmp_path, where, words):
    blocker = tmp_path / 'blocker'
    blocker.write_text('keep me')
    flags = {'under a file': [f'--out_dir={blocker / "sub"}'],
             'is a file': [f'--out_dir={blocker}'],
             'run_name is a file': [f'--out_dir={tmp_path}', '--run_name=blocker']}[where]
    # refused before the model is built, and said plainly (not as an errno)
    one_line_error(cli('train.py', *TINY, '--max_iters=5', *flags), words)
    assert blocker.read_text() == 'keep me' and sorted(os.listdir(tmp_path)) == ['blocker']


class ClosedPipe(io.StringIO):
    """stdout whose reader has gone (python train.py | head -0)."""
    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


@pytest.mark.parametrize('script', ['train.py', 'plot.py'])
def test_io_error_anywhere_is_one_line(tmp_path, trained, script):
    args = [trained, '--help']
    if script == 'train.py':
        args = [*TINY, f'--out_dir={tmp_path}', '--max_iters=5']
    one_line_error(cli(script, *args, stdout=ClosedPipe()), 'pipe')
    assert not any(map(locked, glob.glob(str(tmp_path / '*'))))  # the run's lock is released on the way out


def test_the_error_hook_covers_io_errors_and_ctrl_c_but_not_bugs(capsys):
    saved = sys.excepthook
    try:
        configurator.exit_on_errors()
        for error, code in ((OSError(errno.ENOSPC, 'No space left on device'), 2),
                            (configurator.ConfigError('bad'), 2), (KeyboardInterrupt(), 130)):
            with pytest.raises(SystemExit) as info:
                sys.excepthook(type(error), error, None)
            assert info.value.code == code and len(capsys.readouterr().err.splitlines()) == 1
        sys.excepthook(ValueError, ValueError('a bug'), None)  # a bug keeps its traceback
        assert 'ValueError: a bug' in capsys.readouterr().err
    finally:
        sys.excepthook = saved


# -----------------------------------------------------------------------------
# warnings: a run that diverges without a NaN, flags that change nothing

def test_finite_divergence_ends_with_a_warning(tmp_path):
    code, out, err = cli('train.py', *TINY, '--max_iters=5', '--learning_rate=10', '--grad_clip=0',
                         '--seed=2', f'--out_dir={tmp_path}')
    assert code == 0, err
    assert 'warning: the validation error' in out  # at the evaluation
    last = err.strip().splitlines()[-1]  # and again, last, on stderr
    assert last.startswith('warning: this run ended diverged') and '--learning_rate' in last


@pytest.mark.parametrize('flags,words', [
    (['--select=shuffle'], 'select=shuffle changes nothing (n_keep=0 keeps every example)'),
    (['--n_keep=3', '--truncate_after=2'], 'n_keep=3 cuts nothing: the cut, after loop truncate_after'),
    (['--n_keep=6'], 'n_keep=6 cuts nothing: it keeps all N=6 examples'),
    (['--n_keep=3', '--truncate_after=2', '--n_keep_schedule=shrink'],
     'n_keep_schedule=shrink changes nothing')])
def test_truncation_flags_that_change_nothing_warn(tmp_path, capsys, flags, words):
    train.open_run([*TINY, f'--out_dir={tmp_path}', *flags])
    assert words in capsys.readouterr().err


def test_no_parametrize_gets_a_one_shot_iterator():
    """itertools.product and the like are used up after one pass: pytest would then see no cases."""
    for path in glob.glob(os.path.join(HERE, 'test_*.py')):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'parametrize':
                values = node.args[1] if len(node.args) > 1 else None
                func = getattr(values, 'func', None)  # product(...) or itertools.product(...)
                name = getattr(func, 'attr', getattr(func, 'id', ''))
                one_shot = (isinstance(values, ast.GeneratorExp)
                            or name in ('product', 'map', 'zip', 'filter'))
                assert not one_shot, f'{path}:{node.lineno}'


# -----------------------------------------------------------------------------
# defaults that follow the flags a user sets, and what the console says

@pytest.mark.parametrize('flags', [['--n_loops=5'], ['--n_loops=3'], ['--n_dims=3'], ['--n_points=8'],
                                   ['--n_dims=1', '--dims_start=0']])
def test_defaults_follow_the_flags_a_user_sets(tmp_path, flags):
    # the experiments' model, curricula and loss window (the last 5 loops) under a smaller d, N or b
    code, out, err = cli('train.py', *flags, '--max_iters=2', '--val_prompts=8', '--eval_interval=1',
                         '--batch_size=8', '--device=cpu', f'--out_dir={tmp_path}')
    assert code == 0 and 'iter 2/2' in out, err


def test_validation_says_where_it_is_measured(tmp_path):
    code, out, err = cli('train.py', *TINY, '--max_iters=5', '--dims_start=2', '--dims_interval=1000',
                         '--points_start=4', '--points_interval=1000', f'--out_dir={tmp_path}',
                         '--run_name=r')
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith('iter 5/5'))
    assert 'loss' in line and '(training at d=2 N=4 b=2)' in line
    assert ' at d=3 N=6, ' in line and ' at k=2d=6' in line
    assert ' at the training d=2 N=4 (b=2)' in line
    with open(tmp_path / 'r' / 'log.csv') as f:
        header, row = [r.split(',') for r in f.read().splitlines()]
    assert dict(zip(header, row))['d'] == '2' and dict(zip(header, row))['N'] == '4'


# -----------------------------------------------------------------------------
# experiment tracking: off by default, and then wandb is never imported

def test_wandb_is_imported_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'wandb', None)  # `import wandb` now fails: it must not happen
    args = [*TINY, '--max_iters=5', f'--out_dir={tmp_path}']
    assert cli('train.py', *args)[0] == 0
    one_line_error(cli('train.py', *args, '--run_name=w', '--wandb_log=True'), 'wandb')  # the flag reaches it


class FailingWandb:
    """wandb as it fails when its user is not logged in or names a project that cannot be made."""
    @staticmethod
    def init(**kwargs):
        os.makedirs(os.path.join(kwargs['dir'], 'wandb'))  # what wandb writes before it fails
        raise RuntimeError('api_key not configured (no-tty). call wandb.login(key=[your_api_key])')


@pytest.mark.parametrize('wandb', [None, FailingWandb])  # not installed; installed, and failing
def test_wandb_failures_are_one_line_and_write_nothing(tmp_path, monkeypatch, wandb):
    monkeypatch.setitem(sys.modules, 'wandb', wandb)
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: wandb)
    args = [*TINY, '--max_iters=5', f'--out_dir={tmp_path}', '--run_name=w', '--wandb_log=True']
    one_line_error(cli('train.py', *args), '--wandb_log=True', 'api_key' if wandb else 'pip install wandb')
    assert os.listdir(tmp_path) == []


def test_wandb_offline_run_records_the_log(tmp_path, monkeypatch):
    pytest.importorskip('wandb')
    monkeypatch.setenv('WANDB_MODE', 'offline')  # no network, no account
    monkeypatch.setenv('WANDB_SILENT', 'true')
    code, _, err = cli('train.py', *TINY, '--max_iters=10', f'--out_dir={tmp_path}', '--run_name=r',
                       '--wandb_log=True', '--wandb_project=test')
    assert code == 0, err
    records = glob.glob(str(tmp_path / 'r' / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert len(records) == 1, os.listdir(tmp_path / 'r')
    with open(records[0], 'rb') as f:
        data = f.read()
    for column in rundir.LOG_COLUMNS[1:]:  # each of the log's columns is a logged key (iter is the step)
        assert column.encode() in data, column
