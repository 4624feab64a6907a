"""Speed and peak memory of train.py's training step at the config's full d, N and b. Prints one JSON line.

    python bench.py                                          # the default config, b = 10, T = 5
    python bench.py config/laptop.py --steps=50              # any config file or --key=value train.py takes
    python bench.py --compare=True --threads=2               # also the plain baseline, and the ratios

--compare=True also times the plain baseline (explicit (B, nh, L, L) attention, no compile),
checkpoint_loops=True and the other optimizer, each with its speed over the config's (speed_vs_config).
Peak memory: peak RSS on a CPU, max_memory_allocated on CUDA, driver_allocated_memory on MPS."""

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
from configurator import check_device, exit_on_errors, help_text, parse, read_defaults
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


def peak_mem_mb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == 'mps':  # Metal buffers are not in the process RSS
        return torch.mps.driver_allocated_memory() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == 'darwin' else rss / 2**10


def bench(c, warmup, steps, lockstep=False):
    """Time `steps` training steps of config c (train.py's keys) after `warmup`; lockstep: a line on stdin
    before each step, one out after (--compare). first_step_s includes compiling, cpu_ms all threads."""
    device = check_device(c.device)
    ctx, dtype_name = autocast(device, c.dtype)
    torch.manual_seed(c.seed)
    model = LoopedGPT(LoopedGPTConfig(**{k: getattr(c, k) for k in LoopedGPTConfig.__dataclass_fields__}))
    model, data_gen = model.to(device), make_generator(c.seed, device)
    optimizers = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device.type,
                                            c.optimizer)
    step_model = model if not c.compile else torch.compile(
        model, mode='reduce-overhead' if device.type == 'cuda' else 'default')
    window, cut = c.loss_window or c.n_loops, c.select in ('random', 'shuffle') and 0 < c.n_keep < c.n_points
    # the host only queues GPU work: wait for it before reading the clock
    sync = {'cuda': lambda: torch.cuda.synchronize(device), 'mps': lambda: torch.mps.synchronize()}.get(
        device.type, lambda: None)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    setup_mem, times = peak_mem_mb(device), []  # (wall, process CPU) seconds of each step
    for _ in range(warmup + steps):
        if lockstep:
            sys.stdin.readline()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        # the step, as train.py's loop takes it
        xs, ys = sample_batch(c.task, c.batch_size, c.n_points, c.n_dims, data_gen, device, c.n_dims,
                              c.noise_std, c.sparsity)
        scores = torch.rand(c.batch_size, c.n_points, generator=data_gen, device=device) if cut else None
        with ctx:
            _, loss = step_model(xs, ys, n_loops=c.n_loops, loss_window=window, scores=scores)
        loss.backward()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        for o in optimizers:
            o.step()
            o.zero_grad(set_to_none=True)
        sync()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
        if lockstep:
            print('done', flush=True)
    if not torch.isfinite(loss):
        print(f'warning: the loss is {loss.item()} after {warmup + steps} steps', file=sys.stderr)
    timed, cpu = zip(*times[warmup:])
    step_s = statistics.median(timed)
    flops = model.flops_per_step(c.batch_size, c.n_points, c.n_loops, window)
    mfu = estimate_mfu(flops / step_s, device, dtype_name)
    return {'steps_per_s': round(1 / step_s, 4),
            'tokens_per_s': round(c.batch_size * (2 * c.n_points + 1) / step_s, 1),
            'peak_mem_mb': round(peak_mem_mb(device), 1), 'setup_mem_mb': round(setup_mem, 1),
            'mfu': round(mfu, 5) if mfu else None, 'gflops_per_s': round(flops / step_s / 1e9, 2),
            'step_ms': round(1000 * step_s, 2),  # the median
            'step_ms_min_max': [round(1000 * min(timed), 2), round(1000 * max(timed), 2)],
            'cpu_ms': round(1000 * statistics.median(cpu), 2), 'first_step_s': round(times[0][0], 3),
            'device': str(device) if device.type != 'cuda' else torch.cuda.get_device_name(device),
            'dtype': dtype_name, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
            # a shared machine: the load beside this run, and OpenMP's waiting (spinning threads suffer most)
            'load_avg': round(os.getloadavg()[0], 2), 'omp_wait_policy': os.getenv('OMP_WAIT_POLICY', '')}


def main(argv):
    ours = [a for a in argv if a.startswith('--') and a[2:].partition('=')[0] in BENCH_DEFAULTS]
    train_args = [a for a in argv if a not in ours]  # --help too: it lists bench.py's flags, then train.py's
    usage = help_text(__doc__, BENCH_DEFAULTS, BENCH_HELPS) + "\n\ntrain.py's flags, which set the config:"
    opts, _, _, _ = parse(ours, BENCH_DEFAULTS, lowest={'warmup': 0, 'steps': 1, 'threads': 0})
    given = set()  # checked as train.py checks them: a window or min_lr given is not adjusted
    config, base, stems, _ = parse(train_args, train.DEFAULTS, train.CHOICES, usage, train.HELPS, given=given)
    train.check_config(config, given, base)
    if not opts['compare']:
        if opts['threads']:
            torch.set_num_threads(opts['threads'])
        result = bench(SimpleNamespace(**config), opts['warmup'], opts['steps'], opts['lockstep'])
    else:
        # each variant in a process of its own (its own peak memory; later flags win), stepped in turn: other
        # work on a shared machine slows them alike, and the ratios hold
        other = 'adamw' if config['optimizer'] == 'muon' else 'muon'
        variants = {'baseline': [f'--{k}={v}' for k, v in BASELINE.items()], 'config': [],
                    'checkpoint_loops': ['--checkpoint_loops=True'], other: [f'--optimizer={other}']}
        command = [sys.executable, os.path.abspath(__file__), *argv, '--compare=False', '--lockstep=True']
        procs = [subprocess.Popen(command + extra, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for extra in variants.values()]
        for i in range(opts['warmup'] + opts['steps']):
            for p in procs[i % len(procs):] + procs[:i % len(procs)]:  # none always goes first
                print('go', file=p.stdin, flush=True)
                if not p.stdout.readline():  # it died: its error is on stderr already
                    for q in procs:
                        q.kill()
                    sys.exit(p.wait() or 1)
        # each prints its result last, read through the buffer readline used (communicate() would bypass it)
        outs = [p.stdout.read() for p in procs]
        if any(p.wait() for p in procs):
            sys.exit(next(p.returncode for p in procs if p.returncode))
        runs = {name: json.loads(out.splitlines()[-1]) for name, out in zip(variants, outs)}
        result, base = runs['config'], runs['baseline']
        kept = ('steps_per_s', 'peak_mem_mb', 'mfu', 'step_ms', 'step_ms_min_max', 'cpu_ms', 'load_avg')
        result.update({name: {**{k: runs[name][k] for k in kept}, 'speed_vs_config': round(
            runs[name]['steps_per_s'] / result['steps_per_s'], 3)} for name in variants if name != 'config'})
        result['baseline']['overrides'] = BASELINE
        result.update(speedup=round(result['steps_per_s'] / base['steps_per_s'], 3),
                      mem_ratio=round(result['peak_mem_mb'] / base['peak_mem_mb'], 3))
    shown = {k: v for k, v in config.items() if k in SHAPE_KEYS or v != train.DEFAULTS[k]}
    result.update(warmup=opts['warmup'], steps=opts['steps'], config_files=stems, config=shown)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    exit_on_errors()  # a closed pipe (| head), a bad flag: one line, no traceback
    main(sys.argv[1:])
