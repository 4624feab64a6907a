"""
Evaluate trained runs: the query error as the loop count grows past b_train and as the in-context examples
k grow, beside the classical algorithms on the same prompts; and the loop lens, which algorithm each loop is.

    python eval_extrapolation.py out/exp5_* --max_loops=50
    python eval_extrapolation.py out/RUN --max_loops=100 --full_context=True   # a truncated model, uncut

Writes RUN/eval.json per run and a table over seeds, every run scored on one fixed prompt set (--n_prompts,
--seed), the same on any device. A run without ckpt.pt is evaluated from its model.pt; one with an eval.json
alone joins the table if its settings match. On a shared CPU, OMP_NUM_THREADS=1 is often several times faster.
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
    """(preds: the query's prediction after loops first_loop..n_loops, (loops, B) on the CPU, in one pass;
    change: mean ||h_t - h_{t-1}|| / ||h_t|| per loop). n_keep: None: its cut, 0: none; scores (B, N)."""
    model.eval()
    device, (B, P, _) = next(model.parameters()).device, xs.shape
    # a CPU runs fastest on a chunk that fits its cache (1.6x all 1280 prompts at once); a GPU on big batches
    chunk = max(1, (2 ** 13 if device.type == 'cpu' else 2 ** 17) // (2 * P - 1))
    if scores is None:  # the same draws on every call and device
        scores = torch.rand(B, P - 1, generator=make_generator(seed))
    change, state = torch.zeros(n_loops, device=device), {}  # change: summed over prompts, per loop

    def hook(module, inputs, h):  # ln_f runs once per loop: h is h_t
        t, prev, h = state['t'], state['prev'], h.flatten(1)  # a prompt's whole state, tokens x channels
        # NaN where nothing is like-for-like: loop 1 has no h_{t-1} (prev is empty), and a cut drops tokens
        change[t] += ((h - prev).norm(dim=1) / h.norm(dim=1)).sum() if prev.shape == h.shape else math.nan
        state.update(t=t + 1, prev=h)

    handle, out = model.ln_f.register_forward_hook(hook), []
    for i in range(0, B, chunk):
        state.update(t=0, prev=torch.empty(0))
        x, y, s = (v[i:i + chunk].to(device) for v in (xs, ys, scores))
        preds, _ = model(x, y, n_loops=n_loops, loss_window=n_loops - first_loop + 1, n_keep=n_keep, scores=s)
        out.append(torch.stack([p[:, -1].float() for p in preds]).cpu())  # the query's, per loop
    handle.remove()
    return torch.cat(out, dim=1), (change / B).tolist()


def model_errors(model, xs, ys, n_loops, first_loop=1, n_keep=None, seed=0):
    """(errors, change): model_predictions' query error / d, (n_loops - first_loop + 1, B), and change."""
    preds, change = model_predictions(model, xs, ys, n_loops, first_loop, n_keep, seed)
    return query_error(preds, ys, xs.size(2)), change


# ----- the loop lens: the weights w_t the model implies after loop t, and which algorithm's iterate they are

LENS_PROMPTS = 256  # the lens reads the first this many prompts, each d + 2 times (d probes, 0, its query)
LENS_TOL = 0.1  # f_t reads as linear where its mean affine error and intercept (relative) are below this
LS_TOL = 0.01  # w_t reads as least squares itself within this distance of it (relative to ||w_LS||)
NULL_MARGIN = 0.5  # a family explains a loop only where it is nearer w_t than this times the null's distance
SPECTRUM_BINS = 6  # log-spaced bins of lambda / lambda_max for the spectral view
# each family's grid, fitted per prompt, in order from w = 0 towards least squares
FAMILIES = {'gd': torch.cat((torch.arange(50.), torch.logspace(1.7, 5, 100).round())).unique().double(),
            'ridge': torch.logspace(6, -8, 141, dtype=torch.float64),
            'newton': torch.arange(41, dtype=torch.float64)}
PARAMS = {'gd': 'steps s, of size 1 / lambda_max (as the gd baseline)', 'ridge': 'log10 lambda',
          'newton': 'iterations k, M_0 = XtX / lambda_max^2, M_k+1 = 2 M_k - M_k XtX M_k, w_k = M_k Xty'}


def kept_examples(config, n_keep, scores, n_loops):
    """(B, n): the examples a cut model holds at loop n_loops, as model.py keeps them (cuts nest), or None."""
    (B, N), n = scores.shape, config.n_keep if n_keep is None else n_keep
    if not 0 < n < N or config.truncate_after >= n_loops:
        return None
    if config.select in ('first', 'last'):
        return torch.arange(n).expand(B, n) + (0 if config.select == 'first' else N - n)
    return scores.topk(n, dim=1).indices


def filters(lam):
    """Each family's filter (B, P, d) over its grid, for XtX's eigenvalues lam (B, d, ascending): an iterate
    from w = 0 is a function of XtX times Xty = XtX w_LS, so V diag(filter) Vt w_LS (1 - the shrinkage)."""
    lam = lam.clamp_min(0).unsqueeze(1)  # (B, 1, d); eigh may give -1e-15 for 0
    x = lam / lam[..., -1:].clamp_min(1e-300)  # lambda / lambda_max
    s, mu, k = (grid.view(-1, 1) for grid in FAMILIES.values())  # (P, 1)
    return {'gd': 1 - (1 - x) ** s,  # w <- w - (XtX w - Xty) / lambda_max: (1 - x)^s of w_LS remains
            'ridge': lam / (lam + mu),  # (XtX + mu I)^-1 Xty
            'newton': 1 - (1 - x ** 2) ** 2 ** k}  # 1 - lambda m_k starts at 1 - x^2 and squares each step


def calibrated(w, X, y, linear, loops, generator):
    """w (n_loops, B, d) against the families' iterates on X (B, n, d), y (B, n), and a null: w_LS plus
    isotropic noise as far from it as w. A family explains a loop if nearer than NULL_MARGIN x the null."""
    lam, V = torch.linalg.eigh(X.mT @ X)  # (B, d), (B, d, d)
    w_ls = (torch.linalg.pinv(X) @ y.unsqueeze(-1)).squeeze(-1)  # (B, d), min-norm
    norm = w_ls.norm(dim=-1).clamp_min(1e-12)  # (B,)
    c, u = (w_ls.unsqueeze(1) @ V).squeeze(1), (w.unsqueeze(-2) @ V).squeeze(-2)  # in the eigenbasis
    r = (u - c).norm(dim=-1, keepdim=True)  # (loops, B, 1)
    z = torch.randn(u.shape, generator=generator, dtype=u.dtype)  # isotropic in any orthonormal basis
    both = torch.stack((u, c + r * z / z.norm(dim=-1, keepdim=True)))  # (2, loops, B, d): the model, the null
    out, ratio, fitted = {'to_ls': mean_sem(r.squeeze(-1) / norm), 'families': {}}, [], {}
    for name, phi in filters(lam).items():
        it = phi * c.unsqueeze(1)  # (B, P, d): the iterates
        dist = (both.pow(2).sum(-1, keepdim=True) - 2 * torch.einsum('...bd,bpd->...bp', both, it)
                + it.pow(2).sum(-1)).clamp_min(0).sqrt()  # (2, loops, B, P)
        # the nearest: the first within 1% (or float32's reading) of it, as past convergence the iterates tie
        idx = (dist <= 1.01 * dist.min(-1, keepdim=True).values + 1e-6 * norm[:, None]).double().argmax(-1)
        dist = dist.gather(-1, idx.unsqueeze(-1)).squeeze(-1) / norm  # (2, loops, B)
        grid = FAMILIES[name].log10() if name == 'ridge' else FAMILIES[name]
        out['families'][name] = {'dist': mean_sem(dist[0]), 'null': mean_sem(dist[1]),
                                 'param': mean_sem(grid[idx[0]])}
        ratio.append((dist[0].mean(-1) / dist[1].mean(-1)).nan_to_num(nan=math.inf))  # (loops,)
        fitted[name] = phi[torch.arange(len(c)), idx[0]]  # (loops, B, d): the filter at its fitted parameter
    best, near = torch.stack(ratio).min(0)
    out['nearest'] = [list(fitted)[i] for i in near.tolist()]  # the family nearest w, relative to the null's
    # no family's iterate describes a loop that is not linear, and at least squares they all converge
    out['explains'] = ['not linear' if not lin else 'least_squares' if ls < LS_TOL else
                       out['nearest'][t] if q < NULL_MARGIN else 'none'
                       for t, (lin, ls, q) in enumerate(zip(linear, out['to_ls']['mean'], best.tolist()))]
    # the spectral view: shrinkage 1 - w_i / (w_LS)_i in bins of lambda_i / lambda_max, weighted by (w_LS)_i^2
    x = lam.clamp_min(0) / lam[:, -1:]  # (B, d)
    lo = min(0.1, x[x > 1e-10].quantile(0.01).item())  # a decade at least; any below: the first bin
    edges = torch.logspace(math.log10(lo), 0, SPECTRUM_BINS + 1, dtype=torch.float64)
    bins = torch.nn.functional.one_hot(torch.bucketize(x, edges[1:-1]), SPECTRUM_BINS).double()  # (B, d, K)
    weight = (c.pow(2).unsqueeze(-1) * bins).sum((0, 1))  # (bins,); 0 in an empty bin: NaN, null in the json
    binned = lambda v: [[None if math.isnan(s) else s for s in row] for row in (
        1 - torch.einsum('lbd,bdk->lk', v[[t - 1 for t in loops]] * c, bins) / weight).tolist()]
    out['spectrum'] = {'loops': loops, 'edges': edges.tolist(), 'model': binned(u),
                       **{name: binned(f * c) for name, f in fitted.items()}}
    return out


@torch.no_grad()
def loop_lens(model, xs, ys, n_loops, n_keep=None, seed=0):
    """f_t, the model after loop t as a function of the query, as weights w_t = (f_t(sqrt(d) e_j) - f_t(0)) /
    sqrt(d): one pass over d + 2 copies per prompt (d probes, 0, its query; the causal mask hides each from
    the rest); affine_err, intercept: where f_t is not linear. A cut model: its kept examples, and all N."""
    B, P, d = xs.shape
    scale = d ** 0.5  # probes as long as a typical x
    queries = torch.cat((scale * torch.eye(d).expand(B, d, d), torch.zeros(B, 1, d), xs[:, -1:]), dim=1)
    copies = torch.cat((xs[:, None, :-1].expand(B, d + 2, P - 1, d), queries.unsqueeze(2)), dim=2)
    generator = make_generator(seed)  # one random cut per prompt and its copies, then the null's noise
    scores = torch.rand(B, P - 1, generator=generator)
    f = model_predictions(model, copies.flatten(0, 1), ys.repeat_interleave(d + 2, 0), n_loops, n_keep=n_keep,
                          scores=scores.repeat_interleave(d + 2, 0))[0].double().view(n_loops, B, d + 2)
    f_0, f_x = f[..., d], f[..., d + 1]  # (loops, B)
    w = (f[..., :d] - f_0.unsqueeze(-1)) / scale  # (loops, B, d)
    rms = f_x.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)  # a typical prediction, per loop
    affine_err, intercept = (f_x - f_0 - (w * xs[:, -1].double()).sum(-1)).abs() / rms, f_0.abs() / rms
    linear = (torch.maximum(affine_err.mean(1), intercept.mean(1)) < LENS_TOL).tolist()
    X, y = xs[:, :-1].double(), ys[:, :-1].double()  # (B, N, d), (B, N)
    keep = kept_examples(model.config, n_keep, scores, n_loops)  # (B, n) or None
    lens = {'n_prompts': B, 'probe_scale': scale, 'tol': LENS_TOL, 'ls_tol': LS_TOL,
            'null_margin': NULL_MARGIN, 'gd_max_steps': int(FAMILIES['gd'][-1]), 'params': PARAMS,
            'reference': 'all' if keep is None else 'kept',
            'affine_err': mean_sem(affine_err), 'intercept': mean_sem(intercept), 'linear': linear}
    if keep is not None:  # least squares on all N as well, and the kept examples for the families
        w_all = (torch.linalg.pinv(X) @ y.unsqueeze(-1)).squeeze(-1)  # (B, d)
        lens['to_ls_all'] = mean_sem((w - w_all).norm(dim=-1) / w_all.norm(dim=-1).clamp_min(1e-12))
        X, y = X.gather(1, keep.unsqueeze(-1).expand(-1, -1, d)), y.gather(1, keep)
    lens['n_reference'] = X.size(1)  # the examples least squares and the families are fitted on
    # the spectral view at b_train, every tenth loop and the last
    loops = sorted({1, model.config.n_loops, n_loops, *range(10, n_loops, 10)} & set(range(1, n_loops + 1)))
    return {**lens, **calibrated(w, X, y, linear, loops, generator)}


# ----- a run's eval.json, and the summary over runs

def evaluate_run(model, config, xs, ys, settings):
    """Everything eval.json holds: one model on the fixed prompts xs (B, N+1, d), ys (B, N+1), on the CPU."""
    b_train, max_loops, seed = config['n_loops'], settings['max_loops'], settings['seed']
    n_points, n_keep = xs.size(1) - 1, 0 if settings['full_context'] else None  # n_keep 0: no cut
    t0 = time.time()
    err_loops, fixed_point = model_errors(model, xs, ys, max_loops, 1, n_keep, seed)  # one pass: every loop
    t1 = time.time()
    print(f'  loop sweep to b = {max_loops}: {t1 - t0:.0f} s; the lens next, then the k sweep', flush=True)
    lens = loop_lens(model, xs[:LENS_PROMPTS], ys[:LENS_PROMPTS], max_loops, n_keep, seed)
    t2 = time.time()
    print(f'  lens: {t2 - t1:.0f} s; k sweep over k = 0..{n_points} (its later k cost the most)', flush=True)
    lo, hi = sorted((b_train, max_loops))  # error vs k: one pass per k, read out at loops lo..hi (both b)
    curves = []  # per k: {name: the query error per prompt}
    for k in range(n_points + 1):
        xs_k, ys_k = first_k(xs[:settings['k_prompts']], ys[:settings['k_prompts']], k)
        err, _ = model_errors(model, xs_k, ys_k, hi, lo, n_keep, seed)  # (hi - lo + 1, k_prompts)
        preds = baselines(xs_k, ys_k, settings['gd_steps'])
        curves.append({'model_b_train': err[b_train - lo], 'model_max_loops': err[max_loops - lo],
                       **{name: query_error(pred, ys_k, xs.size(2)) for name, pred in preds.items()}})
    return {'config': config, 'b_train': b_train, 'eval': settings,
            'loops': list(range(1, max_loops + 1)), 'err_vs_loops': mean_sem(err_loops),
            'fixed_point': [None if math.isnan(v) else v for v in fixed_point], 'k': list(range(len(curves))),
            'err_vs_k': {name: mean_sem(torch.stack([c[name] for c in curves])) for name in curves[0]},
            'lens': lens, 'seconds': {'loop_sweep': round(t1 - t0, 2), 'lens': round(t2 - t1, 2),
                                      'k_sweep': round(time.time() - t2, 2)}}


def reusable(path, identity, settings):
    """The eval.json at path if made with these settings, from this checkpoint with the calibrated lens
    (identity None: any), else None: a sweep evaluates only what is new. A ConfigError if damaged."""
    result = read_eval(path) if os.path.isfile(path) else {}
    stale = identity is not None and (result.get('checkpoint') != identity
                                      or 'explains' not in result.get('lens', {}))
    return None if stale or result.get('eval') != settings else dict(result, reused=True)


def print_summary(results, variants):
    """One line per variant [(label, indices)]: error at b_train, b = 50, max_loops, a few k; the lens."""
    config, e = results[0]['config'], results[0]['eval']
    N, d, B = config['n_points'], config['n_dims'], e['max_loops']
    ks = sorted({max(1, d // 2), d, 2 * d, N} & set(range(N + 1)))
    loops = sorted({min(50, B), B})  # the experiments' b = 50, and the last loop scored
    print(f'\nquery error (squared error / d), mean ± std over seeds, on {e["n_prompts"]} prompts (k '
          f'columns: the first {e["k_prompts"]}; lens at b_train: ||w_b - w_LS|| / ||w_LS||, what explains '
          f'w_b (nearer than {NULL_MARGIN:g} x a noise null as far from LS), the nearest vs the null):')
    rows = [['variant', 'seeds', 'b_train', 'at b_train', *(f'at b={b}' for b in loops),
             *(f'k={k} at b_train' for k in ks), 'w to LS at b_train', 'b_train explained by',
             'nearest vs null at b_train']]
    for label, idx in variants:
        rs, b = [results[i] for i in idx], results[idx[0]]['b_train']
        # each cell's values over seeds; None ('-') past max_loops, or with no calibrated lens ('explains')
        lens = b <= B and all('explains' in r.get('lens', {}) for r in rs)
        cells = [[r['err_vs_loops']['mean'][t - 1] for r in rs] if t <= B else None for t in [b, *loops]]
        cells += [[r['err_vs_k']['model_b_train']['mean'][k] for r in rs]
                  if all(k < len(r['k']) for r in rs) else None for k in ks]
        cells.append([r['lens']['to_ls']['mean'][b - 1] for r in rs] if lens else None)
        rows.append([label, str(len(rs)), str(b)] + ['-' if v is None else f'{np.mean(v):.4g}' + (
            f' ± {np.std(v, ddof=1):.2g}' if len(v) > 1 else '') for v in cells] + ['-'] * 2)
        if lens:  # what explains w_b in most seeds (in how many, where they differ); the nearest vs the null
            said, near = ([r['lens'][key][b - 1] for r in rs] for key in ('explains', 'nearest'))
            top, fam = (max(sorted(set(v)), key=v.count) for v in (said, near))  # ties: first alphabetically
            dist, null = (np.mean([r['lens']['families'][fam][key]['mean'][b - 1] for r in rs])
                          for key in ('dist', 'null'))
            rows[-1][-2:] = [top + (f' ({said.count(top)}/{len(said)})' if len(set(said)) > 1 else ''),
                             f'{fam} {dist:.2g} vs {null:.2g}']
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    for r in rows:
        print('  '.join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))


def options(argv):
    """(flags, the settings an eval.json records, run patterns, device), or a ConfigError (sweep's too)."""
    opts, _, _, patterns = parse(argv, DEFAULTS, usage=__doc__, helps=HELPS, files=False,
                                 lowest={'max_loops': 1, 'n_prompts': 2, 'gd_steps': 0})
    if not patterns:
        raise ConfigError('name the run directories: python eval_extrapolation.py out/RUN [out/RUN ...]')
    if not 0 <= opts['seed'] < 2 ** 32:
        raise ConfigError(f'--seed={opts["seed"]}: must be in 0..2**32 - 1')
    if opts['k_prompts'] < 0 or opts['k_prompts'] == 1:
        raise ConfigError(f'--k_prompts={opts["k_prompts"]}: must be 0 (all) or at least 2')
    settings = {key: value for key, value in opts.items() if key not in ('device', 'reuse', 'labels')}
    settings['k_prompts'] = min(opts['k_prompts'] or opts['n_prompts'], opts['n_prompts'])
    return opts, settings, patterns, check_device(opts['device'])


def main(argv):
    try:
        opts, settings, patterns, device = options(argv)
        runs = find_runs(patterns, ('ckpt.pt', 'model.pt', 'eval.json'))
        models, results = {}, {}  # every checkpoint loads before any eval.json is written
        for run in runs:
            found = [p for p in (os.path.join(run, f) for f in ('ckpt.pt', 'model.pt')) if os.path.isfile(p)]
            if found:  # model.pt: the trained weights, as results/ keeps them
                model, ckpt = load_model(found[0], device)
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
        b, B, err, s = result['b_train'], opts['max_loops'], result['err_vs_loops']['mean'], result['seconds']
        print(f'{path}: error at b_train={b} {f"{err[b - 1]:.4g}" if b <= B else "-"}, at b={B} '
              f'{err[B - 1]:.4g} ({"reused" if result.get("reused") else f"on {device}"}: loop sweep '
              f'{s["loop_sweep"]:.1f}s, k sweep {s["k_sweep"]:.1f}s)', flush=True)
    print_summary([results[run] for run in runs], variants)


if __name__ == '__main__':
    exit_on_errors()  # any I/O error not handled in main: one line, exit 2
    main(sys.argv[1:])
