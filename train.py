"""
Train a looped GPT to do linear regression in context.

    python train.py                                   # the main job: the experiments' model, d = 20, N = 64
    python train.py config/laptop.py                  # a few minutes on a laptop CPU
    python train.py --n_keep=32 --select=random       # any default below, as --key=value
    python train.py config/exp5_truncation.py --n_keep=24 --seed=451

Config files are Python files that assign some of the names below; later arguments win.
Each run writes out_dir/<name>/ with config.json, log.csv and ckpt.pt, the name made of
the config files and the flags that differ from the defaults, seed last.
"""

import ast
import csv
import difflib
import json
import math
import os
import runpy
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, fields
from types import SimpleNamespace

import torch

from data import TASKS, curriculum, first_k, make_generator, sample_batch, validation_set
from model import (ATTENTIONS, INJECTS, LOSS_ONS, POS_EMBS, SCHEDULES, SELECTS, LoopedGPT,
                   LoopedGPTConfig)

# -----------------------------------------------------------------------------
# default config values: the experiments' model on d = 20, N = 64
# I/O
out_dir = 'out'
run_name = ''            # '' names the run from its config files and non-default flags
eval_interval = 500      # validate, append to log.csv and save ckpt.pt every this many steps
log_interval = 100       # print a line every this many steps
init_from = 'scratch'    # scratch | resume (continue the checkpoint in the run directory)
overwrite = False        # start over in a run directory that holds a checkpoint
# data
task = 'linear'          # linear | noisy_linear | sparse_linear | quadratic | relu2nn | decision_tree
n_dims = 20              # d
n_points = 64            # N in-context examples (the prompt has 2N + 1 tokens)
noise_std = 0.0          # noisy_linear only
sparsity = 3             # sparse_linear only: non-zero coordinates of w
val_prompts = 1280       # size of the fixed validation set
val_seed = 1             # the validation set's seed, shared by all runs so they compare on the same prompts
# curriculum: start, + step every interval steps, up to n_dims / n_points / n_loops; start = 0 is off
dims_start = 5
dims_step = 1
dims_interval = 2000
points_start = 11
points_step = 4
points_interval = 2000
loops_start = 0
loops_step = 1
loops_interval = 500
# model
n_layer = 2
n_head = 4
n_embd = 64
mlp_size = 256
recompute_gelu = True    # recompute the MLP's GELU in the backward pass: less memory, the same gradients
dropout = 0.0
bias = True
pos_emb = 'learned'      # none | learned | sinusoidal | type
causal = True
attention = 'sdpa'       # sdpa | manual (explicit attention matrix: the plain baseline)
inject = 'add'           # add | none | concat | gated
# loop
n_loops = 10             # b
loss_window = 10         # T: the last T loops carry gradient and enter the loss
loss_on = 'all'          # all | query
# truncation
n_keep = 0               # examples kept after the cut (0: all)
select = 'first'         # first | random | last | shuffle
truncate_after = 1       # cut after this loop (0: before the first)
n_keep_schedule = 'constant'  # constant | shrink
n_keep_random = False    # draw the number kept uniformly from [n_keep, N] at every training step
# optimizer
batch_size = 64
learning_rate = 5e-4
max_iters = 50000
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
grad_clip = 1.0          # 0 disables
# learning rate schedule
lr_schedule = 'constant'  # constant | cosine (to min_lr at max_iters)
warmup_iters = 500
min_lr = 5e-5
# system
seed = 42
device = 'auto'          # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
dtype = 'auto'           # auto (bfloat16 on CUDA where supported, else float32) | float32 | bfloat16
compile = False          # torch.compile the model
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in globals().items() if not k.startswith('_') and type(v) in (int, float, bool, str)}
CHOICES = {'init_from': ('scratch', 'resume'), 'task': TASKS, 'pos_emb': POS_EMBS, 'attention': ATTENTIONS,
           'inject': INJECTS, 'loss_on': LOSS_ONS, 'select': SELECTS, 'n_keep_schedule': SCHEDULES,
           'lr_schedule': ('constant', 'cosine'), 'dtype': ('auto', 'float32', 'bfloat16')}
# what changes where and how a run runs, not what it computes: left out of the run's name
NOT_IN_NAME = ('out_dir', 'run_name', 'eval_interval', 'log_interval', 'init_from', 'overwrite', 'device',
               'compile', 'seed', 'recompute_gelu')
CKPT_VERSION = 1


class ConfigError(Exception):
    """A bad flag or config file: reported in one line, exit code 2, nothing written."""


# -----------------------------------------------------------------------------
# configuration: config files, then --key=value, checked against the defaults' types

def coerce(key, value, source, defaults=DEFAULTS, choices=CHOICES):
    default = defaults[key]
    if isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
        raise ConfigError(f'{source}: {key} takes {type(default).__name__}, got {value!r}')
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f'{source}: {key} takes True or False, got {value!r}')
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # an int where a float is expected is fine
    if type(value) is not type(default):
        raise ConfigError(f'{source}: {key} takes {type(default).__name__}, got {value!r}')
    if key in choices and value not in choices[key]:
        raise ConfigError(f'{source}: {key} must be one of {" | ".join(choices[key])}, got {value!r}')
    return value


def set_value(config, key, value, source, defaults=DEFAULTS, choices=CHOICES):
    if key not in defaults:
        close = difflib.get_close_matches(key, defaults, n=3)
        hint = f' (did you mean {", ".join(close)}?)' if close else ''
        raise ConfigError(f'{source}: unknown key {key!r}{hint}')
    config[key] = coerce(key, value, source, defaults, choices)


def parse_flag(arg, config, defaults=DEFAULTS, choices=CHOICES):
    """Apply one --key=value to config: the value read as a Python literal, or else as a bare word."""
    key, eq, raw = arg[2:].partition('=')
    if not eq:
        raise ConfigError(f'--{key}: write flags as --{key}=value')
    if isinstance(defaults.get(key), str):
        value = raw  # a string flag takes the text as it is (--run_name=123 is the name '123')
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # reported by coerce as the wrong type
    set_value(config, key, value, f'--{key}', defaults, choices)


def parse_config(argv):
    """Defaults, then each config file or --key=value in order.
    Returns (config, base, stems): the config, what the config files alone make of the defaults, their names."""
    config, base, stems = dict(DEFAULTS), dict(DEFAULTS), []
    for arg in argv:
        if arg.startswith('--'):
            parse_flag(arg, config)
        else:
            if not os.path.isfile(arg):
                raise ConfigError(f'config file {arg!r} does not exist')
            try:
                namespace = runpy.run_path(arg)
            except Exception as err:
                raise ConfigError(f'config file {arg!r} does not run: {type(err).__name__}: {err}') from None
            for key, value in namespace.items():
                if not key.startswith('_') and not callable(value) and type(value).__name__ != 'module':
                    set_value(config, key, value, arg)
                    base[key] = config[key]
            stems.append(os.path.splitext(os.path.basename(arg))[0])
    check_config(config)
    return config, base, stems


def check_config(c):
    """Impossible values and combinations, caught before anything is written."""
    def need(ok, key, what):
        if not ok:
            raise ConfigError(f'--{key}={c[key]!r}: {what}')
    for key in ('n_dims', 'n_points', 'n_layer', 'n_head', 'n_embd', 'mlp_size', 'n_loops', 'batch_size',
                'val_prompts', 'eval_interval', 'log_interval'):
        need(c[key] >= 1, key, 'must be at least 1')
    need(c['max_iters'] >= 0, 'max_iters', 'must be at least 0')
    need(c['n_embd'] % c['n_head'] == 0, 'n_head', f'must divide n_embd={c["n_embd"]}')
    need(1 <= c['loss_window'] <= c['n_loops'], 'loss_window', f'must be in 1..n_loops={c["n_loops"]}')
    need(c['n_keep'] == 0 or 1 <= c['n_keep'] <= c['n_points'], 'n_keep',
         f'must be 0 (keep all) or in 1..n_points={c["n_points"]}')
    need(0 <= c['truncate_after'] <= c['n_loops'], 'truncate_after', f'must be in 0..n_loops={c["n_loops"]}')
    need(not c['n_keep_random'] or c['n_keep'] > 0, 'n_keep_random', 'needs n_keep > 0 (the smallest n drawn)')
    need(0.0 <= c['dropout'] < 1.0, 'dropout', 'must be in [0, 1)')
    need(c['noise_std'] >= 0, 'noise_std', 'must be at least 0')
    need(1 <= c['sparsity'] <= c['n_dims'], 'sparsity', f'must be in 1..n_dims={c["n_dims"]}')
    need(c['learning_rate'] > 0, 'learning_rate', 'must be positive')
    need(0 <= c['min_lr'] <= c['learning_rate'], 'min_lr', 'must be in [0, learning_rate]')
    need(c['warmup_iters'] >= 0, 'warmup_iters', 'must be at least 0')
    need(c['grad_clip'] >= 0, 'grad_clip', 'must be at least 0 (0 disables)')
    need(c['weight_decay'] >= 0, 'weight_decay', 'must be at least 0')
    need(0 <= c['beta1'] < 1, 'beta1', 'must be in [0, 1)')
    need(0 <= c['beta2'] < 1, 'beta2', 'must be in [0, 1)')
    for name, end in (('dims', 'n_dims'), ('points', 'n_points'), ('loops', 'n_loops')):
        need(0 <= c[f'{name}_start'] <= c[end], f'{name}_start',
             f'must be 0 (no curriculum) or at most {end}={c[end]}, where the curriculum ends')
        need(c[f'{name}_step'] >= 1, f'{name}_step', 'must be at least 1')
        need(c[f'{name}_interval'] >= 1, f'{name}_interval', 'must be at least 1')
    check_device(c['device'])
    if c['dtype'] == 'bfloat16':
        need(resolve_device(c['device']).type != 'mps', 'dtype', 'bfloat16 autocast is not supported on MPS')


def check_device(name):
    """The torch.device a --device value names, or a ConfigError if it is malformed or not here."""
    try:
        device = resolve_device(name)
    except RuntimeError:
        raise ConfigError(f'--device={name!r}: use auto, cpu, cuda, cuda:N or mps') from None
    available = {'cpu': True, 'cuda': torch.cuda.is_available(), 'mps': torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ConfigError(f'--device={name!r}: not available here (use auto, cpu, cuda, cuda:N or mps)')
    return device


def run_dir(config, base, stems):
    """out_dir/<config files>,<flags that differ from them>,seed=S: runs that differ only by seed sort together."""
    if config['run_name']:
        return os.path.join(config['out_dir'], config['run_name'])
    parts = stems + [f'{k}={v}' for k, v in config.items() if k not in NOT_IN_NAME and v != base[k]]
    return os.path.join(config['out_dir'], ','.join(parts + [f'seed={config["seed"]}']))


# -----------------------------------------------------------------------------
# the pieces of a run

def resolve_device(name):
    if name != 'auto':
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device('cuda')
    if torch.backends.mps.is_available():
        return torch.device('mps')
    return torch.device('cpu')


def autocast(device, dtype):
    """bf16 autocast on CUDA where supported (auto), fp32 everywhere else unless asked."""
    if dtype == 'auto':
        dtype = 'bfloat16' if device.type == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
    if dtype == 'float32':
        return nullcontext(), dtype
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16), dtype


def model_config(c):
    names = {f.name for f in fields(LoopedGPTConfig)}
    return LoopedGPTConfig(**{k: v for k, v in c.items() if k in names})


def get_lr(it, c):
    if it < c.warmup_iters:  # linear warmup
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if c.lr_schedule == 'constant':
        return c.learning_rate
    progress = min(1.0, (it - c.warmup_iters) / max(1, c.max_iters - c.warmup_iters))
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (c.learning_rate - c.min_lr)


def curriculum_at(it, c):
    """(active dims, examples per prompt, loops) at step `it`."""
    return (curriculum(c.dims_start, c.n_dims, c.dims_step, c.dims_interval, it),
            curriculum(c.points_start, c.n_points, c.points_step, c.points_interval, it),
            curriculum(c.loops_start, c.n_loops, c.loops_step, c.loops_interval, it))


def compiled(model, c, device):
    """The model train_step runs: torch.compile-d with compile=True (CUDA graphs on CUDA), else itself.
    The checkpoint always saves the uncompiled model, so its keys carry no _orig_mod. prefix."""
    if not c.compile:
        return model
    # each curriculum stage is one shape: compiled once, reused until the stage ends
    torch._dynamo.config.cache_size_limit = max(64, c.n_points + 1)
    return torch.compile(model, mode='reduce-overhead' if device.type == 'cuda' else 'default')


def step_n_keep(c, host_gen):
    """The number of examples kept in this training step: n_keep, or with n_keep_random a draw from [n_keep, N]."""
    if c.n_keep_random:
        return int(torch.randint(c.n_keep, c.n_points + 1, (1,), generator=host_gen))
    return c.n_keep


def step_flops(model, c, n_points, n_loops):
    """Matmul FLOPs of a training step at the curriculum's N and b; n_keep_random counts its mean draw."""
    n_keep = (c.n_keep + c.n_points) // 2 if c.n_keep_random else c.n_keep
    return model.flops_per_step(c.batch_size, n_points, n_loops, min(c.loss_window, n_loops), n_keep)


def train_step(model, optimizer, xs, ys, n_loops, loss_window, n_keep, generator, ctx, grad_clip):
    """One optimisation step. Returns the loss as a tensor: no host synchronisation here."""
    with ctx:
        _, loss = model(xs, ys, n_loops=n_loops, loss_window=loss_window, n_keep=n_keep, generator=generator)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@torch.no_grad()
def evaluate(model, xs, ys, n_loops, loss_window, n_dims_active, ctx, seed, chunk=256):
    """(loss on all positions, query error / d) of the model on fixed prompts, in eval mode."""
    was_training = model.training
    model.eval()
    generator = make_generator(seed, xs.device)  # random truncation draws the same subsets every time
    losses, errors = [], []
    for i in range(0, xs.size(0), chunk):
        with ctx:
            preds, loss = model(xs[i:i + chunk], ys[i:i + chunk], n_loops=n_loops, loss_window=loss_window,
                                generator=generator)
        losses.append(loss.float() * preds[-1].size(0))
        errors.append(((preds[-1][:, -1].float() - ys[i:i + chunk, -1]) ** 2).sum() / n_dims_active)
    model.train(was_training)
    return (torch.stack(losses).sum() / xs.size(0)).item(), (torch.stack(errors).sum() / xs.size(0)).item()


def save_checkpoint(path, state):
    """Write to a temporary file, then rename: a kill at any moment leaves the previous checkpoint whole."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, map_location='cpu'):
    """Tensors and plain values only (weights_only): a shared checkpoint cannot run code on load."""
    if not os.path.isfile(path):
        raise ConfigError(f'no checkpoint at {path}')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ConfigError(f'{path} is not a readable checkpoint ({type(err).__name__}: '
                          f'{str(err).splitlines()[0][:200]})') from None
    if not isinstance(ckpt, dict) or ckpt.get('version') != CKPT_VERSION:
        version = ckpt.get('version') if isinstance(ckpt, dict) else None
        raise ConfigError(f'{path} is a checkpoint of version {version}, this code reads version {CKPT_VERSION}')
    return ckpt


def load_model(path, device='cpu'):
    """A trained model from its ckpt.pt, on any device, whatever it was trained on: (model, config dict)."""
    ckpt = load_checkpoint(path)
    model = LoopedGPT(LoopedGPTConfig(**ckpt['model_args']))
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as err:
        raise ConfigError(f'{path} does not fit the model its config describes: {str(err).splitlines()[0]}') from None
    return model.to(device), ckpt['config']


# -----------------------------------------------------------------------------
# the training run

# MFU's denominator per (device type, dtype): H100 SXM dense bf16 and plain fp32 (NVIDIA's datasheet), and the
# fp32 matmul peak of this project's 2-core CPU (issue 4); other pairs print no MFU
PEAK_FLOPS = {('cuda', 'bfloat16'): 989e12, ('cuda', 'float32'): 67e12, ('cpu', 'float32'): 150e9}
LOG_COLUMNS = ['iter', 'train_loss', 'val_loss', 'val_err', 'lr', 'ms_per_step']


def format_time(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m' if seconds >= 3600 else f'{seconds // 60}m{seconds % 60:02d}s'


def train(c, directory, ckpt=None):
    device = resolve_device(c.device)
    ctx, dtype_name = autocast(device, c.dtype)
    torch.manual_seed(c.seed)
    model = LoopedGPT(model_config(vars(c))).to(device)
    optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device.type)
    data_gen = make_generator(c.seed, device)  # prompts and random truncation, drawn on the device
    host_gen = make_generator(c.seed)          # the per-step n of n_keep_random, drawn without a device sync
    start_iter, loss_sum, loss_count = 0, torch.zeros((), device=device), 0
    if ckpt is not None:
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        start_iter, loss_count = ckpt['iter'], ckpt['loss_count']
        loss_sum = ckpt['loss_sum'].to(device)
        torch.set_rng_state(ckpt['rng']['torch'])
        data_gen.set_state(ckpt['rng']['data'])
        host_gen.set_state(ckpt['rng']['host'])

    os.makedirs(directory, exist_ok=True)
    ckpt_path, log_path = os.path.join(directory, 'ckpt.pt'), os.path.join(directory, 'log.csv')
    if ckpt is None:  # a fresh run (--overwrite=True clears what an earlier one left)
        for stale in ('ckpt.pt', 'eval.json'):
            if os.path.exists(os.path.join(directory, stale)):
                os.remove(os.path.join(directory, stale))
        with open(os.path.join(directory, 'config.json'), 'w') as f:
            json.dump(vars(c), f, indent=2)
        with open(log_path, 'w', newline='') as f:
            csv.writer(f).writerow(LOG_COLUMNS)
    else:  # drop rows logged after the checkpoint, which the resumed run logs again
        with open(log_path, newline='') as f:
            rows = [r for r in csv.reader(f)]
        with open(log_path, 'w', newline='') as f:
            csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= start_iter])

    step_model = compiled(model, c, device)
    val_xs, val_ys = validation_set(c.task, c.val_prompts, c.n_points, c.n_dims, c.val_seed, device,
                                    c.noise_std, c.sparsity)

    def state(iteration):
        return {'version': CKPT_VERSION, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'model_args': asdict(model.config), 'config': vars(c), 'iter': iteration,
                'loss_sum': loss_sum.cpu(), 'loss_count': loss_count,
                'rng': {'torch': torch.get_rng_state(), 'data': data_gen.get_state(), 'host': host_gen.get_state()}}

    stop = []  # Ctrl-C and SIGTERM finish the step in flight, save, and exit
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stop.append(signum))

    print(f'run {directory}')
    print(f'device {device}, {dtype_name}{", compiled (one graph per curriculum stage)" if c.compile else ""}, '
          f'{model.num_params():,} parameters, iterations {start_iter}..{c.max_iters}')
    bad_iter = torch.full((), -1, device=device)  # first non-finite loss, tracked on the device: no sync per step
    last_good = start_iter if ckpt is not None else None
    t_last, steps_timed, ms_per_step = time.time(), 0, float('nan')
    for it in range(start_iter, c.max_iters):
        n_dims_now, n_points_now, n_loops_now = curriculum_at(it, c)
        lr = get_lr(it, c)
        for group in optimizer.param_groups:
            group['lr'] = lr
        xs, ys = sample_batch(c.task, c.batch_size, n_points_now, c.n_dims, data_gen, device, n_dims_now,
                              c.noise_std, c.sparsity)
        loss = train_step(step_model, optimizer, xs, ys, n_loops_now, min(c.loss_window, n_loops_now),
                          step_n_keep(c, host_gen), data_gen, ctx, c.grad_clip)
        loss_sum += loss
        loss_count += 1
        bad_iter = torch.where((bad_iter < 0) & ~torch.isfinite(loss), it + 1, bad_iter)
        steps_timed += 1
        done = it + 1
        last = done == c.max_iters
        evaluating = done % c.eval_interval == 0 or last
        if not (done % c.log_interval == 0 or evaluating or stop):
            continue

        if bad_iter.item() >= 0:  # diverged: stop before anything is saved from the bad weights
            kept = f'the checkpoint of iteration {last_good} is kept' if last_good else 'no checkpoint was written'
            print(f'error: the loss became {loss.item()} at iteration {bad_iter.item()}; stopping ({kept}, '
                  f'{directory}). Try a lower --learning_rate or --grad_clip.', file=sys.stderr)
            sys.exit(3)
        ms_per_step = (time.time() - t_last) * 1000 / steps_timed
        line = f'iter {done}/{c.max_iters}: loss {loss.item():.4f}'
        if evaluating:
            # at the loop count being trained (the curriculum's), on prompts of the full N and d
            val_loss, val_err = evaluate(model, val_xs, val_ys, n_loops_now, min(c.loss_window, n_loops_now),
                                         c.n_dims, ctx, c.val_seed)
            train_loss = (loss_sum / loss_count).item()
            with open(log_path, 'a', newline='') as f:
                csv.writer(f).writerow([done, f'{train_loss:.6g}', f'{val_loss:.6g}', f'{val_err:.6g}',
                                        f'{lr:.6g}', f'{ms_per_step:.2f}'])
            loss_sum, loss_count = torch.zeros((), device=device), 0
            save_checkpoint(ckpt_path, state(done))
            last_good = done
            line += f', val loss {val_loss:.4f}, val err {val_err:.4f}'
        flops = step_flops(model, c, n_points_now, n_loops_now)
        line += f', lr {lr:.2e}, {ms_per_step:.1f} ms/step, {flops / ms_per_step / 1e6:.1f} GFLOP/s'
        if (device.type, dtype_name) in PEAK_FLOPS:
            line += f' (mfu {100 * flops / (ms_per_step / 1000) / PEAK_FLOPS[device.type, dtype_name]:.1f}%)'
        line += f', d {n_dims_now} N {n_points_now} b {n_loops_now}, eta {format_time((c.max_iters - done) * ms_per_step / 1000)}'
        print(line, flush=True)
        if stop:
            if not evaluating:
                save_checkpoint(ckpt_path, state(done))
            print(f'stopped by {signal.Signals(stop[0]).name} after iteration {done}; checkpoint saved. Resume with:\n'
                  f'  python train.py {" ".join(sys.argv[1:])} --init_from=resume', flush=True)
            sys.exit(128 + stop[0])
        t_last, steps_timed = time.time(), 0

    summary(model, c, val_xs, val_ys, ctx)


def summary(model, c, xs, ys, ctx):
    """The trained model's query error next to least squares and the zero predictor, at a few k."""
    from eval_extrapolation import least_squares
    print(f'query error (squared error / d) on {xs.size(0)} validation prompts, b = {c.n_loops}:')
    print(f'{"k":>5} {"model":>10} {"least_sq":>10} {"zero":>10}')
    for k in sorted({max(1, c.n_dims // 2), c.n_dims, 2 * c.n_dims, c.n_points} & set(range(c.n_points + 1))):
        xs_k, ys_k = first_k(xs, ys, k)
        _, model_err = evaluate(model, xs_k, ys_k, c.n_loops, 1, c.n_dims, ctx, c.val_seed)
        ls_err = ((least_squares(xs_k, ys_k) - ys_k[:, -1]) ** 2).mean().item() / c.n_dims
        zero_err = (ys_k[:, -1] ** 2).mean().item() / c.n_dims
        print(f'{k:>5} {model_err:>10.4f} {ls_err:>10.4f} {zero_err:>10.4f}')


def main(argv):
    try:
        config, base, stems = parse_config(argv)
        directory = run_dir(config, base, stems)
        ckpt_path = os.path.join(directory, 'ckpt.pt')
        ckpt = None
        if config['init_from'] == 'resume':
            ckpt = load_checkpoint(ckpt_path)
            if ckpt['model_args'] != asdict(model_config(config)):
                raise ConfigError(f'--init_from=resume: {ckpt_path} holds another model shape than these flags')
            if ckpt['iter'] >= config['max_iters']:
                raise ConfigError(f'--init_from=resume: {ckpt_path} is at iteration {ckpt["iter"]}, '
                                  f'max_iters={config["max_iters"]}: nothing left to do')
        elif os.path.exists(ckpt_path) and not config['overwrite']:
            raise ConfigError(f'{directory} already holds a checkpoint: --init_from=resume continues it, '
                              f'--overwrite=True starts over')
    except ConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    train(SimpleNamespace(**config), directory, ckpt)


if __name__ == '__main__':
    main(sys.argv[1:])
