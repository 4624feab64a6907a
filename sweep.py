"""
Train a grid's missing runs, resume stopped ones (Ctrl-C or SIGTERM: they save a checkpoint and stop), skip
finished ones, then evaluate and plot. A grid (config/*_grid.py) names configs, axes, extras, seeds, figures.

    python sweep.py config/exp5_grid.py                 # here: several runs per GPU, or one per CPU core
    python sweep.py config/exp5_grid.py --dry_run=True  # the plan: what is trained, resumed or skipped
    python sweep.py config/exp3_grid.py --cluster=slurm --partition=gpu  # pip install submitit
"""

import contextlib
import ctypes
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from types import SimpleNamespace

import configurator
import eval_extrapolation
import train
from configurator import ConfigError
from rundir import load_checkpoint, read_log

# defaults
out_dir = 'out'          # where the run directories go (train.py's --out_dir)
figures = 'figures'      # the figures go to FIGURES/<experiment>/<plot>/
dry_run = False          # print the plan: what would be trained, resumed or skipped, and the commands
jobs = 0                 # runs at a time here (0: runs_per_gpu on each GPU, or one per CPU core)
runs_per_gpu = 4         # runs at a time on each GPU (4 for now: a GPU benchmark will settle it)
seeds = ''               # these seeds instead of the grid's, comma-separated ('42,451')
train_flags = ''         # more train.py flags for every run, after the grid's ('--compile=True')
eval_flags = ''          # more eval_extrapolation.py flags, after the grid's ('--device=cpu')
evaluate = True          # score the finished runs with eval_extrapolation.py after training
plot = True              # draw the grid's figures with plot.py after evaluating
cluster = 'none'         # none (here) | slurm (SLURM jobs, via submitit) | local (submitit, here)
max_parallel = 32        # --cluster: jobs running at a time
timeout_min = 1440       # --cluster: time limit of a job in minutes (then requeued: it resumes)
partition = ''           # --cluster=slurm: the partition ('': the cluster's default)
account = ''             # --cluster=slurm: the account to charge ('': the default)
gpus_per_task = 1        # --cluster: GPUs per job
cpus_per_task = 4        # --cluster: CPU cores per job (and its OMP_NUM_THREADS)
mem_gb = 16              # --cluster: memory per job in GB (0: the cluster's default)
# end of defaults
DEFAULTS, HELPS = configurator.read_defaults(__file__, '# defaults', '# end of defaults')
LOWEST = dict(jobs=0, runs_per_gpu=1, max_parallel=1, timeout_min=1, gpus_per_task=0, cpus_per_task=1)
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = {name: os.path.join(HERE, f'{name}.py') for name in ('train', 'eval_extrapolation', 'plot')}
GRID = {'experiment': '', 'configs': [], 'flags': {}, 'axes': {}, 'skip': [], 'extra': [], 'seeds': [],
        'extra_seeds': [], 'eval_flags': [], 'labels': {}, 'plots': {'': 'all'}}  # what a grid may assign
TAIL_LINES = 12  # of a failed run's stderr, in the report


def plan(path, opts):
    """(The grid, a run per seed and variant, {plot: its runs}, the number of variants). The variants: every
    combination of the axes less those a skip entry matches, then the extras."""
    grid = configurator.parse([path], GRID)[0]
    for key, kind in {'configs': str, 'seeds': int, 'extra_seeds': int, 'eval_flags': str, 'skip': dict,
                      'extra': dict}.items():
        if not all(type(item) is kind for item in grid[key]) or key == 'seeds' and not grid[key]:
            raise ConfigError(f'{path}: {key} must be a list of {kind.__name__}s, got {grid[key]!r}')
    if not all(isinstance(values, list) and values for values in grid['axes'].values()):
        raise ConfigError(f'{path}: axes must give each flag a non-empty list of values: {grid["axes"]}')
    combos = [dict(zip(grid['axes'], values)) for values in itertools.product(*grid['axes'].values())]
    kept = [(c, True) for c in combos if c and not any(s.items() <= c.items() for s in grid['skip'])]
    variants = [(', '.join(f'{k}={v}' for k, v in flags.items()) or 'base', flags, from_axes)
                for flags, from_axes in kept + [(flags, False) for flags in grid['extra']]]
    names = [name for name, _, _ in variants]  # a variant listed twice is one run twice: refused below
    for name, label in grid['labels'].items():
        if name not in names or not isinstance(label, str) or not label.strip() or set(label) & set(';='):
            raise ConfigError(f'{path}: labels[{name!r}] must name a variant ({"; ".join(names)}) and be a '
                              f'non-empty string without ; or = (plot.py --labels splits there)')
    configs = [c if os.path.isfile(c) or os.path.isabs(c) else os.path.relpath(os.path.join(HERE, c))
               for c in grid['configs']]  # relative to the current directory, or else to this project
    runs, where, plots = [], {}, {}
    for seed, (name, own, from_axes) in itertools.product(opts['seeds'] or grid['seeds'], variants):
        if not from_axes and grid['extra_seeds'] and seed not in grid['extra_seeds']:
            continue  # the extra variants run on extra_seeds only
        args = (configs + [f'--{k}={v}' for k, v in {**grid['flags'], **own}.items()] + opts['train_flags']
                + [f'--seed={seed}', f'--out_dir={opts["out_dir"]}'])
        if any(a.startswith('--init_from=') for a in args):
            raise ConfigError(f'{path}: no --init_from: the sweep decides')
        try:  # named as train.py names it; on a cluster the device is checked where the run runs
            config, directory, warnings = train.configure(args, here=opts['cluster'] == 'none')
        except ConfigError as err:
            raise ConfigError(f'{path}: variant {name!r}, seed {seed}: {err}') from None
        if directory in where:
            raise ConfigError(f'{path}: variants {where[directory]!r} and {name!r} are one run: {directory}')
        where[directory] = name
        runs.append(SimpleNamespace(name=name, label=grid['labels'].get(name), from_axes=from_axes, seed=seed,
                                    args=args, directory=directory, config=config, device=config['device'],
                                    max_iters=config['max_iters'], warnings=warnings))
    if not runs:
        raise ConfigError(f'{path}: no variant (set axes or extra)')
    for name, selector in grid['plots'].items():  # all, axes, extra, or {train.py flag: value(s)}
        if not isinstance(name, str) or os.path.isabs(name) or '..' in name.split('/'):
            raise ConfigError(f"{path}: plots: {name!r} must be a folder name ('': the experiment's)")
        if selector in ('all', 'axes', 'extra'):
            plots[name] = [r for r in runs if selector == 'all' or r.from_axes == (selector == 'axes')]
        elif isinstance(selector, dict) and all(k in train.DEFAULTS for k in selector):
            plots[name] = [r for r in runs if all(r.config[k] in (v if isinstance(v, list) else [v])
                                                  for k, v in selector.items())]
        if not plots.get(name):
            raise ConfigError(f'{path}: plots[{name!r}] must be all, axes, extra or a dict of train.py '
                              f'flags and their values, and select a run; got {selector!r}')
    stem = os.path.basename(path).removesuffix('.py').removesuffix('_grid')
    return dict(grid, experiment=grid['experiment'] or stem), runs, plots, len(variants)


def last_logged(run, key):
    with contextlib.suppress(ConfigError, TypeError, IndexError, KeyError, ValueError):
        return float(read_log(os.path.join(run.directory, 'log.csv'), float('inf'))[-1][key])


def run_state(run):
    """('train' | 'resume' | 'done', the step of its checkpoint or log); a ConfigError if unreadable."""
    path = os.path.join(run.directory, 'ckpt.pt')
    if not os.path.isfile(path):  # results as committed, without their checkpoint, are done too
        step = int(last_logged(run, 'iter') or 0)
        done = step >= run.max_iters and os.path.isfile(os.path.join(run.directory, 'eval.json'))
        return ('done', step) if done else ('train', 0)
    step = load_checkpoint(path)['iter']
    return ('done' if step >= run.max_iters else 'resume'), step


def command(script, args):  # as one would type it here
    return configurator.shell_command(os.path.relpath(SCRIPTS[script]), args)


def labels_flag(runs, saved=True):
    """--labels: the grid's labels for the scripts' variant names, from the saved configs or as planned."""
    try:
        configs = [configurator.read_json(os.path.join(r.directory, 'config.json')) if saved else r.config
                   for r in runs]
    except ConfigError:
        return []  # the script says which is unreadable
    renames = [f'{old}={runs[idx[0]].label}' for old, idx in
               configurator.group_runs(configs, [os.path.normpath(r.directory) for r in runs])
               if runs[idx[0]].label and runs[idx[0]].label != old]
    return [f'--labels={";".join(renames)};'] if renames else []  # a ';' always: old names hold ','


def finishing(grid, done, plots, opts, saved=True):
    """[(script, its flags, its runs)]: eval_extrapolation.py (the summary), then plot.py for each figure."""
    folder = os.path.join(opts['figures'], grid['experiment'])
    steps = [('eval_extrapolation', grid['eval_flags'], done)] * opts['evaluate'] + [
        ('plot', [f'--out={os.path.join(folder, name)}'], [r for r in chosen if r in done])
        for name, chosen in plots.items() if opts['plot']]
    return [(script, flags + labels_flag(runs, saved), runs) for script, flags, runs in steps if runs]


def slots(opts, runs, experiment):
    """Where the runs go: (each slot's environment, a submitit executor or None, in words)."""
    if opts['cluster'] == 'slurm' and not shutil.which('sbatch'):
        raise ConfigError('--cluster=slurm: no sbatch here; run the sweep on a SLURM login node')
    if opts['cluster'] != 'none':
        import submitit
        if Task.__module__ != '__main__':  # imported (as by the tests): the task goes by value all the
            import cloudpickle             # same, so that a node never imports train.py for it
            cloudpickle.register_pickle_by_value(sys.modules[Task.__module__])
        executor = None if opts['dry_run'] else submitit.AutoExecutor(  # which makes its folder
            os.path.join(opts['out_dir'], 'submitit', experiment), cluster=opts['cluster'])
        if executor:  # the local executor ignores slurm_*; None: the cluster's default
            executor.update_parameters(
                name=f'sweep_{experiment}', timeout_min=opts['timeout_min'], mem_gb=opts['mem_gb'] or None,
                cpus_per_task=opts['cpus_per_task'], gpus_per_node=opts['gpus_per_task'],
                slurm_partition=opts['partition'] or None, slurm_account=opts['account'] or None,
                slurm_array_parallelism=opts['max_parallel'])
        return [{'OMP_NUM_THREADS': str(opts['cpus_per_task'])}] * opts['max_parallel'], executor, (
            f'through submitit ({opts["cluster"]}), at most {opts["max_parallel"]} at a time, each '
            f'{opts["gpus_per_task"]} GPU(s), {opts["cpus_per_task"]} cores, {opts["timeout_min"]} min')
    import torch
    n_gpus, visible, cores = torch.cuda.device_count(), os.environ.get('CUDA_VISIBLE_DEVICES'), os.cpu_count()
    gpus = visible.split(',')[:n_gpus] if visible else [str(i) for i in range(n_gpus)]
    if all(run.device == 'cpu' for run in runs):
        gpus = []  # a grid that runs on the CPU takes the cores, GPUs or not
    elif not gpus and torch.backends.mps.is_available():
        gpus = ['mps']  # Apple silicon's one GPU, which a run per core would crowd
    n = opts['jobs'] or opts['runs_per_gpu'] * len(gpus) or cores
    threads = os.environ.get('OMP_NUM_THREADS') or str(max(1, cores // n))  # tiny matmuls gain from no more
    pins = [{'CUDA_VISIBLE_DEVICES': gpu} for gpu in gpus if gpu != 'mps'] or [{}]  # each slot on one GPU
    envs = [{'OMP_NUM_THREADS': threads, **pins[i % len(pins)]} for i in range(n)]
    where = f'{len(gpus)} GPU(s), {n / len(gpus):g} per GPU' if gpus else f'{cores} CPU core(s)'
    return envs, None, f'here, {n} at a time on {where}, OMP_NUM_THREADS={threads}'


class Task:
    """A run, here or by submitit: train.py (resuming any checkpoint), then scored with eval_flags."""

    def __init__(self, env, eval_flags=None):
        self.env, self.eval_flags, self.process, self.stopped = env, eval_flags, None, None

    def __call__(self, directory, args):
        args = args + ['--init_from=resume'] * os.path.isfile(os.path.join(directory, 'ckpt.pt'))
        rc, tail = self.logged('train', directory, args)
        if rc != 0 or self.eval_flags is None or self.stopped:
            return rc, args, tail, None
        return rc, args, tail, self.logged('eval_extrapolation', directory, [directory, *self.eval_flags])[0]

    def logged(self, script, directory, args):
        """run, appending to train.out and train.err: (its exit code, the last lines it wrote to stderr)."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, 'train.out'), 'a') as out, \
                open(os.path.join(directory, 'train.err'), 'a+', errors='replace') as err:
            offset, rc = err.tell(), self.run(script, args, stdout=out, stderr=err)
            err.seek(offset)
            return rc, err.read().splitlines()[-TAIL_LINES:]

    def run(self, script, args, **kw):
        """script.py, waited for: its exit code. Its own session (Ctrl-C reaches it once, through the sweep);
        SIGTERM when the thread that started it ends, even by SIGKILL (PR_SET_PDEATHSIG, 1)."""
        prctl = ctypes.CDLL(None).prctl if sys.platform == 'linux' else None  # looked up before the fork
        self.process = subprocess.Popen([sys.executable, SCRIPTS[script], *args], **kw,
                                        start_new_session=True, env={**os.environ, **self.env},
                                        preexec_fn=prctl and (lambda: prctl(1, int(signal.SIGTERM))))
        if self.stopped:  # a signal that came while it started
            self.signal(self.stopped)
        return self.process.wait()

    def signal(self, signum):  # train.py saves a checkpoint and stops
        self.stopped = signum
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)

    def checkpoint(self, directory, args):
        """On a submitit time-out or pre-emption: train.py saves and stops; a fresh task is requeued."""
        if self.process is not None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):  # not Popen.wait: it could block on the lock of
                os.waitpid(self.process.pid, 0)            # the wait this signal handler interrupted
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(Task(self.env, self.eval_flags), directory, args)


def train_all(todo, envs, executor, opts, eval_flags):
    """Train the runs (scored with eval_flags here), a line for each that ends: (failed, stopping signal)."""
    running, slot, free, stop, failed, times = set(), threading.local(), iter(envs), [], [], []
    # SLURM: one job array, max_parallel running at a time; the jobs outlive the sweep, as local ones do
    dirs, slurm = [r.directory for r in todo], opts['cluster'] == 'slurm'
    array = dict(zip(dirs, executor.map_array(Task(envs[0]), dirs, [r.args for r in todo]))) if slurm else {}

    def work(run):
        task, t0, forward = Task(slot.env, eval_flags), time.time(), None
        try:
            if stop or run_state(run)[0] == 'done':  # finished since the plan (by hand, or another sweep)
                return None if stop else (run, (0, run.args, [], None), None)
            job = array.get(run.directory) or (executor and executor.submit(task, run.directory, run.args))
            forward = (lambda signum: job.cancel(check=False)) if job else task.signal
            running.add(forward)
            if stop:  # a signal that came meanwhile
                forward(stop[0])
            return run, job.result() if job else task(run.directory, run.args), time.time() - t0
        except Exception as err:  # not started (a bad checkpoint, a full disk), or the submitit job failed
            return run, (type(err).__name__, run.args, str(err).splitlines()[-TAIL_LINES:], None), None
        finally:
            running.discard(forward)

    def on_signal(signum, frame):  # passed on to the runs; nothing new starts
        stop.append(signum)
        for forward in list(running):
            forward(signum)

    def duration(s):
        return f'{s:.0f} s' if s < 120 else f'{s / 60:.1f} min' if s < 7200 else f'{s / 3600:.1f} h'

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:  # each of the pool's threads owns a slot
        with ThreadPoolExecutor(len(envs), initializer=lambda: setattr(slot, 'env', next(free))) as pool:
            for done, future in enumerate(as_completed([pool.submit(work, run) for run in todo]), 1):
                if future.result() is None or stop:  # after a signal, an exit is no failure
                    continue
                (run, (rc, args, tail, scored), took), head = future.result(), f'[{done}/{len(todo)}]'
                if rc != 0:
                    failed.append(run)
                    why = f'exit code {rc}' if isinstance(rc, int) else rc  # or the exception's name
                    print(f'{head} FAILED ({why}) {run.directory}:\n  {command("train", args)}', *tail,
                          sep='\n    ', flush=True)
                    continue
                times += [took] if took is not None else []
                left, val_err = len(todo) - done, last_logged(run, 'val_err')
                eta = sum(times) / len(times) * left / min(len(envs), len(todo)) if left and times else None
                print(f'{head} done {run.directory}: val_err {"?" if val_err is None else f"{val_err:.4g}"}'
                      f'{" (meanwhile)" if took is None else ", " + duration(took)}; sweep eta '
                      f'{"-" if eta is None else duration(eta)}', flush=True)
                if scored:
                    print(f'  its evaluation failed (exit code {scored}): the end tries again', flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return failed, stop[0] if stop else None


def print_plan(grid, runs, states, n_variants, where, plots, opts):
    """What the sweep does: train, resume (from which step) or skip each run, where, and then."""
    counts = {s: sum(state == s for state, _ in states) for s in ('train', 'resume', 'done')}
    seeds = len({run.seed for run in runs})
    print(f'{grid["experiment"]}: {n_variants} variants x {seeds} seeds'
          f'{" (the extras on fewer)" * (len(runs) < n_variants * seeds)} = {len(runs)} runs: '
          f'{counts["train"]} to train, {counts["resume"]} to resume, {counts["done"]} finished')
    for run, (state, step) in zip(runs, states):
        for warning in run.warnings if run.seed == runs[0].seed else []:  # once for each variant
            print(f'warning: variant {run.name!r}: {warning}')
        print(f'skip    {run.directory}  (finished: step {step} of {run.max_iters})' if state == 'done' else
              f'resume  {command("train", run.args + ["--init_from=resume"])}  (from step {step} of '
              f'{run.max_iters})' if state == 'resume' else f'train   {command("train", run.args)}')
    scored = ', each scored in its slot once trained' * (opts['evaluate'] and opts['cluster'] == 'none')
    print(f'{"would train" if opts["dry_run"] else "training"} {counts["train"] + counts["resume"]} runs '
          f'{where}{scored}; the output of each in its train.out and train.err')
    for script, flags, chosen in finishing(grid, runs, plots, opts, saved=False):
        print(f'then  {command(script, ["RUN...", *flags])}  (RUN...: {len(chosen)} runs)', flush=True)


def check_options(opts):
    """What can be checked before the first run starts, so that no mistake waits for the grid to train."""
    bad = [(key, flag) for key in ('train_flags', 'eval_flags') for flag in opts[key] if flag[:2] != '--']
    if bad:  # a config file here would override the grid's own
        raise ConfigError(f'--{bad[0][0]}: {bad[0][1]!r} is not a --key=value flag (configs: in the grid)')
    for key in ('out_dir', 'figures')[:1 + opts['plot']]:
        if not opts[key].strip():
            raise ConfigError(f'--{key}={opts[key]!r}: must name a folder (. for this one)')
        free = shutil.disk_usage(configurator.makeable(opts[key])).free
        if free < 2 ** 26:  # a d = 20 run keeps about 2 MB: this is a full disk
            raise ConfigError(f'--{key}={opts[key]}: only {free / 2 ** 20:.0f} MB free on its disk')
    idle = [f'--{k}' for k in DEFAULTS if HELPS[k].startswith('--cluster') and opts[k] != DEFAULTS[k]]
    if idle and opts['cluster'] == 'none':
        print(f'warning: {", ".join(idle)} change nothing without --cluster', file=sys.stderr)


def main(argv):
    try:
        opts, _, _, positional = configurator.parse(argv, DEFAULTS, {'cluster': ('none', 'slurm', 'local')},
                                                    usage=__doc__, helps=HELPS, files=False, lowest=LOWEST)
        if len(positional) != 1:
            raise ConfigError('name one grid file: python sweep.py config/exp5_grid.py (--help: flags)')
        try:  # the flags that hold lists
            opts.update(seeds=[int(s) for s in opts['seeds'].split(',') if s], train_flags=shlex.split(
                opts['train_flags']), eval_flags=shlex.split(opts['eval_flags']))
        except ValueError as err:
            raise ConfigError(f'--seeds, --train_flags or --eval_flags: {err}') from None
        check_options(opts)
        grid, runs, plots, n_variants = plan(positional[0], opts)
        grid['eval_flags'] = grid['eval_flags'] + opts['eval_flags']  # the grid's, then ours
        if opts['evaluate']:  # checked now, not once every run has trained
            eval_extrapolation.options(grid['eval_flags'] + ['RUN'])
        states = [run_state(run) for run in runs]  # an unreadable checkpoint stops the sweep here
        todo = [run for run, (state, _) in zip(runs, states) if state != 'done']
        envs, executor, where = slots(opts, todo, grid['experiment'])
    except (ConfigError, ImportError, OSError) as err:  # ImportError: no submitit
        configurator.fail(err)
    print_plan(grid, runs, states, n_variants, where, plots, opts)
    if opts['dry_run']:
        return 0
    scoring = grid['eval_flags'] if opts['evaluate'] and opts['cluster'] == 'none' else None
    failed, stopped = train_all(todo, envs, executor, opts, scoring) if todo else ([], None)
    if stopped:
        print(f'stopped by {signal.Signals(stopped).name}: runs saved checkpoints; the same command resumes')
        return 128 + stopped
    done = [run for run in runs if run not in failed]  # train.py exits 0 only once at max_iters
    if failed and (opts['evaluate'] or opts['plot']):
        print(f'{len(failed)} of {len(runs)} runs are unfinished; {len(done)} go on', flush=True)
    finisher, failures = Task({}), 0
    for s in (signal.SIGINT, signal.SIGTERM):  # passed on: the script stops (each file whole or not written)
        signal.signal(s, lambda signum, frame: finisher.signal(signum))
    for script, flags, chosen in finishing(grid, done, plots, opts):
        rc = finisher.run(script, [*[r.directory for r in chosen], *flags])
        if stop := finisher.stopped:
            print(f'stopped by {signal.Signals(stop).name} in {script}.py; the same command finishes it')
            return 128 + stop
        if rc != 0:
            print(f'{script}.py failed (exit code {rc})', flush=True)
            failures += 1
    if failed:
        print(f'\n{len(failed)} run(s) failed (their output: train.err in the run directory); the same '
              f'command again retries them:\n' + '\n'.join(f'  {run.directory}' for run in failed))
    return 1 if failed or failures else 0


if __name__ == '__main__':
    configurator.exit_on_errors()  # Ctrl-C while evaluating, a closed pipe (| head): one line, no traceback
    sys.exit(main(sys.argv[1:]))
