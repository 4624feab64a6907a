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
from configurator import group_runs
from data import first_k, least_squares, make_generator, validation_set
from eval_extrapolation import baselines, gd_path, loop_lens, model_errors, query_error
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
    100 in the second seed): a wrong loop or k shows, and '-' stands where b_train is past max_loops."""
    def result(b_train, offset=0):
        loops = range(1, 61)
        return {'config': {'n_points': 4, 'n_dims': 2}, 'b_train': b_train, 'k': [0, 1, 2, 3, 4],
                'eval': {'max_loops': 60, 'n_prompts': 8, 'k_prompts': 8},
                'err_vs_loops': {'mean': [b + offset for b in loops]},
                'err_vs_k': {'model_b_train': {'mean': [1000 + k for k in range(5)]}},
                'lens': {'to_ls': {'mean': [b / 1000 for b in loops]},
                         'gd_step': {'mean': [2 * b for b in loops]}}}
    eval_extrapolation.print_summary([result(10), result(10, 100), result(70)], [('a', [0, 1]), ('b', [2])])
    rows = [re.split(r' {2,}', row.strip()) for row in capsys.readouterr().out.splitlines()[-3:]]
    assert rows == [['variant', 'seeds', 'b_train', 'at b_train', 'at b=50', 'at b=60', 'k=1 at b_train',
                     'k=2 at b_train', 'k=4 at b_train', 'w to LS at b_train', 'GD step at b_train'],
                    ['a', '2', '10', '60 ± 71', '100 ± 71', '110 ± 71', '1001 ± 0', '1002 ± 0',
                     '1004 ± 0', '0.01 ± 0', '20 ± 0'],
                    ['b', '1', '70', '-', '50', '60', '1001', '1002', '1004', '-', '-']]


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
    """A "model" whose loop t predicts f(t, xs, ys, scores) at the query: what the lens must read back."""

    def __init__(self, f):
        super().__init__()
        self.f, self.ln_f = f, torch.nn.Identity()  # the sweep hooks ln_f (never run: no fixed-point data)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # the sweep reads the device off the parameters

    def forward(self, xs, ys, n_loops, loss_window, n_keep=None, scores=None):
        loops = range(n_loops - loss_window + 1, n_loops + 1)
        return [self.f(t, xs, ys, scores).float().unsqueeze(1) for t in loops], None  # the query's, last


def gd_numpy(X, y, n_steps, c):
    """n_steps of gradient descent from 0 on one prompt's mean squared error, step c / k, in plain numpy."""
    w = np.zeros(X.shape[1])
    for _ in range(n_steps):
        w = w - c / len(y) * X.T @ (X @ w - y)
    return w


def each_prompt(weights):
    """A stand-in's f from weights(X (k, d), y (k,)) -> w of one prompt: the prediction w . x_query."""
    def f(t, xs, ys, scores):
        X, Y, q = xs[:, :-1].double().numpy(), ys[:, :-1].double().numpy(), xs[:, -1].double().numpy()
        return torch.tensor([weights(t, X[i], Y[i]) @ q[i] for i in range(len(q))])
    return f


def test_gd_path_is_gradient_descent_at_its_best_step_size():
    xs, ys = validation_set('linear', 16, 8, 3, seed=1)
    path, sizes, w_ls = gd_path(xs, ys, n_steps=20)
    X, Y = xs[:, :-1].double().numpy(), ys[:, :-1].double().numpy()
    assert np.allclose(w_ls.numpy(), [np.linalg.lstsq(X[i], Y[i], rcond=None)[0] for i in range(16)])
    assert sizes[0] == 0 and np.all(path[0].numpy() == 0) and len(path) == len(sizes) == 21
    for s in (1, 3, 20):
        assert np.allclose(path[s].numpy(), [gd_numpy(X[i], Y[i], s, sizes[s]) for i in range(16)])
        # the step size is the grid's best for s: nearest least squares, mean over prompts
        w = w_ls.numpy()
        dist = [np.mean([np.sum((gd_numpy(X[i], Y[i], s, c) - w[i]) ** 2) / np.sum(w[i] ** 2)
                         for i in range(16)]) for c in eval_extrapolation.GD_STEP_SIZES.tolist()]
        assert sizes[s] == eval_extrapolation.GD_STEP_SIZES[int(np.nanargmin(dist))].item(), s


def test_lens_reads_loop_t_of_gradient_descent_as_step_t():
    xs, ys = validation_set('linear', 24, 8, 3, seed=2)
    _, sizes, _ = gd_path(xs, ys)
    lens = loop_lens(StandIn(each_prompt(lambda t, X, y: gd_numpy(X, y, t, sizes[t]))), xs, ys, n_loops=6)
    assert lens['gd_step']['mean'] == [1, 2, 3, 4, 5, 6] and lens['gd_step']['sem'] == [0] * 6
    assert max(lens['to_gd']['mean']) < 1e-5 and max(lens['affine_err']['mean']) < 1e-5
    assert all(lens['linear'])
    assert 0.05 < lens['to_ls']['mean'][-1] < lens['to_ls']['mean'][0] < 1  # on its way to least squares


def test_lens_reads_least_squares_at_distance_0_and_flags_what_is_not_linear():
    xs, ys = validation_set('linear', 24, 16, 3, seed=2)  # N = 16: GD reaches w_LS well within its 200 steps
    w_ls = lambda t, X, y: np.linalg.lstsq(X, y, rcond=None)[0]
    lens = loop_lens(StandIn(each_prompt(w_ls)), xs, ys, n_loops=3)
    assert max(lens['to_ls']['mean']) < 1e-5 and all(lens['linear']) and max(lens['intercept']['mean']) < 1e-6
    # as many GD steps as GD takes to reach it (the fewest of the steps that tie, past convergence)
    path, _, w = gd_path(xs, ys)
    converged = ((path - w).norm(dim=-1) / w.norm(dim=-1) < 5e-7).double().argmax(0).double()  # first such s
    assert 10 < lens['gd_step']['mean'][0] <= converged.mean() and len(set(lens['gd_step']['mean'])) == 1
    # linear for two loops, then (w . x)^2: the reading is flagged from loop 3 on
    square = lambda t, xs, ys, scores: (each_prompt(w_ls)(t, xs, ys, scores) ** (1 if t <= 2 else 2))
    lens = loop_lens(StandIn(square), xs, ys, n_loops=4)
    assert lens['linear'] == [True, True, False, False] and min(lens['affine_err']['mean'][2:]) > 0.1
    # an intercept: the slope still reads as least squares, and the loop is flagged
    lens = loop_lens(StandIn(lambda t, xs, ys, s: each_prompt(w_ls)(t, xs, ys, s) + 1), xs, ys, n_loops=2)
    assert max(lens['to_ls']['mean']) < 1e-5 and min(lens['intercept']['mean']) > 0.1
    assert not any(lens['linear'])


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
    assert lens['to_ls']['mean'] == pytest.approx(to_ls.tolist(), rel=1e-4)


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
    for key in ('to_ls', 'gd_step', 'to_gd', 'affine_err', 'intercept'):
        assert len(lens[key]['mean']) == len(lens[key]['sem']) == 6, key
        assert all(math.isfinite(v) and v >= 0 for v in lens[key]['mean'] + lens[key]['sem']), key


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


def test_a_finished_run_keeps_its_weights_alone_and_they_evaluate_as_its_checkpoint(runs, tmp_path, capsys):
    """model.pt (what results/ commits of a run): the final weights without optimizer state, which eval reads
    as it reads ckpt.pt: the eval.json made from the checkpoint is reused, and computed again it is the same."""
    weights, ckpt = (torch.load(os.path.join(runs[0], f), weights_only=True) for f in ('model.pt', 'ckpt.pt'))
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


def test_an_eval_json_from_before_the_lens(runs, tmp_path, capsys):
    """results/ holds eval.json files without the lens: with no checkpoint they are read as they are (summary
    and figures); with one, evaluated again."""
    def without_lens(dst, ignore=()):
        shutil.copytree(runs[0], dst, ignore=shutil.ignore_patterns(*ignore))  # copy2: the same mtime
        with open(os.path.join(dst, 'eval.json')) as f:
            r = json.load(f)
        del r['lens']
        with open(os.path.join(dst, 'eval.json'), 'w') as f:
            json.dump(r, f)

    committed, checkpointed = str(tmp_path / 'committed'), str(tmp_path / 'checkpointed')
    without_lens(committed, ['ckpt.pt'])
    eval_extrapolation.main([committed, *EVAL])
    out = capsys.readouterr().out
    assert '(reused' in out and 'GD step at b_train' in out
    assert out.splitlines()[-1].split()[-2:] == ['-', '-']  # the summary's lens columns
    plot.main([committed, f'--out={tmp_path / "figs"}'])
    assert 'lens: skipped' in capsys.readouterr().out
    assert (tmp_path / 'figs' / 'extrapolation.png').is_file()
    assert not (tmp_path / 'figs' / 'lens.png').exists()
    without_lens(checkpointed)
    eval_extrapolation.main([checkpointed, *EVAL])
    out = capsys.readouterr().out
    assert '(on cpu' in out and out.splitlines()[-1].split()[-2:] != ['-', '-']
    with open(os.path.join(checkpointed, 'eval.json')) as f:
        assert 'lens' in json.load(f)


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
