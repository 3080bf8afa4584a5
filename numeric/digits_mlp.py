r"""Fig. 4 nonlinear check on scikit-learn's bundled digits (no download).

Two 6-layer MLPs (5 hidden layers of equal width, tanh or linear activation) are trained
with minibatch SGD on the MSE to one-hot labels; net B sees the inputs through a fixed
random Gaussian matrix (``x -> R x``, R invertible with probability 1; the paper's
"transformed by a random Gaussian matrix"). On held-out digits we measure the alignment
(:mod:`numeric.alignment`) of every hidden layer of A with every hidden layer of B, and of
each with the raw input.

>>> data = load_digits_split(seed=0)
>>> data.x_train.shape[1], data.y_train.shape[1]
(64, 10)
>>> net = make_mlp(64, 16, 10, "tanh", seed=0)
>>> len(hidden_features(net, data.x_test[:5]))
5
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .alignment import alignment_matrix
from .device import resolve_device
from core.errors import DivergenceError, InputError
from .figures import saved_figure

N_LAYERS = 6  # weight layers; 5 hidden representations


@dataclass
class DigitsData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels_test: np.ndarray


def load_digits_split(seed: int = 0, test_fraction: float = 0.25, dtype=torch.float64) -> DigitsData:
    """8x8 digits scaled to [0, 1] and centred (train mean), one-hot targets, fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    xtr, xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    mu = xtr.mean(0)
    xtr, xte = xtr - mu, xte - mu
    eye = np.eye(10)
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return DigitsData(t(xtr), t(eye[ytr]), t(xte), t(eye[yte]), yte)


def make_mlp(d_in: int, width: int, d_out: int, activation: str, seed: int, dtype=torch.float64) -> torch.nn.Sequential:
    """``N_LAYERS`` linear layers with ``activation`` ('tanh' | 'linear') between them."""
    if activation not in ("tanh", "linear"):
        raise InputError(f"activation must be 'tanh' or 'linear', got {activation!r}")
    if int(width) < 1:
        raise InputError(f"width must be positive, got {width}")
    torch.manual_seed(seed)
    dims = [d_in] + [width] * (N_LAYERS - 1) + [d_out]
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(torch.nn.Linear(a, b).to(dtype))
        if i < N_LAYERS - 1:
            layers.append(torch.nn.Tanh() if activation == "tanh" else torch.nn.Identity())
    return torch.nn.Sequential(*layers)


def hidden_features(net: torch.nn.Sequential, x: torch.Tensor) -> list:
    """Post-activation outputs of the 5 hidden layers, as numpy arrays (n, width)."""
    out = []
    h = x
    with torch.no_grad():
        for i in range(0, len(net) - 1, 2):
            h = net[i + 1](net[i](h))
            out.append(h.cpu().numpy())
    return out


def train_mlp(net, x, y, lr: float, epochs: int, batch: int = 32, seed: int = 0, device="cpu") -> float:
    """Minibatch SGD on ``mean |net(x) - y|^2``; returns the final training loss.
    Raises DivergenceError on a non-finite loss (learning rate past stability)."""
    if not lr > 0:
        raise InputError(f"learning rate must be positive, got {lr}")
    dev = resolve_device(device)
    net.to(dev)
    x, y = x.to(dev), y.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        for s in range(0, n - batch + 1, batch):
            idx = perm[s:s + batch]
            loss = ((net(x[idx]) - y[idx]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not torch.isfinite(loss):
            raise DivergenceError(f"digits MLP training diverged at epoch {ep} (lr = {lr} past stability)")
    with torch.no_grad():
        final = float(((net(x) - y) ** 2).sum(1).mean())
    net.to("cpu")
    return final


@dataclass
class PairResult:
    activation: str
    lr: float
    epochs: int
    width: int
    matrix: dict  # measure -> (5, 5) alignment of hidden layers A x B
    input_alignment: dict  # measure -> (2, 5): layers of A / B vs the raw input
    init_matrix: dict  # the same for the untrained pair (baseline)
    test_accuracy: tuple
    cpu_seconds: float

    def mean(self, measure="gram_cosine") -> float:
        return float(self.matrix[measure].mean())


def train_pair(activation: str, lr: float, epochs: int, width: int = 64, seed: int = 0, data: DigitsData | None = None,
               measures=("gram_cosine", "linear_cka", "mutual_knn"), device="cpu") -> PairResult:
    """Train nets A (raw inputs) and B (inputs through a random Gaussian matrix); align."""
    t0 = time.process_time()
    data = load_digits_split(0) if data is None else data
    d_in = data.x_train.shape[1]
    rng = np.random.default_rng(seed + 12345)
    R = torch.as_tensor(rng.standard_normal((d_in, d_in)) / np.sqrt(d_in))
    xb_tr, xb_te = data.x_train @ R.T, data.x_test @ R.T
    net_a = make_mlp(d_in, width, 10, activation, seed=2 * seed)
    net_b = make_mlp(d_in, width, 10, activation, seed=2 * seed + 1)

    def align(na, nb):
        fa, fb = hidden_features(na, data.x_test), hidden_features(nb, xb_te)
        x = data.x_test.numpy()
        m = {meas: alignment_matrix(fa, fb, meas) for meas in measures}
        inp = {meas: np.vstack([alignment_matrix([x], fa, meas), alignment_matrix([x], fb, meas)]) for meas in measures}
        return m, inp

    init_m, _ = align(net_a, net_b)
    train_mlp(net_a, data.x_train, data.y_train, lr, epochs, seed=seed, device=device)
    train_mlp(net_b, xb_tr, data.y_train, lr, epochs, seed=seed + 1, device=device)
    m, inp = align(net_a, net_b)
    with torch.no_grad():
        acc = tuple(float((n(x).argmax(1).numpy() == data.labels_test).mean())
                    for n, x in ((net_a, data.x_test), (net_b, xb_te)))
    return PairResult(activation, float(lr), int(epochs), int(width), m, inp, init_m, acc, time.process_time() - t0)


def digits_experiment(*, seeds=(0,), width: int = 32, epochs: int = 10, lrs=(0.001, 0.01, 0.1), device="cpu") -> dict:
    """Train the A/B pairs of Fig. 4: tanh MLPs at every learning rate in ``lrs`` and linear
    MLPs at lr 0.1, for every seed; ``{(activation, lr, seed): PairResult}``."""
    data = load_digits_split(0)
    return {(act, lr, s): train_pair(act, lr, epochs, width, seed=s, data=data, device=device)
            for act in ("tanh", "linear") for lr in (lrs if act == "tanh" else (0.1,)) for s in seeds}


def plot_cka_heatmaps(path, results):
    with saved_figure(path, nrows=1, ncols=len(results), figsize=(4 * len(results), 3.4), dpi=100) as (fig, axes):
        for ax, r in zip(np.atleast_1d(axes), results):
            im = ax.imshow(r.matrix["linear_cka"], vmin=0, vmax=1, cmap="viridis")
            ax.set(title=f"linear CKA, {r.activation}, lr={r.lr}", xlabel="layer of B (rotated input)", ylabel="layer of A")
            ax.set_xticks(range(5), range(1, 6))
            ax.set_yticks(range(5), range(1, 6))
            fig.colorbar(im, ax=ax)
    return path
