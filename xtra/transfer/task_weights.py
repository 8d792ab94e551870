"""Periodic task re-weighting of the offline games (paper Eq. 1, 2, 4 and App. B; spec B7).

Every ``cycle`` (T) training steps, starting at ``start``, the first ``window`` (N) steps are a
measurement window: at each of them the gradient of the target game's loss and of each offline
game's loss over all shared parameters are compared by their cosine (Eq. 2), and a per-game counter
goes up when the cosine exceeds the threshold (Eq. 4). At the end of the window each offline game
gets the weight eta = (smoothing + count) / (smoothing + measurements), fixed until the end of the
next window; eta multiplies that game's loss in Eq. 1. The target game always has weight 1.

Shapes: B samples, G = 1 + M groups (group 0 = the target game, 1..M = the offline games), P =
number of shared parameters, flattened. ``docs/task_weights.md`` maps every switch to the paper
and to the reference code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from xtra import seeds
from xtra.config import Config
from xtra.errors import ConfigError
from xtra.learn.batch import LearnBatch
from xtra.learn.learner import Learner
from xtra.learn.loop import DrawFn
from xtra.model.networks import frozen_running_stats

# --------------------------------------------------------------------------- schedule


def in_measurement_window(step: int, *, start: int, cycle: int, window: int) -> bool:
    """True when training step ``step`` measures gradient cosines (App. B; spec B7.1).

    ``step >= start and (step - start) % cycle < window``. With start=10000, cycle=5000,
    window=500 these are [10000, 10500), [15000, 15500), ... exactly as the code's
    ``step >= 10000 and step % 5000 < 500``. Cycles are anchored at ``start``; the code anchors
    them at 0, which is the same whenever ``start`` is a multiple of ``cycle``.
    """
    return step >= start and (step - start) % cycle < window


def is_update_step(step: int, *, start: int, cycle: int, window: int) -> bool:
    """True at the first step after each measurement window: eta is recomputed there (spec B7.2).

    ``step >= start + window and (step - start - window) % cycle == 0``: 10500, 15500, ... for
    start=10000, cycle=5000, window=500. The update comes before that step's loss is formed, so
    step 10500 already trains with the new eta, and it uses the measurements of steps
    10000..10499. The code's update also fires at 500 and 5500, before any window; with nothing
    measured it leaves eta at 1, so this function simply does not fire before the first window.
    """
    return step >= start + window and (step - start - window) % cycle == 0


# --------------------------------------------------------------------------- formulas


def gradient_cosines(
    target_grad: torch.Tensor, task_grads: torch.Tensor, *, clamp: float | None
) -> torch.Tensor:
    """Eq. 2: cos(G_target, G_i) for every offline game i. target_grad [P], task_grads [M, P] -> [M].

    ``clamp``: clamp both gradients element-wise to [-clamp, clamp] first, as the reference code
    does with its max_grad_norm 5 (spec B7.1, D-XT-5); None compares the raw gradients. A zero
    gradient has cosine 0 with everything.
    """
    target = target_grad.float()
    tasks = task_grads.float()
    if clamp is not None:
        target = target.clamp(-clamp, clamp)
        tasks = tasks.clamp(-clamp, clamp)
    dots = tasks @ target
    norms = tasks.norm(dim=1) * target.norm()
    return torch.where(norms > 0, dots / norms.clamp_min(1e-30), torch.zeros_like(dots))


def weights_from_counts(
    counts: torch.Tensor,
    measurements: torch.Tensor,
    *,
    smoothing: float,
    round_to: float | None,
) -> torch.Tensor:
    """App. B: eta_i = (smoothing + s_i) / (smoothing + n_i). counts, measurements [M] -> [M] float64.

    s_i = measurements with cos > threshold (Eq. 4), n_i = measurements of game i in the window.
    smoothing=0 is the paper's s/N; smoothing=1 is the code's counters that start at 1 (B7.2).
    ``round_to``: round to this multiple (the code rounds to 0.01); None keeps the exact ratio.
    A game with no measurement keeps the neutral weight 1 (the code's 1/1).
    """
    s = counts.double()
    n = measurements.double()
    denominator = smoothing + n
    eta = torch.where(
        denominator > 0, (smoothing + s) / denominator.clamp_min(1e-30), torch.ones_like(s)
    )
    if round_to is not None:
        eta = torch.round(eta / round_to) * round_to
    return eta


def noise_floor_cosines(half_grads: torch.Tensor, *, clamp: float | None) -> torch.Tensor:
    """The noise floor of each group's gradient: cos(G_g^A, G_g^B) between the gradients of two
    disjoint halves of the group's samples. half_grads [2G, P] (rows 2g, 2g+1) -> [G].

    Two halves of the same game measure the same expected gradient, so their cosine is what a
    cross-game cosine can reach at this batch size when the games agree perfectly; a cross-game
    cosine well below it cannot be told from sampling noise."""
    a, b = half_grads[0::2].float(), half_grads[1::2].float()
    if clamp is not None:
        a, b = a.clamp(-clamp, clamp), b.clamp(-clamp, clamp)
    dots = (a * b).sum(dim=1)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, dots / norms.clamp_min(1e-30), torch.zeros_like(dots))


def weights_from_accumulated(
    agreement: torch.Tensor, target_floor: float, *, smoothing: float, window: int, dims: int
) -> torch.Tensor:
    """The ``accumulated`` estimator's eta (ours, not the paper's): agreement [M] is
    cos(sum of the window's target gradients, sum of game i's), target_floor the same cosine
    between the two halves of the target's summed gradient (what a game that agrees perfectly
    reaches at this noise level). eta_i = clip(agreement_i / target_floor, floor, 1) with
    App. B's floor smoothing / (smoothing + window). When the target's own halves do not agree
    beyond chance (target_floor <= 3 / sqrt(dims), three standard deviations of the cosine of
    two random vectors of ``dims`` entries) there is no signal to compare with, and every eta
    stays 1: noise alone never switches a game off. -> [M] float64."""
    if target_floor <= 3.0 / math.sqrt(max(dims, 1)):
        return torch.ones_like(agreement, dtype=torch.float64)
    low = smoothing / (smoothing + window) if smoothing + window > 0 else 0.0
    return (agreement.double() / target_floor).clamp(low, 1.0)


def split_halves(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Half index of each sample [B]: 2g for the 1st, 3rd, ... sample of group g, 2g+1 for the
    2nd, 4th, ...; groups [B] in 0..G-1."""
    one_hot = torch.nn.functional.one_hot(groups, num_groups)  # [B, G]
    rank = (one_hot.cumsum(0) - 1).gather(1, groups[:, None]).squeeze(1)
    return groups * 2 + rank % 2


# --------------------------------------------------------------------------- per-task gradients


def _group_means(
    loss_per_sample: torch.Tensor, groups: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """Mean of ``loss_per_sample`` [B] over each group's samples -> [G] (0 for an empty group)."""
    sums = torch.zeros(
        num_groups, device=loss_per_sample.device, dtype=loss_per_sample.dtype
    ).index_add(0, groups, loss_per_sample)
    counts = torch.bincount(groups, minlength=num_groups).clamp_min(1)
    return sums / counts.to(loss_per_sample.dtype)


def per_task_gradients(
    loss_per_sample: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    params: Sequence[torch.nn.Parameter],
    *,
    retain_graph: bool,
    halves: bool = False,
) -> torch.Tensor:
    """Gradients of each group's mean loss over ``params``, in one vmapped backward -> [G, P];
    with ``halves``, also of each half of each group (:func:`split_halves`) -> [3G, P]: the G
    group rows, then 2G half rows.

    loss_per_sample [B] (e.g. PER weight * LossTerms.total / K, without eta: spec B7.1),
    groups [B] int64 in 0..G-1. ``torch.autograd.grad(..., is_grads_batched=True)`` runs the G
    vector-Jacobian products of the shared graph as one batched backward; the result equals
    :func:`per_task_gradients_reference` (tests/test_task_weights.py). Parameters the losses do
    not reach get zeros. ``retain_graph=True`` keeps the graph for the update's own backward.
    With fp16 autocast, pass the loss times the GradScaler's scale and divide the result by it.
    Peak memory: G sets of activation gradients at once.

    On CUDA it runs the G backward passes one after another instead: cuDNN's LSTM backward has
    no batching rule, and taking the value-prefix LSTM off cuDNN stopped the tiny preset from
    learning on an H100 (6 of 6 runs, against 6 of 6 that learned with cuDNN).
    """
    if loss_per_sample.is_cuda:
        return per_task_gradients_reference(
            loss_per_sample, groups, num_groups, params, retain_graph=retain_graph, halves=halves
        )
    params = list(params)
    group_losses = _row_losses(loss_per_sample, groups, num_groups, halves)
    rows = len(group_losses)
    eye = torch.eye(rows, device=group_losses.device, dtype=group_losses.dtype)
    grads = torch.autograd.grad(
        group_losses,
        params,
        grad_outputs=eye,
        retain_graph=retain_graph,
        is_grads_batched=True,
        allow_unused=True,  # (materialize_grads would give unused ones no batch dimension)
    )
    return torch.cat(
        [
            g.reshape(rows, -1)
            if g is not None
            else p.new_zeros(rows, p.numel(), dtype=group_losses.dtype)
            for g, p in zip(grads, params)
        ],
        dim=1,
    )


def _row_losses(
    loss_per_sample: torch.Tensor, groups: torch.Tensor, num_groups: int, halves: bool
) -> torch.Tensor:
    """The G group means, then (``halves``) the 2G half-group means -> [G] or [3G]."""
    means = _group_means(loss_per_sample, groups, num_groups)
    if not halves:
        return means
    half_means = _group_means(loss_per_sample, split_halves(groups, num_groups), 2 * num_groups)
    return torch.cat([means, half_means])


def per_task_gradients_reference(
    loss_per_sample: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    params: Sequence[torch.nn.Parameter],
    *,
    retain_graph: bool,
    halves: bool = False,
) -> torch.Tensor:
    """The plain way, as the reference code: one backward per group (G passes) -> [G, P]
    (or [3G, P] with ``halves``, as :func:`per_task_gradients`)."""
    params = list(params)
    group_losses = _row_losses(loss_per_sample, groups, num_groups, halves)
    num_rows = len(group_losses)
    rows = []
    for g in range(num_rows):
        grads = torch.autograd.grad(
            group_losses[g],
            params,
            retain_graph=retain_graph or g < num_rows - 1,
            allow_unused=True,
            materialize_grads=True,
        )
        rows.append(torch.cat([x.reshape(-1) for x in grads]))
    return torch.stack(rows)


# --------------------------------------------------------------------------- state


@dataclass
class TaskWeightRecord:
    """One eta update, for logs and plots (paper Fig. 5 and 9)."""

    step: int
    eta: list[float]  # [M] new weight of each offline game
    mean_cos: list[float]  # [M] mean cosine over the window (nan when not measured)
    counts: list[int]  # [M] measurements with cos > threshold
    measurements: list[int]  # [M] measurements in the window
    mean_floor: list[float] = field(default_factory=list)  # [M] mean within-game noise floor
    target_floor: float = float("nan")  # mean noise floor of the target's gradient
    agreement: list[float] = field(default_factory=list)  # [M] accumulated estimator's cosines
    shadow_eta: list[float] = field(default_factory=list)  # [M] the other estimator's eta


ESTIMATORS = ("per_step", "accumulated")
"""``per_step``: the paper's rule (Eq. 2, 4; App. B), the fraction of measured steps whose
cosine exceeds the threshold. ``accumulated``: ours: the cosine of the gradients summed over the
window, relative to the target's own noise floor (:func:`weights_from_accumulated`)."""


class TaskWeights:
    """Counters and current eta of M offline games (App. B; spec B7).

    Per training step the driver calls, in this order: :meth:`maybe_update` (before forming the
    loss), then, if :meth:`measuring`, :meth:`observe` or :meth:`observe_gradients` with the
    step's cosines, and trains with :meth:`source_weights` / :attr:`eta` (the loop does all of
    it through :meth:`weights_for`). ``enabled=False`` is the "w/o task weights" ablation: no
    measurement and eta stays 1. Every measurement also records each game's noise floor (the
    cosine between two halves of its own samples); ``estimator`` picks the rule that turns
    measurements into eta (:data:`ESTIMATORS`); the other estimator runs beside it on the same
    measurements as a *shadow* (logged, never trained with), so one run compares both rules on
    identical gradients.
    """

    def __init__(
        self,
        games: Sequence[str],
        *,
        enabled: bool,
        start: int,
        cycle: int,
        window: int,
        threshold: float,
        smoothing: float,
        round_to: float | None,
        clamp: float | None,
        estimator: str = "per_step",
        samples: int = 0,
        seed: int = 0,
    ):
        if not 1 <= window <= cycle:
            raise ConfigError(
                f"transfer.task_weight_window={window} must be in 1..task_weight_cycle ({cycle})"
            )
        self.games = list(games)
        self.enabled = enabled
        self.start, self.cycle, self.window = start, cycle, window
        self.threshold, self.smoothing, self.round_to, self.clamp = (
            threshold,
            smoothing,
            round_to,
            clamp,
        )
        if estimator not in ESTIMATORS:
            raise ConfigError(
                f"transfer.task_weight_estimator={estimator!r}: choose one of {', '.join(ESTIMATORS)}"
            )
        self.estimator = estimator
        self.samples = samples
        self.rng = np.random.default_rng(seeds.stream(seed, seeds.TASK_WEIGHTS))
        m = len(self.games)
        self.floor_sum = torch.zeros(1 + m, dtype=torch.float64)  # [1+M], target first
        self.floor_count = 0
        self.last_floor = torch.full((1 + m,), float("nan"), dtype=torch.float64)
        self.summed: torch.Tensor | None = None  # [1+M, P] gradients summed over the window
        self.summed_target_halves: torch.Tensor | None = None  # [2, P]
        self.eta = torch.ones(m, dtype=torch.float64)  # [M]
        self.shadow_eta = torch.ones(m, dtype=torch.float64)  # [M] the other estimator's eta
        self.counts = torch.zeros(m, dtype=torch.int64)  # [M]
        self.measurements = torch.zeros(m, dtype=torch.int64)  # [M]
        self.cos_sum = torch.zeros(m, dtype=torch.float64)  # [M]
        self.last_cos = torch.full((m,), float("nan"), dtype=torch.float64)  # [M]
        self.history: list[TaskWeightRecord] = []

    @classmethod
    def from_config(cls, cfg: Config, games: Sequence[str]) -> TaskWeights:
        """From ``cfg.transfer``; the clamp re-uses ``cfg.optim.max_grad_norm`` as the code does,
        and ``transfer.weight_rounding`` 0 means no rounding (the code rounds to 0.01)."""
        t = cfg.transfer
        return cls(
            games,
            enabled=t.task_weights,
            start=t.task_weight_start,
            cycle=t.task_weight_cycle,
            window=t.task_weight_window,
            threshold=t.similarity_threshold,
            smoothing=t.weight_smoothing,
            round_to=cfg.transfer.weight_rounding or None,
            clamp=cfg.optim.max_grad_norm,
            estimator=t.task_weight_estimator,
            samples=t.task_weight_samples,
            seed=cfg.seed,
        )

    def measuring(self, step: int) -> bool:
        """Whether ``step`` is a measurement step (always False when disabled)."""
        return self.enabled and in_measurement_window(
            step, start=self.start, cycle=self.cycle, window=self.window
        )

    def observe(self, cosines: torch.Tensor) -> None:
        """Count one measurement: cosines [M], one per offline game (Eq. 4, strict ``>``)."""
        if cosines.numel() != len(self.games):
            raise ValueError(f"expected {len(self.games)} cosines, got {cosines.numel()}")
        # compared in the cosines' own precision: a float32 0.1 is not above the threshold 0.1
        self.counts += (cosines.detach() > self.threshold).reshape(-1).long().cpu()
        cos = cosines.detach().to("cpu", torch.float64).reshape(-1)
        self.measurements += 1
        self.cos_sum += cos
        self.last_cos = cos

    def observe_gradients(
        self, grads: torch.Tensor, half_grads: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Count one measurement from per-group gradients [1+M, P] (row 0 = target) -> cosines
        [M]; ``half_grads`` [2(1+M), P] (:func:`per_task_gradients` with ``halves``) add each
        group's noise floor and feed the accumulated estimator."""
        cosines = gradient_cosines(grads[0], grads[1:], clamp=self.clamp)
        self.observe(cosines)
        if half_grads is not None:
            floors = noise_floor_cosines(half_grads, clamp=self.clamp).to("cpu", torch.float64)
            self.last_floor = floors
            self.floor_sum += floors
            self.floor_count += 1
            g, h = grads.detach().double(), half_grads[0:2].detach().double()
            self.summed = g if self.summed is None else self.summed + g
            self.summed_target_halves = (
                h if self.summed_target_halves is None else self.summed_target_halves + h
            )
        return cosines

    def maybe_update(self, step: int) -> bool:
        """At an update step, set eta from the window's counts and reset the counters."""
        if not self.enabled or not is_update_step(
            step, start=self.start, cycle=self.cycle, window=self.window
        ):
            return False
        n = self.floor_count
        floors = (self.floor_sum / n).tolist() if n else [float("nan")] * (1 + len(self.games))
        agreement: list[float] = []
        per_step = weights_from_counts(
            self.counts, self.measurements, smoothing=self.smoothing, round_to=self.round_to
        )
        accumulated = None
        if self.summed is not None:
            cos = gradient_cosines(self.summed[0], self.summed[1:], clamp=None)
            target_floor = float(noise_floor_cosines(self.summed_target_halves, clamp=None)[0])
            accumulated = weights_from_accumulated(
                cos,
                target_floor,
                smoothing=self.smoothing,
                window=self.window,
                dims=self.summed.shape[1],
            )
            if self.round_to is not None:
                accumulated = torch.round(accumulated / self.round_to) * self.round_to
            agreement = cos.tolist()
        if self.estimator == "per_step":
            self.eta = per_step
            if accumulated is not None:
                self.shadow_eta = accumulated
        else:
            if accumulated is not None:
                self.eta = accumulated
            self.shadow_eta = per_step
        mean_cos = torch.where(
            self.measurements > 0,
            self.cos_sum / self.measurements.clamp_min(1),
            torch.full_like(self.cos_sum, float("nan")),
        )
        self.history.append(
            TaskWeightRecord(
                step=step,
                eta=self.eta.tolist(),
                mean_cos=mean_cos.tolist(),
                counts=self.counts.tolist(),
                measurements=self.measurements.tolist(),
                mean_floor=floors[1:],
                target_floor=floors[0],
                agreement=agreement,
                shadow_eta=self.shadow_eta.tolist(),
            )
        )
        self.counts.zero_()
        self.measurements.zero_()
        self.cos_sum.zero_()
        self.floor_sum.zero_()
        self.floor_count = 0
        self.summed = self.summed_target_halves = None
        return True

    def source_weights(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[1+M] float32 weights per source, target first (``LearnBatch.task_weights``)."""
        ones = torch.ones(1, dtype=torch.float64)
        return torch.cat([ones, self.eta]).to(device=device, dtype=torch.float32)

    def weights_for(
        self, step: int, batch: LearnBatch, learner: Learner, draw: DrawFn | None = None
    ) -> torch.Tensor:
        """The loop's hook (:class:`~xtra.learn.loop.SourceWeights`): eta for this step's batch.

        First :meth:`maybe_update`; then, in a measurement step, the per-sample losses of the
        step's batch (``learner.losses``: a forward pass of its own, with the augmentation
        generator put back afterwards and the BatchNorm running statistics left as they were,
        so it is the same computation as the update's forward, as the code's shared one),
        weighted by the PER weights only (no eta, B7.1) and divided by K, give one gradient per
        source over the optimiser's parameters (:func:`per_task_gradients`), whose cosines are
        counted. With ``samples`` > 0 the losses are those of ``draw(samples, rng)`` instead: a
        batch of that many fresh samples of every game, on this object's own random stream, so
        the training batches stay those of an unmeasured run. Returns [1 + M] weights, target
        first.
        """
        self.maybe_update(step)
        if self.measuring(step) and batch.groups is not None:
            if self.samples:
                if draw is None:
                    raise ValueError("task_weight_samples > 0 needs the loop's draw function")
                batch = draw(self.samples, self.rng)
            generator = learner.generator.get_state()
            with frozen_running_stats(learner.model):
                terms = learner.losses(batch)
            scale = learner.scaler.get_scale() if learner.scaler.is_enabled() else 1.0
            per_sample = batch.weights * terms.total.float() / batch.actions.shape[1] * scale
            g = 1 + len(self.games)
            grads = per_task_gradients(
                per_sample, batch.groups, g, learner.parameters(), retain_graph=False, halves=True
            )
            self.observe_gradients(grads[:g] / scale, grads[g:] / scale)
            learner.generator.set_state(generator)
        return self.source_weights(batch.weights.device)

    def metrics(self) -> dict[str, float]:
        """``task/weight/<game>`` (current eta), ``task/cos/<game>`` (latest measured cosine with
        the target), ``task/noise_floor/<game>`` (latest cosine between two halves of the game's
        own samples), ``task/shadow_weight/<game>`` (the other estimator's eta, not trained
        with) and ``task/noise_floor/target``."""
        out = {}
        for i, game in enumerate(self.games):
            out[f"task/weight/{game}"] = float(self.eta[i])
            out[f"task/cos/{game}"] = float(self.last_cos[i])
            out[f"task/noise_floor/{game}"] = float(self.last_floor[1 + i])
            out[f"task/shadow_weight/{game}"] = float(self.shadow_eta[i])
        out["task/noise_floor/target"] = float(self.last_floor[0])
        return out

    def state_dict(self) -> dict:
        return {
            "games": list(self.games),
            "eta": self.eta.tolist(),
            "shadow_eta": self.shadow_eta.tolist(),
            "counts": self.counts.tolist(),
            "measurements": self.measurements.tolist(),
            "cos_sum": self.cos_sum.tolist(),
            "last_cos": self.last_cos.tolist(),
            "history": [asdict(r) for r in self.history],
            "floor_sum": self.floor_sum.tolist(),
            "floor_count": self.floor_count,
            "last_floor": self.last_floor.tolist(),
            "summed": self.summed,
            "summed_target_halves": self.summed_target_halves,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["games"]) != self.games:
            raise ValueError(f"task weights saved for games {state['games']}, not {self.games}")
        self.eta = torch.tensor(state["eta"], dtype=torch.float64)
        self.shadow_eta = torch.tensor(
            state.get("shadow_eta", [1.0] * len(self.games)), dtype=torch.float64
        )
        self.counts = torch.tensor(state["counts"], dtype=torch.int64)
        self.measurements = torch.tensor(state["measurements"], dtype=torch.int64)
        self.cos_sum = torch.tensor(state["cos_sum"], dtype=torch.float64)
        self.last_cos = torch.tensor(state["last_cos"], dtype=torch.float64)
        self.history = [TaskWeightRecord(**r) for r in state["history"]]
        m = len(self.games)
        # Checkpoints written before the noise floor existed have none of these.
        self.floor_sum = torch.tensor(state.get("floor_sum", [0.0] * (1 + m)), dtype=torch.float64)
        self.floor_count = int(state.get("floor_count", 0))
        self.last_floor = torch.tensor(
            state.get("last_floor", [float("nan")] * (1 + m)), dtype=torch.float64
        )
        self.summed = state.get("summed")
        self.summed_target_halves = state.get("summed_target_halves")
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
