"""One ensemble-SGD core: ``R`` independent SGD runs of one model, advanced together.

Every trained tensor carries a leading run axis, so one batched step advances every run.
A model subclasses :class:`EnsembleSGD` and supplies only what is its own:

* ``sample(batch=None) -> tuple`` - the step's minibatch for every run, drawn with
  :meth:`~EnsembleSGD.randn` / :meth:`~EnsembleSGD.randint` (the ensemble's generator);
* ``gradients(*batch) -> (loss, grads)`` - the per-run minibatch loss ``(R,)`` (or None) and
  one minibatch gradient per tensor of ``weights``, without weight decay;
* ``record(batch, loss, grads) -> dict`` (optional) - per-step observables ``(R, ...)`` at the
  PRE-step weights and for the gradient the step uses; the default records the loss;
* ``update(grads)`` (optional) - the default is ``W <- W - eta (g + 2 gam W)``;
* ``stepped(before, grads)`` (optional) - called after each recorded step with the pre-step
  ``weights`` and the step's gradients, for observables that need the post-step state too
  (an exact one-step identity checked against the weights the step actually wrote).

and keeps its trained tensors in ``self.weights`` (a list of ``(R, ...)`` tensors; a model with
named tensors can make ``weights`` a property). Its ``__post_init__`` validates its own
hyper-parameters, calls :meth:`~EnsembleSGD.init_ensemble` (device, generator, the common
checks) and only then draws the teacher and the initial weights.

The base owns the rest:

* seeding: one ``torch.Generator`` on the device, seeded with ``seed``; every random number
  the model draws comes from it, in the order the model draws it;
* ``run(n_steps, progress=None, record=True)`` - SGD steps; every ``track_every`` steps the
  first step at which each run went bad (non-finite, or ``|theta| > blowup_norm``) is noted
  on the device (no host sync), and every ``check_every`` steps and at the end of ``run`` a
  bad run raises :class:`~core.errors.DivergenceError` naming the runs and their steps. A
  state that is already NaN or infinite when ``run`` starts (and not made so by a tracked
  step) is bad input, not a learning-rate problem: :class:`~core.errors.InputError` naming
  the tensor and the runs;
* ``observe()`` - the average of the recorded observables since the previous call.

Attributes a model must have: ``n_runs``, ``eta``, ``seed``, ``device``; class defaults
(override them as dataclass fields): ``weight_decay = 0``, ``dtype = float64``,
``blowup_norm = 1e6``, ``check_every = 100``, ``track_every = 1``.

>>> from dataclasses import dataclass
>>> from core.errors import DivergenceError, InputError
>>> @dataclass
... class Scalar(EnsembleSGD):            # l = (w x - y)^2, y = 2 x + noise
...     n_runs: int = 4
...     eta: float = 0.1
...     seed: int = 0
...     device: str = "cpu"
...     def __post_init__(self):
...         self.init_ensemble()
...         self.weights = [self.randn(self.n_runs, 1)]
...     def sample(self, batch=None):
...         x = self.randn(self.n_runs, 1)
...         return x, 2.0 * x + 0.1 * self.randn(self.n_runs, 1)
...     def gradients(self, x, y):
...         r = self.weights[0] * x - y
...         return r.pow(2).squeeze(-1), [2.0 * r * x]
>>> m = Scalar()
>>> m.run(200); obs = m.observe()
>>> m.step_count, tuple(obs["loss"].shape), bool((m.weights[0] - 2.0).abs().max() < 0.2)
(200, (4,), True)
>>> try:                                  # past the stability limit: which runs, from when
...     Scalar(eta=5.0).run(50)
... except DivergenceError as e:
...     e.runs, e.steps
([0, 1, 2, 3], [13, 7, 20, 8])
>>> m = Scalar(); m.weights[0][2] = float("nan")
>>> try:                                  # a bad initial state is bad input, not a divergence
...     m.run(1)
... except InputError as e:
...     print(str(e)[:48])
W_1 of this model is NaN or infinite in runs [2]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from core.errors import DivergenceError, InputError
from core.validation import check_positive

from .device import resolve_device


class EnsembleSGD:
    """``n_runs`` independent SGD runs of one model (see the module docstring for the contract)."""

    weight_decay: float = 0.0
    dtype: torch.dtype = torch.float64
    blowup_norm: float = 1e6
    check_every: int = 100
    track_every: int = 1
    model_name: str = "model"  # how divergence and input errors name the model

    # ------------------------------------------------------------------------- set-up
    def init_ensemble(self) -> None:
        """Resolve the device, check the common hyper-parameters, seed the generator.

        Call it from ``__post_init__`` after the model's own checks and before drawing any
        random number (the teacher and initial weights come from the generator it seeds).
        """
        self.device = resolve_device(self.device)
        check_positive("eta", self.eta)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if int(self.n_runs) < 1:
            raise InputError(f"n_runs must be >= 1, got {self.n_runs}")
        if int(self.track_every) < 1 or int(self.check_every) < 1:
            raise InputError(f"track_every and check_every must be >= 1, got {self.track_every}, {self.check_every}")
        # One more step of decay than 1/(2 gam) flips the weight sign every step: unstable.
        if self.eta * 2.0 * self.weight_decay >= 1.0:
            raise InputError(f"eta * 2 * weight_decay = {2 * self.eta * self.weight_decay:g} >= 1: "
                             "the decay step alone overshoots; lower eta or weight_decay")
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(self.seed))
        self.step_count = 0
        self._first_bad = torch.full((int(self.n_runs),), -1, dtype=torch.long, device=self.device)
        self._acc: dict = {}
        self._acc_n = 0

    def randn(self, *shape) -> torch.Tensor:
        """Standard normal draws from the ensemble's generator (the model's dtype and device)."""
        return torch.randn(*shape, generator=self._gen, device=self.device, dtype=self.dtype)

    def randint(self, high: int, shape) -> torch.Tensor:
        """Integers in ``[0, high)`` from the ensemble's generator."""
        return torch.randint(0, int(high), tuple(shape), generator=self._gen, device=self.device)

    def weight_names(self) -> list:
        """Names of the tensors in ``weights`` (for messages): the class's ``tensor_names``
        where it has them (see :func:`named_tensor`), else ``W_1, W_2, ...``."""
        names = getattr(type(self), "tensor_names", None)
        return list(names) if names else [f"W_{i + 1}" for i in range(len(self.weights))]

    # ---------------------------------------------------------------- the model's part
    def sample(self, batch: int | None = None) -> tuple:
        raise NotImplementedError

    def gradients(self, *batch):
        raise NotImplementedError

    def record(self, batch, loss, grads) -> dict | None:
        """Per-step observables (pre-step weights, the step's gradient); default: the loss."""
        return None if loss is None else {"loss": loss}

    def stepped(self, before: list, grads) -> None:
        """After a recorded step: the pre-step ``weights`` and the gradients it used (no-op)."""

    def update(self, grads) -> None:
        """``W <- W - eta (g + 2 gam W)`` for every trained tensor (plain SGD when gam = 0)."""
        decay = 2.0 * self.weight_decay
        self.weights = [W - self.eta * (g + decay * W) if decay else W - self.eta * g
                        for W, g in zip(self.weights, grads)]

    # ---------------------------------------------------------------------------- SGD
    def step(self, record: bool = True) -> None:
        """One SGD step of every run."""
        batch = self.sample()
        loss, grads = self.gradients(*batch)
        if record:
            self._accumulate(self.record(batch, loss, grads))
        before = self.weights
        self.update(grads)
        if record:
            self.stepped(before, grads)
        self.step_count += 1
        if self.step_count % self.track_every == 0:
            self._track_divergence()

    def run(self, n_steps: int, progress=None, record: bool = True) -> None:
        """Advance every run ``n_steps`` SGD steps; DivergenceError when a run blows up.

        ``record=False`` skips the per-step observables (a burn-in); ``progress(n)`` is
        called after every step.
        """
        self._check_state()
        for _ in range(int(n_steps)):
            self.step(record)
            if self.step_count % self.check_every == 0:
                self.raise_if_diverged()
            if progress is not None:
                progress(1)
        self.raise_if_diverged()

    # ---------------------------------------------------------------------- divergence
    def _run_norms(self) -> torch.Tensor:
        """``|theta|^2`` of every run (R,)."""
        return sum(W.pow(2).reshape(W.shape[0], -1).sum(-1) for W in self.weights)

    def _track_divergence(self) -> None:
        # Note (without a host sync) the first step at which each run went bad.
        norm = self._run_norms()
        bad = ~torch.isfinite(norm) | (norm > self.blowup_norm**2)
        newly = bad & (self._first_bad < 0)
        self._first_bad = torch.where(newly, torch.full_like(self._first_bad, self.step_count), self._first_bad)

    def raise_if_diverged(self) -> None:
        """DivergenceError naming every run that went bad and the first step it was seen."""
        if self.track_every > 1:
            self._track_divergence()
        raise_divergence(self._first_bad, self.n_runs, self.blowup_norm, self.track_every,
                         f"eta = {self.eta:g} is past the stability limit of this {self.model_name}")

    def _check_state(self) -> None:
        """InputError when a tensor of ``weights`` is NaN/inf in a run no tracked step made bad."""
        untracked = (self._first_bad < 0).cpu()
        for name, W in zip(self.weight_names(), self.weights):
            bad = ~torch.isfinite(W.reshape(W.shape[0], -1)).all(-1).cpu() & untracked
            if bool(bad.any()):
                runs = torch.nonzero(bad).flatten().tolist()
                raise InputError(f"{name} of this {self.model_name} is NaN or infinite in runs {runs[:8]}"
                                 f"{' ...' if len(runs) > 8 else ''} before step {self.step_count}: the initial "
                                 "state is bad (not an SGD divergence); fix the initialisation or loaded weights")

    def load_weights(self, weights: Sequence) -> None:
        """Set every run's trained tensors (a tensor without the run axis is broadcast to all
        runs) and forget earlier divergences."""
        if len(weights) != len(self.weights):
            raise InputError(f"need {len(self.weights)} tensors, got {len(weights)}")
        new = []
        for name, W_old, W in zip(self.weight_names(), self.weights, weights):
            W = torch.as_tensor(W, dtype=self.dtype, device=self.device)
            if W.shape == W_old.shape[1:]:
                W = W.expand_as(W_old)
            if W.shape != W_old.shape:
                raise InputError(f"{name} has shape {tuple(W.shape)}, expected {tuple(W_old.shape)}")
            new.append(W.clone())
        self.weights = new
        self._first_bad.fill_(-1)

    # ---------------------------------------------------------------------- observables
    def _accumulate(self, obs: dict | None) -> None:
        if not obs:
            return
        for k, v in obs.items():
            self._acc[k] = self._acc[k] + v if k in self._acc else v.clone()
        self._acc_n += 1

    def observe(self) -> dict:
        """Averages of the recorded per-step observables since the last call (then reset)."""
        if self._acc_n == 0:
            raise RuntimeError("observe() before any recorded step: call run(n) first")
        out = {k: v / self._acc_n for k, v in self._acc.items()}
        self._acc, self._acc_n = {}, 0
        return out


def named_tensor(index: int, doc: str = "") -> property:
    """A read-only name for ``weights[index]`` (e.g. ``U = named_tensor(0)``)."""
    return property(lambda self: self.weights[index], doc=doc or f"weights[{index}]")


def weight_decay_named_gamma() -> property:
    """``weight_decay`` read from a model's ``gamma`` field (the paper's name for it)."""
    return property(lambda self: self.gamma, doc="the weight decay gam (the model's ``gamma``)")


def raise_divergence(first_bad: torch.Tensor, n_runs: int, blowup_norm: float, track_every: int, cause: str) -> None:
    """Raise DivergenceError for the runs whose first bad step is recorded (``first_bad >= 0``),
    naming up to eight of them with their steps; ``cause`` ends the message. Nothing when no
    run went bad. Shared by every ensemble engine."""
    first = first_bad.cpu().numpy()
    runs = np.nonzero(first >= 0)[0]
    if not runs.size:
        return
    steps = first[runs]
    shown = ", ".join(f"run {r} at step {s}" for r, s in list(zip(runs, steps))[:8])
    more = f" (+{runs.size - 8} more)" if runs.size > 8 else ""
    granularity = f" (first seen; checked every {track_every} steps)" if track_every > 1 else ""
    raise DivergenceError(f"SGD diverged in {runs.size}/{n_runs} runs (|theta| > {blowup_norm:g} or NaN): "
                          f"{shown}{more}{granularity}; {cause}", runs=runs.tolist(), steps=steps.tolist())
