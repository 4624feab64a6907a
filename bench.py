"""
Speed and peak memory of one real training step (train.train_step on model.LoopedGPT with
data.sample_batch prompts) for any config. Prints one JSON line.

    python bench.py                                          # the default config (exp5's model, b = T = 10)
    python bench.py config/laptop.py --steps=50              # any config file or --key=value train.py takes
    python bench.py --loss_window=5 --compare=True --threads=2   # also the plain baseline, and the ratios

Bench-only flags (everything else goes to train.parse_config, so a bad flag is the same exit-2 error):
    --warmup=5       untimed steps first (a compiled model compiles in these)
    --steps=20       timed steps; each is timed on its own and the median is reported
    --compare=False  also run the plain baseline: explicit (B, nh, T, T) attention matrices, GELU outputs
                     kept for the backward (recompute_gelu=False), no compile,
                     the same loss window (the reference code runs its first b - T loops without a graph
                     too). Each runs in a process of its own, so each has its own peak memory, and they
                     take steps in turn, so load from other work on a shared machine slows both alike
    --threads=0      torch.set_num_threads (0 leaves torch's default, one per core)
    --lockstep=False (what --compare starts) wait for a line on stdin before each step, answer one after it

A step is what one iteration of train.py's loop does: draw a batch, forward, backward, clip, AdamW,
always at the config's full d, N and b (the curriculum's start values play no part).
Peak memory is the process's peak RSS on a CPU (interpreter and libraries included, as `time -v`
would report it) and torch.cuda.max_memory_allocated on CUDA. mfu counts model.flops_per_step against
train.PEAK_FLOPS for the device type and dtype.
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
from data import make_generator, sample_batch
from model import LoopedGPT

BENCH_DEFAULTS = {'warmup': 5, 'steps': 20, 'compare': False, 'threads': 0, 'lockstep': False}
BASELINE = {'attention': 'manual', 'recompute_gelu': False, 'compile': False}  # what the plain baseline changes
SHAPE_KEYS = ('n_dims', 'n_points', 'n_layer', 'n_head', 'n_embd', 'mlp_size', 'batch_size', 'n_loops',
              'loss_window')  # always reported, default or not


def split_args(argv):
    """Bench-only flags out of argv, read as train.py reads its own: (bench options, the rest)."""
    opts, rest = dict(BENCH_DEFAULTS), []
    for arg in argv:
        if arg.startswith('--') and arg[2:].partition('=')[0] in BENCH_DEFAULTS:
            train.parse_flag(arg, opts, BENCH_DEFAULTS, {})
        else:
            rest.append(arg)  # train.parse_config's business, errors included
    for key, low in (('warmup', 0), ('steps', 1), ('threads', 0)):
        if opts[key] < low:
            raise train.ConfigError(f'--{key}={opts[key]}: must be at least {low}')
    return opts, rest


def peak_mem_mb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == 'darwin' else rss / 2**10


def bench(c, warmup, steps, lockstep=False):
    """Time `steps` training steps of config c (a SimpleNamespace of train.py's keys) after `warmup` steps.
    lockstep: wait for a line on stdin before each step and answer one when it is done (see compare)."""
    device = train.resolve_device(c.device)
    ctx, dtype_name = train.autocast(device, c.dtype)
    torch.manual_seed(c.seed)
    model = LoopedGPT(train.model_config(vars(c))).to(device)
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device.type)
    data_gen = make_generator(c.seed, device)
    host_gen = make_generator(c.seed)
    step_model = train.compiled(model, c, device)
    # the host only queues GPU work: wait for it before reading the clock
    sync = {'cuda': lambda: torch.cuda.synchronize(device), 'mps': lambda: torch.mps.synchronize()}.get(
        device.type, lambda: None)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    setup_mem = peak_mem_mb(device)

    def one_step():
        xs, ys = sample_batch(c.task, c.batch_size, c.n_points, c.n_dims, data_gen, device, c.n_dims,
                              c.noise_std, c.sparsity)
        return train.train_step(step_model, optimizer, xs, ys, c.n_loops, c.loss_window,
                                train.step_n_keep(c, host_gen), data_gen, ctx, c.grad_clip)

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
    tokens = c.batch_size * (2 * c.n_points + 1)
    flops = train.step_flops(model, c, c.n_points, c.n_loops)
    peak_flops = train.PEAK_FLOPS.get((device.type, dtype_name))
    return {
        'steps_per_s': round(1 / step_s, 4),
        'tokens_per_s': round(tokens / step_s, 1),
        'peak_mem_mb': round(peak_mem_mb(device), 1),
        'setup_mem_mb': round(setup_mem, 1),  # before the first step: weights, interpreter, libraries
        'mfu': round(flops / step_s / peak_flops, 5) if peak_flops else None,
        'gflops_per_s': round(flops / step_s / 1e9, 2),
        'peak_flops': peak_flops,
        'step_ms': round(1000 * step_s, 2),  # median
        'step_ms_min_max': [round(1000 * min(times[warmup:]), 2), round(1000 * max(times[warmup:]), 2)],
        'cpu_ms': round(1000 * statistics.median(cpu_times[warmup:]), 2),  # all threads, spin-waiting included
        'first_step_s': round(times[0], 3),  # includes compilation when compile=True
        'device': str(device) if device.type != 'cuda' else torch.cuda.get_device_name(device),
        'dtype': dtype_name,
        'threads': torch.get_num_threads(),
        # a shared machine: the load beside this run, and OpenMP's waiting (spinning threads suffer most)
        'load_avg': round(os.getloadavg()[0], 2), 'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''),
        'torch': torch.__version__,
    }


def compare(train_args, opts):
    """The baseline and the config, each in a process of its own (so each has its own peak memory), stepped
    in turn: other work on a shared machine slows both alike, and the ratio holds. Returns both results."""
    variants = {'baseline': [f'--{k}={v}' for k, v in BASELINE.items()], 'config': []}  # later flags win
    procs = {name: subprocess.Popen([sys.executable, os.path.abspath(__file__), *train_args, *extra,
                                     f'--warmup={opts["warmup"]}', f'--steps={opts["steps"]}',
                                     f'--threads={opts["threads"]}', '--lockstep=True'],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name, extra in variants.items()}
    for i in range(opts['warmup'] + opts['steps']):
        for p in (procs.values() if i % 2 == 0 else reversed(procs.values())):  # neither always goes first
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
    return results['baseline'], results['config']


def main(argv):
    try:
        opts, train_args = split_args(argv)
        config, _, stems = train.parse_config(train_args)
    except train.ConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    shown = {k: v for k, v in config.items() if k in SHAPE_KEYS or v != train.DEFAULTS[k]}

    if opts['compare']:
        base, result = compare(train_args, opts)
        result['baseline'] = {'overrides': BASELINE, **{k: base[k] for k in (
            'steps_per_s', 'tokens_per_s', 'peak_mem_mb', 'mfu', 'step_ms', 'step_ms_min_max', 'cpu_ms',
            'load_avg')}}
        result['speedup'] = round(result['steps_per_s'] / base['steps_per_s'], 3)
        result['mem_ratio'] = round(result['peak_mem_mb'] / base['peak_mem_mb'], 3)
    else:
        if opts['threads']:
            torch.set_num_threads(opts['threads'])
        result = bench(SimpleNamespace(**config), opts['warmup'], opts['steps'], opts['lockstep'])
    result.update(warmup=opts['warmup'], steps=opts['steps'], config_files=stems, config=shown)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
