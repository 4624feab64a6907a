"""
Tests of eval_extrapolation.py and plot.py: the baselines against their known errors, the one-pass loop sweep
against separate forward passes, the loop lens on stand-in models whose answer is known, eval.json of a tiny
trained run, checkpoints saved in other dtypes, the figures, and the command line's handling of bad flags.

    python -m pytest test_eval_plot.py
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_extrapolation
import plot
from configurator import find_runs, group_runs
from data import first_k, least_squares, make_generator, validation_set
from eval_extrapolation import baselines, loop_lens, model_errors, query_error
from model import LoopedGPT, LoopedGPTConfig

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ['--n_dims=3', '--n_points=6', '--max_iters=20', '--n_layer=1', '--n_head=2', '--n_embd=16',
        '--mlp_size=32', '--n_loops=3', '--loss_window=2', '--dims_start=0', '--points_start=0',
        '--val_prompts=32', '--eval_interval=10', '--log_interval=10', '--batch_size=16', '--device=cpu']
EVAL = ['--max_loops=6', '--n_prompts=64', '--device=cpu']
# these tests check numbers, not speed: one thread, because on cores shared with other jobs (as CI's are)
# OpenMP's threads wait on each other and tiny ops run 10-50x slower
torch.set_num_threads(1)


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                          cwd=HERE, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})


def exits(r, code=0):
    """That a script exited with code; if not, the assertion shows all it said."""
    assert r.returncode == code, f'exit status {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two tiny runs that differ only by seed, trained and evaluated through the command line."""
    out = tmp_path_factory.mktemp('out')
    dirs = []
    for seed in (1, 2):
        r = run('train.py', *TINY, f'--seed={seed}', f'--out_dir={out}', f'--run_name=tiny_s{seed}')
        exits(r)
        dirs.append(str(out / f'tiny_s{seed}'))
    r = run('eval_extrapolation.py', *dirs, *EVAL)
    exits(r)
    assert 'mean ± std over seeds' in r.stdout  # the summary table
    return dirs


def tiny_model(**kw):
    torch.manual_seed(0)
    return LoopedGPT(LoopedGPTConfig(n_dims=3, n_points=8, n_layer=1, n_head=2, n_embd=16, mlp_size=32,
                                     n_loops=3, loss_window=3, **kw)).eval()


# -----------------------------------------------------------------------------
# the baselines against what is known of them

def test_least_squares_and_zero_predictor_match_theory():
    d, N = 5, 10
    xs, ys = validation_set('linear', 4000, N, d, seed=0)
    zero = query_error(torch.zeros(xs.size(0)), ys, d)
    assert abs(zero.mean() - 1) < 4 * zero.std() / len(zero) ** 0.5  # predicting 0 scores about 1
    for k in range(N + 1):
        xs_k, ys_k = first_k(xs, ys, k)
        err = query_error(least_squares(xs_k, ys_k), ys_k, d)
        if k < d:  # the part of w outside the span of k examples is unknown: 1 - k/d of the variance
            sem = err.std() / len(err) ** 0.5
            assert abs(err.mean() - (1 - k / d)) < 4 * sem, (k, err.mean().item())
        else:
            assert err.mean() < 1e-6, (k, err.mean().item())


# -----------------------------------------------------------------------------
# the model's sweeps

@pytest.mark.parametrize('kw', [{}, {'n_keep': 3, 'select': 'random'}, {'inject': 'gated', 'causal': False}])
def test_one_pass_gives_every_loop_count(kw):
    model = tiny_model(**kw)
    xs, ys = validation_set('linear', 40, 8, 3, seed=3)
    errors, _ = model_errors(model, xs, ys, n_loops=7, seed=5)  # (7, B) from one pass
    assert errors.shape == (7, 40)
    for t in (1, 2, 3, 7):
        with torch.no_grad():  # a separate pass of t loops, its truncation drawn from the same seed
            scores = torch.rand(xs.size(0), xs.size(1) - 1, generator=make_generator(5))
            preds, _ = model(xs, ys, n_loops=t, loss_window=1, scores=scores)
        assert torch.allclose(errors[t - 1], query_error(preds[-1][:, -1], ys, 3), atol=1e-6), t
    # a window starting at loop 3 reads the same numbers
    late, _ = model_errors(model, xs, ys, n_loops=7, first_loop=3, seed=5)
    assert torch.allclose(late, errors[2:], atol=1e-6)


def test_full_context_runs_a_truncated_model_uncut():
    xs, ys = validation_set('linear', 40, 8, 3, seed=3)
    truncated, uncut = tiny_model(n_keep=3, select='random'), tiny_model()  # the same weights
    full, _ = model_errors(truncated, xs, ys, n_loops=5, n_keep=0)
    assert torch.equal(full, model_errors(uncut, xs, ys, n_loops=5)[0])
    assert not torch.allclose(full[-1], model_errors(truncated, xs, ys, n_loops=5)[0][-1])  # the cut matters


def test_fixed_point_matches_a_hand_run_loop():
    model = tiny_model()
    xs, ys = validation_set('linear', 40, 8, 3, seed=3)
    _, change = model_errors(model, xs, ys, n_loops=5)
    with torch.no_grad():
        e = model.embed(xs, ys)
        h, expected = torch.zeros_like(e), []
        for _ in range(5):
            h_new = model.one_loop(h, e)
            expected.append(((h_new - h).flatten(1).norm(dim=1) / h_new.flatten(1).norm(dim=1)).mean().item())
            h = h_new
    assert math.isnan(change[0])  # no h_0 in the hook
    assert change[1:] == pytest.approx(expected[1:], rel=1e-4)
    # a cut drops tokens: that loop has no like-for-like comparison, the ones after it do
    _, change = model_errors(tiny_model(n_keep=3), xs, ys, n_loops=5)
    assert math.isnan(change[0]) and math.isnan(change[1]) and all(math.isfinite(c) for c in change[2:])


def test_summary_reads_each_column_at_its_loop(capsys):
    """print_summary on hand-made results whose numbers name their place (after loop b the error is b, plus
    100 in the second seed): a wrong loop or k shows, and '-' stands where b_train is past max_loops. The
    lens: what explains b_train in most seeds (in how many, where they differ), the nearest family vs null."""
    def result(b_train, offset=0, said='ridge'):
        loops = range(1, 61)
        lens = {'to_ls': {'mean': [b / 1000 for b in loops]},
                'explains': [said if b == b_train else 'gd' for b in loops], 'nearest': ['newton'] * 60,
                'families': {'newton': {'dist': {'mean': [b / 100 for b in loops]},
                                        'null': {'mean': [b + offset for b in loops]}}}}
        return {'config': {'n_points': 4, 'n_dims': 2}, 'b_train': b_train, 'k': [0, 1, 2, 3, 4],
                'eval': {'max_loops': 60, 'n_prompts': 8, 'k_prompts': 8},
                'err_vs_loops': {'mean': [b + offset for b in loops]},
                'err_vs_k': {'model_b_train': {'mean': [1000 + k for k in range(5)]}},
                'lens': lens}
    eval_extrapolation.print_summary([result(10), result(10, 100), result(70), *(result(5, 0, s) for s in (
        'none', 'newton', 'none'))], [('a', [0, 1]), ('b', [2]), ('c', [3, 4, 5])])
    rows = [re.split(r' {2,}', row.strip()) for row in capsys.readouterr().out.splitlines()[-4:]]
    assert rows == [['variant', 'seeds', 'b_train', 'at b_train', 'at b=50', 'at b=60', 'k=1 at b_train',
                     'k=2 at b_train', 'k=4 at b_train', 'w to LS at b_train', 'b_train explained by',
                     'nearest vs null at b_train'],
                    ['a', '2', '10', '60 ± 71', '100 ± 71', '110 ± 71', '1001 ± 0', '1002 ± 0',
                     '1004 ± 0', '0.01 ± 0', 'ridge', 'newton 0.1 vs 60'],
                    ['b', '1', '70', '-', '50', '60', '1001', '1002', '1004', '-', '-', '-'],
                    ['c', '3', '5', '5 ± 0', '50 ± 0', '60 ± 0', '1001 ± 0', '1002 ± 0', '1004 ± 0',
                     '0.005 ± 0', 'none (2/3)', 'newton 0.05 vs 5']]


def test_a_run_path_that_exists_is_taken_as_it_is_and_a_pattern_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ('run[1]', 'run1', 'a*', 'ab'):
        os.makedirs(name)
        open(os.path.join(name, 'eval.json'), 'w').close()
    assert find_runs(['run[1]'], ['eval.json']) == ['run[1]']  # not run1, which [1] matches as a pattern
    assert find_runs(['a*'], ['eval.json']) == ['a*']
    assert find_runs(['a?', 'run?'], ['eval.json']) == ['a*', 'ab', 'run1']


def test_group_runs_by_config_less_seed():
    base = {'n_keep': 0, 'select': 'first', 'seed': 1, 'out_dir': 'a'}
    configs = [base, {**base, 'seed': 2, 'out_dir': 'b'}, {**base, 'n_keep': 32, 'select': 'random'},
               {**base, 'n_keep': 32, 'select': 'random', 'seed': 3}]
    assert group_runs(configs) == [('n_keep=0, select=first', [0, 1]), ('n_keep=32, select=random', [2, 3])]
    names = ['out/exp,n_keep=0,seed=1', 'out/exp,n_keep=0,seed=2']
    assert group_runs(configs[:2], names) == [('exp,n_keep=0', [0, 1])]
    # a run saved before --optimizer existed trained with AdamW: it is the same variant as one that says so
    assert group_runs([base, {**base, 'optimizer': 'adamw'}, {**base, 'optimizer': 'muon'}]) == [
        ('optimizer=adamw', [0, 1]), ('optimizer=muon', [2])]


# -----------------------------------------------------------------------------
# the loop lens, on stand-in models whose reading is known

class StandIn(torch.nn.Module):
    """A "model" whose loop t predicts f(t, xs, ys, scores) at the query: what the lens must read back.
    config: the LoopedGPTConfig fields the lens reads (b_train as n_loops, and the cut)."""

    def __init__(self, f, **config):
        super().__init__()
        self.f, self.ln_f = f, torch.nn.Identity()  # the sweep hooks ln_f (never run: no fixed-point data)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # the sweep reads the device off the parameters
        self.config = LoopedGPTConfig(**config)

    def forward(self, xs, ys, n_loops, loss_window, n_keep=None, scores=None):
        loops = range(n_loops - loss_window + 1, n_loops + 1)
        return [self.f(t, xs, ys, scores).float().unsqueeze(1) for t in loops], None  # the query's, last


# each family's iterate on one prompt, in plain numpy, step by step from w = 0
def gd_numpy(X, y, s):  # step 1 / the largest eigenvalue of XᵀX, as the gd baseline's
    w, step = np.zeros(X.shape[1]), 1 / np.linalg.eigvalsh(X.T @ X).max()
    for _ in range(s):
        w = w - step * X.T @ (X @ w - y)
    return w


def ridge_numpy(X, y, lam):
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def newton_numpy(X, y, k):  # Newton-Schulz towards (XᵀX)^-1 from XᵀX / lambda_max^2
    G = X.T @ X
    M = G / np.linalg.eigvalsh(G).max() ** 2
    for _ in range(k):
        M = 2 * M - M @ G @ M
    return M @ X.T @ y


def ls_numpy(X, y):
    return np.linalg.lstsq(X, y, rcond=None)[0]


def noisy_ls(scale):
    """Least squares plus isotropic noise of norm scale * ||w_LS||, the same for every copy of a prompt."""
    def weights(t, X, y):
        w, rng = ls_numpy(X, y), np.random.default_rng(int(np.abs(X).sum() * 1e6))
        z = rng.standard_normal(len(w))
        return w + scale * np.linalg.norm(w) * z / np.linalg.norm(z)
    return weights


def each_prompt(weights):
    """A stand-in's f from weights(t, X (k, d), y (k,)) -> w of one prompt: the prediction w . x_query."""
    def f(t, xs, ys, scores):
        X, Y, q = xs[:, :-1].double().numpy(), ys[:, :-1].double().numpy(), xs[:, -1].double().numpy()
        return torch.tensor([weights(t, X[i], Y[i]) @ q[i] for i in range(len(q))])
    return f


RIDGE = eval_extrapolation.FAMILIES['ridge'].tolist()  # the ridge lambdas the lens fits


@pytest.mark.parametrize('N, d', [(8, 3), (3, 5)])  # (3, 5): fewer examples than dimensions
def test_family_filters_are_the_iterates(N, d):
    """Each family's iterate from its filter, V diag(filter) Vᵀ w_LS, against the iteration itself."""
    xs, ys = validation_set('linear', 8, N, d, seed=1)
    X, y = xs[:, :-1].double(), ys[:, :-1].double()
    lam, V = torch.linalg.eigh(X.mT @ X)
    w_ls = torch.linalg.pinv(X) @ y.unsqueeze(-1)  # (B, d, 1)
    phi = eval_extrapolation.filters(lam)
    for family, brute, params in (('gd', gd_numpy, [0, 1, 3, 20, 200]), ('ridge', ridge_numpy, RIDGE[:-1:20]),
                                  ('newton', newton_numpy, [0, 1, 3, 6])):
        grid = eval_extrapolation.FAMILIES[family].tolist()
        for p in params:
            w = (V @ (phi[family][:, grid.index(p)].unsqueeze(-1) * (V.mT @ w_ls))).squeeze(-1)
            expected = [brute(X[i].numpy(), y[i].numpy(), p) for i in range(8)]
            assert np.allclose(w.numpy(), expected, rtol=1e-6, atol=1e-9), (family, p)


@pytest.mark.parametrize('family, weights, params', [
    ('gd', gd_numpy, [1, 2, 3, 4, 5, 6]), ('ridge', ridge_numpy, RIDGE[30:80:10]),
    ('newton', newton_numpy, [0, 1, 2, 3])])
def test_lens_reads_each_family_as_itself(family, weights, params):
    """Loop t of a stand-in is the family's iterate at params[t - 1]: the lens fits that parameter to every
    prompt, at distance 0, and names the family, clearly nearer than the noise null."""
    xs, ys = validation_set('linear', 24, 8, 3, seed=2)
    lens = loop_lens(StandIn(each_prompt(lambda t, X, y: weights(X, y, params[t - 1]))), xs, ys, len(params))
    assert lens['explains'] == [family] * len(params) and all(lens['linear'])
    fit = lens['families'][family]
    expected = np.log10(params) if family == 'ridge' else params
    assert fit['param']['mean'] == pytest.approx(expected) and max(fit['param']['sem']) < 1e-9
    assert max(fit['dist']['mean']) < 1e-5
    assert min(fit['null']['mean']) > 0.02  # the null is far from the family...
    assert min(lens['to_ls']['mean']) > eval_extrapolation.LS_TOL  # ...and w_t from least squares


@pytest.mark.parametrize('N, d', [(16, 3), (3, 5), (8, 1)])  # the review's: N < d, and d = 1
def test_lens_reads_least_squares_as_itself_and_noise_as_none(N, d):
    xs, ys = validation_set('linear', 64, N, d, seed=2)
    lens = loop_lens(StandIn(each_prompt(lambda t, X, y: ls_numpy(X, y))), xs, ys, n_loops=2)
    assert max(lens['to_ls']['mean']) < 1e-5 and lens['explains'] == ['least_squares'] * 2
    if d == 1:  # in one dimension every family holds least squares itself: there is no telling them apart
        return
    # least squares plus noise at 10% and 50% of its norm (the review's 10% read as "GD step 16.7")
    noisy = each_prompt(lambda t, X, y: noisy_ls(0.4 * t - 0.3)(t, X, y))
    lens = loop_lens(StandIn(noisy), xs, ys, n_loops=2)
    assert lens['to_ls']['mean'] == pytest.approx([0.1, 0.5], rel=1e-4) and lens['explains'] == ['none'] * 2


def test_lens_flags_what_is_not_linear():
    xs, ys = validation_set('linear', 24, 16, 3, seed=2)
    w_ls = each_prompt(lambda t, X, y: ls_numpy(X, y))
    # linear for two loops, then (w . x)^2: the reading is flagged from loop 3 on
    square = lambda t, xs, ys, scores: (w_ls(t, xs, ys, scores) ** (1 if t <= 2 else 2))
    lens = loop_lens(StandIn(square), xs, ys, n_loops=4)
    assert lens['linear'] == [True, True, False, False] and min(lens['affine_err']['mean'][2:]) > 0.1
    assert lens['explains'] == ['least_squares'] * 2 + ['not linear'] * 2
    # gradient descent's prediction bent by its square: its probes read no family
    gd = each_prompt(lambda t, X, y: gd_numpy(X, y, t))
    bent = lambda t, xs, ys, scores: gd(t, xs, ys, scores) + 0.3 * gd(t, xs, ys, scores) ** 2
    assert loop_lens(StandIn(bent), xs, ys, n_loops=3)['explains'] == ['not linear'] * 3
    # an intercept: the slope still reads as least squares, and the loop is flagged
    lens = loop_lens(StandIn(lambda t, xs, ys, s: w_ls(t, xs, ys, s) + 1), xs, ys, n_loops=2)
    assert max(lens['to_ls']['mean']) < 1e-5 and min(lens['intercept']['mean']) > 0.1
    assert not any(lens['linear'])


@pytest.mark.parametrize('family, weights, p, shrink', [
    ('gd', gd_numpy, 3, lambda lam, p: (1 - lam / lam.max()) ** p),
    ('ridge', ridge_numpy, RIDGE[60], lambda lam, p: p / (lam + p))])
def test_spectral_view_is_the_shrinkage_per_eigenvalue(family, weights, p, shrink):
    """The binned shrinkage of a family's iterate: (w_LS)_i^2-weighted means of the filter's shrinkage per bin
    of lambda / lambda_max, computed here from numpy's eigenvectors; the family's own curve at its fitted
    parameter the same; least squares 0 and the zero predictor 1 in every bin."""
    xs, ys = validation_set('linear', 32, 10, 5, seed=3)
    fs = {1: weights, 2: lambda X, y, p: ls_numpy(X, y), 3: lambda X, y, p: 0 * ls_numpy(X, y)}
    spec = loop_lens(StandIn(each_prompt(lambda t, X, y: fs[t](X, y, p)), n_loops=2), xs, ys, 3)['spectrum']
    assert spec['loops'] == [1, 2, 3] and len(spec['edges']) == eval_extrapolation.SPECTRUM_BINS + 1
    num, den = np.zeros(eval_extrapolation.SPECTRUM_BINS), np.zeros(eval_extrapolation.SPECTRUM_BINS)
    for X, y in zip(xs[:, :-1].double().numpy(), ys[:, :-1].double().numpy()):
        lam, V = np.linalg.eigh(X.T @ X)
        c2 = (V.T @ ls_numpy(X, y)) ** 2
        bins = np.clip(np.searchsorted(spec['edges'], lam / lam.max()) - 1, 0, len(num) - 1)
        np.add.at(num, bins, shrink(lam, p) * c2)
        np.add.at(den, bins, c2)
    assert spec['model'][0] == pytest.approx(num / den, abs=1e-5)
    assert spec[family][0] == pytest.approx(num / den, abs=1e-5)
    assert spec['model'][1] == pytest.approx([0] * len(num), abs=1e-5)
    assert spec['model'][2] == pytest.approx([1] * len(num), abs=1e-5)


@pytest.mark.parametrize('select', ['first', 'last', 'random', 'shuffle'])
def test_lens_reads_a_cut_model_against_the_examples_it_keeps(select):
    """A stand-in cut to 3 of 8 examples in d = 5 that runs least squares (loop 1) and 2 steps of gradient
    descent (loop 2) on the examples it keeps, chosen here from the scores as model.py's select chooses."""
    def f(t, xs, ys, scores):
        X, Y, q = xs[:, :-1].double().numpy(), ys[:, :-1].double().numpy(), xs[:, -1].double().numpy()
        keep = {'first': [[0, 1, 2]] * len(q), 'last': [[5, 6, 7]] * len(q)}.get(select)
        keep = (-scores.numpy()).argsort(1)[:, :3] if keep is None else keep
        fit = ls_numpy if t == 1 else lambda X, y: gd_numpy(X, y, 2)
        return torch.tensor([fit(X[i, k], Y[i, k]) @ q[i] for i, k in enumerate(keep)])
    xs, ys = validation_set('linear', 32, 8, 5, seed=4)
    model = StandIn(f, n_keep=3, select=select, truncate_after=0)
    lens = loop_lens(model, xs, ys, n_loops=2, seed=7)
    assert lens['reference'] == 'kept' and lens['n_reference'] == 3
    assert lens['to_ls']['mean'][0] < 1e-5 and min(lens['to_ls_all']['mean']) > 0.3  # 3 < d: not w
    assert lens['explains'] == ['least_squares', 'gd'] and lens['families']['gd']['param']['mean'][1] == 2
    # model.py keeps those very examples
    scores = torch.rand(32, 8, generator=make_generator(7))
    kept = eval_extrapolation.kept_examples(model.config, None, scores, 2).sort(1).values
    assert torch.equal(kept, tiny_model(n_keep=3, select=select).select(8, 3, scores).sort(1).values)
    # run uncut (--full_context), or cut after the last loop: all N examples are the reference
    assert loop_lens(model, xs, ys, n_loops=2, n_keep=0)['reference'] == 'all'
    late = StandIn(f, n_keep=3, truncate_after=2).config
    assert eval_extrapolation.kept_examples(late, None, scores, 2) is None


def test_lens_gives_every_copy_of_a_prompt_the_same_random_cut():
    """A stand-in whose slope is its first truncation score: linear only if the probes share the cut."""
    xs, ys = validation_set('linear', 24, 8, 3, seed=2)
    lens = loop_lens(StandIn(lambda t, xs, ys, scores: scores[:, 0] * xs[:, -1].sum(1)), xs, ys, n_loops=2)
    assert max(lens['affine_err']['mean']) < 1e-5 and all(lens['linear'])


@pytest.mark.parametrize('kw', [{}, {'causal': False}, {'n_keep': 3, 'select': 'random'}])
def test_lens_matches_a_pass_per_probe_of_a_real_model(kw):
    """The lens's one pass over all the probes against a forward pass per probe, with the same random cut:
    the same w_t, with the causal mask or without it (then the probe changes the examples' states too)."""
    model, (xs, ys) = tiny_model(**kw), validation_set('linear', 16, 8, 3, seed=3)
    lens = loop_lens(model, xs, ys, n_loops=4, seed=5)
    scores = torch.rand(16, 8, generator=make_generator(5))

    def f(query):  # the prediction at this query after loops 1..4: (4, B)
        with torch.no_grad():
            preds, _ = model(torch.cat((xs[:, :-1], query.expand(16, 1, 3)), dim=1), ys, n_loops=4,
                             loss_window=4, scores=scores)
        return torch.stack([p[:, -1] for p in preds]).double()
    probes = 3 ** 0.5 * torch.eye(3)  # as long as a typical x
    w = torch.stack([f(p) - f(torch.zeros(3)) for p in probes], dim=-1) / 3 ** 0.5  # (4, B, 3)
    w_ls = torch.linalg.lstsq(xs[:, :-1].double(), ys[:, :-1].double().unsqueeze(-1)).solution.squeeze(-1)
    to_ls = ((w - w_ls).norm(dim=-1) / w_ls.norm(dim=-1)).mean(1)
    # a cut model's to_ls is to least squares on the examples it keeps (here 3 = d: w, as on all 8)
    key = 'to_ls_all' if kw.get('n_keep') else 'to_ls'
    assert lens[key]['mean'] == pytest.approx(to_ls.tolist(), rel=1e-4)
    assert lens['to_ls']['mean'] == pytest.approx(to_ls.tolist(), rel=1e-3)


# -----------------------------------------------------------------------------
# a tiny trained run, end to end

def test_eval_json_has_every_key(runs):
    with open(os.path.join(runs[0], 'eval.json')) as f:
        r = json.load(f)
    for key in ('config', 'b_train', 'eval', 'loops', 'err_vs_loops', 'fixed_point', 'k', 'err_vs_k', 'lens',
                'seconds'):
        assert key in r, key
    assert r['b_train'] == 3 and r['config']['seed'] == 1
    assert r['eval'] == {'max_loops': 6, 'n_prompts': 64, 'k_prompts': 64, 'seed': 0, 'full_context': False,
                         'gd_steps': 10}
    assert r['loops'] == [1, 2, 3, 4, 5, 6] and r['k'] == list(range(7))
    assert len(r['err_vs_loops']['mean']) == len(r['err_vs_loops']['sem']) == len(r['fixed_point']) == 6
    assert set(r['err_vs_k']) == {'model_b_train', 'model_max_loops', 'least_squares', 'ridge', 'knn',
                                  'averaging', 'gd'}
    for curve in r['err_vs_k'].values():
        assert len(curve['mean']) == len(curve['sem']) == 7
        assert all(math.isfinite(v) for v in curve['mean'] + curve['sem'])
    # the k sweep at k = N and the loop sweep score the same prompts
    at_n, loops = r['err_vs_k'], r['err_vs_loops']['mean']
    assert at_n['model_b_train']['mean'][6] == pytest.approx(loops[2], rel=1e-6)
    assert at_n['model_max_loops']['mean'][6] == pytest.approx(loops[5], rel=1e-6)
    assert max(r['err_vs_k']['least_squares']['mean'][3:]) < 1e-6  # k >= d: exact
    assert r['err_vs_k']['model_b_train']['mean'][0] == pytest.approx(1, abs=0.5)  # no examples: a guess
    lens = r['lens']
    assert lens['n_prompts'] == 64 and lens['probe_scale'] == pytest.approx(3 ** 0.5)
    assert len(lens['linear']) == 6
    stats = [lens[key] for key in ('to_ls', 'affine_err', 'intercept')]
    stats += [fit[key] for fit in lens['families'].values() for key in ('dist', 'null', 'param')]
    assert list(lens['families']) == ['gd', 'ridge', 'newton']
    for stat in stats:
        assert len(stat['mean']) == len(stat['sem']) == 6
        assert all(math.isfinite(v) for v in stat['mean'] + stat['sem'])
    assert lens['reference'] == 'all' and lens['n_reference'] == 6 and 'to_ls_all' not in lens
    assert len(lens['explains']) == len(lens['nearest']) == 6
    assert set(lens['explains']) <= {'gd', 'ridge', 'newton', 'least_squares', 'none', 'not linear'}
    spectrum = lens['spectrum']  # loop 1, b_train and the last: model and families, a number or null per bin
    assert spectrum['loops'] == [1, 3, 6] and len(spectrum['edges']) == eval_extrapolation.SPECTRUM_BINS + 1
    for key in ('model', 'gd', 'ridge', 'newton'):
        assert len(spectrum[key]) == 3 and all(len(row) == eval_extrapolation.SPECTRUM_BINS
                                               for row in spectrum[key]), key


def test_eval_reuses_only_a_matching_eval_json(runs, tmp_path, capsys):
    dst = str(tmp_path / 'copy')
    shutil.copytree(runs[0], dst)
    eval_json = os.path.join(dst, 'eval.json')
    eval_extrapolation.main([dst, *EVAL])
    assert '(reused' in capsys.readouterr().out
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])  # other settings: evaluated again, and written
    assert '(on cpu' in capsys.readouterr().out
    with open(eval_json) as f:
        assert json.load(f)['eval']['gd_steps'] == 3
    os.utime(os.path.join(dst, 'ckpt.pt'))  # the same weights, touched: still the eval.json's
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])
    assert '(reused' in capsys.readouterr().out
    ckpt = torch.load(os.path.join(dst, 'ckpt.pt'), weights_only=True)  # other weights, as after a resume
    ckpt['model']['read_out.bias'] += 1e-3
    torch.save(ckpt, os.path.join(dst, 'ckpt.pt'))
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])
    assert '(on cpu' in capsys.readouterr().out
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3', '--reuse=False'])
    assert '(on cpu' in capsys.readouterr().out


def test_eval_takes_a_committed_eval_json_without_its_checkpoint(runs, tmp_path, capsys):
    dst = str(tmp_path / 'committed')
    shutil.copytree(runs[0], dst, ignore=shutil.ignore_patterns('ckpt.pt', 'model.pt'))
    eval_extrapolation.main([dst, *EVAL])
    assert '(reused' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:  # nothing to compute other settings from
        eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])
    assert exit.value.code == 2 and 'no ckpt.pt or model.pt to evaluate' in capsys.readouterr().err


def test_a_finished_run_keeps_its_weights_alone_and_they_evaluate_as_its_ckpt(runs, tmp_path, capsys):
    """model.pt (what results/ commits of a run): the final weights without optimizer state, which eval reads
    as it reads ckpt.pt: the eval.json made from the checkpoint is reused, and computed again is the same."""
    weights, ckpt = (torch.load(os.path.join(runs[0], f), weights_only=True)
                     for f in ('model.pt', 'ckpt.pt'))
    assert 'optimizer' not in weights and weights['iter'] == ckpt['iter'] == 20
    assert all(torch.equal(weights['model'][k], ckpt['model'][k]) for k in ckpt['model'])
    dst = str(tmp_path / 'committed')
    shutil.copytree(runs[0], dst, ignore=shutil.ignore_patterns('ckpt.pt'))
    eval_extrapolation.main([dst, *EVAL])
    assert '(reused' in capsys.readouterr().out
    eval_extrapolation.main([dst, *EVAL, '--reuse=False'])
    assert '(on cpu' in capsys.readouterr().out
    with open(os.path.join(runs[0], 'eval.json')) as f, open(os.path.join(dst, 'eval.json')) as g:
        assert json.load(f)['err_vs_loops'] == json.load(g)['err_vs_loops']


@pytest.mark.parametrize('old', ['no lens', 'uncalibrated'])
def test_an_eval_json_from_before_the_lens(runs, tmp_path, capsys, old):
    """results/ holds eval.json files without the lens, or with one from before its calibration (no
    'explains'): with no checkpoint they are read as they are (summary and figures, without the lens);
    with one, evaluated again."""
    def without_lens(dst, ignore=()):
        shutil.copytree(runs[0], dst, ignore=shutil.ignore_patterns(*ignore))  # copy2: the same mtime
        with open(os.path.join(dst, 'eval.json')) as f:
            r = json.load(f)
        if old == 'no lens':
            del r['lens']
        else:  # the keys the old lens had (its GD steps: here the GD family's), and no others
            r['lens']['gd_step'] = r['lens']['families']['gd']['param']
            r['lens'] = {k: v for k, v in r['lens'].items() if k in (
                'n_prompts', 'probe_scale', 'gd_max_steps', 'tol', 'to_ls', 'gd_step', 'affine_err',
                'intercept', 'linear')}
        with open(os.path.join(dst, 'eval.json'), 'w') as f:
            json.dump(r, f)

    committed, checkpointed = str(tmp_path / 'committed'), str(tmp_path / 'checkpointed')
    without_lens(committed, ['ckpt.pt', 'model.pt'])  # no weights: as committed before model.pt
    eval_extrapolation.main([committed, *EVAL])
    out = capsys.readouterr().out
    assert '(reused' in out and 'b_train explained by' in out
    assert out.splitlines()[-1].split()[-3:] == ['-'] * 3  # the summary's lens columns
    plot.main([committed, f'--out={tmp_path / "figs"}'])
    assert 'lens: skipped' in capsys.readouterr().out
    assert (tmp_path / 'figs' / 'extrapolation.png').is_file()
    assert not (tmp_path / 'figs' / 'lens.png').exists()
    without_lens(checkpointed)
    eval_extrapolation.main([checkpointed, *EVAL])
    out = capsys.readouterr().out
    assert '(on cpu' in out and out.splitlines()[-1].split()[-3:] != ['-'] * 3
    with open(os.path.join(checkpointed, 'eval.json')) as f:
        assert 'explains' in json.load(f)['lens']


def test_eval_labels_name_the_summary_rows(runs, capsys):
    eval_extrapolation.main([*runs, *EVAL, '--labels=tiny_s1=two seeds'])
    rows = capsys.readouterr().out.splitlines()
    assert any(row.startswith('two seeds ') for row in rows)
    assert not any(row.startswith('tiny_s1') for row in rows)
    before = {f: os.path.getmtime(os.path.join(runs[0], f)) for f in os.listdir(runs[0])}
    with pytest.raises(SystemExit) as exit_info:
        eval_extrapolation.main([*runs, *EVAL, '--labels=nope=x', '--reuse=False'])
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: --labels: 'nope=x'")
    assert {f: os.path.getmtime(os.path.join(runs[0], f)) for f in os.listdir(runs[0])} == before


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_checkpoint_saved_in_another_dtype(runs, tmp_path, dtype):
    src, dst = runs[0], str(tmp_path / 'converted')
    shutil.copytree(src, dst)
    ckpt = torch.load(os.path.join(dst, 'ckpt.pt'), weights_only=True)
    ckpt['model'] = {k: v.to(dtype) for k, v in ckpt['model'].items()}
    torch.save(ckpt, os.path.join(dst, 'ckpt.pt'))
    eval_extrapolation.main([dst, *EVAL])
    with open(os.path.join(src, 'eval.json')) as f:
        original = json.load(f)['err_vs_loops']['mean']
    with open(os.path.join(dst, 'eval.json')) as f:
        converted = json.load(f)['err_vs_loops']['mean']
    # float64 holds float32 weights exactly; bfloat16 rounds them
    assert converted == pytest.approx(original, rel=1e-5 if dtype == torch.float64 else 0.1)


def test_plot_writes_every_figure(runs, tmp_path, capsys):
    out = tmp_path / 'figs'
    r = run('plot.py', *runs, f'--out={out}')
    exits(r)
    for name in ('performance', 'loss_comparison', 'extrapolation', 'error_vs_examples', 'lens'):
        svg, png = (out / f'{name}.svg').read_bytes(), (out / f'{name}.png').read_bytes()
        assert b'<svg' in svg[:1000] and len(svg) > 5000, name
        assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000, name
    # a run with no eval.json yet: the training figures only, the others skipped with a message
    bare = tmp_path / 'bare'
    bare.mkdir()
    for f in ('config.json', 'log.csv'):
        shutil.copy(os.path.join(runs[0], f), bare / f)
    plot.main([str(bare), f'--out={tmp_path / "figs_bare"}'])
    printed = capsys.readouterr().out
    assert all(f'{name}: skipped' in printed for name in ('extrapolation', 'error_vs_examples', 'lens'))
    assert (tmp_path / 'figs_bare' / 'performance.png').is_file()
    assert not (tmp_path / 'figs_bare' / 'extrapolation.png').exists()


# -----------------------------------------------------------------------------
# the command line

def test_eval_rejects_a_bad_flag(runs):
    before = {f: os.path.getmtime(os.path.join(runs[0], f)) for f in os.listdir(runs[0])}
    r = run('eval_extrapolation.py', runs[0], '--max_loop=5')
    exits(r, 2)
    assert r.stderr.startswith("error: --max_loop: unknown key 'max_loop' (did you mean max_loops?)"), \
        r.stderr
    assert r.stderr.count('\n') == 1, r.stderr
    assert 'Traceback' not in r.stderr and r.stdout == ''
    assert {f: os.path.getmtime(os.path.join(runs[0], f)) for f in os.listdir(runs[0])} == before


@pytest.mark.parametrize('argv', [['--max_loops=abc'], ['--full_context=maybe'], ['--n_prompts=1'],
                                  ['--max_loops'], ['--k_prompts=1'], []])
def test_eval_bad_values_exit_2(runs, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        eval_extrapolation.main(([runs[0]] if argv else []) + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1


def test_only_relabels_the_kept_variants():
    """--only keeps variants by their full label, then labels them by what differs among the kept ones."""
    runs = [{'config': {'pos_emb': pe, 'n_loops': b, 'seed': seed}, 'dir': f'out/{pe},{b},{seed}'}
            for pe in ('none', 'learned') for b in (1, 5) for seed in (1, 2)]
    kept, variants = plot.select_variants(runs, ['n_loops=5'], '')
    assert [label for label, _ in variants] == ['pos_emb=none', 'pos_emb=learned']
    assert [sorted(kept[i]['config']['seed'] for i in idx) for _, idx in variants] == [[1, 2], [1, 2]]
    assert all(kept[i]['config']['n_loops'] == 5 for _, idx in variants for i in idx)
    _, variants = plot.select_variants(runs, [], 'pos_emb=none, n_loops=1=plain;')  # ';': names hold ','
    assert [label for label, _ in variants][0] == 'plain' and len(variants) == 4


def test_band_stays_within_the_seeds():
    """Two seeds that solve the task and one that does not: mean ± std would reach below zero, and
    the band stops at the lowest seed instead (and at the highest, were mean + std above it)."""
    mean, std = plot.mean_std(np.array([[0.01, 1.0], [0.02, 1.1], [1.0, 1.2]]))
    low, high = plot.band(mean, std, np.array([[0.01, 1.0], [0.02, 1.1], [1.0, 1.2]]))
    assert low[0] == 0.01 and high[0] == pytest.approx(mean[0] + std[0])
    assert low[1] == pytest.approx(1.0) and high[1] == pytest.approx(1.2)
    low, _ = plot.band(mean, std)  # one seed's sem band: only the floor at mean / 1000
    assert low[0] == pytest.approx(mean[0] / 1000)


def test_draw_shades_the_band_within_the_seeds():
    """draw's band on a real axis: within the range the seeds span (mean - std would reach below zero), a lone
    run's sem over prompts where it has one, and no band for a lone run without."""
    fig, ax = plot.plt.subplots()
    seeds = [([1, 2], [0.01, 1.0]), ([1, 2], [0.02, 1.1]), ([1, 2], [1.0, 1.2])]
    x, mean = plot.draw(ax, seeds, 'C0', 'three seeds')
    assert list(x) == [1, 2] and list(mean) == pytest.approx([1.03 / 3, 1.1])
    band = ax.collections[-1].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.01) and band.max() == pytest.approx(1.2)
    plot.draw(ax, seeds[:1], 'C1', sem=[0.001, 0.1])
    band = ax.collections[-1].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.009) and band.max() == pytest.approx(1.1)
    bands = len(ax.collections)
    plot.draw(ax, seeds[:1], 'C2')
    assert len(ax.collections) == bands
    # an eval.json curve of a single seed: the band is its sem
    run = {'eval': {'loops': [1, 2], 'err_vs_loops': {'mean': [0.5, 0.25], 'sem': [0.1, 0.05]}}}
    plot.draw_eval(ax, [run], 'C3', 'one seed', 'err_vs_loops')
    band = ax.collections[-1].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.2) and band.max() == pytest.approx(0.6)
    plot.plt.close(fig)


def test_the_lens_draws_both_parts_of_linear_that_its_marks_read(runs, monkeypatch):
    """An x marks a loop whose affine error or intercept is above the tolerance: the last panel draws both."""
    figures = []
    monkeypatch.setattr(plot, 'finish', lambda fig, *args: figures.append(fig))
    plot.plot_lens([('tiny', 'C0', [plot.load_run(r) for r in runs])], None, 'lens')
    lens = [plot.load_run(r)['eval']['lens'] for r in runs]
    drawn = [line.get_ydata() for line in figures[0].axes[2].get_lines() if len(line.get_ydata()) > 1]
    for key in ('affine_err', 'intercept'):
        mean = np.mean([ln[key]['mean'] for ln in lens], axis=0)
        assert any(np.allclose(y, mean) for y in drawn), key


def test_plot_rejects_unknown_variant(runs, tmp_path, capsys):
    for argv in (['--only=nothing_like_this'], ['--labels=nope=x'], ['--outdir=x']):
        with pytest.raises(SystemExit) as exit_info:
            plot.main([*runs, f'--out={tmp_path}', *argv])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith('error: ')
    assert not list(tmp_path.iterdir())  # nothing written


# -----------------------------------------------------------------------------
# each baseline against a brute-force computation, one prompt at a time in numpy

def test_baselines_match_brute_force():
    xs, ys = validation_set('linear', 6, 7, 3, seed=4)
    preds = baselines(xs, ys, gd_steps=4)
    assert list(preds) == list(eval_extrapolation.BASELINES)  # the order of eval.json's curves
    X, Y = xs.double().numpy(), ys.double().numpy()
    for i in range(6):
        A, y, q = X[i, :-1], Y[i, :-1], X[i, -1]
        w_avg = sum(y[j] * A[j] for j in range(7)) / 7
        assert preds['averaging'][i].item() == pytest.approx(q @ w_avg, rel=1e-5)
        near = sorted(range(7), key=lambda j: np.linalg.norm(A[j] - q))[:3]
        assert preds['knn'][i].item() == pytest.approx(np.mean([y[j] for j in near]), rel=1e-5)
        w_ridge = np.linalg.solve(A.T @ A + 0.1 * np.eye(3), A.T @ y)
        assert preds['ridge'][i].item() == pytest.approx(q @ w_ridge, rel=1e-5)
        w, lr = np.zeros(3), 1 / np.linalg.eigvalsh(A.T @ A).max()
        for _ in range(4):
            w = w - lr * (A.T @ (A @ w - y))
        assert preds['gd'][i].item() == pytest.approx(q @ w, rel=1e-5)
        w_ls = np.linalg.lstsq(A, y, rcond=None)[0]
        assert preds['least_squares'][i].item() == pytest.approx(q @ w_ls, rel=1e-4, abs=1e-5)
    # with no examples, every baseline predicts 0
    assert all(torch.equal(p, torch.zeros(6)) for p in baselines(*first_k(xs, ys, 0)).values())
