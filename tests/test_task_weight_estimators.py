"""The noise floor of gradient cosines and the accumulated task-weight estimator (issue 18).

Synthetic gradients with known structure: the target's expected gradient g, sources whose
expected gradient is g (related), -g (opposed) or orthogonal to g, each step's gradient that
expectation plus noise large enough that a single step's cosine is mostly noise.
"""

from __future__ import annotations

import math

import pytest
import torch

from xtra.transfer.task_weights import (
    TaskWeights,
    gradient_cosines,
    noise_floor_cosines,
    per_task_gradients,
    per_task_gradients_reference,
    split_halves,
    weights_from_accumulated,
)

P = 4000  # gradient entries


def _weights(games, estimator, **over):
    kw = dict(
        enabled=True,
        start=0,
        cycle=200,
        window=100,
        threshold=0.1,
        smoothing=1.0,
        round_to=None,
        clamp=None,
        estimator=estimator,
    )
    kw.update(over)
    return TaskWeights(games, **kw)


def _directions(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(P, generator=g, dtype=torch.float64)
    other = torch.randn(P, generator=g, dtype=torch.float64)
    other -= (other @ target) / (target @ target) * target  # orthogonal to the target
    other *= target.norm() / other.norm()
    return target, other, g


def test_split_halves_alternates_within_each_group():
    groups = torch.tensor([0, 1, 0, 0, 2, 1, 0])
    assert split_halves(groups, 3).tolist() == [0, 2, 1, 0, 4, 3, 1]


def test_noise_floor_matches_the_closed_form():
    """Two halves of n samples of g + sigma * eps: the cosine of their means concentrates at
    |g|^2 / (|g|^2 + sigma^2 P / n) for large P."""
    target, _, gen = _directions()
    n, sigma = 16, 2.0
    for _ in range(3):
        halves = [
            (target + sigma * torch.randn(n, P, generator=gen, dtype=torch.float64)).mean(0)
            for _ in range(2)
        ]
        got = float(noise_floor_cosines(torch.stack(halves), clamp=None)[0])
        g2 = float(target @ target)
        want = g2 / (g2 + sigma**2 * P / n)
        assert got == pytest.approx(want, abs=0.05)
    # identical halves: 1; opposite halves: -1
    x = torch.randn(2, P, generator=gen)
    assert float(noise_floor_cosines(torch.stack([x[0], x[0]]), clamp=None)[0]) == pytest.approx(1)
    assert float(noise_floor_cosines(torch.stack([x[0], -x[0]]), clamp=None)[0]) == pytest.approx(
        -1
    )


def test_halves_in_the_same_backward_as_the_groups():
    """The half rows of per_task_gradients are the gradients of each half's mean loss."""
    w = torch.nn.Parameter(torch.randn(5))
    x = torch.randn(12, 5)
    groups = torch.tensor([0, 1, 2] * 4)
    loss = (x @ w) ** 2
    fast = per_task_gradients(loss, groups, 3, [w], retain_graph=True, halves=True)
    slow = per_task_gradients_reference(loss, groups, 3, [w], retain_graph=True, halves=True)
    assert fast.shape == (9, 5)
    assert torch.allclose(fast, slow, atol=1e-5)
    halves = split_halves(groups, 3)
    for h in range(6):
        sel = halves == h
        want = torch.autograd.grad(loss[sel].mean(), w, retain_graph=True)[0]
        assert torch.allclose(fast[3 + h], want, atol=1e-5)
    assert torch.allclose(fast[:3], per_task_gradients(loss, groups, 3, [w], retain_graph=False))


def _measure(tw, expected, sigma, gen, steps):
    """``steps`` measurements: row i's gradient = expected[i] + noise, as two halves."""
    for _ in range(steps):
        halves = [
            e + sigma * torch.randn(P, generator=gen, dtype=torch.float64)
            for e in expected
            for _ in range(2)
        ]
        halves = torch.stack(halves)
        grads = (halves[0::2] + halves[1::2]) / 2
        tw.observe_gradients(grads, halves)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulated_keeps_related_and_drops_opposed_and_orthogonal(seed):
    target, other, gen = _directions(seed)
    sigma = 10.0  # per entry, against 1 for the signal: one step's cosine is mostly noise
    expected = [target, target, -target, other]  # target, related, opposed, orthogonal
    games = ["related", "opposed", "orthogonal"]

    per_step = _weights(games, "per_step")
    accumulated = _weights(games, "accumulated")
    for tw in (per_step, accumulated):
        _measure(tw, expected, sigma, torch.Generator().manual_seed(seed + 10), 100)
    # one step: the related game's cosine is near its noise floor, both far below 1
    floors = accumulated.last_floor
    assert float(floors[0]) < 0.2 and float(floors[1]) < 0.2
    assert per_step.maybe_update(100) and accumulated.maybe_update(100)

    related, opposed, orthogonal = accumulated.eta.tolist()
    assert related > 0.7, accumulated.history[-1]
    assert opposed == pytest.approx(1 / 101) and orthogonal < 0.25
    # the paper's rule at this noise: the related game is not told from the orthogonal one
    r, _, o = per_step.eta.tolist()
    assert abs(r - o) < 0.25
    rec = accumulated.history[-1]
    assert len(rec.mean_floor) == 3 and not math.isnan(rec.target_floor)
    assert rec.agreement[0] > rec.agreement[2] > rec.agreement[1]


def test_the_shadow_is_the_other_estimator_on_the_same_gradients():
    """Each run also computes the estimator it does not train with: its shadow eta equals what a
    run with that estimator computes from the same measurements, and is never trained with."""
    target, other, _ = _directions(4)
    expected = [target, target, -target, other]
    games = ["related", "opposed", "orthogonal"]
    runs = {e: _weights(games, e) for e in ("per_step", "accumulated")}
    for tw in runs.values():
        _measure(tw, expected, 10.0, torch.Generator().manual_seed(14), 100)
        assert tw.maybe_update(100)
    paper, ours = runs["per_step"], runs["accumulated"]
    assert paper.shadow_eta.tolist() == ours.eta.tolist()
    assert ours.shadow_eta.tolist() == paper.eta.tolist()
    assert paper.source_weights()[1:].tolist() == pytest.approx(paper.eta.tolist())
    assert paper.eta.tolist() != paper.shadow_eta.tolist()
    assert paper.history[-1].shadow_eta == ours.eta.tolist()
    restored = _weights(games, "per_step")
    restored.load_state_dict(paper.state_dict())
    assert restored.metrics()["task/shadow_weight/opposed"] == ours.eta[1].item()


def test_noise_alone_does_not_decide():
    """Gradients with no common direction: the target's halves do not agree beyond chance, so
    every game keeps weight 1 (the paper's rule would set them all near its floor)."""
    zero = torch.zeros(P, dtype=torch.float64)
    tw = _weights(["a", "b"], "accumulated")
    _measure(tw, [zero, zero, zero], 1.0, torch.Generator().manual_seed(3), 100)
    assert tw.maybe_update(100)
    assert tw.eta.tolist() == [1.0, 1.0]
    paper = _weights(["a", "b"], "per_step")
    _measure(paper, [zero, zero, zero], 1.0, torch.Generator().manual_seed(3), 100)
    paper.maybe_update(100)
    assert max(paper.eta.tolist()) < 0.2


def test_weights_from_accumulated_by_hand():
    agreement = torch.tensor([0.5, 0.25, -0.3, 0.9])
    eta = weights_from_accumulated(agreement, 0.5, smoothing=1.0, window=9, dims=10_000)
    assert eta.tolist() == pytest.approx([1.0, 0.5, 0.1, 1.0])
    no_signal = weights_from_accumulated(agreement, 0.02, smoothing=1.0, window=9, dims=10_000)
    assert no_signal.tolist() == [1.0] * 4
    assert gradient_cosines(torch.ones(3), torch.ones(1, 3), clamp=None).item() == pytest.approx(1)


def test_unknown_estimator_is_a_config_error():
    from xtra.errors import ConfigError

    with pytest.raises(ConfigError, match="task_weight_estimator"):
        _weights(["a"], "median")
