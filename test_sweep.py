"""
Tests of sweep.py on config/tiny_grid.py (2 variants x 2 seeds, 30 steps): a dry run lists a grid and
writes nothing; a sweep trains, evaluates each run in its slot, and plots; a sweep stopped by SIGINT
resumes with the same command and ends with the same eval.json files as an uninterrupted one; a run
whose train.py is killed by SIGKILL is reported, the sweep carries on, and the next sweep resumes the
run from its checkpoint; the grid runs through submitit's local executor. The slots share a faked
machine's GPUs (several runs on each) or its cores; a sweep killed by SIGKILL takes its runs along.

    python -m pytest -q test_sweep.py

The sweeps run in this process (sweep.main), which imports torch once: each process that imports it
costs about 3 s of CPU. A thread watches the runs and sends the signals.
"""

import contextlib
import csv
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import pytest

import configurator
import sweep
import train
from rundir import load_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = 'config/tiny_grid.py'
MAX_ITERS = 30  # tiny_grid.py's


@pytest.fixture(scope='module', autouse=True)
def in_project():
    """Run from the project, as the README's commands do, and one thread per run: the same
    floating-point sums in every sweep, and no OpenMP threads waiting on each other."""
    cwd, threads = os.getcwd(), os.environ.get('OMP_NUM_THREADS')
    os.chdir(HERE)
    os.environ['OMP_NUM_THREADS'] = '1'
    yield
    os.chdir(cwd)
    if threads is None:
        del os.environ['OMP_NUM_THREADS']
    else:
        os.environ['OMP_NUM_THREADS'] = threads


def run_sweep(grid, out, *flags):
    """sweep.main in this process: (exit code, all it printed, its children's output included)."""
    fd, path = tempfile.mkstemp()
    os.close(fd)
    saved = os.dup(1)
    try:
        with open(path, 'a+', buffering=1) as f:  # appends: its lines and its children's interleave
            os.dup2(f.fileno(), 1)
            with contextlib.redirect_stdout(f):
                code = sweep.main([grid, f'--out_dir={out}', f'--figures={out}/figures', *flags])
            f.seek(0)
            return code, f.read()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.remove(path)


@contextlib.contextmanager
def watching(condition, action, what):
    """While the body runs a sweep, a thread polls condition() and calls action() once it holds;
    the test fails if it never did."""
    done, acted = threading.Event(), []

    def watch():
        while not done.is_set():
            with contextlib.suppress(OSError, ValueError):  # a file read halfway through its writing
                if condition():
                    acted.append(action())
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    assert acted, f'the sweep ended before {what}'


def tiny_runs(out, seeds='', train_flags='', grid=TINY):
    """The tiny grid's runs as sweep.py plans them: their train.py arguments and directories."""
    opts = {'seeds': [int(s) for s in seeds.split(',') if seeds], 'train_flags': train_flags.split(),
            'out_dir': str(out), 'cluster': 'none'}
    return sweep.plan(grid, opts)[1]


def plan_line(stdout, run):
    """The line of a sweep's plan for a run: train, resume or skip."""
    command = sweep.command('train', run.args)
    starts = (f'resume  {command} --init_from=resume  ', f'skip    {run.directory}  ')
    lines = [line for line in stdout.splitlines()
             if line == f'train   {command}' or line.startswith(starts)]
    assert len(lines) == 1, (run.directory, lines)
    return lines[0]


def processes(parent, *words):
    """The live processes (children of parent, or any if None) whose command line holds all the words:
    their pids, as ps lists them (a zombie is dead)."""
    table = subprocess.run(['ps', '-A', '-ww', '-o', 'pid=,ppid=,stat=,args='], capture_output=True,
                           text=True)  # -ww: the whole command line, however long
    rows = [row for row in (line.split(None, 3) for line in table.stdout.splitlines()) if len(row) == 4]
    return [int(pid) for pid, ppid, stat, args in rows
            if not stat.startswith('Z') and parent in (None, int(ppid)) and all(w in args for w in words)]


def ckpt_iter(run):
    path = os.path.join(run, 'ckpt.pt')
    return load_checkpoint(path)['iter'] if os.path.isfile(path) else None


def log_rows(run):
    try:
        with open(os.path.join(run, 'log.csv'), newline='') as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def last_iter(run):
    rows = log_rows(run)
    return int(rows[-1]['iter']) if rows else 0


def training(run, before=MAX_ITERS):
    """In its training loop: a checkpoint saved, step `before` not reached."""
    return os.path.isfile(os.path.join(run, 'ckpt.pt')) and last_iter(run) < before


def val_errs(run):
    return [(row['iter'], row['val_err']) for row in log_rows(run)]


def eval_curves(run):
    with open(os.path.join(run, 'eval.json')) as f:
        result = json.load(f)
    return result['err_vs_loops'], result['err_vs_k']


def continued(run, log, step):
    """Whether the run went on from its checkpoint at step: its log's rows up to it are kept as they
    were, wall-clock timings included (a run started over would have written them again). None where
    the run was stopped before its first logged row: its log cannot tell."""
    kept = [row for row in log if int(row['iter']) <= step]
    return log_rows(run)[:len(kept)] == kept if kept else None


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """An uninterrupted sweep of the tiny grid: (out dir, its output)."""
    out = tmp_path_factory.mktemp('reference')
    code, stdout = run_sweep(TINY, out, '--jobs=2')
    assert code == 0, stdout
    return out, stdout


def test_dry_run_lists_every_run_and_writes_nothing(tmp_path):
    out = tmp_path / 'out'
    code, stdout = run_sweep('config/exp5_grid.py', out, '--dry_run=True')
    assert code == 0, stdout
    trains = [line for line in stdout.splitlines() if line.startswith('train ')]
    # (4 n_keep x 2 select, less n_keep=64 select=random, which cuts nothing) + 6 extras
    # = 13 variants, x 3 seeds
    assert len(trains) == 27 and len(set(trains)) == 27  # the 6 extras on seed 42 only (extra_seeds)
    for seed, n in ((42, 13), (451, 7), (1984, 7)):
        assert sum(line.endswith(f'--seed={seed} --out_dir={out}') for line in trains) == n
    assert all(line.startswith('train   python train.py config/exp5_truncation.py ')
               for line in trains)
    assert sum('--n_keep=32' in line for line in trains) == 2 * 3 + 5  # first and random 32; the extras
    assert '13 variants x 3 seeds (the extras on fewer) = 27 runs: 27 to train, 0 to resume' in stdout
    assert 'then  python eval_extrapolation.py RUN... --max_loops=100' in stdout
    assert os.listdir(tmp_path) == []  # no run directory, no figure folder


CONFIGS = sorted(os.listdir(os.path.join(HERE, 'config')))


@pytest.mark.parametrize('grid', [f for f in CONFIGS if f.endswith('_grid.py')])
def test_every_grid_file_plans_valid_runs(grid, tmp_path):
    """A dry run checks each variant with train.py's own checks: a misspelt flag, a value out of
    range or a missing config file in a grid is an error here, before hours of a sweep."""
    code, stdout = run_sweep(f'config/{grid}', tmp_path / 'out', '--dry_run=True')
    assert code == 0, stdout
    assert 'would train' in stdout and os.listdir(tmp_path) == []


@pytest.mark.parametrize('config', [f for f in CONFIGS if not f.endswith('_grid.py')])
def test_every_config_file_passes_train_checks(config):
    c, _, _, _ = configurator.parse([f'config/{config}'], train.DEFAULTS, train.CHOICES)
    train.check_config(c)  # raises ConfigError on an impossible value or combination


def test_the_sweep_names_each_run_as_train_does(tmp_path):
    """From the config as checked: a default loss window that follows a smaller b is in both names."""
    grid = tmp_path / 'short_grid.py'
    with open(os.path.join(HERE, TINY)) as f:
        grid.write_text(f.read().replace("'loss_window': 0, ", '').replace("'n_loops': 2", "'n_loops': 3"))
    runs = tiny_runs(tmp_path, grid=str(grid))
    for run in runs:
        config, directory, _ = train.configure(run.args)
        assert run.directory == directory and config['loss_window'] == 3 and 'loss_window=3' in directory


@pytest.mark.parametrize('flags,words', [
    (['--train_flags=config/laptop.py'], "'config/laptop.py' is not a --key=value flag"),
    (['--figures='], "--figures='': must name a folder"), (['--figures=/proc/x'], 'cannot make'),
    (['--out_dir=/proc/x'], 'cannot make'), (['--train_flags=--max_iters=0'], 'max_iters'),
    (['--eval_flags=--max_loops=0'], '--max_loops=0'), (['--eval_flags=--k_prompts=1'], '--k_prompts=1'),
    *[(['--train_flags=--device=cuda'], 'not available')] * (not __import__('torch').cuda.is_available())])
def test_the_sweep_checks_its_inputs_before_any_run(tmp_path, capsys, flags, words):
    os.makedirs(tmp_path / 'out')
    with pytest.raises(SystemExit) as exit:
        sweep.main([TINY, f'--out_dir={tmp_path / "out"}', f'--figures={tmp_path / "figures"}', *flags])
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and words in err and len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == ['out'] and os.listdir(tmp_path / 'out') == []


def test_a_full_disk_is_refused_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: SimpleNamespace(total=2 ** 40, free=0))
    with pytest.raises(SystemExit) as exit:
        sweep.main([TINY, f'--out_dir={tmp_path / "out"}', f'--figures={tmp_path / "figures"}'])
    assert exit.value.code == 2 and 'only 0 MB free' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_sigterm_in_the_final_evaluation_stops_it_with_the_sweep(reference, tmp_path):
    """SIGTERM while eval_extrapolation.py sums up: passed on, so that it stops too (no orphan), and the
    sweep exits 143."""
    out = tmp_path / 'out'
    shutil.copytree(reference[0], out, ignore=shutil.ignore_patterns('figures'))
    evaluating = lambda: processes(os.getpid(), sweep.SCRIPTS['eval_extrapolation'])  # noqa: E731
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # should the sweep not take it: not pytest
    try:
        with watching(evaluating, lambda: os.kill(os.getpid(), signal.SIGTERM), 'its evaluation'):
            code, stdout = run_sweep(TINY, out, '--jobs=2')
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143 and 'stopped by SIGTERM in eval_extrapolation.py' in stdout, stdout
    assert not evaluating() and not os.path.exists(out / 'figures')


def test_sweep_trains_evaluates_and_plots(reference):
    out, stdout = reference
    runs = tiny_runs(out)
    names = [os.path.basename(r.directory) for r in runs]
    assert sorted(os.listdir(out)) == sorted(names + ['figures'])
    for run in runs:
        assert ckpt_iter(run.directory) == MAX_ITERS
        assert os.path.isfile(os.path.join(run.directory, 'eval.json'))
        assert f'done {run.directory}: val_err {float(val_errs(run.directory)[-1][1]):.4g}' in stdout
    assert '[4/4] done' in stdout and 'mean ± std over seeds' in stdout  # eval_extrapolation's table
    # each run was scored in its slot once trained (its output in train.out): the end only reuses
    assert stdout.count('(reused: loop sweep') == 4 and ' on cpu: loop sweep' not in stdout
    for run in runs:
        with open(os.path.join(run.directory, 'train.out')) as f:
            assert 'mean ± std over seeds' in f.read()
    for fig in ('performance', 'loss_comparison', 'extrapolation', 'error_vs_examples'):
        assert f'{out}/figures/tiny/{fig}.png' in stdout
        assert os.path.isfile(out / 'figures' / 'tiny' / f'{fig}.svg')
    with open(out / 'figures' / 'tiny' / 'performance.svg') as f:
        svg = f.read()  # the grid's labels reached the legend
    assert 'learned PE' in svg and 'no PE' in svg
    assert re.search(r'^learned PE +2 ', stdout, re.M)  # and the summary table's rows


def test_committed_results_without_checkpoints_count_as_done(reference, tmp_path):
    """A clone holds config.json, log.csv and eval.json but no ckpt.pt: the sweep trains nothing,
    summarises and plots the committed results, and train.py will not start such a run over."""
    out = tmp_path / 'out'
    shutil.copytree(reference[0], out, ignore=shutil.ignore_patterns('ckpt.pt', 'figures'))
    runs = tiny_runs(out)
    kept = {p: open(p, 'rb').read() for r in runs for p in
            (os.path.join(r.directory, 'log.csv'), os.path.join(r.directory, 'eval.json'))}
    code, stdout = run_sweep(TINY, out, '--jobs=2')
    assert code == 0, stdout
    assert '0 to train, 0 to resume, 4 finished' in stdout
    assert 'mean ± std over seeds' in stdout and os.path.isfile(out / 'figures' / 'tiny' / 'performance.png')
    with pytest.raises(configurator.ConfigError, match='no checkpoint: --overwrite=True starts over'):
        train.open_run(runs[0].args)
    assert kept == {p: open(p, 'rb').read() for p in kept}
    os.remove(os.path.join(runs[0].directory, 'eval.json'))
    with open(os.path.join(runs[0].directory, 'log.csv'), 'w') as f:
        f.write('not a log\n')
    assert train.open_run(runs[0].args + ['--overwrite=True'])[2] is None  # starts over, unread


def test_sigint_stops_and_the_same_command_resumes(reference, tmp_path):
    out = tmp_path / 'out'
    runs = tiny_runs(out)
    dirs = [run.directory for run in runs]

    def mid_sweep():  # a run finished, and another one not halfway through its training loop
        return (any(last_iter(d) == MAX_ITERS for d in dirs)
                and any(training(d, MAX_ITERS // 2) for d in dirs))

    # the SIGINT goes to this process, where the sweep runs; a late one must not stop pytest
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        with watching(mid_sweep, lambda: os.kill(os.getpid(), signal.SIGINT), 'a run finished'):
            code, stdout = run_sweep(TINY, out, '--jobs=2', '--plot=False')
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 128 + signal.SIGINT, stdout
    assert 'stopped by SIGINT' in stdout
    # the signal reached train.py, which saved a checkpoint and stopped: a run is left half done
    steps = [ckpt_iter(d) for d in dirs]
    assert MAX_ITERS in steps and any(s is not None and s < MAX_ITERS for s in steps), steps
    for d, step in zip(dirs, steps):  # only a trained run may have been scored in its slot
        assert step == MAX_ITERS or not os.path.isfile(os.path.join(d, 'eval.json')), d
    mtimes = [os.stat(os.path.join(d, 'ckpt.pt')).st_mtime_ns if s else None
              for d, s in zip(dirs, steps)]
    logs = [log_rows(d) for d in dirs]

    code, stdout = run_sweep(TINY, out, '--jobs=2', '--plot=False')  # the same command again
    assert code == 0, stdout
    resumed = []  # continued() of each half-done run
    assert f'training {sum(s != MAX_ITERS for s in steps)} runs' in stdout
    for run, step, mtime, log in zip(runs, steps, mtimes, logs):
        line = plan_line(stdout, run)
        if step == MAX_ITERS:
            assert line.startswith('skip    ')
            assert os.stat(os.path.join(run.directory, 'ckpt.pt')).st_mtime_ns == mtime  # not touched
        elif step is not None:
            assert line.startswith('resume  ') and line.endswith(f'(from step {step} of {MAX_ITERS})')
            resumed.append(continued(run.directory, log, step))
        else:
            assert line.startswith('train   ')
    # the run mid_sweep saw had logged a row: at least one log shows the resume, and none a restart
    assert True in resumed and False not in resumed, resumed
    ref_out, _ = reference
    for d in dirs:  # the very same models as the uninterrupted sweep's
        assert ckpt_iter(d) == MAX_ITERS
        assert eval_curves(d) == eval_curves(ref_out / os.path.basename(d))


def test_a_killed_run_is_reported_and_resumed_from_its_checkpoint(reference, tmp_path):
    out = tmp_path / 'out'
    locked, killed = tiny_runs(out, seeds='1')
    # the first run fails: its directory is locked by a live process (this one: flock, as train.py does)
    os.makedirs(locked.directory)
    held = os.open(locked.directory, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    run = killed.directory

    def its_process():
        return processes(os.getpid(), sweep.SCRIPTS['train'], *killed.args)

    def kill():  # the second run's train.py, once it has saved a checkpoint
        for pid in its_process():
            os.kill(pid, signal.SIGKILL)

    def halfway():  # at most: time enough to kill it before it ends
        return training(run, MAX_ITERS // 2) and its_process()

    with watching(halfway, kill, 'a checkpoint'):
        code, stdout = run_sweep(TINY, out, '--jobs=1', '--seeds=1')
    assert code == 1, stdout
    assert '2 of 2 runs are unfinished; 0 go on' in stdout and 'py failed' not in stdout
    # each failure: its command and the end of its stderr; the sweep went on after the first one
    first, second = (sweep.command('train', r.args) for r in (locked, killed))
    assert f'[1/2] FAILED (exit code 2) {locked.directory}:\n  {first}\n' in stdout
    assert f'{locked.directory} is in use by another process' in stdout
    assert f'[2/2] FAILED (exit code -9) {run}:\n  {second}\n' in stdout
    assert '2 run(s) failed' in stdout
    step, log = ckpt_iter(run), log_rows(run)
    assert 0 < step < MAX_ITERS
    free = os.open(run, os.O_RDONLY)  # the kernel dropped the killed run's lock: free at once
    fcntl.flock(free, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(free)

    os.close(held)  # and this process lets the first run go
    code, stdout = run_sweep(TINY, out, '--jobs=2', '--seeds=1', '--evaluate=False', '--plot=False')
    assert code == 0, stdout
    assert plan_line(stdout, killed).endswith(f'(from step {step} of {MAX_ITERS})')
    assert plan_line(stdout, locked).startswith('train   ')
    assert continued(run, log, step)
    ref_out, _ = reference
    for r in (locked, killed):  # the same validation errors, step by step, as the uninterrupted runs'
        assert ckpt_iter(r.directory) == MAX_ITERS
        assert val_errs(r.directory) == val_errs(ref_out / os.path.basename(r.directory))


def test_submitit_local_executor_resumes(reference, tmp_path):
    pytest.importorskip('submitit')
    out = tmp_path / 'out'
    ref_out, _ = reference
    runs = tiny_runs(out, seeds='2', train_flags='--max_iters=40')
    for run in runs:  # finished at 30 steps, so that 40 steps make them runs to resume
        shutil.copytree(ref_out / os.path.basename(run.directory), run.directory)
    # evaluation and figures are the local sweep's code, not run again here
    code, stdout = run_sweep(TINY, out, '--cluster=local', '--seeds=2', '--cpus_per_task=1',
                             '--train_flags=--max_iters=40', '--evaluate=False', '--plot=False')
    assert code == 0, stdout
    assert 'training 2 runs through submitit (local)' in stdout and '[2/2] done' in stdout
    assert len(list((out / 'submitit' / 'tiny').glob('*_0_result.pkl'))) == 2  # through submitit
    for run in runs:  # each task resumed its run: the first 30 steps' log is the copied one
        assert plan_line(stdout, run).endswith(f'(from step {MAX_ITERS} of 40)')
        assert ckpt_iter(run.directory) == 40
        ref_log = log_rows(ref_out / os.path.basename(run.directory))
        assert continued(run.directory, ref_log, MAX_ITERS)


def slots_here(monkeypatch, n_gpus=0, visible=None, mps=False, device='auto', omp=None, **flags):
    """sweep.slots on a faked machine of 16 cores, n_gpus CUDA devices (CUDA_VISIBLE_DEVICES=visible) or
    Apple's MPS, for runs on device: (each slot's environment, where the runs go in words)."""
    import torch
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: n_gpus)
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: mps)
    monkeypatch.setattr(os, 'cpu_count', lambda: 16)
    for name, value in (('CUDA_VISIBLE_DEVICES', visible), ('OMP_NUM_THREADS', omp)):
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    runs = [SimpleNamespace(device=device)] * 3
    envs, executor, where = sweep.slots({**sweep.DEFAULTS, **flags}, runs, 'x')
    assert executor is None
    return envs, where


def test_slots_share_the_gpus_or_the_cores(monkeypatch):
    envs, where = slots_here(monkeypatch, n_gpus=2, visible='3,5,7')  # 2 of the 3 ids are devices
    assert [env['CUDA_VISIBLE_DEVICES'] for env in envs] == ['3', '5'] * 4, envs  # each pinned to one GPU
    assert all(env['OMP_NUM_THREADS'] == '2' for env in envs), envs  # a share of the 16 cores
    assert where.startswith('here, 8 at a time on 2 GPU(s), 4 per GPU'), where
    envs, where = slots_here(monkeypatch, n_gpus=2, runs_per_gpu=1, omp='3')  # a thread count set is kept
    assert envs == [{'OMP_NUM_THREADS': '3', 'CUDA_VISIBLE_DEVICES': str(i)} for i in (0, 1)], envs
    envs, _ = slots_here(monkeypatch, n_gpus=2, jobs=3)
    assert [env['CUDA_VISIBLE_DEVICES'] for env in envs] == ['0', '1', '0'], envs
    envs, where = slots_here(monkeypatch)  # no GPU: a run per core, one OpenMP thread each
    assert envs == [{'OMP_NUM_THREADS': '1'}] * 16 and '16 at a time on 16 CPU core(s)' in where, where
    envs, where = slots_here(monkeypatch, n_gpus=1, device='cpu')  # a CPU grid on a GPU machine: the cores
    assert envs == [{'OMP_NUM_THREADS': '1'}] * 16, envs
    envs, where = slots_here(monkeypatch, mps=True)  # Apple silicon: runs_per_gpu on its one GPU
    assert envs == [{'OMP_NUM_THREADS': '4'}] * 4 and '4 at a time on 1 GPU(s), 4 per GPU' in where, where
    pytest.importorskip('submitit')  # with --cluster, a slot for each job at a time
    envs, where = slots_here(monkeypatch, n_gpus=2, cluster='local', dry_run=True, cpus_per_task=2)
    assert envs == [{'OMP_NUM_THREADS': '2'}] * 32 and 'through submitit (local), at most 32' in where


@pytest.mark.skipif(sys.platform != 'linux', reason="the kernel's PR_SET_PDEATHSIG is Linux's")
def test_a_sweep_killed_by_sigkill_takes_its_runs_along(tmp_path):
    """The kernel sends a run SIGTERM when its sweep dies (PR_SET_PDEATHSIG): it saves and stops at once
    where it would have trained for long."""
    out = tmp_path / 'out'
    command = [sys.executable, 'sweep.py', TINY, f'--out_dir={out}', '--seeds=1', '--jobs=1', '--plot=False',
               '--evaluate=False', '--train_flags=--max_iters=100000']
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not processes(process.pid, sweep.SCRIPTS['train']) and time.time() < deadline:
            assert process.poll() is None, (process.returncode, *process.communicate())
            time.sleep(0.05)
        runs = processes(process.pid, sweep.SCRIPTS['train'])
        process.kill()
        output = (process.wait(), *process.communicate())
        assert runs, output
        deadline = time.time() + 30
        while processes(None, str(out)) and time.time() < deadline:
            time.sleep(0.05)
        assert not processes(None, str(out)), output
    finally:
        process.kill()
        for pid in processes(None, str(out)):
            os.kill(pid, signal.SIGKILL)


def packed_by_gpu_grid(tmp_path, minutes, *flags):
    """.ci/gpu_grid on the tiny grid (seed 1): (the names it packed, sorted; the script's output)."""
    env = {**os.environ, 'OUT': str(tmp_path / 'out'), 'RUNS': str(tmp_path / 'runs'), 'MINUTES': minutes}
    result = subprocess.run(['bash', os.path.join(HERE, '.ci', 'gpu_grid'), TINY, '--seeds=1', *flags],
                            env=env, capture_output=True, text=True, timeout=150)
    with tarfile.open(tmp_path / 'out' / 'results.tar.gz') as archive:
        names = sorted(os.path.basename(name) for name in archive.getnames())
    return names, (result.returncode, result.stdout, result.stderr)


def test_the_gpu_grid_script_packs_results_and_the_checkpoints_to_resume(tmp_path):
    """.ci/gpu_grid stops the sweep at its time limit and packs what the next GPU needs to resume."""
    names, output = packed_by_gpu_grid(tmp_path, '0.25', '--train_flags=--max_iters=1000000')
    assert names == ['ckpt.pt', 'ckpt.pt', 'config.json', 'config.json', 'log.csv', 'log.csv'], output


def test_the_gpu_grid_script_packs_a_finished_grid_with_its_weights(tmp_path):
    """A finished run comes back with its eval.json and its weights (model.pt), without its checkpoint."""
    names, output = packed_by_gpu_grid(tmp_path, '2', '--plot=False')
    assert names == sorted(['config.json', 'log.csv', 'eval.json', 'model.pt'] * 2), output
