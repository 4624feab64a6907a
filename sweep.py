"""
One command per experiment: train every run of a grid that is missing, resume every run that was
interrupted, skip every finished one, then evaluate and plot them all.

    python sweep.py config/exp5_grid.py                 # here: one run per GPU, or per CPU core
    python sweep.py config/exp5_grid.py --dry_run=True  # the commands; what is skipped or resumed
    python sweep.py config/exp3_grid.py --cluster=slurm --partition=gpu --max_parallel=16

A grid file (config/*_grid.py) names train.py's config files, the axes whose every combination
is a variant, extra variants, the seeds, eval_extrapolation.py's flags and the figures. Each run is
`python train.py <config files> --key=value ... --seed=S --out_dir=OUT` in a process of its own,
its output appended to train.out and train.err in its run directory, which train.py names: a run
started by hand is found, resumed or skipped like any other. Ctrl-C (or SIGTERM) stops the running
runs after their current step with a checkpoint saved; the same command again resumes them. Without
--cluster, eval_extrapolation.py scores each run in its slot as soon as it is trained, so a sweep cut
short leaves its finished runs evaluated. At the end it goes over all the finished runs (reusing the
eval.json files that are up to date) and prints the summary table, and plot.py draws the grid's
figures into FIGURES/<experiment>/<plot>/.
--cluster=slurm submits the runs as a SLURM job array through submitit (pip install submitit), at
most --max_parallel at a time, waits for them, then evaluates and plots here; a task that times out
or is pre-empted saves its checkpoint, is requeued and resumes. --cluster=local runs the very same
submission through submitit's local executor, on this machine.
"""

import contextlib
import csv
import difflib
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import configurator
import train
from configurator import ConfigError, run_python_file
from rundir import load_checkpoint

# -----------------------------------------------------------------------------
# defaults
out_dir = 'out'          # where the run directories go (train.py's --out_dir)
figures = 'figures'      # the figures go to FIGURES/<experiment>/<plot>/
dry_run = False          # print the commands and what would be trained, resumed or skipped
jobs = 0                 # runs at a time here (0: one per GPU if there are GPUs, else per CPU core)
seeds = ''               # these seeds instead of the grid's, comma-separated ('42,451')
train_flags = ''         # more train.py flags for every run, after the grid's ('--compile=True')
eval_flags = ''          # more eval_extrapolation.py flags, after the grid's ('--device=cpu')
evaluate = True          # score the finished runs with eval_extrapolation.py after training
plot = True              # draw the grid's figures with plot.py after evaluating
cluster = 'none'         # none (here) | slurm (a job array, via submitit) | local (submitit, here)
max_parallel = 32        # --cluster: tasks running at a time
timeout_min = 1440       # --cluster: time limit of a task in minutes (then requeued: it resumes)
partition = ''           # --cluster=slurm: the partition ('': the cluster's default)
account = ''             # --cluster=slurm: the account to charge ('': the default)
gpus_per_task = 1        # --cluster: GPUs per task
cpus_per_task = 4        # --cluster: CPU cores per task (and its OMP_NUM_THREADS)
mem_gb = 16              # --cluster: memory per task in GB (0: the cluster's default)
# end of defaults
# -----------------------------------------------------------------------------
DEFAULTS, HELPS = configurator.read_defaults(__file__, '# defaults', '# end of defaults')
CHOICES = {'cluster': ('none', 'slurm', 'local')}
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = {name: os.path.join(HERE, f'{name}.py') for name in ('train', 'eval_extrapolation', 'plot')}
# what a grid file may assign, with its default (None: required)
GRID_KEYS = {'experiment': '', 'configs': None, 'flags': {}, 'axes': {}, 'skip': [], 'extra': [],
             'seeds': None, 'eval_flags': [], 'labels': {}, 'plots': {'': 'all'}}
GRID_TYPES = {'experiment': str, 'configs': list, 'flags': dict, 'axes': dict, 'skip': list,
              'extra': list, 'seeds': list, 'eval_flags': list, 'labels': dict, 'plots': dict}
TAIL_LINES = 12  # of a failed run's stderr, in the report


# -----------------------------------------------------------------------------
# the grid: a Python file of plain assignments

def read_grid(path):
    """The grid file's names, checked, defaults filled in; a ConfigError says what is wrong."""
    names = run_python_file(path, 'grid file')
    for key in names:
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(key, GRID_KEYS, n=2)
            hint = f' (did you mean {", ".join(close)}?)' if close else ''
            raise ConfigError(f'{path}: unknown name {key!r}{hint}; a grid assigns '
                              f'{", ".join(GRID_KEYS)}')
    grid = {}
    for key, default in GRID_KEYS.items():
        if key not in names and default is None:
            raise ConfigError(f'{path}: {key} is not set')
        grid[key] = names.get(key, default)
        if not isinstance(grid[key], GRID_TYPES[key]):
            raise ConfigError(f'{path}: {key} must be a {GRID_TYPES[key].__name__}, '
                              f'got {grid[key]!r}')
    stem = os.path.basename(path).removesuffix('.py').removesuffix('_grid')
    grid['experiment'] = grid['experiment'] or stem
    if not grid['seeds'] or not all(type(s) is int for s in grid['seeds']):
        raise ConfigError(f'{path}: seeds must be a list of ints, got {grid["seeds"]!r}')
    for key in ('configs', 'eval_flags'):
        if not all(isinstance(s, str) for s in grid[key]):
            raise ConfigError(f'{path}: {key} must be a list of strings, got {grid[key]!r}')
    for name, values in grid['axes'].items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f'{path}: axes[{name!r}] must be a non-empty list, got {values!r}')
    for key in ('skip', 'extra'):
        if not all(isinstance(v, dict) for v in grid[key]):
            raise ConfigError(f'{path}: {key} must be a list of dicts of train.py flags')
    grid['configs'] = [find_config(p, path) for p in grid['configs']]
    return grid


def find_config(path, grid_path):
    """A config file named in a grid: relative to the current directory, or else to this project."""
    for candidate in (path, os.path.join(HERE, path)):
        if os.path.isfile(candidate):
            return os.path.relpath(candidate) if not os.path.isabs(path) else candidate
    raise ConfigError(f'{grid_path}: config file {path!r} does not exist')


def variant_name(flags):
    return ', '.join(f'{k}={v}' for k, v in flags.items()) or 'base'


def expand(grid, path):
    """[(name, flags, from_axes)]: every combination of the axes less those that match a skip entry,
    then the extras; the name lists the variant's own flags ('n_keep=32, select=random')."""
    variants = []
    for values in itertools.product(*grid['axes'].values()) if grid['axes'] else []:
        flags = dict(zip(grid['axes'], values))
        if not any(all(flags.get(k, object()) == v for k, v in s.items()) for s in grid['skip']):
            variants.append((variant_name(flags), flags, True))
    variants += [(variant_name(flags), dict(flags), False) for flags in grid['extra']]
    if not variants:
        raise ConfigError(f'{path}: no variant (set axes or extra)')
    names = [name for name, _, _ in variants]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f'{path}: the variant {name!r} is listed twice')
    for name, label in grid['labels'].items():
        if name not in names:
            raise ConfigError(f'{path}: labels[{name!r}] names no variant; the variants are: '
                              f'{"; ".join(names)}')
        if not isinstance(label, str) or not label.strip() or any(c in label for c in ';='):
            raise ConfigError(f'{path}: labels[{name!r}] must be a non-empty string without ; or = '
                              f'(plot.py --labels splits there)')
    return variants


def flag(key, value):
    return f'--{key}={value}'


def plan_runs(grid, variants, opts, path):
    """One run per (seed, variant), seed by seed so that a sweep cut short has whole grids:
    its train.py arguments, and its run directory computed as train.py computes it."""
    seed_list = [int(s) for s in opts['seeds'].split(',')] if opts['seeds'] else grid['seeds']
    runs, where = [], {}
    for seed, (name, own, from_axes) in itertools.product(seed_list, variants):
        args = (grid['configs'] + [flag(k, v) for k, v in {**grid['flags'], **own}.items()]
                + shlex.split(opts['train_flags'])
                + [flag('seed', seed), flag('out_dir', opts['out_dir'])])
        try:
            config, base, stems, positional = configurator.parse(args, train.DEFAULTS, train.CHOICES)
            if positional or any(a.startswith('--init_from=') for a in args):
                raise ConfigError('train_flags: flags only, and no --init_from (the sweep decides)')
            # the device is train.py's to check where the run runs: a cluster's login node has no GPU
            checked = dict(config, device='cpu')
            warnings = train.check_config(checked)
            directory = configurator.run_dir(dict(checked, device=config['device']), base, stems)
        except ConfigError as err:
            raise ConfigError(f'{path}: variant {name!r}, seed {seed}: {err}') from None
        if directory in where:
            raise ConfigError(f'{path}: variants {where[directory]!r} and {name!r} are the same run '
                              f'({directory})')
        where[directory] = name
        runs.append(SimpleNamespace(name=name, label=grid['labels'].get(name), from_axes=from_axes,
                                    seed=seed, args=args, directory=directory, config=checked,
                                    max_iters=config['max_iters'], warnings=warnings))
    return runs


def run_state(run):
    """('train' | 'resume' | 'done', its checkpoint's step, or its log's for results without their
    checkpoint); a ConfigError if the checkpoint is unreadable."""
    path = os.path.join(run.directory, 'ckpt.pt')
    if not os.path.isfile(path):  # results as committed, without their checkpoint, are done too
        step = last_iter(run)
        done = step >= run.max_iters and os.path.isfile(os.path.join(run.directory, 'eval.json'))
        return ('done', step) if done else ('train', 0)
    step = load_checkpoint(path)['iter']
    return ('done' if step >= run.max_iters else 'resume'), step


def train_args(run, state):
    return run.args + (['--init_from=resume'] if state == 'resume' else [])


def finished(run):
    try:
        return run_state(run)[0] == 'done'
    except ConfigError:  # a checkpoint that went bad since the plan: not finished
        return False


def command(script, args):
    """A command line as one would type it here, quoted for the shell."""
    return configurator.shell_command(os.path.relpath(SCRIPTS[script]), args)


# -----------------------------------------------------------------------------
# progress, and what a run left behind

def last_row(run):
    """The last row of the run's log.csv, or {}."""
    try:
        with open(os.path.join(run.directory, 'log.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        return rows[-1] if rows else {}
    except (OSError, csv.Error):
        return {}


def last_iter(run):
    try:
        return int(last_row(run)['iter'])
    except (KeyError, ValueError, TypeError):
        return 0


def last_val_err(run):
    """The val_err of the last row of the run's log.csv, or '?'."""
    try:
        return f'{float(last_row(run)["val_err"]):.4g}'
    except (KeyError, ValueError, TypeError):
        return '?'


def stderr_tail(run, offset):
    """The last lines this attempt wrote to the run's train.err."""
    try:
        with open(os.path.join(run.directory, 'train.err'), errors='replace') as f:
            f.seek(offset)
            return f.read().splitlines()[-TAIL_LINES:]
    except OSError:
        return []


def duration(seconds):
    if seconds < 120:
        return f'{seconds:.0f} s'
    return f'{seconds / 60:.1f} min' if seconds < 7200 else f'{seconds / 3600:.1f} h'


class Progress:
    """One line per finished run: how many are done, its final validation error, and the sweep's ETA
    (mean time of a run so far x runs left / runs at a time)."""

    def __init__(self, total, parallel):
        self.total, self.parallel, self.done, self.times, self.failed = total, parallel, 0, [], []

    def finished(self, run, rc, seconds, args=None, tail=()):
        """rc: train.py's exit code, or why it did not run; seconds None: nothing ran."""
        self.done += 1
        head = f'[{self.done}/{self.total}]'
        if rc == 0:
            self.times += [seconds] if seconds is not None else []
            left = self.total - self.done
            mean = sum(self.times) / len(self.times) if self.times else 0
            eta = duration(mean * left / self.parallel) if left and self.times else '-'
            took = f', {duration(seconds)}' if seconds is not None else ' (meanwhile)'
            print(f'{head} done {run.directory}: val_err {last_val_err(run)}{took}; '
                  f'sweep eta {eta}', flush=True)
            return
        self.failed.append(run)
        why = f'exit code {rc}' if isinstance(rc, int) else rc
        print(f'{head} FAILED ({why}) {run.directory}:\n  {command("train", args or run.args)}',
              flush=True)
        for line in tail:
            print(f'    {line}')


# -----------------------------------------------------------------------------
# this machine: a pool of processes

def local_slots(jobs):
    """The environment of each slot (a run at a time): one GPU each where there are GPUs, and a share
    of the cores for OpenMP, one thread each by default (tiny matmuls gain nothing from more)."""
    import torch
    n_gpus = torch.cuda.device_count()
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    gpus = visible.split(',')[:n_gpus] if visible else [str(i) for i in range(n_gpus)]
    cores = os.cpu_count() or 1
    n = jobs or len(gpus) or cores
    threads = os.environ.get('OMP_NUM_THREADS') or str(max(1, cores // n))
    slots = [{'OMP_NUM_THREADS': threads} for _ in range(n)]
    for i, slot in enumerate(slots if gpus else []):
        slot['CUDA_VISIBLE_DEVICES'] = gpus[i % len(gpus)]
    where = f'{len(gpus)} GPU(s)' if gpus else f'{cores} CPU core(s)'
    return slots, f'{n} at a time on {where}, OMP_NUM_THREADS={threads}'


def start(script, run, args, env):
    """script.py with args in a process of its own, its output appended to the run's train.out and
    train.err: (the process, where this attempt's stderr starts in train.err)."""
    os.makedirs(run.directory, exist_ok=True)
    with open(os.path.join(run.directory, 'train.out'), 'a') as out, \
            open(os.path.join(run.directory, 'train.err'), 'a') as err:
        offset = err.tell()
        process = subprocess.Popen([sys.executable, SCRIPTS[script], *args], stdout=out, stderr=err,
                                   env={**os.environ, **env})
    return process, offset


def launch(run, env):
    """Start train.py for a run as it now stands (resume if it has a checkpoint): (process, where this
    attempt's stderr starts in train.err, its arguments), or None if it finished meanwhile."""
    state, _ = run_state(run)
    if state == 'done':
        return None
    args = train_args(run, state)
    return (*start('train', run, args, env), args)


def run_local(runs, slots, progress, eval_flags=None):
    """Run the runs, len(slots) at a time. With eval_flags, eval_extrapolation.py scores each run in its
    slot as soon as it is trained, so a sweep cut short leaves its finished runs evaluated. SIGINT or
    SIGTERM is passed on to the running processes (train.py saves a checkpoint and exits; an eval.json
    is written whole or not at all); nothing new starts. Returns the signal, or None."""
    pending, running, free, stop = list(runs), {}, list(range(len(slots))), []

    def on_signal(signum, frame):
        stop.append(signum)
        for process in list(running):
            process.send_signal(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while running or (pending and not stop):
            while pending and free and not stop:
                run, slot = pending.pop(0), free.pop()
                try:
                    started = launch(run, slots[slot])
                except (ConfigError, OSError) as err:  # a bad checkpoint, a full disk: for a person
                    started = err
                if not isinstance(started, tuple):
                    free.append(slot)
                    progress.finished(run, 0 if started is None else 'not started', None,
                                      tail=[str(started)] if started else ())
                    continue
                process, offset, args = started
                running[process] = ('train', run, slot, time.time(), args, offset)
                if stop:  # a signal that came while it started
                    process.send_signal(stop[0])
            time.sleep(0.05)
            for process in [p for p in running if p.poll() is not None]:
                kind, run, slot, t0, args, offset = running.pop(process)
                rc = process.returncode
                if kind == 'train' and rc == 0 and eval_flags is not None and not stop:
                    with contextlib.suppress(OSError):  # could not start: the final pass scores it
                        scoring, _ = start('eval_extrapolation', run, [run.directory, *eval_flags],
                                           slots[slot])
                        running[scoring] = ('eval', run, slot, t0, args, offset)
                        continue
                free.append(slot)
                if stop:  # after a signal, an exit is the interruption asked for, not a failure
                    continue
                progress.finished(run, 0 if kind == 'eval' else rc, time.time() - t0, args,
                                  stderr_tail(run, offset))
                if kind == 'eval' and rc != 0:
                    print(f'  its evaluation failed (exit code {rc}; see its train.err): the '
                          f'evaluation at the end tries again', flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return stop[0] if stop else None


# -----------------------------------------------------------------------------
# a cluster, through submitit

class TrainTask:
    """One run as a submitit task, resume-aware where it runs: train.py continues the run's checkpoint
    if there is one, so a requeued or resubmitted task goes on where it stopped. It uses nothing of
    this project but train.py's path: a node unpickles it without importing the project (or torch).
    A task whose run finished after its submission meets train.py's "nothing left to do" (exit 2)."""

    def __init__(self, python, script, cwd, threads):
        self.python, self.script, self.cwd, self.threads = python, script, cwd, threads
        self.process = None

    def __call__(self, directory, args):
        directory = os.path.join(self.cwd, directory)
        if os.path.isfile(os.path.join(directory, 'ckpt.pt')):
            args = args + ['--init_from=resume']
        os.makedirs(directory, exist_ok=True)
        env = {**os.environ, 'OMP_NUM_THREADS': str(self.threads)}
        with open(os.path.join(directory, 'train.out'), 'a') as out, \
                open(os.path.join(directory, 'train.err'), 'a') as err:
            self.process = subprocess.Popen([self.python, self.script, *args], cwd=self.cwd,
                                            stdout=out, stderr=err, env=env)
        try:
            return self.process.wait()
        except KeyboardInterrupt:  # a cancelled local job: train.py saves its checkpoint first
            self.process.send_signal(signal.SIGINT)
            return self.process.wait()

    def checkpoint(self, directory, args):
        """submitit calls this on a time-out or a pre-emption: train.py saves and stops, and the
        same task is requeued, which resumes the run."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()
        import submitit
        fresh = TrainTask(self.python, self.script, self.cwd, self.threads)  # without the process
        return submitit.helpers.DelayedSubmission(fresh, directory, args)


def import_submitit(opts):
    try:
        import submitit
    except ImportError:
        raise ConfigError(f'--cluster={opts["cluster"]} needs submitit: pip install submitit') \
            from None
    if opts['cluster'] == 'slurm' and not shutil.which('sbatch'):
        raise ConfigError('--cluster=slurm: no sbatch here; run the sweep on a SLURM login node')
    return submitit


def make_executor(opts, experiment):
    """A submitit executor for the grid; its logs and pickles go to OUT/submitit/<experiment>/."""
    submitit = import_submitit(opts)
    if TrainTask.__module__ != '__main__':  # imported (as by the tests): the task goes by value all
        import cloudpickle                  # the same, so that a node never imports train.py for it
        cloudpickle.register_pickle_by_value(sys.modules[TrainTask.__module__])
    folder = os.path.join(opts['out_dir'], 'submitit', experiment)  # logs: <job id>_<task>_log.*
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=opts['cluster'])
        # the local executor ignores the slurm_* parameters; None leaves the cluster's default
        executor.update_parameters(
            name=f'sweep_{experiment}', timeout_min=opts['timeout_min'], nodes=1, tasks_per_node=1,
            cpus_per_task=opts['cpus_per_task'], gpus_per_node=opts['gpus_per_task'],
            mem_gb=opts['mem_gb'] or None, slurm_array_parallelism=opts['max_parallel'],
            slurm_partition=opts['partition'] or None, slurm_account=opts['account'] or None)
    except (RuntimeError, ValueError, NameError, OSError) as err:
        raise ConfigError(f'--cluster={opts["cluster"]}: submitit says: {err}') from None
    return executor


def err_size(run):
    path = os.path.join(run.directory, 'train.err')
    return os.path.getsize(path) if os.path.isfile(path) else 0


def collect(jobs, progress):
    """Report the jobs that have ended, and forget them."""
    for job in [j for j in jobs if j.done()]:
        run, t0, offset = jobs.pop(job)
        try:
            rc, tail = job.result(), stderr_tail(run, offset)
        except Exception as err:  # the task itself failed: submitit's message names its log
            rc, tail = 'the task failed', str(err).splitlines()[-TAIL_LINES:]
        progress.finished(run, rc, time.time() - t0, tail=tail)


def run_cluster(runs, opts, executor, progress):
    """Submit the runs through submitit and wait for them. SLURM caps the job array's concurrency
    itself; the local executor has no cap, so tasks go to it as others end. On SIGINT or SIGTERM the
    tasks are cancelled (train.py saves a checkpoint on the signal). Returns the signal, or None."""
    task = TrainTask(sys.executable, SCRIPTS['train'], os.getcwd(), opts['cpus_per_task'])
    window = len(runs) if opts['cluster'] == 'slurm' else opts['max_parallel']
    poll = 30 if opts['cluster'] == 'slurm' else 0.2  # not to hammer SLURM's accounting
    pending, jobs, stop = list(runs), {}, []
    previous = {s: signal.signal(s, lambda signum, frame: stop.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (pending or jobs) and not stop:
            batch = pending[:max(0, window - len(jobs))]
            if batch:
                del pending[:len(batch)]
                offsets = [err_size(run) for run in batch]
                submitted = executor.map_array(task, [r.directory for r in batch],
                                               [r.args for r in batch])
                print(f'submitted {len(batch)} task(s) ({opts["cluster"]}): job '
                      f'{submitted[0].job_id}{" ..." if len(batch) > 1 else ""}; '
                      f'logs in {executor.folder}', flush=True)
                jobs.update(zip(submitted, zip(batch, [time.time()] * len(batch), offsets)))
            time.sleep(poll)
            collect(jobs, progress)
        if stop:
            for job in jobs:
                job.cancel(check=False)
            while opts['cluster'] == 'local' and not all(job.done() for job in jobs):
                time.sleep(0.2)  # the checkpoints being saved (SLURM gives its own grace time)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return stop[0] if stop else None


# -----------------------------------------------------------------------------
# evaluation and figures

def eval_args(grid, opts):
    """eval_extrapolation.py's flags: the grid's, then --eval_flags."""
    return grid['eval_flags'] + shlex.split(opts['eval_flags'])


def plot_groups(grid, runs, path):
    """{plot name: its runs}: 'all', 'axes' (the combinations), 'extra', or {key: value or [values]}
    matched against each run's full config."""
    groups = {}
    for name, selector in grid['plots'].items():
        if not isinstance(name, str) or os.path.isabs(name) or '..' in name.split('/'):
            raise ConfigError(f"{path}: plots: {name!r} must be a folder name ('': the experiment's)")
        if selector in ('all', 'axes', 'extra'):
            keep = [r for r in runs if selector == 'all' or r.from_axes == (selector == 'axes')]
        elif isinstance(selector, dict) and all(k in train.DEFAULTS for k in selector):
            keep = [r for r in runs if all(r.config[k] in (v if isinstance(v, list) else [v])
                                           for k, v in selector.items())]
        else:
            raise ConfigError(f'{path}: plots[{name!r}] must be all, axes, extra or a dict of '
                              f'train.py flags and their values, got {selector!r}')
        if not keep:
            raise ConfigError(f'{path}: plots[{name!r}] selects no run')
        groups[name] = keep
    return groups


def labels_flag(runs, configs):
    """plot.py's and eval_extrapolation.py's --labels for the grid's labels. They name a variant by the
    config keys that differ between the variants given, so the old names are computed as they do."""
    dirs = [os.path.normpath(r.directory) for r in runs]
    renames = [f'{old}={runs[idx[0]].label}' for old, idx in configurator.group_runs(configs, dirs)
               if runs[idx[0]].label and runs[idx[0]].label != old]
    return [f'--labels={";".join(renames)};'] if renames else []  # a ';' always: old names hold ','


def saved_labels_flag(runs):
    """labels_flag over the configs the runs saved (config.json), which plot.py and
    eval_extrapolation.py group by; a ConfigError if one is unreadable."""
    return labels_flag(runs, [configurator.read_json(os.path.join(r.directory, 'config.json'))
                              for r in runs])


def plot_one(grid, name, runs, opts):
    """plot.py for one of the grid's figures: (its .png paths, whether it failed)."""
    folder = os.path.join(opts['figures'], grid['experiment'], name)
    try:
        labels = saved_labels_flag(runs)
    except ConfigError as err:
        print(f'plot {name or grid["experiment"]}: {err}')
        return [], True
    args = [r.directory for r in runs] + [f'--out={folder}'] + labels
    result = subprocess.run([sys.executable, SCRIPTS['plot'], *args], capture_output=True, text=True)
    wrote = []
    for line in (result.stdout + result.stderr).splitlines():  # the figures' paths are listed last
        if line.startswith('wrote ') and line.endswith('.png'):
            wrote.append(line[len('wrote '):])
        elif not line.startswith('wrote '):
            print(f'plot {name or grid["experiment"]}: {line}')
    if result.returncode != 0:
        print(f'plot.py failed (exit code {result.returncode}): {command("plot", args)}')
    return wrote, result.returncode != 0


def evaluate_and_plot(grid, runs, plots, opts):
    """eval_extrapolation.py over the finished runs (it prints the summary table), then plot.py for
    each of the grid's figures. Returns how many of these steps failed."""
    if not opts['evaluate'] and not opts['plot']:
        return 0
    done = [r for r in runs if finished(r)]
    if len(done) < len(runs):
        print(f'{len(runs) - len(done)} of {len(runs)} runs are not finished: '
              f'{"evaluating" if opts["evaluate"] else "plotting"} the {len(done)} that are')
    if not done:
        return 0
    failures, wrote = 0, []
    if opts['evaluate']:
        flags = eval_args(grid, opts)
        try:  # the grid's labels name the summary's rows, as they name the figures' variants
            labels = saved_labels_flag(done)
        except ConfigError as err:
            print(f'evaluate: {err}: the summary keeps the variants\' own names')
            labels = []
        named = "; --labels: the grid's" if labels else ''
        print(f'\nevaluating: {command("eval_extrapolation", ["RUN...", *flags])}  '
              f'(RUN...: the {len(done)} finished runs{named})', flush=True)
        args = [r.directory for r in done] + flags + labels
        failures += subprocess.call([sys.executable, SCRIPTS['eval_extrapolation'], *args]) != 0
    for name, chosen in plots.items() if opts['plot'] else []:
        chosen = [r for r in chosen if r in done]
        if chosen:
            paths, failed = plot_one(grid, name, chosen, opts)
            wrote, failures = wrote + paths, failures + failed
    if wrote:
        print('\nfigures (and .svg beside each):\n' + '\n'.join(f'  {path}' for path in wrote))
    return failures


# -----------------------------------------------------------------------------
# the command line

def check_opts(opts, positional):
    if len(positional) != 1:
        raise ConfigError('name one grid file: python sweep.py config/exp5_grid.py (--help: flags)')
    for key, low in (('jobs', 0), ('max_parallel', 1), ('timeout_min', 1), ('gpus_per_task', 0),
                     ('cpus_per_task', 1), ('mem_gb', 0)):
        if opts[key] < low:
            raise ConfigError(f'--{key}={opts[key]}: must be at least {low}')
    try:
        [int(s) for s in opts['seeds'].split(',')] if opts['seeds'] else []
    except ValueError:
        raise ConfigError(f'--seeds={opts["seeds"]!r}: write integers separated by commas') from None
    for key in ('train_flags', 'eval_flags'):
        try:
            shlex.split(opts[key])
        except ValueError as err:
            raise ConfigError(f'--{key}={opts[key]!r}: {err}') from None


def print_plan(grid, runs, states, n_variants):
    """What the sweep does with each run: train, resume (from which step) or skip."""
    counts = {s: sum(state == s for state, _ in states) for s in ('train', 'resume', 'done')}
    print(f'{grid["experiment"]}: {n_variants} variants x {len(runs) // n_variants} seeds = '
          f'{len(runs)} runs: {counts["train"]} to train, {counts["resume"]} to resume, '
          f'{counts["done"]} finished')
    shown = set()
    for run, (state, step) in zip(runs, states):
        for warning in run.warnings:
            if (run.name, warning) not in shown:
                print(f'warning: variant {run.name!r}: {warning}')
                shown.add((run.name, warning))
        if state == 'done':
            print(f'skip    {run.directory}  (finished: step {step} of {run.max_iters})')
        elif state == 'resume':
            print(f'resume  {command("train", train_args(run, state))}  '
                  f'(from step {step} of {run.max_iters})')
        else:
            print(f'train   {command("train", run.args)}')


def print_dry_run(grid, runs, plots, opts):
    """The rest of what a sweep would do: where it would run; the evaluation and plot commands."""
    todo = sum(not finished(r) for r in runs)
    if opts['cluster'] == 'none':
        print(f'would run {todo} runs here, {local_slots(opts["jobs"])[1]}')
    else:
        print(f'would submit {todo} tasks through submitit ({opts["cluster"]}), at most '
              f'{opts["max_parallel"]} at a time, each {opts["gpus_per_task"]} GPU(s), '
              f'{opts["cpus_per_task"]} cores, {opts["timeout_min"]} min')
    if opts['evaluate']:
        flags = eval_args(grid, opts)
        print(f'then  {command("eval_extrapolation", ["RUN...", *flags])}  '
              f'(RUN...: all {len(runs)} runs, once finished)')
    for name, chosen in plots.items() if opts['plot'] else []:
        folder = os.path.join(opts['figures'], grid['experiment'], name)
        flags = [f'--out={folder}'] + labels_flag(chosen, [r.config for r in chosen])
        print(f'then  {command("plot", ["RUN...", *flags])}  (RUN...: {len(chosen)} runs)')


def train_all(grid, todo, opts, executor):
    """Train the runs here (each then evaluated in its slot) or through submitit: (Progress, the
    signal that stopped it or None)."""
    if executor is None:
        slots, where = local_slots(opts['jobs'])
        then = ', then evaluated in its slot,' if opts['evaluate'] else ''
        print(f'training {len(todo)} runs, {where}; each run{then} with its output in its train.out '
              f'and train.err', flush=True)
        progress = Progress(len(todo), min(len(slots), len(todo)) or 1)
        scoring = eval_args(grid, opts) if opts['evaluate'] else None
        return progress, run_local(todo, slots, progress, scoring) if todo else None
    progress = Progress(len(todo), min(opts['max_parallel'], len(todo)) or 1)
    return progress, run_cluster(todo, opts, executor, progress) if todo else None


def main(argv):
    try:
        opts, _, _, positional = configurator.parse(argv, DEFAULTS, CHOICES, usage=__doc__,
                                                    helps=HELPS, files=False)
        check_opts(opts, positional)
        grid = read_grid(positional[0])
        variants = expand(grid, positional[0])
        runs = plan_runs(grid, variants, opts, positional[0])
        plots = plot_groups(grid, runs, positional[0])
        states = [run_state(run) for run in runs]  # an unreadable checkpoint stops the sweep here
        todo = [run for run, (state, _) in zip(runs, states) if state != 'done']
        executor = None
        if opts['cluster'] != 'none':
            import_submitit(opts)
            if todo and not opts['dry_run']:
                executor = make_executor(opts, grid['experiment'])
    except ConfigError as err:
        configurator.fail(err)
    print_plan(grid, runs, states, len(variants))
    if opts['dry_run']:
        print_dry_run(grid, runs, plots, opts)
        return 0
    progress, stopped = train_all(grid, todo, opts, executor)
    if stopped:
        print(f'stopped by {signal.Signals(stopped).name}: the running runs saved a checkpoint; '
              f'the same command again resumes them', flush=True)
        return 128 + stopped
    try:
        failures = evaluate_and_plot(grid, runs, plots, opts)
    except KeyboardInterrupt:  # eval.json and the figures are written whole or not at all
        print('stopped by SIGINT while evaluating or plotting; the same command again finishes it')
        return 128 + signal.SIGINT
    if progress.failed:
        print(f'\n{len(progress.failed)} run(s) failed (their output: train.err in the run '
              f'directory); the same command again retries them:')
        for run in progress.failed:
            print(f'  {run.directory}')
    return 1 if progress.failed or failures else 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the output's reader is gone (| head): no traceback, and no flush error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
