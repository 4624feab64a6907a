"""
Evaluate trained runs: the query error as the loop count grows past b_train, and as the number of
in-context examples k grows, next to the classical algorithms on the very same prompts.

    python eval_extrapolation.py out/exp5_* --max_loops=50
    python eval_extrapolation.py out/RUN --max_loops=100 --full_context=True   # a truncated model, uncut

Writes RUN/eval.json for each run and prints a table over seeds. Every run is scored on one fixed set of
prompts (--n_prompts, --seed), drawn on the CPU so that it is the same on every device; random truncation
draws its subsets from a generator seeded with --seed on the model's device, so those draws, and only
they, can differ between a CPU and a GPU. On a CPU shared with other jobs, OMP_NUM_THREADS=1 is often
several times faster than torch's default of one thread per core. A run with an eval.json but no
ckpt.pt (results as committed, without their checkpoints) joins the table as it is, if its settings match.
"""

import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

from configurator import (ConfigError, check_device, exit_on_errors, fail, find_runs, group_runs, parse,
                          read_defaults, read_json, rename_variants)
from data import first_k, least_squares, make_generator, validation_set
from model import load_model

# -----------------------------------------------------------------------------
# defaults
max_loops = 50           # inference loops: every b_eval = 1..max_loops is scored
n_prompts = 1280         # size of the fixed evaluation set
k_prompts = 256          # the first this many of them for the k sweep, which costs ~N/2 loop sweeps (0: all)
seed = 0                 # the evaluation set's seed, and the seed of random truncation at eval time
full_context = False     # run a truncated model on the full context (n_keep = 0) instead of its cut
device = 'auto'          # auto | cpu | cuda | cuda:N | mps
gd_steps = 10            # steps of the gradient descent baseline
reuse = True             # keep an eval.json made with these settings from this very checkpoint
labels = ''              # rename the summary's variants: old=new, split at ; or , (as plot.py's)
# end of defaults
# -----------------------------------------------------------------------------
DEFAULTS, HELPS = read_defaults(__file__, '# defaults', '# end of defaults')

# -----------------------------------------------------------------------------
# baselines: each maps prompts xs (B, k+1, d), ys (B, k+1) to a prediction for the query (B,)
# (fitted on the k examples only; the query's y is never looked at)

RIDGE_LAMBDA = 0.1
KNN_NEIGHBOURS = 3
REPORT_LOOPS = 50  # the summary's extrapolation column: the experiments evaluate at b = 50


def ridge(xs, ys, lam=RIDGE_LAMBDA):
    X, y = xs[:, :-1].double(), ys[:, :-1].double()
    eye = torch.eye(X.size(2), dtype=X.dtype, device=X.device)
    w = torch.linalg.solve(X.transpose(1, 2) @ X + lam * eye, X.transpose(1, 2) @ y.unsqueeze(-1))
    return (xs[:, -1:].double() @ w).view(-1).to(ys.dtype)


def knn(xs, ys, n_neighbours=KNN_NEIGHBOURS):
    """Mean y of the (up to) 3 examples nearest the query."""
    k = xs.size(1) - 1
    if k == 0:
        return torch.zeros_like(ys[:, -1])
    dist = (xs[:, :-1] - xs[:, -1:]).norm(dim=2)  # (B, k)
    nearest = dist.topk(min(n_neighbours, k), dim=1, largest=False).indices
    return ys[:, :-1].gather(1, nearest).mean(dim=1)


def averaging(xs, ys):
    """w = mean of y_i x_i (Garg et al.): one step of gradient descent from zero."""
    if xs.size(1) == 1:
        return torch.zeros_like(ys[:, -1])
    w = (ys[:, :-1].unsqueeze(-1) * xs[:, :-1]).mean(dim=1)  # (B, d)
    return (xs[:, -1] * w).sum(dim=1)


def gradient_descent(xs, ys, n_steps=10):
    """n_steps of gradient descent on the examples' squared error from w = 0, step 1/L per prompt."""
    X, y = xs[:, :-1].double(), ys[:, :-1].double().unsqueeze(-1)
    if X.size(1) == 0:
        return torch.zeros_like(ys[:, -1])
    gram = X.transpose(1, 2) @ X  # (B, d, d)
    step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1].clamp_min(1e-12).view(-1, 1, 1)  # 1 / largest curvature
    w = torch.zeros(X.size(0), X.size(2), 1, dtype=X.dtype, device=X.device)
    for _ in range(n_steps):
        w = w - step * (gram @ w - X.transpose(1, 2) @ y)
    return (xs[:, -1:].double() @ w).view(-1).to(ys.dtype)


BASELINES = {'least_squares': least_squares, 'ridge': ridge, 'knn': knn, 'averaging': averaging,
             'gd': gradient_descent}


def query_error(pred, ys, n_dims):
    """Squared error on the query over d, per prompt: predicting 0 scores about 1 on linear tasks."""
    return (pred - ys[:, -1]) ** 2 / n_dims


# -----------------------------------------------------------------------------
# the model on fixed prompts

# tokens per forward pass: on a CPU a chunk whose activations fit the cache runs fastest (about 1.6x faster
# than all 1280 prompts of 41 tokens at once); a GPU wants big batches
EVAL_TOKENS = {'cpu': 2 ** 13}


@torch.no_grad()
def model_predictions(model, xs, ys, n_loops, first_loop=1, n_keep=None, seed=0, scores=None):
    """(preds, change): the query's prediction after each loop first_loop..n_loops, on the CPU,
    (n_loops - first_loop + 1, B), and per loop 1..n_loops the mean over prompts of
    ||h_t - h_{t-1}|| / ||h_t|| (norms over a prompt's whole state, tokens x channels): how far the
    loop is from a fixed point. One forward pass per chunk gives every loop count. xs, ys on the CPU,
    moved to the model's device a chunk at a time. n_keep: None for the run's own cut, 0 for none.
    scores (B, N): random truncation's draws (default: drawn from seed)."""
    model.eval()
    device = next(model.parameters()).device
    B, P, d = xs.shape
    chunk = max(1, EVAL_TOKENS.get(device.type, 2 ** 17) // (2 * P - 1))
    generator = make_generator(seed)  # random truncation draws the same subsets on every call and device
    change = torch.zeros(n_loops, device=device)  # sum over prompts of the relative change, per loop
    hook_state = {}

    def hook(module, inputs, h):
        # ln_f runs exactly once per loop and its output is h_t. Loop 1 has no h_{t-1} here, and at a cut
        # (truncation) the state loses tokens, so there is no like-for-like comparison: those loops are NaN
        t, prev = hook_state['t'], hook_state['prev']
        if prev is None or prev.shape != h.shape:
            change[t] = float('nan')
        else:
            change[t] += ((h - prev).flatten(1).norm(dim=1) / h.flatten(1).norm(dim=1)).sum()  # (B,) summed
        hook_state['t'], hook_state['prev'] = t + 1, h

    handle = model.ln_f.register_forward_hook(hook)
    try:
        out = []
        for i in range(0, B, chunk):
            hook_state.update(t=0, prev=None)
            x, y = xs[i:i + chunk].to(device), ys[i:i + chunk].to(device)
            s = torch.rand(x.size(0), P - 1, generator=generator) if scores is None else scores[i:i + chunk]
            preds, _ = model(x, y, n_loops=n_loops, loss_window=n_loops - first_loop + 1, n_keep=n_keep,
                             scores=s.to(device))
            # preds[j][:, -1] is the query's prediction after loop first_loop + j
            out.append(torch.stack([p[:, -1].float() for p in preds]).cpu())
    finally:
        handle.remove()
    return torch.cat(out, dim=1), (change / B).tolist()  # (loops, B), [loops]


def model_errors(model, xs, ys, n_loops, first_loop=1, n_keep=None, seed=0):
    """(errors, change): model_predictions' query error / d, (n_loops - first_loop + 1, B), and change."""
    preds, change = model_predictions(model, xs, ys, n_loops, first_loop, n_keep, seed)
    return query_error(preds, ys, xs.size(2)), change


# -----------------------------------------------------------------------------
# the loop lens: the weights w_t the model implies after loop t, beside least squares and gradient descent

LENS_PROMPTS = 256  # the lens reads the first this many prompts, each d + 2 times (d probes, 0, its query)
LENS_GD_STEPS = 200  # w_GD(s) for s = 0..200; a loop nearer w_LS than step 200 reads as 200
LENS_TOL = 0.1  # f_t reads as linear where its mean affine error and intercept (relative) are below this
GD_STEP_SIZES = torch.logspace(-1.5, 0.5, 41, dtype=torch.float64)  # step c / k: c from 0.03 to 3.2


def gd_path(xs, ys, n_steps=LENS_GD_STEPS):
    """(w_GD (n_steps + 1, B, d), step sizes c, w_LS (B, d)): w_GD(s) is s steps of gradient descent from 0
    on the examples' mean squared error, at the c best for that s: nearest w_LS (||.||^2 / ||w_LS||^2, mean
    over prompts): for noiseless isotropic x, the expected query error, with no held-out point needed."""
    X, y = xs[:, :-1].double(), ys[:, :-1].double().unsqueeze(-1)  # (B, k, d), (B, k, 1)
    c, k = GD_STEP_SIZES, X.size(1)
    gram, grad_at_0 = X.mT @ X / k, X.mT @ y / k  # (B, d, d), (B, d, 1)
    w_ls = torch.linalg.pinv(X) @ y  # (B, d, 1), min-norm
    w = X.new_zeros(X.size(0), X.size(2), len(c))  # (B, d, C): a run per step size, side by side
    path, sizes = [w[..., 0]], [0.0]
    for _ in range(n_steps):
        w = w - c * (gram @ w - grad_at_0)
        dist = ((w - w_ls).norm(dim=1) / w_ls.norm(dim=1)).pow(2).mean(0)  # (C,); a diverged c: inf or NaN
        best = dist.nan_to_num(nan=math.inf).argmin()
        path.append(w[..., best])
        sizes.append(c[best].item())
    return torch.stack(path), sizes, w_ls.squeeze(-1)


@torch.no_grad()
def loop_lens(model, xs, ys, n_loops, n_keep=None, seed=0):
    """The model after loop t = 1..n_loops as a function of the query, f_t: its weights
    w_t = (f_t(sqrt(d) e_j) - f_t(0)) / sqrt(d), their distance to least squares and the GD step nearest
    them, read in one pass over d + 2 copies of each prompt (d probes, 0, its own query; the causal mask
    hides the query from the rest). Where f_t is not linear (no mask, a nonlinear model), affine_err and
    intercept (relative to the rms prediction) and `linear` say that the reading does not hold."""
    B, P, d = xs.shape
    scale = d ** 0.5  # probes as long as a typical x
    queries = torch.cat((scale * torch.eye(d), torch.zeros(1, d))).expand(B, d + 1, d)
    queries = torch.cat((queries, xs[:, -1:]), dim=1)  # (B, d + 2, d)
    copies = torch.cat((xs[:, None, :-1].expand(B, d + 2, P - 1, d), queries.unsqueeze(2)), dim=2)
    scores = torch.rand(B, P - 1, generator=make_generator(seed))  # one random cut per prompt and its copies
    f, _ = model_predictions(model, copies.flatten(0, 1), ys.repeat_interleave(d + 2, 0), n_loops,
                             n_keep=n_keep, scores=scores.repeat_interleave(d + 2, 0))
    f = f.double().view(n_loops, B, d + 2)
    f_0, f_x = f[..., d], f[..., d + 1]  # (loops, B)
    w = (f[..., :d] - f_0.unsqueeze(-1)) / scale  # (loops, B, d)
    rms = f_x.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)  # a typical prediction, per loop
    affine_err = (f_x - f_0 - (w * xs[:, -1].double()).sum(-1)).abs() / rms
    intercept = f_0.abs() / rms
    path, sizes, w_ls = gd_path(xs, ys)
    ls_norm = w_ls.norm(dim=-1)  # (B,)
    dist = torch.cdist(w.transpose(0, 1), path.transpose(0, 1), compute_mode='donot_use_mm_for_euclid_dist')
    to_gd = dist.min(-1).values  # (B, loops)
    # the fewest GD steps as near w_t as any (within 1%, or float32's reading): once GD has converged, the
    # steps after it tie, and the nearest of them would be noise
    gd_step = (dist <= 1.01 * to_gd.unsqueeze(-1) + 1e-6 * ls_norm.view(-1, 1, 1)).float().argmax(-1)
    return {'n_prompts': B, 'probe_scale': scale, 'gd_max_steps': len(sizes) - 1, 'tol': LENS_TOL,
            'to_ls': mean_sem((w - w_ls).norm(dim=-1) / ls_norm), 'gd_step': mean_sem(gd_step.T),
            'to_gd': mean_sem(to_gd.T / ls_norm), 'affine_err': mean_sem(affine_err),
            'intercept': mean_sem(intercept),
            'linear': (torch.maximum(affine_err.mean(1), intercept.mean(1)) < LENS_TOL).tolist()}


def baseline_errors(xs, ys, gd_steps):
    """Each baseline's query error / d on the same prompts: {name: (B,)}."""
    d = xs.size(2)
    return {name: query_error(f(xs, ys, n_steps=gd_steps) if name == 'gd' else f(xs, ys), ys, d)
            for name, f in BASELINES.items()}


def mean_sem(errors):
    """(..., B) per-prompt errors -> {'mean': [...], 'sem': [...]}: mean and standard error over the prompts."""
    errors = errors.double()
    return {'mean': errors.mean(-1).tolist(), 'sem': (errors.std(-1) / errors.size(-1) ** 0.5).tolist()}


def evaluate_run(model, config, xs, ys, max_loops, seed=0, full_context=False, gd_steps=10, k_prompts=0):
    """Everything eval.json holds, for one model on the fixed prompts xs (B, N+1, d), ys (B, N+1) (on the CPU).
    The k sweep uses the first k_prompts of them (0: all): it costs about N/2 times the loop sweep."""
    b_train, n_points = config['n_loops'], xs.size(1) - 1
    n_keep = 0 if full_context else None
    k_prompts = min(k_prompts or xs.size(0), xs.size(0))
    t0 = time.time()
    # extrapolation: one pass, the query read out after every loop 1..max_loops
    err_loops, fixed_point = model_errors(model, xs, ys, max_loops, 1, n_keep, seed)
    t1 = time.time()
    lens = loop_lens(model, xs[:LENS_PROMPTS], ys[:LENS_PROMPTS], max_loops, n_keep, seed)
    t2 = time.time()
    # error vs k: one pass per k, read out from loop lo to hi, which gives both b_train and max_loops
    lo, hi = min(b_train, max_loops), max(b_train, max_loops)
    curves = {name: [] for name in ('model_b_train', 'model_max_loops', *BASELINES)}
    for k in range(n_points + 1):
        xs_k, ys_k = first_k(xs[:k_prompts], ys[:k_prompts], k)
        err, _ = model_errors(model, xs_k, ys_k, hi, lo, n_keep, seed)  # (hi - lo + 1, k_prompts)
        curves['model_b_train'].append(err[b_train - lo])
        curves['model_max_loops'].append(err[max_loops - lo])
        for name, e in baseline_errors(xs_k, ys_k, gd_steps).items():
            curves[name].append(e)
    return {
        'config': config, 'b_train': b_train,
        'eval': {'max_loops': max_loops, 'n_prompts': xs.size(0), 'k_prompts': k_prompts, 'seed': seed,
                 'full_context': full_context, 'gd_steps': gd_steps},
        'loops': list(range(1, max_loops + 1)), 'err_vs_loops': mean_sem(err_loops),
        # relative change of the hidden state per loop; null at loop 1 and wherever truncation cut tokens
        'fixed_point': [None if math.isnan(v) else v for v in fixed_point],
        'k': list(range(n_points + 1)),
        'err_vs_k': {name: mean_sem(torch.stack(v)) for name, v in curves.items()}, 'lens': lens,
        'seconds': {'loop_sweep': round(t1 - t0, 2), 'lens': round(t2 - t1, 2),
                    'k_sweep': round(time.time() - t2, 2)},
    }


def fmt(values):
    """mean ± std over seeds."""
    values = np.asarray(values, dtype=float)
    return f'{values.mean():.4g} ± {values.std(ddof=1):.2g}' if len(values) > 1 else f'{values.mean():.4g}'


def print_summary(results, variants):
    """One line per variant [(label, indices into results)]: query error at b_train, at b = 50 and at
    max_loops (all N examples), and at a few k."""
    configs = [r['config'] for r in results]
    N, d = configs[0]['n_points'], configs[0]['n_dims']
    ks = sorted({max(1, d // 2), d, 2 * d, N} & set(range(N + 1)))
    e = results[0]['eval']
    print(f'\nquery error (squared error / d), mean ± std over seeds, on {e["n_prompts"]} prompts '
          f'(k columns: the first {e["k_prompts"]}; lens: ||w_b - w_LS|| / ||w_LS||, the nearest GD step):')
    B = e['max_loops']
    loops = [b for b in (REPORT_LOOPS, B) if b <= B]  # the experiments' b = 50, and the last loop scored
    header = (['variant', 'seeds', 'b_train', 'at b_train'] + [f'at b={b}' for b in dict.fromkeys(loops)]
              + [f'k={k} at b_train' for k in ks] + ['w to LS at b_train', 'GD step at b_train'])
    rows = [header]
    for label, idx in variants:
        rs = [results[i] for i in idx]
        b = rs[0]['b_train']
        row = [label, str(len(rs)), str(b)]
        for loop in [b] + list(dict.fromkeys(loops)):  # '-' where b_train > max_loops
            row.append(fmt([r['err_vs_loops']['mean'][loop - 1] for r in rs]) if loop <= B else '-')
        for k in ks:
            ok = all(k < len(r['k']) for r in rs)
            row.append(fmt([r['err_vs_k']['model_b_train']['mean'][k] for r in rs]) if ok else '-')
        for key in ('to_ls', 'gd_step'):  # the lens ('-' where an eval.json predates it)
            ok = b <= B and all('lens' in r for r in rs)
            row.append(fmt([r['lens'][key]['mean'][b - 1] for r in rs]) if ok else '-')
        rows.append(row)
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    for r in rows:
        print('  '.join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(r, widths))))


def checkpoint_identity(ckpt_path, ckpt):
    """What an eval.json was computed from: the checkpoint's step, and its size and mtime read at load."""
    stat = os.stat(ckpt_path)
    return {'iter': ckpt['iter'], 'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns}


def reusable(path, identity, opts):
    """The eval.json at path if it was computed from this very checkpoint with these settings, else None:
    re-summarising a sweep, or adding seeds to it, then only evaluates what is new. identity None: there
    is no checkpoint, and the settings alone must match (one from before the lens then still counts)."""
    if not os.path.isfile(path):
        return None
    result = read_json(path)
    e = result.get('eval', {}) if isinstance(result, dict) else {}
    if not isinstance(e, dict) or not complete(result, opts['max_loops']):
        raise ConfigError(f'{path} does not hold what this script writes')
    k_prompts = min(opts['k_prompts'] or e.get('n_prompts', 0), e.get('n_prompts', 0))
    wanted = {k: opts[k] for k in ('max_loops', 'n_prompts', 'seed', 'full_context', 'gd_steps')}
    if ({k: e.get(k) for k in wanted} != wanted or e.get('k_prompts') != k_prompts
            or (identity is not None and (result.get('checkpoint') != identity or 'lens' not in result))):
        return None
    return dict(result, reused=True)


def complete(result, max_loops):
    """Whether an eval.json holds the numbers the summary reads (a damaged or hand-edited one is
    computed again rather than ending the summary in a traceback)."""
    try:
        curves = [result['err_vs_loops']] + [result['err_vs_k'][n]
                                             for n in ('model_b_train', *BASELINES)]
        lens = [result['lens'][n] for n in ('to_ls', 'gd_step')] if 'lens' in result else []
        float(result['err_vs_loops']['mean'][max_loops - 1])
        return (isinstance(result['b_train'], int) and isinstance(result['config'], dict)
                and all(len(c['mean']) == len(c['sem']) for c in curves)
                and all(len(c['mean']) == len(result['err_vs_loops']['mean']) for c in lens)
                and len(result['err_vs_k']['model_b_train']['mean']) == len(result['k'])
                and all(isinstance(v, (int, float)) for c in curves for v in c['mean'])
                and all(isinstance(result['seconds'][k], (int, float))
                        for k in ('loop_sweep', 'k_sweep')))
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        return False


def main(argv):
    try:
        opts, _, _, patterns = parse(argv, DEFAULTS, usage=__doc__, helps=HELPS, files=False)
        if not patterns:
            raise ConfigError('name the run directories: python eval_extrapolation.py out/RUN [out/RUN ...]')
        for key, low in (('max_loops', 1), ('n_prompts', 2), ('gd_steps', 0)):
            if opts[key] < low:
                raise ConfigError(f'--{key}={opts[key]}: must be at least {low}')
        if not 0 <= opts['seed'] < 2 ** 32:
            raise ConfigError(f'--seed={opts["seed"]}: must be in 0..2**32 - 1')
        if opts['k_prompts'] < 0 or opts['k_prompts'] == 1:
            raise ConfigError(f'--k_prompts={opts["k_prompts"]}: must be 0 (all) or at least 2')
        device = check_device(opts['device'])
        runs = find_runs(patterns, ('ckpt.pt', 'eval.json'))
        models, committed = [], {}  # every one loads before any is written
        for run in runs:
            ckpt_path = os.path.join(run, 'ckpt.pt')
            if os.path.isfile(ckpt_path):
                model, ckpt = load_model(ckpt_path, device)
                models.append((model, ckpt['config'], checkpoint_identity(ckpt_path, ckpt)))
                continue
            committed[run] = reusable(os.path.join(run, 'eval.json'), None, opts)
            if committed[run] is None:
                raise ConfigError(f'{run}: no ckpt.pt to evaluate, and its eval.json was made with other '
                                  f'settings (--max_loops, --n_prompts, --seed, ...) than these')
            models.append((None, None, None))
        configs = [config or committed[run]['config'] for run, (_, config, _) in zip(runs, models)]
        variants = rename_variants(group_runs(configs, runs), opts['labels'])
    except ConfigError as err:
        fail(err)

    eval_sets, results = {}, []
    for run, (model, config, identity) in zip(runs, models):
        path = os.path.join(run, 'eval.json')
        try:
            result = committed.get(run) or (reusable(path, identity, opts) if opts['reuse'] else None)
        except ConfigError as err:
            print(f'{err}: computing it again')
            result = None
        if result is None:
            # one fixed set per task and shape, drawn on the CPU: every run and device sees the same prompts
            data_key = tuple(config.get(k) for k in ('task', 'n_dims', 'n_points', 'noise_std', 'sparsity'))
            if data_key not in eval_sets:
                eval_sets[data_key] = validation_set(
                    config['task'], opts['n_prompts'], config['n_points'], config['n_dims'], opts['seed'], 'cpu',
                    config.get('noise_std', 0.0), config.get('sparsity', 3))
            result = evaluate_run(model, config, *eval_sets[data_key], opts['max_loops'], opts['seed'],
                                  opts['full_context'], opts['gd_steps'], opts['k_prompts'])
            result['checkpoint'] = identity
            try:
                with open(path + '.tmp', 'w') as f:
                    json.dump(result, f, indent=1)
                os.replace(path + '.tmp', path)  # a reader never sees half a file
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.remove(path + '.tmp')  # a full disk leaves no half file behind
                fail(f'cannot write {path}: {err}')
        b, B, err = result['b_train'], opts['max_loops'], result['err_vs_loops']['mean']
        at_b = f'{err[b - 1]:.4g}' if b <= B else '-'
        seconds = result['seconds']
        how = 'reused' if result.get('reused') else f'on {device}'
        print(f'{path}: error at b_train={b} {at_b}, at b={B} {err[B - 1]:.4g} ({how}: loop sweep '
              f'{seconds["loop_sweep"]:.1f}s, k sweep {seconds["k_sweep"]:.1f}s)', flush=True)
        results.append(result)
    print_summary(results, variants)


if __name__ == '__main__':
    exit_on_errors()  # any I/O error not handled in main: one line, exit 2
    main(sys.argv[1:])
