"""
Train a looped GPT to do linear regression in context.

    python train.py config/laptop.py                  # minutes on a laptop CPU
    python train.py                                   # the experiments' model, d = 20, N = 64 (hours)
    python train.py --n_keep=32 --select=random       # any default below, as --key=value
    python train.py config/exp5_truncation.py --n_keep=24 --seed=451

Config files are Python files that assign some of the names below; later arguments win. Each run
writes out_dir/<name>/ (config.json, log.csv, ckpt.pt), named by the config files and the flags that
differ from them, seed last. --init_from=resume with a larger max_iters continues a run: wsd holds its
peak until the new max_iters - decay_iters; cosine is recomputed for the new length, so its lr jumps up.
"""

import functools
import itertools
import math
import os
import signal
import sys
import time
from dataclasses import asdict, fields
from types import SimpleNamespace

import torch

import rundir
from configurator import (ConfigError, check_device, exit_on_errors, fail, parse, read_defaults, run_dir,
                          shell_command)
from data import TASKS, curriculum, first_k, make_generator, sample_batch, validation_set
from model import (ATTENTIONS, INJECTS, LOSS_ONS, POS_EMBS, SCHEDULES, SELECTS, LoopedGPT, LoopedGPTConfig,
                   autocast, estimate_mfu)

# -----------------------------------------------------------------------------
# defaults: the experiments' model on d = 20, N = 64, and a recipe that trains it (results/RECIPE.md)
# I/O
out_dir = 'out'          # where run directories go
run_name = ''            # '' names the run from its config files and non-default flags
eval_interval = 500      # validate, append to log.csv and save ckpt.pt every this many steps
log_interval = 100       # print a line every this many steps
init_from = 'scratch'    # scratch | resume (continue the checkpoint in the run directory)
overwrite = False        # start over in a run directory that holds a checkpoint
# data
task = 'linear'          # linear | noisy_linear | sparse_linear | quadratic | relu2nn | decision_tree
n_dims = 20              # d
n_points = 64            # N in-context examples (the prompt has 2N + 1 tokens)
noise_std = 0.0          # noisy_linear only: std of the noise added to y
sparsity = 3             # sparse_linear only: non-zero coordinates of w
val_prompts = 1280       # size of the fixed validation set
val_seed = 1             # the validation set's seed, shared by all runs so they compare on the same prompts
# curricula: start (0: off, above the end: the end), + step every interval steps, up to n_dims / n_points /
# n_loops. d and N grow together (N = 4d, 64 at d = 16, d = 20 at step 7,200): short prompts at small d let
# the model leave the zero-predictor plateau, where at full size it may stay for thousands of steps
dims_start = 2           # d of the first steps
dims_step = 1            # d grows by this much ...
dims_interval = 400      # ... every this many steps
points_start = 8         # N of the first steps
points_step = 4          # N grows by this much ...
points_interval = 400    # ... every this many steps
curriculum_gate = 0.7    # d and N grow only once the error at the current d and N is below this (0: off)
loops_start = 1          # b of the first steps (0: all n_loops from the start)
loops_step = 1           # b grows by this much ...
loops_interval = 50      # ... every this many steps
# model
n_layer = 2              # blocks in one loop
n_head = 4               # attention heads
n_embd = 64              # width of the state
mlp_size = 256           # hidden units of each block's MLP
dropout = 0.0            # dropout on the embedding, attention output and MLP output
bias = True              # biases in the Linear and LayerNorm layers
pos_emb = 'learned'      # none | learned | sinusoidal | type (one vector for x tokens, one for y tokens)
causal = True            # the causal mask: a token sees only the tokens before it
attention = 'sdpa'       # sdpa (fused kernel) | manual (explicit attention matrix: the plain baseline)
inject = 'add'           # add (h + e) | none (e enters once) | concat (linear map of [h, e]) | gated
# loop
n_loops = 10             # b: loops through the blocks at training time (b_train)
loss_window = 5          # the last this many loops carry gradient and enter the loss (0: all b loops)
loss_on = 'all'          # all x positions | query (only the query's prediction enters the loss)
n_loops_random = True    # draw each step's b from [loss_window, b]: the fit must hold at every b
n_loops_draw = 20        # ... and up to this once d and N are full (if above b): so it holds past b_train
checkpoint_loops = False  # recompute each loop's activations in the backward pass: less memory
# truncation
n_keep = 0               # examples kept after the cut (0: all)
select = 'first'         # first | random (a random n, in order) | last | shuffle (random n, random order)
truncate_after = 1       # cut after this loop (0: before the first, i.e. a shorter prompt)
n_keep_schedule = 'constant'  # constant | shrink (from N at the cut down to n_keep at loop b)
n_keep_random = False    # draw the number kept uniformly from [n_keep, N] at every training step
# optimizer
optimizer = 'adamw'      # adamw | muon (PyTorch's Muon on the blocks' matrices, AdamW on the rest)
batch_size = 64          # prompts per step
learning_rate = 3e-3     # peak learning rate (Muon's scaled to match AdamW's update size)
max_iters = 13000        # training steps
weight_decay = 0.0       # AdamW's, on matrices only
beta1 = 0.9              # AdamW's
beta2 = 0.999            # AdamW's
grad_clip = 1.0          # clip the gradient's norm to this (0: no clipping)
# learning rate schedule
lr_schedule = 'wsd'      # constant | cosine (down to min_lr at max_iters) | wsd (hold, then cosine down)
warmup_iters = 1000      # linear warmup over this many steps
decay_iters = 4000       # wsd only: the cosine down to min_lr takes the last this many steps
min_lr = 5e-5            # where cosine and wsd end (unset: a tenth of learning_rate where that is lower)
# system
seed = 42                # model init, prompts, truncation draws
device = 'auto'          # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
dtype = 'auto'           # auto (bfloat16 on CUDA where supported, else float32) | float32 | bfloat16
compile = False          # torch.compile the model (one graph for the loop, CUDA graphs on CUDA)
wandb_log = False        # also log each evaluation to Weights & Biases (pip install wandb)
wandb_project = 'nanoloop'  # the W&B project
wandb_run_name = ''      # '' names it after the run directory
# end of defaults
# -----------------------------------------------------------------------------
DEFAULTS, HELPS = read_defaults(__file__, '# defaults:', '# end of defaults')
CHOICES = {'init_from': ('scratch', 'resume'), 'task': TASKS, 'pos_emb': POS_EMBS, 'attention': ATTENTIONS,
           'inject': INJECTS, 'loss_on': LOSS_ONS, 'select': SELECTS, 'n_keep_schedule': SCHEDULES,
           'lr_schedule': ('constant', 'cosine', 'wsd'), 'optimizer': ('adamw', 'muon'),
           'dtype': ('auto', 'float32', 'bfloat16')}


def check_config(c, given=(), base=None, here=True):
    """Refuse impossible values before anything is written; the loss window and min_lr follow b and the lr
    unless given (by a file or flag). Returns warnings(). here=False: no device check (sweep --cluster)."""
    def need(ok, key, what):
        if not ok:
            raise ConfigError(f'--{key}={c[key]!r}: {what}')
    for key in ('n_dims', 'n_points', 'n_layer', 'n_head', 'n_embd', 'mlp_size', 'n_loops', 'batch_size',
                'val_prompts', 'eval_interval', 'log_interval', 'dims_step', 'dims_interval', 'points_step',
                'points_interval', 'loops_step', 'loops_interval', 'max_iters'):
        need(c[key] >= 1, key, 'must be at least 1')
    for key in ('warmup_iters', 'decay_iters', 'grad_clip', 'weight_decay', 'noise_std', 'n_loops_draw',
                'curriculum_gate'):
        need(c[key] >= 0, key, 'must be at least 0')
    for key in ('n_loops', 'n_loops_draw'):  # a step's cost grows with b: past this, a typo
        need(c[key] <= 1000, key, 'must be at most 1000')
    for key in ('dropout', 'beta1', 'beta2'):
        need(0 <= c[key] < 1, key, 'must be in [0, 1)')
    for key in ('seed', 'val_seed'):  # seed + 1 and seed * 1_000_003 + step must fit torch's 64 bits
        need(0 <= c[key] < 2 ** 32, key, 'must be in 0..2**32 - 1')
    need(c['out_dir'].strip() != '', 'out_dir', 'must name a folder (. for this one)')
    need(c['n_embd'] % c['n_head'] == 0, 'n_head', f'must divide n_embd={c["n_embd"]}')
    b_top = max(c['n_loops'], c['n_loops_draw']) if c['n_loops_random'] else c['n_loops']
    if 'loss_window' not in given:  # the default window follows a smaller b; with inject=none, every loop
        c['loss_window'] = 0 if c['inject'] == 'none' else min(c['loss_window'], c['n_loops'])
    need(0 <= c['loss_window'] <= c['n_loops'], 'loss_window', f'must be in 0 (all)..n_loops={c["n_loops"]}')
    # inject=none: the prompt enters the first loop only, so a window without it never trains read_in
    need(c['inject'] != 'none' or c['loss_window'] in (0, b_top), 'loss_window',
         f'with --inject=none must be 0 (all loops){f" or b={b_top}" * (b_top == c["n_loops"])}: the prompt '
         f'enters the first loop only, and outside the window the embedding gets no gradient')
    need(c['n_keep'] == 0 or 1 <= c['n_keep'] <= c['n_points'], 'n_keep',
         f'must be 0 (keep all) or in 1..n_points={c["n_points"]}')
    need(0 <= c['truncate_after'] <= c['n_loops'], 'truncate_after', f'must be in 0..n_loops={c["n_loops"]}')
    need(not c['n_keep_random'] or c['n_keep'] > 0, 'n_keep_random', 'needs n_keep > 0 (the smallest n)')
    if c['task'] == 'sparse_linear':
        need(1 <= c['sparsity'] <= c['n_dims'], 'sparsity', f'must be in 1..n_dims={c["n_dims"]}')
    need(0 < c['learning_rate'] <= 1000, 'learning_rate', 'must be in (0, 1000]')  # 1e39 overflows fp32
    if 'min_lr' not in given:  # a min_lr not set follows a small lr down (nanoGPT's: a tenth of it)
        c['min_lr'] = min(c['min_lr'], c['learning_rate'] / 10)
    need(c['lr_schedule'] == 'constant' or 0 <= c['min_lr'] <= c['learning_rate'], 'min_lr',
         f'must be in [0, learning_rate={c["learning_rate"]}] (where {c["lr_schedule"]} ends)')
    for name, end in (('dims', 'n_dims'), ('points', 'n_points'), ('loops', 'n_loops')):
        need(c[f'{name}_start'] >= 0, f'{name}_start', 'must be at least 0 (0: no curriculum)')
        c[f'{name}_start'] = min(c[f'{name}_start'], c[end])
    device = check_device(c['device'] if here else 'cpu')
    need(c['dtype'] != 'bfloat16' or device.type != 'mps', 'dtype', 'bfloat16 autocast does not run on MPS')
    return warnings(c, base or DEFAULTS)


def warnings(c, base):
    """What check_config warns of: a wsd decay longer than the run, and flags that change nothing (each set
    back to its base value, so that the run's name holds only what changes it)."""
    said = []
    if c['lr_schedule'] == 'wsd' and c['decay_iters'] > c['max_iters'] - c['warmup_iters']:
        said.append(f'decay_iters={c["decay_iters"]} is longer than the {c["max_iters"] - c["warmup_iters"]} '
                    f'steps after warmup: the decay starts at the end of warmup (wsd is then a cosine)')
    cuts = 0 < c['n_keep'] < c['n_points'] and c['truncate_after'] < c['n_loops']
    if c['n_keep'] > 0 and not cuts:
        said.append(f'n_keep={c["n_keep"]} cuts nothing: ' + (
            f'it keeps all N={c["n_points"]} examples' if c['n_keep'] >= c['n_points'] else
            f'the cut, after loop truncate_after={c["truncate_after"]}, would come after the last of the '
            f'n_loops={c["n_loops"]} loops'))
    same = base['n_loops_draw'] if base['n_loops_draw'] <= c['n_loops'] else 0  # a draw to b at most, named
    if c['n_loops_random'] and c['n_loops_draw'] <= c['n_loops'] and c['n_loops_draw'] != same:
        said.append(f'n_loops_draw={c["n_loops_draw"]} is no more than n_loops={c["n_loops"]}: b is drawn up '
                    f'to n_loops, as with n_loops_draw={same}, which the run keeps')
        c['n_loops_draw'] = same
    why = 'n_keep=0 keeps every example' if c['n_keep'] == 0 else 'no example is cut (see above)'
    idle = {'select': not cuts and why, 'n_keep_schedule': not cuts and why,
            'decay_iters': c['lr_schedule'] != 'wsd' and f'only wsd has it, not {c["lr_schedule"]}',
            'n_loops_draw': not c['n_loops_random'] and 'it needs n_loops_random=True'}
    for key, reason in idle.items():  # any value of these is the same run: it keeps the base one
        if reason and c[key] != base[key]:
            said.append(f'{key}={c[key]} changes nothing ({reason}): the run keeps {key}={base[key]}')
            c[key] = base[key]
    return said


def get_lr(it, c):
    if it < c.warmup_iters:  # linear warmup
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if c.lr_schedule == 'constant':
        return c.learning_rate
    # wsd holds the peak while the curricula grow the task, and decays only at the end
    start = c.warmup_iters if c.lr_schedule == 'cosine' else max(c.warmup_iters, c.max_iters - c.decay_iters)
    progress = min(1.0, max(0.0, (it - start) / max(1, c.max_iters - start)))
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (c.learning_rate - c.min_lr)


@torch.no_grad()
def evaluate(model, xs, ys, n_loops, n_dims_active, ctx, seed, chunk=256):
    """(loss on all positions, query error / d) of the model on fixed prompts at n_loops, in eval mode.
    Random truncation draws the same subsets every time (a generator seeded with seed)."""
    model.eval()  # no dropout; train() again at the end
    generator = make_generator(seed)
    losses, errors = [], []
    for x, y in zip(xs.split(chunk), ys.split(chunk)):
        scores = torch.rand(x.size(0), x.size(1) - 1, generator=generator).to(x.device)
        with ctx:
            preds, loss = model(x, y, n_loops=n_loops, loss_window=1, scores=scores)
        losses.append(loss.float() * x.size(0))
        errors.append(((preds[-1][:, -1].float() - y[:, -1]) ** 2).sum() / n_dims_active)
    model.train()
    return (torch.stack(losses).sum() / xs.size(0)).item(), (torch.stack(errors).sum() / xs.size(0)).item()


def validate(model, c, val_set, ctx, d_now, N_now, b_now, train_loss, first_loss):
    """(The log's errors {column: value}, their text for the progress line, why the run looks diverged or '')
    at the final d and N, at k = 2d examples (least squares is exact there), and at the current d and N."""
    val_loss, val_err = evaluate(model, *val_set(c.n_dims, c.n_points), b_now, c.n_dims, ctx, c.val_seed)
    k2d = min(2 * c.n_dims, c.n_points)
    xs, ys = first_k(*val_set(c.n_dims, c.n_points), k2d)
    _, err_k2d = evaluate(model, xs, ys, b_now, c.n_dims, ctx, c.val_seed)
    text = f'; val err {val_err:.4f} at d={c.n_dims} N={c.n_points}, {err_k2d:.4f} at k=2d={k2d}'
    err_now = val_err  # past the curricula the prompts trained on are the final ones
    if (d_now, N_now) != (c.n_dims, c.n_points):
        _, err_now = evaluate(model, *val_set(d_now, N_now), b_now, d_now, ctx, c.val_seed)
        text += f', {err_now:.4f} at the training d={d_now} N={N_now}'
    # a finite divergence is judged on the prompts trained on: early in its curricula a model may
    # extrapolate badly to the final d and N without anything being wrong
    zero_err, diverged = (val_set(d_now, N_now)[1][:, -1] ** 2).mean().item() / d_now, ''  # predicting 0
    if err_now > 10 * zero_err:
        diverged = f'the validation error {err_now:.4g} is over 10x that of predicting 0 ({zero_err:.4g})'
    elif first_loss and train_loss > 10 * first_loss:
        diverged = f'the training loss {train_loss:.4g} is over 10x its first logged value ({first_loss:.4g})'
    text += f' (b={b_now})' + (f' -- warning: {diverged}' if diverged else '')
    errs = {'val_loss': val_loss, 'val_err': val_err, 'val_err_k2d': err_k2d, 'val_err_now': err_now}
    return errs, text, diverged


def configure(argv, here=True):
    """Flags -> (config as checked and adjusted, its run directory, warnings), or a ConfigError; writes
    nothing. The one place a run is named, for train.py and sweep.py alike."""
    given = set()
    config, base, stems, _ = parse(argv, DEFAULTS, CHOICES, __doc__, HELPS, given=given)
    said = check_config(config, given, base, here)
    return config, run_dir(config, base, stems), said


def open_run(argv):
    """Flags -> (config, run directory, checkpoint to resume or None), or a ConfigError; writes nothing."""
    config, directory, said = configure(argv)
    for warning in said:
        print(f'warning: {warning}', file=sys.stderr)
    return config, directory, rundir.find_checkpoint(config, directory)


# -----------------------------------------------------------------------------
if __name__ == '__main__':
    exit_on_errors()  # a bad flag or file, an I/O error (a full disk, a closed pipe): one line, exit 2
    config, directory, ckpt = open_run(sys.argv[1:])
    c = SimpleNamespace(**config)
    device = check_device(c.device)
    ctx, dtype_name = autocast(device, c.dtype)

    # the model, its optimizer and the run's random streams, each from the seed
    torch.manual_seed(c.seed)
    model = LoopedGPT(LoopedGPTConfig(**{f.name: config[f.name] for f in fields(LoopedGPTConfig)})).to(device)
    optimizers = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), device.type,
                                            c.optimizer)  # [AdamW] or [AdamW, Muon]: each parameter in one
    generators = {'data': make_generator(c.seed, device),          # prompts, drawn on the device
                  'trunc': make_generator(c.seed + 1, device),     # which examples a cut keeps
                  'host': make_generator(c.seed)}                  # per-step n and b: no device sync
    # the cut's draws have a stream of their own: arms differing only in select see the same prompts (paired)
    start_iter = rundir.restore(ckpt, model, optimizers, device, generators) if ckpt is not None else 0
    held = (ckpt or {}).get('held', 0)  # steps the curriculum gate has held d and N back
    step_model = model
    if c.compile:  # each curriculum stage is one shape: one graph each, the loop included
        torch._dynamo.config.cache_size_limit = max(64, c.n_points + 1)
        step_model = torch.compile(model, mode='reduce-overhead' if device.type == 'cuda' else 'default')

    # the run directory (config.json, log.csv, ckpt.pt), locked while this process lives
    ckpt_path, log_path = os.path.join(directory, 'ckpt.pt'), os.path.join(directory, 'log.csv')
    tracker = rundir.tracker(config, directory)  # wandb, or a stand-in whose log does nothing: no `if` below
    run_lock, rows = rundir.take(directory, config, ckpt)
    val_set = functools.cache(lambda d, N: validation_set(  # the fixed prompts at each (d, N) reached
        c.task, c.val_prompts, N, c.n_dims, c.val_seed, device, c.noise_std, c.sparsity, n_dims_active=d))

    def save(step):  # a failed write ends the run in one line, naming the checkpoint that is kept
        state = {'version': rundir.CKPT_VERSION, 'model': model.state_dict(),
                 'optimizer': [o.state_dict() for o in optimizers], 'model_args': asdict(model.config),
                 'config': config, 'iter': step, 'held': held, 'rng': rundir.rng_state(device, generators)}
        rundir.save_checkpoint(ckpt_path, state, kept=saved_iter)
        if step == c.max_iters:  # the trained weights alone, without the optimizer: what results/ keeps
            weights = {k: state[k] for k in ('version', 'model', 'model_args', 'config', 'iter')}
            rundir.save_checkpoint(os.path.join(directory, 'model.pt'), weights)

    def stage(it, held=0):  # where the curricula stand at step it: active dims, examples per prompt (both
        # held back `held` steps by the gate), b's top, and the loss window: the loops that carry gradient
        d = curriculum(c.dims_start, c.n_dims, c.dims_step, c.dims_interval, it - held)
        N = curriculum(c.points_start, c.n_points, c.points_step, c.points_interval, it - held)
        b_max = curriculum(c.loops_start, c.n_loops, c.loops_step, c.loops_interval, it)
        if c.n_loops_random and (d, N) == (c.n_dims, c.n_points):  # the task at full size: b past b_train
            b_max = max(b_max, c.n_loops_draw)
        return d, N, b_max, min(c.loss_window or b_max, b_max)

    @functools.cache
    def step_flops(N, b_max, window):  # a step's matmul FLOPs at this stage (b drawn: the mean)
        return model.flops_per_step(c.batch_size, N, range(window, b_max + 1) if c.n_loops_random else b_max,
                                    window)
    # the FLOPs from each step to the end: the ETA and GFLOP/s count the curricula's growth
    per_step = (step_flops(*stage(it)[1:]) for it in reversed(range(c.max_iters)))
    flops_left = list(itertools.accumulate(per_step, initial=0.0))[::-1]
    stop = []  # Ctrl-C, SIGTERM and SIGHUP (a closed terminal) finish the step in flight, save, and exit
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: stop.append(signum))

    def say(text):  # a closed stdout (| head) stops the run as Ctrl-C does: saved, then exit
        try:
            print(text, flush=True)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the rest goes nowhere
            stop.append(signal.SIGPIPE)
    print(f'run {directory}\ndevice {device}, {dtype_name}{", compiled" if c.compile else ""}, '
          f'{model.num_params():,} parameters, steps {start_iter}..{c.max_iters}: '
          f'{flops_left[start_iter] / 1e12:.3g} TFLOP', flush=True)
    # a 2-core CPU averages 45-85 GFLOP/s over a whole run (the defaults: 367 TFLOP in 72 min; --n_keep=32
    # --select=random: 208 in about 75): a range, said now, not after the curricula's cheap first stages
    hours = flops_left[start_iter] / 3600 / 1e9
    if device.type == 'cpu' and hours > 45:
        print(f'note: that is about {hours / 85:.1f} to {hours / 45:.1f} h for a 2-core CPU; '
              f'config/laptop.py learns the task in minutes', flush=True)
    losses = []  # the training losses since the last row, on the device: no sync per step
    # a resumed run compares its loss with the run's first, and keeps the checkpoint it resumed from
    first_loss = float(rows[0]['train_loss']) if rows and rows[0].get('train_loss') else None
    saved_iter, diverged = (start_iter if ckpt is not None else None), ''
    t_last, step_last = time.time(), start_iter
    t_row, step_row = t_last, start_iter  # the log's ms_per_step: all the wall time since the last row
    draw = lambda low, high: int(torch.randint(low, high + 1, (1,), generator=generators['host']))
    # the gate checks the error again once every interval of the curricula it holds (d's where it grows)
    gate_every = c.dims_interval if c.dims_start else c.points_interval

    # -------------------------------------------------------------------------
    # the training loop
    for it in range(start_iter, c.max_iters):
        d_now, N_now, b_now, window = stage(it, held)  # short prompts at small d first
        d_was, N_was = stage(it - 1, held)[:2]
        if c.curriculum_gate and it > 0 and (d_now, N_now) != (d_was, N_was):  # a model still at the zero
            # predictor, given a larger task, may stay there for good: d and N wait, a step at a time (neither
            # moves back), and the error is checked again once every interval held
            xs, ys = val_set(d_was, N_was)
            err = None if held % gate_every else evaluate(model, xs[:256], ys[:256], b_now, d_was, ctx,
                                                          c.val_seed)[1]
            if err is None or err > c.curriculum_gate:
                held += 1
                d_now, N_now, b_now, window = stage(it, held)
                if err is not None:
                    say(f'iter {it}: d stays {d_now}, N {N_now} (error {err:.3f} > curriculum_gate)')
        # this step's loops: with n_loops_random a draw from [window, b_now], b_now past b_train once the
        # task is full size, so that the fit holds at every b from the window on (a fixed point), not at one
        b = draw(window, b_now) if c.n_loops_random else b_now
        n_keep = draw(c.n_keep, c.n_points) if c.n_keep_random else c.n_keep  # n_keep_random: n_keep..N
        lr = get_lr(it, c)  # warmup, then constant, cosine or wsd
        for group in (g for o in optimizers for g in o.param_groups):
            group['lr'] = lr

        # one step: a fresh batch of prompts, forward through b loops, backward through the last `window`
        xs, ys = sample_batch(c.task, c.batch_size, N_now, c.n_dims, generators['data'], device, d_now,
                              c.noise_std, c.sparsity)
        scores = None  # one random number per example: the cut keeps the highest (select=random | shuffle)
        if c.select in ('random', 'shuffle') and 0 < n_keep < N_now:
            scores = torch.rand(c.batch_size, N_now, generator=generators['trunc'], device=device)
        with ctx:
            _, loss = step_model(xs, ys, n_loops=b, loss_window=window, n_keep=n_keep, scores=scores)
        loss.backward()  # through the window's loops only
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)  # no batch throws it far
        for o in optimizers:
            o.step()
            o.zero_grad(set_to_none=True)  # frees the gradients' memory until the next backward

        # bookkeeping without a host sync: a GPU never waits for the CPU between log intervals
        losses.append(loss.detach())
        done = it + 1
        evaluating = done % c.eval_interval == 0 or done == c.max_iters
        if not (done % c.log_interval == 0 or evaluating or stop):
            continue  # most steps end here
        bad = (~torch.isfinite(torch.stack(losses))).nonzero()  # losses[i] is step step_row + i + 1's
        if len(bad):  # diverged: stop before anything is saved from the bad weights
            kept = 'the last checkpoint is kept' if os.path.exists(ckpt_path) else 'no checkpoint was written'
            fail(f'the loss became {loss.item()} at step {step_row + 1 + bad[0].item()}; stopping ({kept}, '
                 f'{directory}). Try a lower --learning_rate or --grad_clip.', code=3)
        seconds = time.time() - t_last
        ms_per_step = seconds * 1000 / (done - step_last)
        flop_rate = (flops_left[step_last] - flops_left[done]) / seconds
        b_text = f'{window}..{b_now}' if c.n_loops_random else f'{b_now}'
        line = f'iter {done}/{c.max_iters}: loss {loss:.4f} (training at d={d_now} N={N_now} b={b_text})'
        # validate, log a row and save together: a resumed run neither loses nor repeats a row
        if evaluating:
            now = time.time()  # every step since the last row, its validation and the gate's checks included
            row_ms, t_row, step_row = (now - t_row) * 1000 / (done - step_row), now, done
            train_loss = torch.stack(losses).mean().item()
            first_loss = first_loss or train_loss
            b_val = min(b_now, c.n_loops)  # the curriculum's b, up to b_train (the draw goes past it)
            errs, text, diverged = validate(model, c, val_set, ctx, d_now, N_now, b_val, train_loss,
                                            first_loss)
            row = {'iter': done, 'train_loss': train_loss, **errs, 'lr': lr, 'ms_per_step': row_ms,
                   'd': d_now, 'N': N_now, 'b': b_val}
            rundir.append_row(log_path, [f'{row[k]:.6g}' if isinstance(row[k], float) else row[k]
                                         for k in rundir.LOG_COLUMNS])
            line += text
            tracker.log(row, step=done)  # a no-op unless --wandb_log=True
            losses = []  # the next row's mean starts afresh
        if evaluating or stop:  # saved before any output: a closed stdout (| tee, Ctrl-C) must not cost it
            save(done)
            saved_iter = done
        # speed and time to go, from the FLOPs done and left: the curricula's growth is counted
        mfu = estimate_mfu(flop_rate, device, dtype_name)
        line += f'; lr {lr:.2e}, {ms_per_step:.1f} ms/step, {flop_rate / 1e9:.1f} GFLOP/s' + (
            f' (mfu {100 * mfu:.1f}%)' if mfu else '')
        say(line + f', eta {flops_left[done] / flop_rate / 60:.1f} min')
        if stop:
            if saved_iter != done:  # the stdout closed in this very step's line
                save(done)
            # the same command, once with --init_from=resume and without --overwrite (a threat to the run)
            args = [a for a in sys.argv[1:] if not a.startswith(('--init_from=', '--overwrite='))]
            print(f'stopped by {signal.Signals(stop[0]).name} after step {done}; checkpoint saved. Resume '
                  f'with:\n  {shell_command(sys.argv[0], args + ["--init_from=resume"])}', flush=True,
                  file=sys.stderr if signal.SIGPIPE in stop else sys.stdout)  # SIGPIPE: no stdout left
            sys.exit(128 + stop[0])  # 130 after Ctrl-C, as a shell reports it
        t_last, step_last = time.time(), done

    say(f'evaluate it with: {shell_command("eval_extrapolation.py", [directory])}')
    if diverged:
        print(f'warning: this run ended diverged: {diverged}. Its checkpoint is of little use; '
              f'try a lower --learning_rate or --grad_clip', file=sys.stderr, flush=True)
