"""
Speed and peak memory of one training step (the step of train.py's loop: model.LoopedGPT on
data.sample_batch prompts, backward, clip, AdamW) for any config. Prints one JSON line.

    python bench.py                                          # the default config (exp5's model, b = T = 10)
    python bench.py config/laptop.py --steps=50              # any config file or --key=value train.py takes
    python bench.py --loss_window=5 --compare=True --threads=2   # also the plain baseline, and the ratios

The bench-only flags are listed first by --help; every other flag is train.py's, checked the same way.
--compare=True also runs the plain baseline (explicit (B, nh, L, L) attention matrices, no compile, the
same loss window: the reference code runs its first b - loss_window loops without a graph too) and the
config with checkpoint_loops=True. Each runs in a process of its own, so each has its own peak memory,
and they take steps in turn, so load from other work on a shared machine slows them alike.

A step is what one iteration of train.py's loop does, always at the config's full d, N and b (the
curricula's start values play no part). Peak memory is the process's peak RSS on a CPU (interpreter and
libraries included, as `time -v` would report it), torch.cuda.max_memory_allocated on CUDA and
torch.mps.driver_allocated_memory on MPS. mfu (GPUs of known peak only) counts model.flops_per_step.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

import train
from configurator import ConfigError, check_device, fail, help_text, parse, read_defaults
from data import make_generator, sample_batch
from model import LoopedGPT, LoopedGPTConfig, autocast, estimate_mfu

# -----------------------------------------------------------------------------
# defaults
warmup = 5               # untimed steps first (a compiled model compiles in these)
steps = 20               # timed steps; each is timed on its own and the median is reported
compare = False          # also run the plain baseline and checkpoint_loops=True, and report the ratios
threads = 0              # torch.set_num_threads (0 leaves torch's default, one per core)
lockstep = False         # (what --compare starts) wait for a line on stdin before each step, answer after
# end of defaults
# -----------------------------------------------------------------------------
BENCH_DEFAULTS, BENCH_HELPS = read_defaults(__file__, '# defaults', '# end of defaults')
BASELINE = {'attention': 'manual', 'compile': False}  # what the plain baseline changes
SHAPE_KEYS = ('n_dims', 'n_points', 'n_layer', 'n_head', 'n_embd', 'mlp_size', 'batch_size', 'n_loops',
              'loss_window')  # always reported, default or not


def split_args(argv):
    """Bench-only flags out of argv: (bench options, the rest, for train.py's parser)."""
    ours = [a for a in argv if a.startswith('--') and a[2:].partition('=')[0] in BENCH_DEFAULTS]
    rest = [a for a in argv if a not in ours]
    opts, _, _, _ = parse(ours, BENCH_DEFAULTS)
    for key, low in (('warmup', 0), ('steps', 1), ('threads', 0)):
        if opts[key] < low:
            raise ConfigError(f'--{key}={opts[key]}: must be at least {low}')
    return opts, rest


def peak_mem_mb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == 'mps':  # Metal buffers are not in the process RSS
        return torch.mps.driver_allocated_memory() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == 'darwin' else rss / 2**10


def bench(c, warmup, steps, lockstep=False):
    """Time `steps` training steps of config c (a SimpleNamespace of train.py's keys) after `warmup` steps.
    lockstep: wait for a line on stdin before each step and answer one when it is done (see compare)."""
    device = check_device(c.device)
    ctx, dtype_name = autocast(device, c.dtype)
    torch.manual_seed(c.seed)
    model = LoopedGPT(LoopedGPTConfig(**{k: getattr(c, k) for k in LoopedGPTConfig.__dataclass_fields__}))
    model = model.to(device)
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device.type)
    data_gen = make_generator(c.seed, device)
    step_model = model
    if c.compile:
        step_model = torch.compile(model, mode='reduce-overhead' if device.type == 'cuda' else 'default')
    window = c.loss_window or c.n_loops
    cut = c.select in ('random', 'shuffle') and 0 < c.n_keep < c.n_points
    # the host only queues GPU work: wait for it before reading the clock
    sync = {'cuda': lambda: torch.cuda.synchronize(device), 'mps': lambda: torch.mps.synchronize()}.get(
        device.type, lambda: None)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    setup_mem = peak_mem_mb(device)

    def one_step():  # as train.py's loop does it
        xs, ys = sample_batch(c.task, c.batch_size, c.n_points, c.n_dims, data_gen, device, c.n_dims,
                              c.noise_std, c.sparsity)
        scores = torch.rand(c.batch_size, c.n_points, generator=data_gen, device=device) if cut else None
        with ctx:
            _, loss = step_model(xs, ys, n_loops=c.n_loops, loss_window=window, scores=scores)
        loss.backward()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    times, cpu_times = [], []  # wall and process CPU seconds of each step
    for i in range(warmup + steps):
        if lockstep:
            sys.stdin.readline()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        loss = one_step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if lockstep:
            print('done', flush=True)
    if not torch.isfinite(loss):
        print(f'warning: the loss is {loss.item()} after {warmup + steps} steps', file=sys.stderr)

    step_s = statistics.median(times[warmup:])
    flops = model.flops_per_step(c.batch_size, c.n_points, c.n_loops, window)
    mfu = estimate_mfu(flops / step_s, device, dtype_name)
    return {
        'steps_per_s': round(1 / step_s, 4),
        'tokens_per_s': round(c.batch_size * (2 * c.n_points + 1) / step_s, 1),
        'peak_mem_mb': round(peak_mem_mb(device), 1),
        'setup_mem_mb': round(setup_mem, 1),  # before the first step: weights, interpreter, libraries
        'mfu': round(mfu, 5) if mfu else None,
        'gflops_per_s': round(flops / step_s / 1e9, 2),
        'step_ms': round(1000 * step_s, 2),  # median
        'step_ms_min_max': [round(1000 * min(times[warmup:]), 2), round(1000 * max(times[warmup:]), 2)],
        'cpu_ms': round(1000 * statistics.median(cpu_times[warmup:]), 2),  # all threads, spin-waits included
        'first_step_s': round(times[0], 3),  # includes compilation when compile=True
        'device': str(device) if device.type != 'cuda' else torch.cuda.get_device_name(device),
        'dtype': dtype_name,
        'threads': torch.get_num_threads(),
        # a shared machine: the load beside this run, and OpenMP's waiting (spinning threads suffer most)
        'load_avg': round(os.getloadavg()[0], 2), 'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''),
        'torch': torch.__version__,
    }


def run_compare(train_args, opts, variants):
    """Each variant (name: extra flags) in a process of its own (so each has its own peak memory), stepped
    in turn: other work on a shared machine slows them alike, and the ratios hold. Returns their results."""
    procs = {name: subprocess.Popen([sys.executable, os.path.abspath(__file__), *train_args, *extra,
                                     f'--warmup={opts["warmup"]}', f'--steps={opts["steps"]}',
                                     f'--threads={opts["threads"]}', '--lockstep=True'],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name, extra in variants.items()}
    for i in range(opts['warmup'] + opts['steps']):
        order = list(procs.values())
        for p in order[i % len(order):] + order[:i % len(order)]:  # none always goes first
            p.stdin.write('go\n')
            p.stdin.flush()
            if not p.stdout.readline():  # it died: its error is on stderr already
                for q in procs.values():
                    q.kill()
                sys.exit(p.wait() or 1)
    results = {}
    for name, p in procs.items():
        p.stdin.close()
        out = p.stdout.read()  # through the same buffer readline used: communicate() would bypass it
        if p.wait():
            sys.exit(p.returncode)
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def main(argv):
    if '--help' in argv or '-h' in argv:
        print(help_text(__doc__, BENCH_DEFAULTS, BENCH_HELPS))
        usage = "train.py's flags, which set the config to time:"
        print('\n' + help_text(usage, train.DEFAULTS, train.HELPS))
        sys.exit(0)
    try:
        opts, train_args = split_args(argv)
        config, _, stems, _ = parse(train_args, train.DEFAULTS, train.CHOICES)
        train.check_config(config)
    except ConfigError as err:
        fail(err)
    shown = {k: v for k, v in config.items() if k in SHAPE_KEYS or v != train.DEFAULTS[k]}

    if opts['compare']:
        variants = {'baseline': [f'--{k}={v}' for k, v in BASELINE.items()], 'config': [],
                    'checkpoint_loops': ['--checkpoint_loops=True']}  # later flags win
        runs = run_compare(train_args, opts, variants)
        result = runs['config']
        for name in ('baseline', 'checkpoint_loops'):
            result[name] = {k: runs[name][k] for k in ('steps_per_s', 'peak_mem_mb', 'mfu', 'step_ms',
                                                       'step_ms_min_max', 'cpu_ms', 'load_avg')}
        result['baseline']['overrides'] = BASELINE
        result['speedup'] = round(result['steps_per_s'] / runs['baseline']['steps_per_s'], 3)
        result['mem_ratio'] = round(result['peak_mem_mb'] / runs['baseline']['peak_mem_mb'], 3)
    else:
        if opts['threads']:
            torch.set_num_threads(opts['threads'])
        result = bench(SimpleNamespace(**config), opts['warmup'], opts['steps'], opts['lockstep'])
    result.update(warmup=opts['warmup'], steps=opts['steps'], config_files=stems, config=shown)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
