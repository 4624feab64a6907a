"""Tests for nanoloop: python -m pytest -q -n 2 --dist loadfile (the README's command)"""

import contextlib
import math
import os
import re
import subprocess
import sys

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import configurator
import train
from configurator import ConfigError
from data import curriculum, first_k, make_generator, sample_batch, validation_set
from model import (INJECTS, POS_EMBS, SELECTS, LoopedGPT, LoopedGPTConfig, interleave,
                   load_model)
from rundir import CKPT_VERSION, LOG_COLUMNS, load_checkpoint, save_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
# tiny models: one thread is as fast, and far faster on a machine whose cores are busy with other jobs
torch.set_num_threads(1)
ONE_THREAD = {**os.environ, 'OMP_NUM_THREADS': '1'}
D, N, B = 4, 8, 3  # small prompts: d = 4, N = 8 examples, 3 prompts


def make_model(**kw):
    torch.manual_seed(0)
    args = dict(n_dims=D, n_points=N, n_layer=2, n_head=2, n_embd=16, mlp_size=32, n_loops=3, loss_window=3)
    args.update(kw)
    return LoopedGPT(LoopedGPTConfig(**args)).eval()


def prompts(n=N, seed=0, batch=B):
    return sample_batch('linear', batch, n, D, make_generator(seed))


def draws(xs, seed=0):
    """One uniform score per example, as train.py draws them for select = random | shuffle."""
    return torch.rand(xs.size(0), xs.size(1) - 1, generator=make_generator(seed))


def train_step(model, optimizers, xs, ys, **kw):
    """The step of train.py's loop: forward, backward, clip, each optimizer (AdamW; Muon too with muon)."""
    _, loss = model(xs, ys, **kw)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# -----------------------------------------------------------------------------
# the model


@pytest.mark.parametrize('pos_emb,inject,causal',
                         [(p, i, c) for p in POS_EMBS for i in INJECTS for c in (True, False)])
def test_shapes(pos_emb, inject, causal):
    model = make_model(pos_emb=pos_emb, inject=inject, causal=causal, n_loops=4, loss_window=2)
    xs, ys = prompts()
    preds, loss = model(xs, ys)
    assert len(preds) == 2  # one per loop in the loss window
    assert all(p.shape == (B, N + 1) for p in preds)  # one prediction per x token, the query's last
    assert loss.shape == () and torch.isfinite(loss)
    preds, _ = model(xs, ys, n_loops=6, loss_window=6)  # any loop count at inference
    assert len(preds) == 6


@pytest.mark.parametrize('pos_emb', POS_EMBS)
def test_causal_mask_hides_later_tokens(pos_emb):
    xs, ys = prompts()
    xs2, ys2 = xs.clone(), ys.clone()
    xs2[:, 5] += 1.0  # change x_6 (token 10) and y_6 (token 11)
    ys2[:, 5] += 1.0
    for causal in (True, False):
        model = make_model(pos_emb=pos_emb, causal=causal, n_loops=4, loss_window=4)
        with torch.no_grad():
            before, _ = model(xs, ys)
            after, _ = model(xs2, ys2)
        for p, q in zip(before, after):  # every loop
            if causal:  # predictions at x_1..x_5 see only tokens before token 10
                assert torch.equal(p[:, :5], q[:, :5])
                assert not torch.equal(p[:, 5:], q[:, 5:])
            else:
                assert not torch.equal(p[:, :5], q[:, :5])


@pytest.mark.parametrize('select', SELECTS)
def test_keeping_all_examples_is_no_truncation(select):
    xs, ys = prompts()
    for schedule in ('constant', 'shrink'):
        plain = make_model(n_loops=4, loss_window=4)
        cut = make_model(n_loops=4, loss_window=4, n_keep=N, select=select, n_keep_schedule=schedule)
        p_plain, loss_plain = plain(xs, ys)
        p_cut, loss_cut = cut(xs, ys, scores=draws(xs, 1))
        assert torch.equal(loss_plain, loss_cut)
        assert all(torch.equal(a, b) for a, b in zip(p_plain, p_cut))


def kept_examples(model, xs, ys, **kw):
    """Run the model and return, for each loop, the example indices each prompt still holds (B, n),
    found by matching the injected input against the full embedding, row by row."""
    full = model.embed(xs, ys).detach()  # (B, 2N+1, C)
    seen = []
    one_loop = model.one_loop
    def spy(h, e):
        match = (e.detach().unsqueeze(2) == full.unsqueeze(1)).all(-1)  # (B, L_t, 2N+1)
        token = match.float().argmax(-1)  # (B, L_t): original token index of each token in hand
        assert match.any(-1).all()
        assert torch.equal(token[:, -1], torch.full((xs.size(0),), 2 * (xs.size(1) - 1)))  # the query, last
        assert torch.equal(token[:, 1:-1:2], token[:, 0:-1:2] + 1)  # each x with its own y
        seen.append(token[:, 0:-1:2] // 2)
        return one_loop(h, e)
    model.one_loop = spy
    with torch.no_grad():
        preds, loss = model(xs, ys, **kw)
    del model.one_loop
    return seen, preds


def test_truncation_keeps_the_right_pairs():
    xs, ys = prompts(batch=8)
    n = 3
    expected = {'first': torch.arange(n), 'last': torch.arange(N - n, N)}
    for select in SELECTS:
        model = make_model(n_keep=n, select=select, truncate_after=1, n_loops=4, loss_window=4)
        seen, preds = kept_examples(model, xs, ys, scores=draws(xs))
        assert torch.equal(seen[0], torch.arange(N).expand(8, N))  # the first loop sees everything
        assert all(torch.equal(s, seen[1]) for s in seen[2:])     # the cut holds in every later loop
        kept = seen[1]
        assert kept.shape == (8, n) and all(p.shape == (8, n + 1) for p in preds[1:])
        assert all(len(set(row.tolist())) == n for row in kept)  # distinct examples
        if select in expected:
            assert torch.equal(kept, expected[select].expand(8, n))
        elif select == 'random':
            assert torch.equal(kept, kept.sort(dim=1).values)  # original order
            assert len({tuple(row.tolist()) for row in kept}) > 1  # a different subset per prompt
        else:  # shuffle: random order
            assert not torch.equal(kept, kept.sort(dim=1).values)


def test_truncation_targets_follow_the_kept_pairs():
    """The loss after the cut compares each kept x's prediction with that x's own y."""
    xs, ys = prompts(batch=8)
    model = make_model(n_keep=3, select='random', n_loops=2, loss_window=1, loss_on='all')
    seen, preds = kept_examples(model, xs, ys, scores=draws(xs))
    _, loss = model(xs, ys, scores=draws(xs))
    targets = torch.cat((ys[:, :-1].gather(1, seen[1]), ys[:, -1:]), dim=1)
    assert torch.allclose(loss, F.mse_loss(preds[-1], targets))


def test_shrink_schedule():
    model = make_model(n_keep=2, n_keep_schedule='shrink', truncate_after=1, n_loops=4)
    counts = [model.examples_seen(t, N, 2, 4) for t in range(1, 8)]
    assert counts == [8, 6, 4, 2, 2, 2, 2]  # from N at the cut to n_keep at b_train, then flat
    xs, ys = prompts()
    seen, _ = kept_examples(model, xs, ys, n_loops=6, loss_window=6)
    assert [s.size(1) for s in seen] == [8, 6, 4, 2, 2, 2]
    assert torch.equal(seen[3], torch.arange(2).expand(B, 2))


def test_flops_follow_truncation():
    """Counted by hand for one layer, n_embd 4, mlp 8, no mask: 256 weight FLOPs a token, plus 16 per token
    of context for q.k and att.v; loop 1 forward at 5 tokens, loop 2 forward and backward at 3."""
    model = LoopedGPT(LoopedGPTConfig(n_dims=2, n_points=2, n_layer=1, n_head=1, n_embd=4, mlp_size=8,
                                      causal=False, n_loops=2, loss_window=1, n_keep=1, truncate_after=1))
    assert model.flops_per_step(1, 2, 2, 1) == 5 * (256 + 80) + 3 * (256 + 48) * 3
    assert model.flops_per_step(1, 2, 2, 1, n_keep=0) == 5 * (256 + 80) * (1 + 3)  # uncut
    assert model.flops_per_step(10, 2, 2, 1) == 10 * model.flops_per_step(1, 2, 2, 1)
    # a drawn b: the mean over its range, b = 1 (loop 1 forward and backward at 5 tokens) and b = 2
    b1 = 5 * (256 + 80) * 3
    assert model.flops_per_step(1, 2, range(1, 3), 1) == (b1 + model.flops_per_step(1, 2, 2, 1)) / 2


@pytest.mark.parametrize('pos_emb', ('none', 'type'))
@pytest.mark.parametrize('causal', (True, False))
def test_truncate_before_first_loop_is_a_shorter_prompt(pos_emb, causal):
    """With encodings that do not depend on the position (the query keeps its original position
    under learned or sinusoidal encodings), cutting straight after the embedding is a shorter prompt."""
    xs, ys = prompts()
    cut = make_model(pos_emb=pos_emb, causal=causal, n_keep=3, truncate_after=0)
    short = make_model(pos_emb=pos_emb, causal=causal)
    p_cut, loss_cut = cut(xs, ys)
    p_short, loss_short = short(*first_k(xs, ys, 3))
    assert torch.allclose(loss_cut, loss_short, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p_cut, p_short))


def test_loops_before_the_loss_window_carry_no_gradient():
    xs, ys = prompts()
    model = make_model(n_loops=5, loss_window=2).train()
    _, loss = model(xs, ys)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]

    # the same computation with a graph through every loop, cut by hand before the window
    model.zero_grad()
    e = model.embed(xs, ys)
    h = torch.zeros_like(e)
    losses = []
    for t in range(1, 6):
        h = model.one_loop(h, e)
        if t == 3:
            h = h.detach()
        if t >= 4:
            losses.append(F.mse_loss(model.read_out(h[:, 0::2]).squeeze(-1), ys))
    torch.stack(losses).mean().backward()
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)

    # and without the cut the gradient differs: the test can tell
    model.zero_grad()
    e = model.embed(xs, ys)
    h, losses = torch.zeros_like(e), []
    for t in range(1, 6):
        h = model.one_loop(h, e)
        if t >= 4:
            losses.append(F.mse_loss(model.read_out(h[:, 0::2]).squeeze(-1), ys))
    torch.stack(losses).mean().backward()
    assert not torch.allclose(grads[0], next(model.parameters()).grad, atol=1e-6)


def reference_gpt(model, xs, ys):
    """A plain GPT forward written out by hand: explicit attention, one pass, no loop."""
    c = model.config
    x = model.embed(xs, ys)
    T = x.size(1)
    for block in model.blocks:
        a = F.layer_norm(x, (c.n_embd,), block.ln_1.weight, block.ln_1.bias)
        q, k, v = (a @ block.attn.c_attn.weight.T + block.attn.c_attn.bias).chunk(3, dim=-1)
        hs = c.n_embd // c.n_head
        q, k, v = (z.view(z.size(0), T, c.n_head, hs).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-1, -2) / math.sqrt(hs)
        if c.causal:
            att = att + torch.full((T, T), float('-inf')).triu(1)
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + y @ block.attn.c_proj.weight.T + block.attn.c_proj.bias
        m = F.layer_norm(x, (c.n_embd,), block.ln_2.weight, block.ln_2.bias)
        x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(m)))
    x = F.layer_norm(x, (c.n_embd,), model.ln_f.weight, model.ln_f.bias)
    return model.read_out(x[:, 0::2]).squeeze(-1)


@pytest.mark.parametrize('causal', (True, False))
@pytest.mark.parametrize('attention', ('sdpa', 'manual'))
def test_one_loop_without_injection_is_a_plain_gpt(causal, attention):
    xs, ys = prompts()
    model = make_model(inject='none', causal=causal, attention=attention, n_loops=1, loss_window=1)
    preds, _ = model(xs, ys)
    assert torch.allclose(preds[0], reference_gpt(model, xs, ys), atol=1e-5)


def test_sinusoidal_encoding_formula():
    model = make_model(pos_emb='sinusoidal')
    C = model.config.n_embd
    for pos, i in ((0, 0), (3, 1), (7, 2), (16, 7)):
        angle = pos / 10000 ** (2 * i / C)
        assert math.isclose(model.wpe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
        assert math.isclose(model.wpe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert not any('wpe' in name for name, _ in model.named_parameters())  # fixed, not learned


def test_gpt2_init():
    """Weights N(0, 0.02), the residual projections' scaled by depth, biases 0; LayerNorm gains 1; read_in and
    read_out keep PyTorch's default init (uniform, biases not 0)."""
    model = make_model(n_embd=64, mlp_size=256, inject='concat')
    for name, p in model.named_parameters():
        if name.startswith(('read_in', 'read_out')):
            assert p.std() > 0.05 if name.endswith('weight') else p.abs().sum() > 0, name  # not GPT-2's
        elif '.ln_' in name or name.startswith('ln_f'):
            assert torch.equal(p, torch.full_like(p, float(name.endswith('weight')))), name  # gain 1, bias 0
        elif name.endswith('bias'):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            std = 0.02 / (2 * model.config.n_layer) ** 0.5 if name.endswith('c_proj.weight') else 0.02
            assert abs(p.std().item() / std - 1) < 0.1, (name, p.std().item(), std)


def test_type_encoding_has_two_vectors():
    model = make_model(pos_emb='type')
    assert model.wpe.weight.shape == (2, model.config.n_embd)
    xs, ys = prompts()
    added = model.embed(xs, ys) - model.read_in(interleave(xs, ys))
    x_tokens, y_tokens = added[:, 0::2], added[:, 1::2]
    assert torch.allclose(x_tokens, model.wpe.weight[0].expand_as(x_tokens), atol=1e-6)
    assert torch.allclose(y_tokens, model.wpe.weight[1].expand_as(y_tokens), atol=1e-6)
    learned = make_model(pos_emb='learned')
    assert learned.num_params() - model.num_params() == (2 * N + 1 - 2) * model.config.n_embd


def test_prompt_layout():
    xs, ys = prompts()
    tokens = interleave(xs, ys)
    assert tokens.shape == (B, 2 * N + 1, D)
    assert torch.equal(tokens[:, 0::2], xs)                       # x_1 .. x_{N+1}
    assert torch.equal(tokens[:, 1::2, 0], ys[:, :-1])            # y_1 .. y_N, never the query's
    assert torch.equal(tokens[:, 1::2, 1:], torch.zeros(B, N, D - 1))


# -----------------------------------------------------------------------------
# the data


def test_linear_task_is_exact():
    xs, ys = sample_batch('linear', 16, 30, 5, make_generator(3))
    w = torch.linalg.lstsq(xs.double(), ys.double().unsqueeze(-1)).solution  # 31 points, 5 unknowns
    assert torch.allclose((xs.double() @ w).squeeze(-1), ys.double(), atol=1e-5)


def test_sparse_linear_task_uses_sparsity_coordinates():
    xs, ys = sample_batch('sparse_linear', 64, 30, 8, make_generator(3), sparsity=2)
    w = torch.linalg.lstsq(xs.double(), ys.double().unsqueeze(-1)).solution.squeeze(-1)  # (B, d)
    nonzero = (w.abs() > 1e-6).sum(dim=1)
    assert torch.equal(nonzero, torch.full((64,), 2)), nonzero  # exactly 2 of the 8 coordinates of each w


def test_sampler_reproduces_from_a_seed():
    for task in train.CHOICES['task']:
        a = sample_batch(task, 4, 10, 6, make_generator(7), noise_std=0.1)
        b = sample_batch(task, 4, 10, 6, make_generator(7), noise_std=0.1)
        c = sample_batch(task, 4, 10, 6, make_generator(8), noise_std=0.1)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[1], c[1])
        assert a[0].shape == (4, 11, 6) and a[1].shape == (4, 11) and torch.isfinite(a[1]).all()
    v1, v2 = validation_set('linear', 8, 10, 6, seed=1), validation_set('linear', 8, 10, 6, seed=1)
    assert torch.equal(v1[0], v2[0])


def test_dims_curriculum_zeroes_the_inactive_dimensions():
    xs, ys = sample_batch('linear', 4, 10, 6, make_generator(0), n_dims_active=2)
    assert (xs[:, :, 2:] == 0).all() and (xs[:, :, :2] != 0).all()


def lr_config(**kw):
    return SimpleNamespace(**{**dict(warmup_iters=10, learning_rate=1e-3, min_lr=1e-4, max_iters=110,
                                     decay_iters=40, lr_schedule='cosine'), **kw})


def test_learning_rate_schedules():
    assert train.get_lr(0, lr_config()) < train.get_lr(9, lr_config()) < 1e-3  # warmup
    for schedule in ('constant', 'cosine', 'wsd'):
        assert train.get_lr(10, lr_config(lr_schedule=schedule)) == pytest.approx(1e-3)  # the peak
    assert train.get_lr(60, lr_config()) == pytest.approx(5.5e-4)  # cosine: half way down at half way
    assert train.get_lr(109, lr_config()) == pytest.approx(1e-4, rel=0.02)  # and at min_lr at the end
    assert train.get_lr(70, lr_config(lr_schedule='wsd')) == pytest.approx(1e-3)  # held to step 70
    assert train.get_lr(90, lr_config(lr_schedule='wsd')) == pytest.approx(5.5e-4)  # then the same curve
    assert train.get_lr(109, lr_config(lr_schedule='wsd')) == pytest.approx(1e-4, rel=0.02)
    assert train.get_lr(109, lr_config(lr_schedule='constant')) == 1e-3


def test_a_resumed_run_with_more_steps_keeps_a_held_wsd_rate_and_not_a_cosine_one():
    # what train.py's docstring says: a wsd run extended during its hold goes on at the same rates;
    # a cosine schedule is recomputed for the new length, so its rate jumps up
    for it in (20, 50, 69):
        assert train.get_lr(it, lr_config(lr_schedule='wsd')) == train.get_lr(it, lr_config(lr_schedule='wsd',
                                                                                           max_iters=500))
    assert train.get_lr(100, lr_config(max_iters=500)) > 1.5 * train.get_lr(100, lr_config())


def test_curriculum_values():
    assert [curriculum(5, 20, 1, 2000, it) for it in (0, 1999, 2000, 4000, 29999, 30000, 10**6)] == \
        [5, 5, 6, 7, 19, 20, 20]
    assert curriculum(0, 20, 1, 2000, 0) == 20  # off


# -----------------------------------------------------------------------------
# training and the command line


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_every_parameter_has_exactly_one_optimizer(optimizer):
    """Muon takes the blocks' matrices and nothing else; AdamW every other parameter; none is left out or
    stepped twice, whatever the encoding and injection add."""
    for pos_emb in POS_EMBS:
        for inject in INJECTS:
            model = make_model(pos_emb=pos_emb, inject=inject)
            optimizers = model.configure_optimizers(0.0, 1e-3, (0.9, 0.999), 'cpu', optimizer)
            owned = [[p for g in o.param_groups for p in g['params']] for o in optimizers]
            ids = sorted(id(p) for ps in owned for p in ps)
            assert ids == sorted(id(p) for p in model.parameters()), (pos_emb, inject)  # each exactly once
            assert [type(o).__name__ for o in optimizers] == ['AdamW', 'Muon'][:1 + (optimizer == 'muon')]
            if optimizer == 'muon':
                matrices = {id(p) for p in model.blocks.parameters() if p.dim() == 2}
                assert matrices and {id(p) for p in owned[1]} == matrices


def test_tiny_training_run_learns():
    """Beats the zero predictor clearly (d = 2: a few seconds on one core; larger d plateau for longer)."""
    torch.manual_seed(0)
    c = LoopedGPTConfig(n_dims=2, n_points=8, n_layer=1, n_head=2, n_embd=32, mlp_size=64, n_loops=2,
                        loss_window=2)
    model = LoopedGPT(c)
    optimizers = model.configure_optimizers(0.0, 3e-3, (0.9, 0.999), 'cpu')
    g = make_generator(0)
    xs_val, ys_val = validation_set('linear', 512, 8, 2, seed=1)
    for _ in range(800):
        xs, ys = sample_batch('linear', 64, 8, 2, g)
        train_step(model, optimizers, xs, ys)
    loss, err = train.evaluate(model, xs_val, ys_val, 2, 2, contextlib.nullcontext(), 0)
    assert loss < 0.8 * (ys_val ** 2).mean().item()              # all positions, vs predicting 0
    assert err < 0.8 * (ys_val[:, -1] ** 2).mean().item() / 2     # the query, vs predicting 0


def run_cli(*args, cwd=HERE):
    return subprocess.run([sys.executable, os.path.join(HERE, 'train.py'), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=ONE_THREAD)


def report(result):
    """All a finished process said, for an assertion's message."""
    return f'exit code {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}'


def assert_ok(result):
    assert result.returncode == 0, report(result)
    return result


TINY = ['--n_dims=3', '--n_points=6', '--n_layer=1', '--n_head=2', '--n_embd=16', '--mlp_size=32',
        '--n_loops=2', '--loss_window=2', '--dims_start=0', '--points_start=0', '--val_prompts=64',
        '--batch_size=16', '--warmup_iters=0', '--log_interval=5', '--eval_interval=10',
        # a fixed recipe, whatever train.py's defaults: every loop trained, one b, a constant lr
        '--loops_start=0', '--n_loops_random=False', '--lr_schedule=constant', '--learning_rate=5e-4',
        '--device=cpu']


def test_cli_runs_and_writes_the_run_directory(tmp_path):
    result = run_cli(*TINY, '--max_iters=20', '--n_keep=3', '--select=random', f'--out_dir={tmp_path}')
    assert result.returncode == 0, report(result)
    runs = os.listdir(tmp_path)
    assert len(runs) == 1 and 'n_keep=3,select=random' in runs[0] and runs[0].endswith(',seed=42')
    assert sorted(os.listdir(tmp_path / runs[0])) == ['ckpt.pt', 'config.json', 'log.csv', 'model.pt']
    log = (tmp_path / runs[0] / 'log.csv').read_text().splitlines()
    assert log[0] == ','.join(LOG_COLUMNS) and len(log) == 3
    assert 'iter 20/20' in result.stdout and 'evaluate it with: python eval_extrapolation.py' in result.stdout


BAD_FLAGS = [
    (['--n_lops=3'], 'n_loops'),                          # unknown key, with a suggestion
    (['--n_loops=three'], 'n_loops'),                     # wrong type
    (['--learning_rate=fast'], 'learning_rate'),
    (['--causal=maybe'], 'causal'),
    (['--select=middle'], 'select'),                      # not one of the choices
    (['--n_keep=65'], 'n_keep'),                          # more than n_points
    (['--n_keep=-1'], 'n_keep'),
    (['--loss_window=11'], 'loss_window'),                # more than n_loops
    (['--loss_window=-1'], 'loss_window'),
    (['--n_head=5'], 'n_head'),                           # does not divide n_embd
    (['--truncate_after=11'], 'truncate_after'),
    (['--n_dims=0'], 'n_dims'),
    (['--n_points=0'], 'n_points'),
    (['--points_start=-1'], 'points_start'),
    (['--dims_interval=0'], 'dims_interval'),             # a curriculum's step and interval: at least 1
    (['--loops_step=0'], 'loops_step'),
    (['--n_keep_random=True'], 'n_keep_random'),          # without n_keep
    (['config/nonexistent.py'], 'nonexistent'),
    (['--n_loops'], 'n_loops'),                           # no value
]


@pytest.mark.parametrize('args,flag', BAD_FLAGS)
def test_bad_flags_are_one_line_errors(args, flag, tmp_path):
    with pytest.raises(ConfigError, match=flag) as info:
        train.open_run(args + [f'--out_dir={tmp_path / "out"}'])
    assert '\n' not in str(info.value)
    assert not (tmp_path / 'out').exists()


def test_bad_flag_through_the_cli(tmp_path):
    result = run_cli('--n_lops=3', f'--out_dir={tmp_path / "out"}')
    assert result.returncode == 2 and 'Traceback' not in result.stderr, report(result)
    assert result.stderr.strip() == ("error: --n_lops: unknown key 'n_lops' "
                                     "(did you mean n_loops, n_loops_draw, n_loops_random?)")
    assert not (tmp_path / 'out').exists()


def test_a_long_run_name_still_fits_a_file_name_and_tells_runs_apart():
    names = []
    for warmup in (0, 1):  # the flag that differs comes last, past where the name is cut
        config, base, stems, _ = configurator.parse([*TINY, '--n_keep=3', '--select=random', '--dropout=0.1',
                                                     '--beta2=0.99', f'--warmup_iters={warmup}'],
                                                    train.DEFAULTS, train.CHOICES)
        names.append(os.path.basename(configurator.run_dir(config, base, stems)))
    assert names[0] != names[1] and all(len(n.encode()) <= 255 and n.endswith(',seed=42') for n in names)
    assert names[0].startswith('n_dims=3,n_points=6,')


def test_an_int_where_a_float_is_expected_is_fine():
    config, _, _, _ = configurator.parse(['--learning_rate=1', '--dropout=0'], train.DEFAULTS, train.CHOICES)
    assert config['learning_rate'] == 1.0 and isinstance(config['learning_rate'], float)


@pytest.mark.parametrize('name', sorted(f[:-3] for f in os.listdir(os.path.join(HERE, 'config'))
                                         if f.endswith('.py') and not f.endswith('_grid.py')))
def test_config_files_parse(name):
    config, directory, _ = train.configure([os.path.join(HERE, 'config', name + '.py'), '--seed=451'])
    assert directory == os.path.join(config['out_dir'], f'{name},seed=451')


# -----------------------------------------------------------------------------
# robustness: run directories, resume, checkpoints, divergence, signals


def read_rows(path):
    """log.csv's rows less ms_per_step, which is wall-clock time."""
    with open(path) as f:
        rows = [line.split(',') for line in f.read().splitlines()]
    timing = rows[0].index('ms_per_step')
    return [r[:timing] + r[timing + 1:] for r in rows]


def test_a_run_directory_with_a_checkpoint_is_never_overwritten_by_accident(tmp_path):
    args = [*TINY, '--max_iters=10', f'--out_dir={tmp_path}', '--run_name=r']
    assert_ok(run_cli(*args))
    before = (tmp_path / 'r' / 'ckpt.pt').read_bytes()
    again = run_cli(*args)
    assert again.returncode == 2 and 'already holds a checkpoint' in again.stderr, report(again)
    assert 'Traceback' not in again.stderr and (tmp_path / 'r' / 'ckpt.pt').read_bytes() == before
    assert_ok(run_cli(*args, '--overwrite=True', '--seed=7'))
    assert (tmp_path / 'r' / 'ckpt.pt').read_bytes() != before
    missing = run_cli(*args, '--init_from=resume', '--run_name=elsewhere')
    assert missing.returncode == 2 and 'no checkpoint' in missing.stderr, report(missing)


def test_the_curriculum_gate_holds_d_until_the_error_is_low_and_across_a_resume(tmp_path):
    grow = [*TINY, '--dims_start=1', '--dims_interval=4', '--log_interval=4', '--eval_interval=4']

    def d_column(out):  # d in each logged row
        rows = read_rows(next(out.glob('*/log.csv')))
        return [row[rows[0].index('d')] for row in rows[1:]]
    free = assert_ok(run_cli(*grow, '--max_iters=20', '--curriculum_gate=0', f'--out_dir={tmp_path}/free'))
    assert d_column(tmp_path / 'free') == ['1', '2', '3', '3', '3'] and 'd stays' not in free.stdout
    # no model of a few steps is within 1e-9 of least squares: d waits at 1, and says so
    held = [*grow, '--curriculum_gate=1e-9', f'--out_dir={tmp_path / "held"}']
    assert 'd stays 1' in assert_ok(run_cli(*held, '--max_iters=10')).stdout
    assert_ok(run_cli(*held, '--max_iters=20', '--init_from=resume'))
    assert d_column(tmp_path / 'held') == ['1'] * 6  # rows at 4, 8, 10, 12-20: held over resume


@pytest.mark.parametrize('curricula', [['--dims_start=0', '--points_start=2', '--points_interval=4'],
                                       ['--dims_start=1', '--dims_interval=8', '--points_start=2',
                                        '--points_interval=4', '--points_step=1']])
def test_the_curriculum_gate_holds_n_as_well_and_never_moves_it_back(tmp_path, curricula):
    """With the d curriculum off, N waits behind the gate too; with N growing faster than d, a hold keeps N
    where it is instead of moving it back."""
    args = [*TINY, *curricula, '--log_interval=2', '--eval_interval=2', '--curriculum_gate=1e-9',
            '--max_iters=24', f'--out_dir={tmp_path}']
    assert_ok(run_cli(*args))
    rows = read_rows(next(tmp_path.glob('*/log.csv')))
    d_and_n = [(row[rows[0].index('d')], row[rows[0].index('N')]) for row in rows[1:]]
    assert len(set(d_and_n)) == 1, d_and_n  # held where it started (nothing gets within 1e-9)


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_resume_extends_a_run_exactly(tmp_path, optimizer):
    """The same flags with a larger max_iters and --init_from=resume continue the same run directory and
    log the rows, and end with the weights, of a straight run (random cuts, dropout, n drawn per step)."""
    common = [*TINY, '--eval_interval=5', '--dropout=0.1', '--n_keep=3', '--select=random',
              '--n_keep_random=True', '--n_loops_random=True', '--loss_window=1', f'--optimizer={optimizer}']
    assert_ok(run_cli(*common, '--max_iters=20', f'--out_dir={tmp_path / "whole"}'))
    assert_ok(run_cli(*common, '--max_iters=10', f'--out_dir={tmp_path / "parts"}'))
    resumed = run_cli(*common, '--max_iters=20', f'--out_dir={tmp_path / "parts"}', '--init_from=resume')
    assert resumed.returncode == 0, report(resumed)
    [name] = os.listdir(tmp_path / 'whole')
    assert os.listdir(tmp_path / 'parts') == [name] and 'max_iters' not in name
    whole_log, parts_log = (read_rows(tmp_path / part / name / 'log.csv') for part in ('whole', 'parts'))
    assert whole_log == parts_log
    whole = load_checkpoint(str(tmp_path / 'whole' / name / 'ckpt.pt'))
    parts = load_checkpoint(str(tmp_path / 'parts' / name / 'ckpt.pt'))
    assert whole['iter'] == parts['iter'] == 20
    assert all(torch.equal(whole['model'][k], parts['model'][k]) for k in whole['model'])


@pytest.mark.parametrize('signum', ['SIGINT', 'SIGHUP'])  # Ctrl-C; a closed terminal or a dropped ssh
def test_ctrl_c_saves_and_resumes_exactly(tmp_path, signum):
    import signal
    import time
    signum = getattr(signal, signum)
    common = [*TINY, '--eval_interval=1000', '--log_interval=1000', f'--out_dir={tmp_path}']
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'train.py'), *common, '--max_iters=1000000',
                             '--run_name=cut'], cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ONE_THREAD)
    while 'device' not in proc.stdout.readline():  # training has started
        pass
    time.sleep(1.0)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (proc.returncode, out, err)
    assert '--init_from=resume' in out
    k = load_checkpoint(str(tmp_path / 'cut' / 'ckpt.pt'))['iter']
    assert 0 < k < 1000000
    # resumed to k + 7 it ends where an uninterrupted run of k + 7 steps ends
    assert_ok(run_cli(*common, f'--max_iters={k + 7}', '--run_name=cut', '--init_from=resume'))
    assert_ok(run_cli(*common, f'--max_iters={k + 7}', '--run_name=whole'))
    a = load_checkpoint(str(tmp_path / 'cut' / 'ckpt.pt'))
    b = load_checkpoint(str(tmp_path / 'whole' / 'ckpt.pt'))
    assert all(torch.equal(a['model'][name], b['model'][name]) for name in a['model'])


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    args = [*TINY, '--max_iters=10', f'--out_dir={tmp_path}', '--run_name=r', '--grad_clip=0']
    assert_ok(run_cli(*args))
    path = str(tmp_path / 'r' / 'ckpt.pt')
    ckpt = load_checkpoint(path)
    ckpt['model'] = {k: v * 1e30 for k, v in ckpt['model'].items()}  # weights that overflow at once
    save_checkpoint(path, ckpt)
    bad = (tmp_path / 'r' / 'ckpt.pt').read_bytes()
    result = run_cli(*args[:-4], '--max_iters=30', f'--out_dir={tmp_path}', '--run_name=r', '--grad_clip=0',
                     '--init_from=resume')
    assert result.returncode == 3, report(result)
    assert int(re.search(r'at step (\d+)', result.stderr).group(1)) > 10  # names where it happened
    assert 'the last checkpoint is kept' in result.stderr and 'Traceback' not in result.stderr
    assert (tmp_path / 'r' / 'ckpt.pt').read_bytes() == bad  # nothing was saved from the diverged run


class Payload:
    """A pickled object: torch.load(weights_only=True) must refuse it rather than run its code."""
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    torch.save({'version': CKPT_VERSION, 'model': Payload()}, path)
    with pytest.raises(ConfigError, match='not a readable checkpoint'):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match='no checkpoint'):
        load_checkpoint(str(tmp_path / 'missing.pt'))
    torch.save({'version': 99}, path)
    with pytest.raises(ConfigError, match='version 99'):
        load_checkpoint(path)
    model = make_model()
    args = {k: v for k, v in vars(model.config).items()}
    torch.save({'version': CKPT_VERSION, 'model': model.state_dict(), 'model_args': {**args, 'n_embd': 32},
                'config': {}}, path)
    with pytest.raises(ConfigError, match='does not fit'):
        load_model(path)
    torch.save({'version': CKPT_VERSION, 'model': model.state_dict(), 'model_args': args, 'config': {}}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2])  # truncated
    with pytest.raises(ConfigError, match='not a readable checkpoint'):
        load_checkpoint(path)


SAVER = """
import sys, torch
sys.path.insert(0, {here!r})
from rundir import CKPT_VERSION, save_checkpoint
i = 0
while True:
    i += 1
    save_checkpoint({path!r}, {{'version': CKPT_VERSION, 'i': i, 'w': torch.full((2_000_000,), float(i))}})
    print(i, flush=True)
"""


def test_sigkill_mid_save_leaves_a_loadable_checkpoint(tmp_path):
    import random
    import signal
    import time
    path = str(tmp_path / 'ckpt.pt')
    rng = random.Random(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, '-c', SAVER.format(here=HERE, path=path)],
                                stdout=subprocess.PIPE, text=True, env=ONE_THREAD)
        proc.stdout.readline()  # one checkpoint is complete: kill during a later save
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        ckpt = load_checkpoint(path)
        assert torch.equal(ckpt['w'], torch.full((2_000_000,), float(ckpt['i'])))


# -----------------------------------------------------------------------------
# the fast path computes what the plain path computes


def test_fast_path_matches_the_plain_path():
    """SDPA attention and the no-grad prefix give the loss and gradients of explicit attention."""
    xs, ys = prompts()
    results = []
    for attention in ('sdpa', 'manual'):
        model = make_model(attention=attention, n_loops=4, loss_window=2, n_keep=5, select='random').train()
        _, loss = model(xs, ys, scores=draws(xs))
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (fast_loss, fast_grads), (plain_loss, plain_grads) = results
    assert torch.allclose(fast_loss, plain_loss, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_grads, plain_grads))


def test_compiled_step_matches_eager():
    xs, ys = prompts()
    losses = []
    for compiled in (False, True):
        model = make_model(n_loops=3, loss_window=2).train()
        optimizers = model.configure_optimizers(0.0, 1e-3, (0.9, 0.999), 'cpu')
        step_model = torch.compile(model) if compiled else model
        losses.append([train_step(step_model, optimizers, xs, ys) for _ in range(3)])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*losses))


def test_checkpointed_loops_give_the_same_gradients():
    """checkpoint_loops changes what the backward pass keeps, not what it computes."""
    xs, ys = prompts()
    grads = []
    for checkpointed in (False, True):
        model = make_model(checkpoint_loops=checkpointed, n_loops=4, loss_window=2).train()
        _, loss = model(xs, ys)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(*grads))


# -----------------------------------------------------------------------------
# what train.py's loop hands the model: the per-step draws, and arms paired by seed


def record_training(monkeypatch, tmp_path, *args):
    """Run train.py's script in this process and record what every training step passes to the model."""
    import runpy
    calls = []
    forward = LoopedGPT.forward

    def spy(self, xs, ys, **kw):
        if self.training:
            calls.append({'xs': xs.clone(), **kw})
        return forward(self, xs, ys, **kw)
    monkeypatch.setattr(LoopedGPT, 'forward', spy)
    monkeypatch.setattr(sys, 'argv', ['train.py', *TINY, f'--out_dir={tmp_path}', *args])
    runpy.run_path(os.path.join(HERE, 'train.py'), run_name='__main__')
    monkeypatch.undo()
    return calls


@pytest.mark.parametrize('draw, grown, b_top', [(0, True, 4), (3, True, 4), (6, True, 6), (6, False, 4)])
def test_n_keep_random_and_n_loops_random_draws_reach_the_model(monkeypatch, tmp_path, draw, grown, b_top):
    # n_loops_draw takes b past n_loops only once d is full (grown: no curriculum; else d stays below it)
    slow_d = [] if grown else ['--dims_start=2', '--dims_interval=99']
    calls = record_training(monkeypatch, tmp_path, '--max_iters=60', '--n_points=6', '--n_keep=2',
                            '--n_keep_random=True', '--n_loops=4', '--loss_window=2', '--n_loops_random=True',
                            f'--n_loops_draw={draw}', *slow_d)
    assert len(calls) == 60
    assert {c['n_keep'] for c in calls} == set(range(2, 7))           # every n in [n_keep, N]
    assert {c['n_loops'] for c in calls} == set(range(2, b_top + 1))  # every b in [T, max(b, draw)]
    assert all(c['loss_window'] == 2 for c in calls)


def test_select_arms_see_the_same_prompts(monkeypatch, tmp_path):
    """At the same seed, select=first and select=random train on bit-identical prompts at every step."""
    arms = [record_training(monkeypatch, tmp_path / select, '--max_iters=12', '--n_keep=3',
                            f'--select={select}', '--n_keep_random=True') for select in ('first', 'random')]
    assert all(torch.equal(a['xs'], b['xs']) for a, b in zip(*arms)) and len(arms[0]) == 12
    assert arms[0][0]['scores'] is None and arms[1][0]['scores'] is not None


# -----------------------------------------------------------------------------
# the model against independent computations


def reference_loops(model, xs, ys, scores, n_loops):
    """The looped model written out one prompt at a time, the cut done by hand on lists of token indices:
    the query's prediction after the last loop, (B,)."""
    c, P = model.config, xs.size(1)
    out = []
    for i in range(xs.size(0)):
        e_full = model.embed(xs[i:i + 1], ys[i:i + 1])[0]  # (2P - 1, C)
        tokens = list(range(2 * P - 1))  # the original index of each token in hand
        examples = list(range(P - 1))    # the examples in hand, in their order
        h = torch.zeros_like(e_full)
        for t in range(1, n_loops + 1):
            n = model.examples_seen(t, P - 1, c.n_keep, c.n_loops)
            if n < len(examples):
                if c.select in ('first', 'last'):
                    examples = examples[:n] if c.select == 'first' else examples[-n:]
                else:  # the n highest scores; random keeps them in prompt order, shuffle in score order
                    best = sorted(examples, key=lambda j: -scores[i, j].item())[:n]
                    examples = best if c.select == 'shuffle' else sorted(best)
                kept = [tok for j in examples for tok in (2 * j, 2 * j + 1)] + [2 * (P - 1)]
                h = h[[tokens.index(tok) for tok in kept]]
                tokens = kept
            h = model.one_loop(h[None], e_full[tokens][None])[0]
        out.append(model.read_out(h[-1]).squeeze(-1))
    return torch.stack(out)


@pytest.mark.parametrize('select', SELECTS)
@pytest.mark.parametrize('schedule,truncate_after', [('constant', 0), ('constant', 1), ('shrink', 1),
                                                     ('constant', 2)])
def test_loop_with_cuts_matches_a_per_prompt_reference(select, schedule, truncate_after):
    xs, ys = prompts(batch=4)
    model = make_model(n_loops=4, loss_window=1, n_keep=3, select=select, n_keep_schedule=schedule,
                       truncate_after=truncate_after)
    scores = draws(xs, 3)
    with torch.no_grad():
        preds, _ = model(xs, ys, scores=scores)
        assert torch.allclose(preds[-1][:, -1], reference_loops(model, xs, ys, scores, 4), atol=1e-5)


def test_loss_on_query_takes_its_gradient_from_the_query_alone():
    xs, ys = prompts()
    model = make_model(loss_on='query', n_loops=3, loss_window=2).train()
    preds, loss = model(xs, ys)
    query_only = torch.stack([F.mse_loss(p[:, -1], ys[:, -1]) for p in preds]).mean()
    assert torch.allclose(loss, query_only, atol=1e-7)
    grad = torch.autograd.grad(loss, model.read_in.weight, retain_graph=True)[0]
    assert torch.allclose(grad, torch.autograd.grad(query_only, model.read_in.weight)[0], atol=1e-7)
    everywhere = torch.stack([F.mse_loss(p, ys) for p in preds]).mean()  # what loss_on=all would be
    assert not torch.allclose(loss, everywhere)


def test_gated_and_concat_injection_follow_their_formulas():
    torch.manual_seed(1)
    h, e = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    gated = make_model(inject='gated')
    with torch.no_grad():
        gated.inject_gate.copy_(torch.randn(16))
    assert torch.allclose(gated.inject(h, e), h + gated.inject_gate * e)
    concat = make_model(inject='concat')
    expected = torch.cat((h, e), -1) @ concat.inject_proj.weight.T + concat.inject_proj.bias
    assert torch.allclose(concat.inject(h, e), expected, atol=1e-6)
    assert torch.equal(make_model(inject='add').inject(h, e), h + e)
    # and the gate acts in the loop: a zero gate gives another prediction than the unit gate
    xs, ys = prompts()
    with torch.no_grad():
        before, _ = gated(xs, ys)
        gated.inject_gate.zero_()
        after, _ = gated(xs, ys)
    assert not torch.allclose(before[-1], after[-1])


@pytest.mark.parametrize('select', SELECTS)
@pytest.mark.parametrize('schedule', ('constant', 'shrink'))
def test_the_loop_compiles_to_one_graph(select, schedule):
    """fullgraph=True fails on any graph break, e.g. a random draw inside the loop (on a GPU a break means
    the loop runs launch by launch); the eager backend makes this a CPU check that costs no compile."""
    torch._dynamo.reset()
    xs, ys = prompts()
    model = make_model(n_loops=4, loss_window=2, n_keep=3, select=select, n_keep_schedule=schedule).train()
    compiled = torch.compile(model, fullgraph=True, backend='eager')
    _, loss = compiled(xs, ys, scores=draws(xs))
    _, eager = model(xs, ys, scores=draws(xs))
    assert torch.allclose(loss, eager)
    loss.backward()


def test_a_training_step_under_cpu_bf16_autocast():
    xs, ys = prompts()
    model = make_model(n_loops=2, loss_window=2).train()
    [optimizer] = model.configure_optimizers(0.0, 1e-3, (0.9, 0.999), 'cpu')
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, loss = model(xs, ys)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # mse_loss runs in fp32 under autocast
    loss.backward()
    optimizer.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


class NoFloat64(torch.Tensor):
    """A tensor that refuses float64, as MPS does: least squares must move to the CPU before it."""
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if isinstance(out, cls) and out.dtype == torch.float64:
            raise TypeError('float64 is not supported on this device')
        return out

    def cpu(self):
        return self.as_subclass(torch.Tensor)


def test_least_squares_runs_for_a_device_without_float64():
    from data import least_squares
    xs, ys = prompts(n=6)
    expected = least_squares(xs, ys)
    got = least_squares(xs.as_subclass(NoFloat64), ys.as_subclass(NoFloat64))
    assert torch.allclose(got.as_subclass(torch.Tensor), expected)
    with pytest.raises(TypeError):
        xs.as_subclass(NoFloat64).double()  # the stand-in does refuse float64


# -----------------------------------------------------------------------------
# devices: what a checkpoint or a GPU brings with it, and the same checks on each device that is here

def test_auto_dtype_is_bf16_only_where_the_gpu_has_it(monkeypatch):
    from model import autocast
    for capability, expected in (((7, 0), 'float32'), ((8, 0), 'bfloat16'), ((9, 0), 'bfloat16')):
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
        assert autocast(torch.device('cuda'), 'auto')[1] == expected, capability  # V100/T4: emulated, slow
    assert autocast(torch.device('cpu'), 'auto')[1] == 'float32'


def test_a_checkpoint_from_cuda_does_not_bring_its_fused_optimizer():
    import rundir
    model = LoopedGPT(LoopedGPTConfig(n_dims=3, n_points=4, n_layer=1, n_head=2, n_embd=16, mlp_size=32))
    [on_cuda] = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), 'cuda')  # fused=True, as saved on a GPU
    # AdamW's state alone, as checkpoints were written before --optimizer: they still resume
    ckpt = {'model': model.state_dict(), 'optimizer': on_cuda.state_dict(),
            'iter': 7, 'rng': {'torch': torch.get_rng_state(), 'device_type': 'cuda', 'cuda': None}}
    [here] = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), 'cpu')
    assert rundir.restore(ckpt, model, [here], torch.device('cpu'), {}) == 7
    assert [g['fused'] for g in here.param_groups] == [False, False]


def test_generators_saved_on_another_device_type_are_reseeded_apart():
    """Resumed on another device type, the data and cut streams start afresh, each from a seed of its own:
    the cut's draws must not repeat the data's."""
    import rundir
    model = LoopedGPT(LoopedGPTConfig(n_dims=3, n_points=4, n_layer=1, n_head=2, n_embd=16, mlp_size=32))
    optimizers = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), 'cpu')
    generators = {name: make_generator(0) for name in ('data', 'trunc', 'host')}
    rng = {'torch': torch.get_rng_state(), 'device_type': 'cuda', 'cuda': None,
           'host': make_generator(5).get_state()}
    ckpt = {'model': model.state_dict(), 'optimizer': [o.state_dict() for o in optimizers], 'iter': 7,
            'config': {'seed': 42}, 'rng': rng}
    rundir.restore(ckpt, model, optimizers, torch.device('cpu'), generators)
    data, trunc = (torch.rand(8, generator=generators[name]) for name in ('data', 'trunc'))
    assert not torch.equal(data, trunc)
    host = torch.rand(8, generator=generators['host'])
    assert torch.equal(host, torch.rand(8, generator=make_generator(5)))  # the host's is any device's


DEVICES = [d for d, here in (('cuda', torch.cuda.is_available()), ('mps', torch.backends.mps.is_available()))
           if here]  # empty here on a CPU-only machine: the tests below are then reported as skipped


@pytest.mark.parametrize('device', DEVICES)
def test_train_resume_and_evaluate_on_the_device(tmp_path, device):
    """A short run, resumed exactly (the same weights as a straight run), evaluated and benchmarked."""
    common = [*TINY[:-1], f'--device={device}', '--eval_interval=5', '--dropout=0.1', '--dtype=float32']
    assert_ok(run_cli(*common, '--max_iters=10', f'--out_dir={tmp_path / "whole"}'))
    assert_ok(run_cli(*common, '--max_iters=5', f'--out_dir={tmp_path / "parts"}'))
    assert_ok(run_cli(*common, '--max_iters=10', f'--out_dir={tmp_path / "parts"}', '--init_from=resume'))
    [name] = os.listdir(tmp_path / 'whole')
    a, b = (load_checkpoint(str(tmp_path / part / name / 'ckpt.pt')) for part in ('whole', 'parts'))
    assert all(torch.allclose(a['model'][k], b['model'][k], atol=1e-5) for k in a['model'])
    for script, args in (('eval_extrapolation.py', [str(tmp_path / 'whole' / name), '--max_loops=4',
                                                    '--n_prompts=32', f'--device={device}']),
                         ('bench.py', [*TINY[:-1], f'--device={device}', '--steps=3', '--warmup=1'])):
        assert_ok(subprocess.run([sys.executable, os.path.join(HERE, script), *args], cwd=HERE,
                                 capture_output=True, text=True, timeout=300))
