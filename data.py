"""
Prompts for in-context learning: each prompt draws a function f (a task) and k + 1 points
x_i ~ N(0, I_d); the model sees (x_1, f(x_1)), ..., (x_k, f(x_k)), x_{k+1} and must give f(x_{k+1}).
Everything is drawn from an explicit torch.Generator, on the device the model runs on, so a seed
reproduces a run and no batch crosses from host to device.
"""

import math

import torch

TASKS = ('linear', 'noisy_linear', 'sparse_linear', 'quadratic', 'relu2nn', 'decision_tree')

RELU2NN_HIDDEN = 100     # hidden units of the random two-layer ReLU nets (Garg et al.)
TREE_DEPTH = 4           # depth of the random decision trees (Garg et al.)


def sample_ys(task, xs, generator, noise_std=0.0, sparsity=3):
    """Draw one random function of the task per prompt and apply it to every x: (B, P, d) -> (B, P)."""
    B, P, d = xs.shape
    randn = lambda *shape: torch.randn(*shape, generator=generator, device=xs.device)
    if task in ('linear', 'noisy_linear', 'sparse_linear'):
        w = randn(B, d, 1)
        if task == 'sparse_linear':  # keep `sparsity` random coordinates of w
            order = torch.rand(B, d, generator=generator, device=xs.device).argsort(dim=1)
            w = w * (order < sparsity).unsqueeze(-1)
        ys = (xs @ w).squeeze(-1)
        return ys + noise_std * randn(B, P) if task == 'noisy_linear' else ys
    if task == 'quadratic':
        return ((xs ** 2) @ randn(B, d, 1)).squeeze(-1) / math.sqrt(3)  # unit variance per coordinate
    if task == 'relu2nn':
        w1, w2 = randn(B, d, RELU2NN_HIDDEN), randn(B, RELU2NN_HIDDEN, 1)
        return (torch.relu(xs @ w1) @ w2).squeeze(-1) * math.sqrt(2 / RELU2NN_HIDDEN)
    if task == 'decision_tree':
        # a full binary tree: node j splits on coordinate feature[j] at 0 (x > 0 goes right)
        n_inner = 2 ** TREE_DEPTH - 1
        feature = torch.randint(0, d, (B, n_inner), generator=generator, device=xs.device)
        leaf_value = randn(B, 2 ** TREE_DEPTH)
        node = torch.zeros(B, P, dtype=torch.long, device=xs.device)
        for _ in range(TREE_DEPTH):
            coordinate = xs.gather(2, feature.gather(1, node).unsqueeze(-1)).squeeze(-1)  # (B, P)
            node = 2 * node + 1 + (coordinate > 0).long()
        return leaf_value.gather(1, node - n_inner)
    raise ValueError(f'unknown task {task!r}')


def sample_batch(task, batch_size, n_points, n_dims, generator, device='cpu', n_dims_active=None,
                 noise_std=0.0, sparsity=3):
    """A batch of prompts: xs (B, n_points + 1, d), ys (B, n_points + 1); the last pair is the query.
    The x's are standard normal, with the dimensions past n_dims_active zero (the dims curriculum)."""
    xs = torch.randn(batch_size, n_points + 1, n_dims, generator=generator, device=device)
    xs[:, :, n_dims if n_dims_active is None else n_dims_active:] = 0
    return xs, sample_ys(task, xs, generator, noise_std, sparsity)


def curriculum(start, end, step, interval, iteration):
    """Value at `iteration` of a staircase from start to end: + step every `interval` iterations.
    start = 0 switches the curriculum off (the value is `end` from the first step)."""
    if start <= 0 or interval <= 0:
        return end
    return min(end, start + step * (iteration // interval))


def make_generator(seed, device='cpu'):
    device = torch.device(device)
    if device.type != 'cpu' and device.index is None:  # a generator on 'mps' or 'cuda' wants the index
        device = torch.device(device.type, 0)
    return torch.Generator(device=device).manual_seed(seed)


def validation_set(task, n_prompts, n_points, n_dims, seed, device='cpu', noise_std=0.0, sparsity=3,
                   n_dims_active=None):
    """A fixed set of prompts, drawn on the CPU so that it is the same on every device:
    every run with the same seed, task, d and N is scored on the very same prompts."""
    xs, ys = sample_batch(task, n_prompts, n_points, n_dims, make_generator(seed), 'cpu', n_dims_active,
                          noise_std=noise_std, sparsity=sparsity)
    return xs.to(device), ys.to(device)


def first_k(xs, ys, k):
    """The same prompts with only their first k examples (and the query): what the model sees at k."""
    return torch.cat((xs[:, :k], xs[:, -1:]), dim=1), torch.cat((ys[:, :k], ys[:, -1:]), dim=1)


def least_squares(xs, ys):
    """Min-norm least squares fitted on the k examples, the query's prediction (B,): the optimum for
    noiseless linear regression. Float64 on the CPU (MPS has no float64), returned on xs' device."""
    X, y = xs[:, :-1].cpu().double(), ys[:, :-1].cpu().double()  # (B, k, d), (B, k)
    if X.size(1) == 0:
        return torch.zeros_like(ys[:, -1])
    w = torch.linalg.pinv(X) @ y.unsqueeze(-1)  # (B, d, 1)
    return (xs[:, -1:].cpu().double() @ w).view(-1).to(ys.dtype).to(ys.device)
