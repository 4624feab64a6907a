"""
Evaluate trained runs: the query error as the loop count grows past b_train, and as the number of
in-context examples k grows, next to the classical algorithms on the very same prompts.
"""

import torch

# -----------------------------------------------------------------------------
# baselines: each maps prompts xs (B, k+1, d), ys (B, k+1) to a prediction for the query (B,)
# (fitted on the k examples only; the query's y is never looked at)

RIDGE_LAMBDA = 0.1
KNN_NEIGHBOURS = 3


def least_squares(xs, ys):
    """Min-norm least squares: the optimum for noiseless linear regression."""
    X, y = xs[:, :-1].double(), ys[:, :-1].double()  # (B, k, d), (B, k)
    if X.size(1) == 0:
        return torch.zeros_like(ys[:, -1])
    w = torch.linalg.pinv(X) @ y.unsqueeze(-1)  # (B, d, 1)
    return (xs[:, -1:].double() @ w).view(-1).to(ys.dtype)


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
