"""
Evaluate trained runs: the query error as the loop count grows past b_train, and as the number of
in-context examples k grows, next to the classical algorithms on the very same prompts.

    python eval_extrapolation.py out/exp5_* --max_loops=50
    python eval_extrapolation.py out/RUN --max_loops=100 --full_context=True   # a truncated model, uncut

Writes RUN/eval.json for each run and prints a table over seeds. Every run is scored on one fixed set of
prompts (--n_prompts, --seed), drawn on the CPU as random truncation's draws are: the same on every device.
A run without ckpt.pt is evaluated from its model.pt (the trained weights, as results/ keeps them); one with
an eval.json alone joins the table as it is, if its settings match.
On a CPU shared with other jobs, OMP_NUM_THREADS=1 is often several times faster.
"""

import functools
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

from configurator import (ConfigError, check_device, exit_on_errors, fail, find_runs, group_runs, parse,
                          read_defaults, rename_variants)
from data import first_k, least_squares, make_generator, validation_set
from model import load_model
from rundir import EVAL_CURVES, read_eval, write_file

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
BASELINES = EVAL_CURVES[2:]  # the classical algorithms, after the model's two curves


def baselines(xs, ys, gd_steps=10):
    """{name: the query's prediction (B,)} of each classical algorithm on prompts xs (B, k+1, d), ys (B, k+1),
    fitted on the k examples only (the query's y is never looked at); with no examples, each predicts 0."""
    if xs.size(1) == 1:
        return {name: torch.zeros_like(ys[:, -1]) for name in BASELINES}
    X, y, q = xs[:, :-1].double(), ys[:, :-1, None].double(), xs[:, -1:].double()  # (B, k, d), (B, k, 1)
    gram, eye = X.mT @ X, torch.eye(X.size(2), dtype=X.dtype, device=X.device)  # (B, d, d)
    # gradient descent on the examples' squared error from w = 0, step 1 / the largest curvature per prompt
    step, w_gd = 1.0 / torch.linalg.eigvalsh(gram)[:, -1:, None].clamp_min(1e-12), torch.zeros_like(X.mT @ y)
    for _ in range(gd_steps):
        w_gd = w_gd - step * (gram @ w_gd - X.mT @ y)
    nearest = (xs[:, :-1] - xs[:, -1:]).norm(dim=2).topk(min(3, X.size(1)), dim=1, largest=False).indices
    return {'least_squares': least_squares(xs, ys),
            'ridge': (q @ torch.linalg.solve(gram + 0.1 * eye, X.mT @ y)).view(-1).to(ys.dtype),  # lambda 0.1
            'knn': ys[:, :-1].gather(1, nearest).mean(1),  # mean y of the 3 examples nearest the query
            # w = mean of y_i x_i (Garg et al.): one step of gradient descent from zero
            'averaging': (xs[:, -1] * (ys[:, :-1].unsqueeze(-1) * xs[:, :-1]).mean(1)).sum(1),
            'gd': (q @ w_gd).view(-1).to(ys.dtype)}


def query_error(pred, ys, n_dims):
    """Squared error on the query over d, per prompt: predicting 0 scores about 1 on linear tasks."""
    return (pred - ys[:, -1]) ** 2 / n_dims


def mean_sem(errors):
    """(..., B) per-prompt errors -> {'mean': [...], 'sem': [...]}: mean and standard error over prompts."""
    errors = errors.double()
    return {'mean': errors.mean(-1).tolist(), 'sem': (errors.std(-1) / errors.size(-1) ** 0.5).tolist()}


# ----- the model on fixed prompts

@torch.no_grad()
def model_predictions(model, xs, ys, n_loops, first_loop=1, n_keep=None, seed=0, scores=None):
    """(preds, change): the query's prediction after each loop first_loop..n_loops, (loops, B) on the CPU, in
    one pass per chunk; per loop 1..n_loops, the mean ||h_t - h_{t-1}|| / ||h_t||, how far from a fixed point.
    n_keep: None for the run's cut, 0 for none. scores (B, N): truncation's draws (default: from seed)."""
    model.eval()
    device = next(model.parameters()).device
    B, P, _ = xs.shape
    # a CPU runs fastest on a chunk that fits its cache (1.6x all 1280 prompts at once); a GPU on big batches
    chunk = max(1, (2 ** 13 if device.type == 'cpu' else 2 ** 17) // (2 * P - 1))
    if scores is None:  # the same draws on every call and device
        scores = torch.rand(B, P - 1, generator=make_generator(seed))
    change, state = torch.zeros(n_loops, device=device), {}  # change: summed over prompts, per loop

    def hook(module, inputs, h):  # ln_f runs once per loop: h is h_t
        t, prev, h = state['t'], state['prev'], h.flatten(1)  # a prompt's whole state, tokens x channels
        # NaN where nothing is like-for-like: loop 1 has no h_{t-1}, and a cut drops tokens
        like = prev is not None and prev.shape == h.shape
        change[t] += ((h - prev).norm(dim=1) / h.norm(dim=1)).sum() if like else math.nan
        state.update(t=t + 1, prev=h)

    handle, out = model.ln_f.register_forward_hook(hook), []
    for i in range(0, B, chunk):
        state.update(t=0, prev=None)
        x, y, s = (v[i:i + chunk].to(device) for v in (xs, ys, scores))
        preds, _ = model(x, y, n_loops=n_loops, loss_window=n_loops - first_loop + 1, n_keep=n_keep, scores=s)
        out.append(torch.stack([p[:, -1].float() for p in preds]).cpu())  # the query's, per loop
    handle.remove()
    return torch.cat(out, dim=1), (change / B).tolist()


def model_errors(model, xs, ys, n_loops, first_loop=1, n_keep=None, seed=0):
    """(errors, change): model_predictions' query error / d, (n_loops - first_loop + 1, B), and change."""
    preds, change = model_predictions(model, xs, ys, n_loops, first_loop, n_keep, seed)
    return query_error(preds, ys, xs.size(2)), change


# ----- the loop lens: the weights w_t the model implies after loop t, beside least squares and GD

LENS_PROMPTS = 256  # the lens reads the first this many prompts, each d + 2 times (d probes, 0, its query)
LENS_TOL = 0.1  # f_t reads as linear where its mean affine error and intercept (relative) are below this
GD_STEP_SIZES = torch.logspace(-1.5, 0.5, 41, dtype=torch.float64)  # step c / k: c from 0.03 to 3.2


def gd_path(xs, ys, n_steps=200):
    """(w_GD (n_steps + 1, B, d), step sizes c, w_LS (B, d)): w_GD(s) is s steps of gradient descent from 0
    on the examples' mean squared error, at the c nearest w_LS (||.||^2 / ||w_LS||^2, mean over prompts: for
    noiseless isotropic x, the expected query error). A loop nearer w_LS than the last step reads as it."""
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
    w_t = (f_t(sqrt(d) e_j) - f_t(0)) / sqrt(d), their distance to least squares and the GD step nearest them,
    in one pass over d + 2 copies of each prompt (d probes, 0, its own query; the causal mask hides the query
    from the rest). Where f_t is not linear (no mask, a nonlinear model), affine_err and intercept say so."""
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


# ----- a run's eval.json, and the summary over runs

def evaluate_run(model, config, xs, ys, settings):
    """Everything eval.json holds: one model on the fixed prompts xs (B, N+1, d), ys (B, N+1), on the CPU."""
    b_train, max_loops, seed = config['n_loops'], settings['max_loops'], settings['seed']
    n_points, n_keep = xs.size(1) - 1, 0 if settings['full_context'] else None  # n_keep 0: no cut
    t0 = time.time()
    # extrapolation: one pass, the query read out after every loop 1..max_loops
    err_loops, fixed_point = model_errors(model, xs, ys, max_loops, 1, n_keep, seed)
    t1 = time.time()
    print(f'  loop sweep to b = {max_loops}: {t1 - t0:.0f} s; the lens next, then the k sweep', flush=True)
    lens = loop_lens(model, xs[:LENS_PROMPTS], ys[:LENS_PROMPTS], max_loops, n_keep, seed)
    t2 = time.time()
    print(f'  lens: {t2 - t1:.0f} s; k sweep over k = 0..{n_points} (its later k cost the most)', flush=True)
    # error vs k: one pass per k, read out from loop lo to hi, which gives both b_train and max_loops
    lo, hi = min(b_train, max_loops), max(b_train, max_loops)
    curves = {name: [] for name in ('model_b_train', 'model_max_loops', *BASELINES)}
    for k in range(n_points + 1):
        xs_k, ys_k = first_k(xs[:settings['k_prompts']], ys[:settings['k_prompts']], k)
        err, _ = model_errors(model, xs_k, ys_k, hi, lo, n_keep, seed)  # (hi - lo + 1, k_prompts)
        curves['model_b_train'].append(err[b_train - lo])
        curves['model_max_loops'].append(err[max_loops - lo])
        for name, pred in baselines(xs_k, ys_k, settings['gd_steps']).items():
            curves[name].append(query_error(pred, ys_k, xs.size(2)))
    return {'config': config, 'b_train': b_train, 'eval': settings,
            'loops': list(range(1, max_loops + 1)), 'err_vs_loops': mean_sem(err_loops),
            'fixed_point': [None if math.isnan(v) else v for v in fixed_point],
            'k': list(range(n_points + 1)),
            'err_vs_k': {name: mean_sem(torch.stack(v)) for name, v in curves.items()}, 'lens': lens,
            'seconds': {'loop_sweep': round(t1 - t0, 2), 'lens': round(t2 - t1, 2),
                        'k_sweep': round(time.time() - t2, 2)}}


def reusable(path, identity, settings):
    """The eval.json at path if made with these settings from this very checkpoint, else None: re-summarising
    a sweep then evaluates only what is new. identity None: no checkpoint, so the settings alone count (one
    from before the lens too). A ConfigError if the file is damaged or hand-edited."""
    if not os.path.isfile(path):
        return None
    result = read_eval(path)
    stale = identity is not None and (result.get('checkpoint') != identity or 'lens' not in result)
    return None if stale or result.get('eval') != settings else dict(result, reused=True)


def print_summary(results, variants):
    """One line per variant [(label, indices into results)]: query error at b_train, at b = 50 and at
    max_loops (all N examples), at a few k, and the lens at b_train."""
    config, e = results[0]['config'], results[0]['eval']
    N, d, B = config['n_points'], config['n_dims'], e['max_loops']
    ks = sorted({max(1, d // 2), d, 2 * d, N} & set(range(N + 1)))
    loops = sorted({min(50, B), B})  # the experiments' b = 50, and the last loop scored
    print(f'\nquery error (squared error / d), mean ± std over seeds, on {e["n_prompts"]} prompts '
          f'(k columns: the first {e["k_prompts"]}; lens: ||w_b - w_LS|| / ||w_LS||, the nearest GD step):')
    rows = [['variant', 'seeds', 'b_train', 'at b_train', *(f'at b={b}' for b in loops),
             *(f'k={k} at b_train' for k in ks), 'w to LS at b_train', 'GD step at b_train']]
    for label, idx in variants:
        rs, b = [results[i] for i in idx], results[idx[0]]['b_train']
        # each cell's values over seeds; None ('-') where b_train > max_loops or an eval.json has no lens
        cells = [[r['err_vs_loops']['mean'][t - 1] for r in rs] if t <= B else None for t in [b, *loops]]
        cells += [[r['err_vs_k']['model_b_train']['mean'][k] for r in rs]
                  if all(k < len(r['k']) for r in rs) else None for k in ks]
        cells += [[r['lens'][key]['mean'][b - 1] for r in rs] if b <= B and all('lens' in r for r in rs)
                  else None for key in ('to_ls', 'gd_step')]
        rows.append([label, str(len(rs)), str(b)] + ['-' if v is None else f'{np.mean(v):.4g}' + (
            f' ± {np.std(v, ddof=1):.2g}' if len(v) > 1 else '') for v in cells])  # mean ± std over seeds
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    for r in rows:
        print('  '.join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))


def main(argv):
    try:
        opts, _, _, patterns = parse(argv, DEFAULTS, usage=__doc__, helps=HELPS, files=False,
                                     lowest={'max_loops': 1, 'n_prompts': 2, 'gd_steps': 0})
        if not patterns:
            raise ConfigError('name the run directories: python eval_extrapolation.py out/RUN [out/RUN ...]')
        if not 0 <= opts['seed'] < 2 ** 32:
            raise ConfigError(f'--seed={opts["seed"]}: must be in 0..2**32 - 1')
        if opts['k_prompts'] < 0 or opts['k_prompts'] == 1:
            raise ConfigError(f'--k_prompts={opts["k_prompts"]}: must be 0 (all) or at least 2')
        # the settings an eval.json records, and must match to be reused (k_prompts 0: all)
        settings = {key: value for key, value in opts.items() if key not in ('device', 'reuse', 'labels')}
        settings['k_prompts'] = min(opts['k_prompts'] or opts['n_prompts'], opts['n_prompts'])
        device = check_device(opts['device'])
        runs = find_runs(patterns, ('ckpt.pt', 'model.pt', 'eval.json'))
        models, results = {}, {}  # every checkpoint loads before any eval.json is written
        for run in runs:
            ckpt_path = os.path.join(run, 'ckpt.pt')
            if not os.path.isfile(ckpt_path):  # else the trained weights alone (model.pt, as results/ keeps)
                ckpt_path = os.path.join(run, 'model.pt')
            if os.path.isfile(ckpt_path):
                model, ckpt = load_model(ckpt_path, device)
                # what an eval.json was computed from: the same weights, whichever file brought them
                weights = hashlib.sha256(b''.join(t.cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
                                                  for t in ckpt['model'].values()))
                models[run] = model, ckpt['config'], {'iter': ckpt['iter'], 'sha256': weights.hexdigest()}
                continue
            results[run] = reusable(os.path.join(run, 'eval.json'), None, settings)
            if results[run] is None:
                raise ConfigError(f'{run}: no ckpt.pt or model.pt to evaluate, and its eval.json was made '
                                  f'with other settings (--max_loops, --n_prompts, --seed, ...) than these')
        configs = [models[run][1] if run in models else results[run]['config'] for run in runs]
        variants = rename_variants(group_runs(configs, runs), opts['labels'])
    except ConfigError as err:
        fail(err)

    prompts = functools.cache(validation_set)  # one set per task and shape, on the CPU: the same everywhere
    for run in runs:
        path = os.path.join(run, 'eval.json')
        try:
            result = results.get(run) or (reusable(path, models[run][2], settings) if opts['reuse'] else None)
        except ConfigError as err:
            print(f'{err}: computing it again')
            result = None
        if result is None:
            model, config, identity = models[run]
            xs, ys = prompts(config['task'], opts['n_prompts'], config['n_points'], config['n_dims'],
                             opts['seed'], 'cpu', config.get('noise_std', 0.0), config.get('sparsity', 3))
            result = dict(evaluate_run(model, config, xs, ys, settings), checkpoint=identity)
            write_file(path, lambda f: json.dump(result, f, indent=1))  # a failure: one line, exit 2 (below)
        results[run] = result
        b, B, err = result['b_train'], opts['max_loops'], result['err_vs_loops']['mean']
        how, seconds = ('reused' if result.get('reused') else f'on {device}'), result['seconds']
        print(f'{path}: error at b_train={b} {f"{err[b - 1]:.4g}" if b <= B else "-"}, at b={B} '
              f'{err[B - 1]:.4g} ({how}: loop sweep {seconds["loop_sweep"]:.1f}s, '
              f'k sweep {seconds["k_sweep"]:.1f}s)', flush=True)
    print_summary([results[run] for run in runs], variants)


if __name__ == '__main__':
    exit_on_errors()  # any I/O error not handled in main: one line, exit 2
    main(sys.argv[1:])
