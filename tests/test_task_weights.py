"""Task re-weighting (paper Eq. 2, 4, App. B; spec B7): schedule, formulas, state, gradients."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest
import torch

from xtra.config import tiny
from xtra.errors import ConfigError
from xtra.learn.batch import LearnBatch, Targets
from xtra.learn.loop import build_learner
from xtra.model.networks import EfficientZeroNet
from xtra.transfer.task_weights import (
    TaskWeights,
    gradient_cosines,
    in_measurement_window,
    is_update_step,
    per_task_gradients,
    per_task_gradients_reference,
    weights_from_counts,
)

CODE = dict(start=10000, cycle=5000, window=500)  # the reference code's constants (B7)


def _weights(games=("a", "b", "c"), **over) -> TaskWeights:
    kw = dict(
        enabled=True,
        start=100,
        cycle=100,
        window=10,
        threshold=0.1,
        smoothing=1.0,
        round_to=None,
        clamp=None,
    )
    kw.update(over)
    return TaskWeights(games, **kw)


# --------------------------------------------------------------------------- schedule


def test_measurement_windows_are_the_codes():
    measured = [s for s in range(20001) if in_measurement_window(s, **CODE)]
    assert measured == [*range(10000, 10500), *range(15000, 15500), 20000]
    # the code's own test: step >= 10000 and step % 5000 < 500
    assert measured == [s for s in range(20001) if s >= 10000 and s % 5000 < 500]


def test_update_steps_follow_each_window_and_none_before_the_first():
    assert [s for s in range(20001) if is_update_step(s, **CODE)] == [10500, 15500]
    # The code also "updates" at 500 and 5500 with nothing measured (eta stays 1); we do not.
    assert not is_update_step(500, **CODE) and not is_update_step(5500, **CODE)


def test_window_equal_to_cycle_measures_every_step_and_updates_each_cycle():
    kw = dict(start=10, cycle=5, window=5)
    assert all(in_measurement_window(s, **kw) for s in range(10, 40))
    assert [s for s in range(40) if is_update_step(s, **kw)] == [15, 20, 25, 30, 35]


# --------------------------------------------------------------------------- formulas


def test_gradient_cosines_by_hand():
    target = torch.tensor([1.0, 0.0, 0.0])
    tasks = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]])
    cos = gradient_cosines(target, tasks, clamp=None)
    assert torch.allclose(cos, torch.tensor([1.0, -1.0, 0.0, 1 / math.sqrt(2)]))
    zero = gradient_cosines(target, torch.zeros(1, 3), clamp=None)
    assert zero.tolist() == [0.0]


def test_clamp_is_element_wise_before_the_cosine():
    target = torch.tensor([10.0, 1.0])
    task = torch.tensor([[1.0, 10.0]])
    # raw: 20 / 101; clamped to [-5, 5]: [5, 1] . [1, 5] = 10, norms sqrt(26) each -> 10 / 26
    assert gradient_cosines(target, task, clamp=None).item() == pytest.approx(20 / 101)
    assert gradient_cosines(target, task, clamp=5.0).item() == pytest.approx(10 / 26)
    # a clamp larger than every element changes nothing
    assert gradient_cosines(target, task, clamp=100.0).item() == pytest.approx(20 / 101)


def test_weights_from_counts_by_hand():
    counts, n = torch.tensor([3, 0, 500, 1, 0]), torch.tensor([4, 500, 500, 2, 0])
    eta = weights_from_counts(counts, n, smoothing=1.0, round_to=None)
    expected = [(1 + 3) / (1 + 4), 1 / 501, 1.0, 2 / 3, 1.0]
    assert eta.tolist() == pytest.approx(expected)
    # the paper's s/N; a game never measured keeps weight 1
    eta0 = weights_from_counts(counts, n, smoothing=0.0, round_to=None)
    assert eta0.tolist() == pytest.approx([0.75, 0.0, 1.0, 0.5, 1.0])
    # the code's round(., 2)
    rounded = weights_from_counts(counts, n, smoothing=1.0, round_to=0.01)
    assert rounded.tolist() == pytest.approx([0.8, 0.0, 1.0, 0.67, 1.0])


# --------------------------------------------------------------------------- TaskWeights


def _run(tw: TaskWeights, grad_fn, steps: range, p: int = 64, seed: int = 0) -> list[int]:
    """Drive ``tw`` like the training loop; returns the steps where eta changed.

    The synthetic gradients of a step depend only on (seed, step), so a resumed run sees the same.
    """
    updates = []
    for step in steps:
        if tw.maybe_update(step):
            updates.append(step)
        if tw.measuring(step):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            target = torch.randn(p, generator=g)
            tasks = torch.stack(grad_fn(target, g))
            tw.observe_gradients(torch.cat([target[None], tasks]))
    return updates


def test_aligned_opposed_orthogonal_tasks():
    def grads(target, g):
        noise = 0.1 * torch.randn(target.shape, generator=g)
        ortho = torch.randn(target.shape, generator=g)
        ortho -= (ortho @ target) / (target @ target) * target
        return [target + noise, -target, ortho]

    tw = _weights()
    assert _run(tw, grads, range(0, 111)) == [110]
    floor = 1 / (1 + 10)  # smoothing / (smoothing + N)
    assert tw.eta.tolist() == pytest.approx([1.0, floor, floor])
    (record,) = tw.history
    assert record.step == 110 and record.measurements == [10, 10, 10]
    assert record.counts == [10, 0, 0]
    assert record.mean_cos[0] > 0.99 and record.mean_cos[1] == pytest.approx(-1.0)
    assert abs(record.mean_cos[2]) < 1e-5
    assert tw.source_weights().tolist() == pytest.approx([1.0, 1.0, floor, floor])


def test_three_of_four_measurements_give_point_eight():
    tw = _weights(games=("x",), start=0, cycle=10, window=4)
    for cos in (0.5, 0.2, 0.05, 0.11):  # 0.05 <= 0.1: not counted
        assert tw.measuring(0)
        tw.observe(torch.tensor([cos]))
    assert tw.maybe_update(4)
    assert tw.eta.tolist() == pytest.approx([(1 + 3) / (1 + 4)])
    assert tw.counts.tolist() == [0] and tw.measurements.tolist() == [0]  # counters reset


def test_threshold_is_strict():
    tw = _weights(games=("x",), start=0, cycle=10, window=1, smoothing=0.0)
    tw.observe(torch.tensor([0.1]))
    tw.maybe_update(1)
    assert tw.eta.item() == 0.0


def test_eta_is_one_before_the_first_update_and_when_disabled():
    opposed = lambda t, g: [-t, -t, -t]  # noqa: E731
    tw = _weights()
    _run(tw, opposed, range(0, 110))
    assert tw.eta.tolist() == [1.0, 1.0, 1.0] and tw.history == []
    off = _weights(enabled=False)
    assert _run(off, opposed, range(0, 400)) == []
    assert off.eta.tolist() == [1.0, 1.0, 1.0]
    assert not any(off.measuring(s) for s in range(400))


def test_state_dict_round_trip_mid_window():
    def grads(target, g):
        return [target + torch.randn(target.shape, generator=g) for _ in range(3)]

    full = _weights()
    _run(full, grads, range(0, 260))

    first = _weights()
    _run(first, grads, range(0, 205))  # stop inside the window [200, 210)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = _weights()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    _run(resumed, grads, range(205, 260))
    # NaN-aware: the noise floors are NaN until a measurement with halves
    assert json.dumps(resumed.state_dict(), default=str) == json.dumps(
        full.state_dict(), default=str
    )
    assert [r.step for r in resumed.history] == [110, 210]
    with pytest.raises(ValueError, match="games"):
        _weights(games=("a", "b", "z")).load_state_dict(first.state_dict())


def test_from_config_metrics_and_bad_window():
    cfg = tiny()
    tw = TaskWeights.from_config(cfg, ["pong", "breakout"])
    t = cfg.transfer
    assert (tw.start, tw.cycle, tw.window) == (
        t.task_weight_start,
        t.task_weight_cycle,
        t.task_weight_window,
    )
    assert tw.clamp == cfg.optim.max_grad_norm and tw.round_to == 0.01
    assert set(tw.metrics()) == {
        "task/weight/pong",
        "task/weight/breakout",
        "task/cos/pong",
        "task/cos/breakout",
        "task/noise_floor/pong",
        "task/noise_floor/breakout",
        "task/shadow_weight/pong",
        "task/shadow_weight/breakout",
        "task/noise_floor/target",
    }
    with pytest.raises(ConfigError, match="task_weight_window"):
        _weights(window=200, cycle=100)


# --------------------------------------------------------------------------- per-task gradients


def _net_and_batch(b=12, k=2, groups=4):
    cfg = tiny()
    cfg = dataclasses.replace(
        cfg,
        targets=dataclasses.replace(cfg.targets, unroll_steps=k),
        loss=dataclasses.replace(cfg.loss, augment_shift=0, augment_intensity=0.0),
        # BatchNorm couples a group's gradient to the whole batch: the case the brute force checks.
        model=dataclasses.replace(cfg.model, norm="batch"),
    )
    torch.manual_seed(0)
    model = EfficientZeroNet(cfg.model, (12, 10, 10))
    for p in model.parameters():  # non-zero heads: every term depends on every part
        torch.nn.init.normal_(p, std=0.1)
    g = torch.Generator().manual_seed(1)
    policy = torch.rand(b, k + 1, 18, generator=g)
    batch = LearnBatch(
        obs=torch.randint(0, 256, (b, 4 + k, 3, 10, 10), generator=g, dtype=torch.uint8),
        actions=torch.randint(0, 18, (b, k), generator=g),
        mask=torch.ones(b, k + 1),
        targets=Targets(
            value=torch.randn(b, k + 1, generator=g),
            value_prefix=torch.randn(b, k, generator=g),
            policy=policy / policy.sum(-1, keepdim=True),
        ),
        weights=torch.rand(b, generator=g) + 0.5,
        groups=torch.arange(b) % groups,
    )
    return cfg, model, batch


def test_per_task_gradients_vmapped_equals_loop_and_brute_force():
    cfg, model, batch = _net_and_batch()
    learner = build_learner(model, cfg, torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    num_groups = 4

    loss = batch.weights * learner.losses(batch).total
    fast = per_task_gradients(loss, batch.groups, num_groups, params, retain_graph=True)
    loop = per_task_gradients_reference(loss, batch.groups, num_groups, params, retain_graph=False)
    assert fast.shape == (num_groups, sum(p.numel() for p in params))
    assert torch.allclose(fast, loop, atol=1e-5, rtol=0)

    # Brute force: a fresh forward and .backward() per group (BatchNorm over the whole batch).
    for gi in range(num_groups):
        model.zero_grad(set_to_none=False)
        in_group = batch.groups == gi
        (batch.weights * learner.losses(batch).total)[in_group].mean().backward()
        brute = torch.cat([p.grad.reshape(-1) for p in params])
        assert torch.allclose(fast[gi], brute, atol=1e-5, rtol=0), gi

    cos_fast = gradient_cosines(fast[0], fast[1:], clamp=5.0)
    cos_loop = gradient_cosines(loop[0], loop[1:], clamp=5.0)
    assert torch.allclose(cos_fast, cos_loop, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_per_task_gradients_on_cuda_equal_those_on_cpu():
    cfg, model, batch = _net_and_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = batch.weights * build_learner(model, cfg, torch.device("cpu")).losses(batch).total
    on_cpu = per_task_gradients(loss, batch.groups, 4, params, retain_graph=False)

    cuda = torch.device("cuda")
    model = model.to(cuda)
    t = batch.targets
    batch = dataclasses.replace(
        batch,
        **{k: getattr(batch, k).to(cuda) for k in ("obs", "actions", "mask", "weights", "groups")},
        targets=Targets(
            value=t.value.to(cuda), value_prefix=t.value_prefix.to(cuda), policy=t.policy.to(cuda)
        ),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 convs: 1e-3 errors
        loss = batch.weights * build_learner(model, cfg, cuda).losses(batch).total
        on_cuda = per_task_gradients(loss, batch.groups, 4, params, retain_graph=False)
    assert torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=1e-3)


def test_per_task_gradients_of_a_linear_model_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    unused = torch.nn.Parameter(torch.ones(3))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    groups = torch.tensor([0, 1, 1])
    loss = x @ w  # d loss_b / d w = x_b
    grads = per_task_gradients(loss, groups, 3, [w, unused], retain_graph=False)
    expected = torch.tensor([[1.0, 0.0, 0, 0, 0], [0.5, 1.0, 0, 0, 0], [0.0, 0.0, 0, 0, 0]])
    assert torch.equal(grads, expected)  # group 2 is empty: zero gradient


def test_overhead_benchmark_runs_and_writes_its_table(run_benchmark, tmp_path):
    """benchmarks/task_weights_overhead.py against the learner's current API (it once called a
    Learner constructor that no longer existed)."""
    out = tmp_path / "overhead.json"
    args = ["--batch", "8", "--games", "2", "--repeats", "1", "--json", out]
    done = run_benchmark("task_weights_overhead", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    ms = json.loads(out.read_text())["ms"]
    assert {"update", "forward+G backward (vmap)", "measurement step, vmap, own fwd"} <= set(ms)
    assert all(v > 0 for v in ms.values())
