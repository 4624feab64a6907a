"""
Tests of eval_extrapolation.py and plot.py: the baselines against their known errors, the one-pass loop sweep
against separate forward passes, eval.json of a tiny trained run, checkpoints saved in other dtypes, the figures,
and the command line's handling of bad flags.

    python -m pytest test_eval_plot.py
"""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_extrapolation
import plot
from data import first_k, make_generator, validation_set
from configurator import group_runs
from data import least_squares
from eval_extrapolation import model_errors, query_error
from model import LoopedGPT, LoopedGPTConfig

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ['--n_dims=3', '--n_points=6', '--max_iters=20', '--n_layer=1', '--n_head=2', '--n_embd=16', '--mlp_size=32',
        '--n_loops=3', '--loss_window=2', '--dims_start=0', '--points_start=0', '--val_prompts=32',
        '--eval_interval=10', '--log_interval=10', '--batch_size=16', '--device=cpu']
EVAL = ['--max_loops=6', '--n_prompts=64', '--device=cpu']
# these tests check numbers, not speed: one thread, because on cores shared with other jobs (as CI's are)
# OpenMP's threads wait on each other and tiny ops run 10-50x slower
torch.set_num_threads(1)


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                          cwd=HERE, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two tiny runs that differ only by seed, trained and evaluated through the command line."""
    out = tmp_path_factory.mktemp('out')
    dirs = []
    for seed in (1, 2):
        r = run('train.py', *TINY, f'--seed={seed}', f'--out_dir={out}', f'--run_name=tiny_s{seed}')
        assert r.returncode == 0, r.stderr
        dirs.append(str(out / f'tiny_s{seed}'))
    r = run('eval_extrapolation.py', *dirs, *EVAL)
    assert r.returncode == 0, r.stderr
    assert 'mean ± std over seeds' in r.stdout  # the summary table
    return dirs


def tiny_model(**kw):
    torch.manual_seed(0)
    return LoopedGPT(LoopedGPTConfig(n_dims=3, n_points=8, n_layer=1, n_head=2, n_embd=16, mlp_size=32, n_loops=3,
                                     loss_window=3, **kw)).eval()


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
    assert torch.allclose(model_errors(model, xs, ys, n_loops=7, first_loop=3, seed=5)[0], errors[2:], atol=1e-6)


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


def test_group_runs_by_config_less_seed():
    base = {'n_keep': 0, 'select': 'first', 'seed': 1, 'out_dir': 'a'}
    configs = [base, {**base, 'seed': 2, 'out_dir': 'b'}, {**base, 'n_keep': 32, 'select': 'random'},
               {**base, 'n_keep': 32, 'select': 'random', 'seed': 3}]
    assert group_runs(configs) == [('n_keep=0, select=first', [0, 1]), ('n_keep=32, select=random', [2, 3])]
    assert group_runs(configs[:2], ['out/exp,n_keep=0,seed=1', 'out/exp,n_keep=0,seed=2']) == [('exp,n_keep=0', [0, 1])]


# -----------------------------------------------------------------------------
# a tiny trained run, end to end

def test_eval_json_has_every_key(runs):
    with open(os.path.join(runs[0], 'eval.json')) as f:
        r = json.load(f)
    for key in ('config', 'b_train', 'eval', 'loops', 'err_vs_loops', 'fixed_point', 'k', 'err_vs_k', 'seconds'):
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
    assert r['err_vs_k']['model_b_train']['mean'][6] == pytest.approx(r['err_vs_loops']['mean'][2], rel=1e-6)
    assert r['err_vs_k']['model_max_loops']['mean'][6] == pytest.approx(r['err_vs_loops']['mean'][5], rel=1e-6)
    assert max(r['err_vs_k']['least_squares']['mean'][3:]) < 1e-6  # k >= d: exact
    assert r['err_vs_k']['model_b_train']['mean'][0] == pytest.approx(1, abs=0.5)  # no examples: a guess


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
    os.utime(os.path.join(dst, 'ckpt.pt'))  # another checkpoint than the one evaluated, as after a resume
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])
    assert '(on cpu' in capsys.readouterr().out
    eval_extrapolation.main([dst, *EVAL, '--gd_steps=3', '--reuse=False'])
    assert '(on cpu' in capsys.readouterr().out


def test_eval_takes_a_committed_eval_json_without_its_checkpoint(runs, tmp_path, capsys):
    dst = str(tmp_path / 'committed')
    shutil.copytree(runs[0], dst, ignore=shutil.ignore_patterns('ckpt.pt'))
    eval_extrapolation.main([dst, *EVAL])
    assert '(reused' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:  # nothing to compute other settings from
        eval_extrapolation.main([dst, *EVAL, '--gd_steps=3'])
    assert exit.value.code == 2 and 'no ckpt.pt to evaluate' in capsys.readouterr().err


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
    assert r.returncode == 0, r.stderr
    for name in ('performance', 'loss_comparison', 'extrapolation', 'error_vs_examples'):
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
    assert 'extrapolation: skipped' in printed and 'error_vs_examples: skipped' in printed
    assert (tmp_path / 'figs_bare' / 'performance.png').is_file()
    assert not (tmp_path / 'figs_bare' / 'extrapolation.png').exists()


# -----------------------------------------------------------------------------
# the command line

def test_eval_rejects_a_bad_flag(runs):
    before = {f: os.path.getmtime(os.path.join(runs[0], f)) for f in os.listdir(runs[0])}
    r = run('eval_extrapolation.py', runs[0], '--max_loop=5')
    assert r.returncode == 2
    assert r.stderr.startswith("error: --max_loop: unknown key 'max_loop' (did you mean max_loops?)") and r.stderr.count('\n') == 1, r.stderr
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
    import numpy as np
    from eval_extrapolation import averaging, gradient_descent, knn, ridge
    xs, ys = validation_set('linear', 6, 7, 3, seed=4)
    X, Y = xs.double().numpy(), ys.double().numpy()
    for i in range(6):
        A, y, q = X[i, :-1], Y[i, :-1], X[i, -1]
        w_avg = sum(y[j] * A[j] for j in range(7)) / 7
        assert averaging(xs, ys)[i].item() == pytest.approx(q @ w_avg, rel=1e-5)
        near = sorted(range(7), key=lambda j: np.linalg.norm(A[j] - q))[:3]
        assert knn(xs, ys)[i].item() == pytest.approx(np.mean([y[j] for j in near]), rel=1e-5)
        w_ridge = np.linalg.solve(A.T @ A + 0.1 * np.eye(3), A.T @ y)
        assert ridge(xs, ys)[i].item() == pytest.approx(q @ w_ridge, rel=1e-5)
        w, lr = np.zeros(3), 1 / np.linalg.eigvalsh(A.T @ A).max()
        for _ in range(4):
            w = w - lr * (A.T @ (A @ w - y))
        assert gradient_descent(xs, ys, n_steps=4)[i].item() == pytest.approx(q @ w, rel=1e-5)
        w_ls = np.linalg.lstsq(A, y, rcond=None)[0]
        assert least_squares(xs, ys)[i].item() == pytest.approx(q @ w_ls, rel=1e-4, abs=1e-5)
