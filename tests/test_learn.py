"""Learner math against independent computations: losses, masks, gradient scaling, schedules."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xtra.config import tiny
from xtra.envs import make_env
from xtra.learn.batch import LearnBatch, Targets
from xtra.learn.loop import build_learner
from xtra.learn.loss import multitask_objective, scale_gradient, unroll_losses
from xtra.learn.schedules import learning_rate
from xtra.model.networks import EfficientZeroNet
from xtra.model.transforms import h


def _setup(seed=0, b=3, k=2, s=2):
    cfg = tiny()
    cfg = dataclasses.replace(
        cfg,
        env=dataclasses.replace(cfg.env, frame_stack=s),
        targets=dataclasses.replace(cfg.targets, unroll_steps=k),
        # EfficientZero's BatchNorm network (A3), whatever `tiny` normalises with.
        model=dataclasses.replace(cfg.model, norm="batch"),
    )
    torch.manual_seed(seed)
    model = EfficientZeroNet(cfg.model, (s * 3, 6, 6))
    # Non-zero heads so that every term depends on the network.
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (b, s + k, 3, 6, 6), generator=g, dtype=torch.uint8)
    actions = torch.randint(0, 18, (b, k), generator=g)
    mask = torch.ones(b, k + 1)
    mask[0, 1:] = 0  # sample 0 ends after one step (T = t+1): its k=2 step is masked (EZ mask[k-1])
    policy = torch.rand(b, k + 1, 18, generator=g)
    policy = policy / policy.sum(-1, keepdim=True)
    targets = Targets(
        value=torch.randn(b, k + 1, generator=g) * 3,
        value_prefix=torch.randn(b, k, generator=g),
        policy=policy,
    )
    return cfg, model, obs, actions, mask, targets


def _kwargs(cfg, **over):
    kw = dict(
        policy_mask=None,
        support_size=cfg.model.support_size,
        transform_eps=cfg.model.transform_eps,
        faithful_transform=False,
        value_coeff=0.25,
        policy_coeff=1.0,
        consistency_coeff=2.0,
        reward_coeff=1.0,
        latent_grad_scale=0.5,
        lstm_horizon=5,
        loss_masks=True,
        augment_shift=0,
        augment_intensity=0.0,
    )
    kw.update(over)
    return kw


def _two_hot(x: float, size: int) -> torch.Tensor:
    """Plain two-hot of h(x) written out for one scalar (spec A4)."""
    y = float(h(torch.tensor(x, dtype=torch.float64), 0.001))
    y = min(max(y, -size), size)
    lo = math.floor(y)
    out = torch.zeros(2 * size + 1)
    out[lo + size] = 1 - (y - lo)
    if lo + 1 <= size:
        out[lo + 1 + size] += y - lo
    return out


def test_unroll_losses_equal_a_per_sample_loop():
    cfg, model, obs, actions, mask, targets = _setup()
    model.eval()  # BatchNorm with running stats: per-sample forwards equal batched ones
    terms = unroll_losses(model, obs, actions, mask, targets, **_kwargs(cfg))
    b, k = actions.shape
    s = obs.shape[1] - k
    size = cfg.model.support_size
    for i in range(b):
        x = obs[i : i + 1].float() / 255
        latent = model.represent(x[:, :s].reshape(1, -1, 6, 6))
        pol, val = model.predict(latent)
        lv = -(_two_hot(float(targets.value[i, 0]), size) * F.log_softmax(val[0], -1)).sum()
        lp = -(targets.policy[i, 0] * F.log_softmax(pol[0], -1)).sum()
        lr = torch.tensor(0.0)
        lc = torch.tensor(0.0)
        state = model.initial_lstm_state(1)
        for j in range(1, k + 1):
            m = float(mask[i, j - 1])
            latent, state, vp = model.dynamics(latent, state, actions[i, j - 1 : j])
            pol, val = model.predict(latent)
            lr = (
                lr
                + m
                * -(
                    _two_hot(float(targets.value_prefix[i, j - 1]), size) * F.log_softmax(vp[0], -1)
                ).sum()
            )
            lv = (
                lv
                + m
                * -(_two_hot(float(targets.value[i, j]), size) * F.log_softmax(val[0], -1)).sum()
            )
            lp = lp + m * -(targets.policy[i, j] * F.log_softmax(pol[0], -1)).sum()
            target_latent = model.represent(x[:, j : j + s].reshape(1, -1, 6, 6))
            cos = F.cosine_similarity(
                model.project(latent), model.project(target_latent, with_grad=False), eps=1e-5
            )
            lc = lc - m * cos[0]
        total = lr + lp + 0.25 * lv + 2.0 * lc
        assert float(terms.value[i]) == pytest.approx(float(lv), rel=1e-4, abs=1e-5)
        assert float(terms.policy[i]) == pytest.approx(float(lp), rel=1e-4, abs=1e-5)
        assert float(terms.value_prefix[i]) == pytest.approx(float(lr), rel=1e-4, abs=1e-5)
        assert float(terms.consistency[i]) == pytest.approx(float(lc), rel=1e-4, abs=1e-5)
        assert float(terms.total[i]) == pytest.approx(float(total), rel=1e-4, abs=1e-5)


def test_masks_zero_the_steps_past_the_end():
    cfg, model, obs, actions, mask, targets = _setup()
    model.eval()
    base = unroll_losses(model, obs, actions, mask, targets, **_kwargs(cfg))
    # Sample 0 is masked at k=2 (mask[0, 1] = 0): changing its k=2 targets must change nothing.
    t2 = Targets(
        value=targets.value.clone(),
        value_prefix=targets.value_prefix.clone(),
        policy=targets.policy.clone(),
    )
    t2.value[0, 2] = 50.0
    t2.value_prefix[0, 1] = -7.0
    t2.policy[0, 2] = torch.eye(18)[3]
    again = unroll_losses(model, obs, actions, mask, t2, **_kwargs(cfg))
    for name in ("value", "policy", "value_prefix", "consistency"):
        assert torch.allclose(getattr(base, name)[0], getattr(again, name)[0])
    # Without masks (XTRA's code, D-XT-3) the same change matters.
    unmasked = unroll_losses(model, obs, actions, mask, t2, **_kwargs(cfg, loss_masks=False))
    assert not torch.allclose(unmasked.value[0], again.value[0])


def test_policy_mask_restricts_the_softmax_to_legal_ids():
    cfg, model, obs, actions, mask, targets = _setup()
    model.eval()
    legal = torch.zeros(3, 18, dtype=torch.bool)
    legal[:, [0, 3, 4]] = True
    policy = torch.zeros_like(targets.policy)
    policy[..., [0, 3, 4]] = torch.tensor([0.2, 0.3, 0.5])
    t = Targets(targets.value, targets.value_prefix, policy)
    terms = unroll_losses(model, obs, actions, mask, t, **_kwargs(cfg, policy_mask=legal))
    latent = model.represent(obs[:, :2].float().reshape(3, -1, 6, 6) / 255)
    pol, _ = model.predict(latent)
    expected0 = -(policy[:, 0][:, [0, 3, 4]] * F.log_softmax(pol[:, [0, 3, 4]], -1)).sum(-1)
    # k = 0 term alone: rebuild it from the totals of a one-step-masked variant
    zero_mask = torch.zeros_like(mask)
    only_k0 = unroll_losses(model, obs, actions, zero_mask, t, **_kwargs(cfg, policy_mask=legal))
    assert torch.allclose(only_k0.policy, expected0, atol=1e-5)
    assert (terms.policy >= only_k0.policy - 1e-6).all()


def test_scale_gradient_halves_the_gradient_and_keeps_the_value():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = scale_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([3.0, 4.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.5, 2.0]))


def test_multitask_objective_mean_and_eq1():
    per_sample = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    weights = torch.tensor([1.0, 0.5, 1.0, 1.0, 0.5])
    groups = torch.tensor([0, 0, 1, 1, 2])
    eta = torch.tensor([1.0, 0.5, 0.2])
    weighted = [1.0, 1.0, 3.0, 4.0, 2.5]
    # one source, or no task weights: EfficientZero's PER-weighted mean
    assert float(multitask_objective(per_sample, weights, None, None, "eq1")) == pytest.approx(
        sum(weighted) / 5
    )
    assert float(multitask_objective(per_sample, weights, groups, None, "mean")) == pytest.approx(
        sum(weighted) / 5
    )
    # the code: PER weight * eta of the sample's game, one mean over the batch
    eta_weighted = [1.0, 1.0, 1.5, 2.0, 0.5]
    assert float(multitask_objective(per_sample, weights, groups, eta, "mean")) == pytest.approx(
        sum(eta_weighted) / 5
    )
    # Eq. 1: target mean + sum_i eta_i * mean of game i
    expected = 1.0 * (1.0 + 1.0) / 2 + 0.5 * (3.0 + 4.0) / 2 + 0.2 * 2.5
    assert float(multitask_objective(per_sample, weights, groups, eta, "eq1")) == pytest.approx(
        expected
    )
    assert float(multitask_objective(per_sample, weights, groups, None, "eq1")) == pytest.approx(
        (1.0 + 1.0) / 2 + (3.0 + 4.0) / 2 + 2.5
    )


def _one_plain_step(**optim):
    """A model, a copy of it to step by hand, and the data, under a config whose update is one
    unclipped, undecayed step at full learning rate without augmentation."""
    cfg, model, obs, actions, mask, targets = _setup(b=4)
    cfg = dataclasses.replace(
        cfg,
        optim=dataclasses.replace(
            cfg.optim, weight_decay=0.0, max_grad_norm=1e9, warmup_steps=0, **optim
        ),
        loss=dataclasses.replace(cfg.loss, augment_shift=0, augment_intensity=0.0),
    )
    reference = EfficientZeroNet(cfg.model, model.obs_shape)
    reference.load_state_dict(model.state_dict())
    reference.train()
    return cfg, model, reference, obs, actions, mask, targets


def _assert_same_weights(model, reference):
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_learner_step_applies_mean_loss_over_k_clipped_and_sgd():
    cfg, model, reference, obs, actions, mask, targets = _one_plain_step(
        optimizer="sgd", momentum=0.0, lr=0.01
    )
    weights = torch.tensor([1.0, 0.5, 0.25, 1.0])
    batch = LearnBatch(
        obs=obs[:4] if obs.shape[0] >= 4 else obs,
        actions=actions,
        mask=mask,
        targets=targets,
        weights=weights,
    )
    learner = build_learner(model, cfg, torch.device("cpu"))
    result = learner.update(batch, step=0)

    # The same step by hand: grad of mean(w * loss) / K, plain SGD.
    terms = unroll_losses(reference, obs, actions, mask, targets, **_kwargs(cfg))
    loss = (weights * terms.total).mean() / actions.shape[1]
    loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            if p.grad is not None:
                p -= 0.01 * p.grad
    _assert_same_weights(model, reference)
    z0 = targets.value[:, 0]
    assert torch.allclose(result.priorities, (terms.value_k0 - z0).abs() + 1e-6, atol=1e-5)


def test_learner_adam_first_step_is_lr_times_the_gradient_sign():
    """Adam's first step from zero moments is lr * g / (|g| + eps) (bias-corrected m = g, v = g^2)."""
    cfg, model, reference, obs, actions, mask, targets = _one_plain_step(optimizer="adam", lr=0.003)
    batch = LearnBatch(
        obs=obs, actions=actions, mask=mask, targets=targets, weights=torch.ones(obs.shape[0])
    )
    learner = build_learner(model, cfg, torch.device("cpu"))
    assert isinstance(learner.optimizer, torch.optim.Adam)
    learner.update(batch, step=0)

    terms = unroll_losses(reference, obs, actions, mask, targets, **_kwargs(cfg))
    (terms.total.mean() / actions.shape[1]).backward()
    with torch.no_grad():
        for p in reference.parameters():
            if p.grad is not None:
                p -= 0.003 * p.grad / (p.grad.abs() + 1e-8)
    _assert_same_weights(model, reference)


def test_learner_reduces_the_loss_on_a_fixed_batch():
    cfg, model, obs, actions, mask, targets = _setup(b=4)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, warmup_steps=0, lr=0.05))
    batch = LearnBatch(
        obs=obs, actions=actions, mask=mask, targets=targets, weights=torch.ones(obs.shape[0])
    )
    learner = build_learner(model, cfg, torch.device("cpu"))
    first = learner.update(batch, 0).metrics["loss/total"]
    for step in range(1, 20):
        last = learner.update(batch, step).metrics["loss/total"]
    assert last < 0.7 * first


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),
        (500, 0.1),
        (999, 0.2 * 999 / 1000),
        (1000, 0.2),
        (100_999, 0.2),
        (101_000, 0.02),
        (119_999, 0.02),
    ],
)
def test_learning_rate_schedule_paper(step, expected):
    assert learning_rate(
        step, lr=0.2, warmup_steps=1000, decay_steps=100_000, decay_rate=0.1
    ) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "progress", "expected"),
    [
        (10, 0.0, 0.2 * 10 / 100),  # warm-up first, whatever the progress
        (100, 0.0, 0.2),
        (5000, 0.5, 0.2 * (0.1 + 0.9 * 0.5)),  # halfway down the cosine
        (9000, 1.0, 0.02),  # the run's end: lr * decay_rate
        (9000, 0.25, 0.2 * (0.1 + 0.9 * (1 + 2**-0.5) / 2)),  # cos(pi/4)
    ],
)
def test_learning_rate_schedule_cosine(step, progress, expected):
    assert learning_rate(
        step,
        progress,
        lr=0.2,
        warmup_steps=100,
        decay_steps=1,  # unused by the cosine
        decay_rate=0.1,
        schedule="cosine",
    ) == pytest.approx(expected)


def test_augmentation_shift_is_a_translation_with_replicated_border():
    from xtra.learn.augment import random_shift

    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    g = torch.Generator().manual_seed(3)
    y = random_shift(x, 2, g)
    g = torch.Generator().manual_seed(3)
    ox = torch.randint(0, 5, (2,), generator=g)
    oy = torch.randint(0, 5, (2,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(2):
        expected = padded[i, :, oy[i] : oy[i] + 5, ox[i] : ox[i] + 5]
        assert torch.equal(y[i], expected)
    assert np.isfinite(y.numpy()).all()


def test_predicting_on_consistency_targets_only_moves_f_batchnorm_statistics():
    """EZ's consistency branch is initial_inference, which runs f too: the losses are the same,
    only f's BatchNorm running statistics also see the target latents."""
    cfg, model, obs, actions, mask, targets = _setup(b=4)
    twin = EfficientZeroNet(cfg.model, model.obs_shape)
    twin.load_state_dict(model.state_dict())
    model.train()
    twin.train()
    a = unroll_losses(model, obs, actions, mask, targets, **_kwargs(cfg))
    b = unroll_losses(
        twin, obs, actions, mask, targets, **_kwargs(cfg, predict_consistency_targets=True)
    )
    assert torch.allclose(a.total, b.total)
    moved = [
        k
        for (k, x), y in zip(model.state_dict().items(), twin.state_dict().values())
        if not torch.equal(x, y)
    ]
    assert moved and all(k.startswith("prediction_network.") for k in moved), moved


def test_learner_catch_probe_rewards_are_the_games(load_benchmark):
    """benchmarks/learner_catch.py decodes each last-decision reward from the frames; taking that
    action in the same games (same seed, same first moves) must pay exactly it."""
    bench, cfg, n, seed = load_benchmark("learner_catch"), tiny(), 64, 3
    frames, reward = bench.last_decision_probe(cfg, n, seed)
    assert frames.shape == (n, 3 * cfg.env.frame_stack, 10, 10)
    assert set(np.unique(reward)) == {-1.0, 1.0}
    for a in range(3):
        env = make_env(bench.GAME, cfg.env, num_envs=n, seed=seed, mode="train")
        rng = np.random.default_rng(seed)
        env.reset()
        for _ in range(3):
            env.step(rng.integers(0, 3, size=n))
        result = env.step(np.full(n, a))
        assert result.terminated.all()
        np.testing.assert_array_equal(result.reward, reward[:, a])


def test_learner_catch_benchmark_runs(run_benchmark, tmp_path):
    """A few updates of benchmarks/learner_catch.py: one accuracy per measurement, in the JSON."""
    out = tmp_path / "catch.json"
    run = run_benchmark(
        "learner_catch", "--updates", "6", "--every", "4", "--games", "20", "--probe-games",
        "20", "--seeds", "0", "--variant", "tiny=", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    (result,) = json.loads(out.read_text())["results"]
    assert [s for s, _ in result["curve"]] == [4, 6]
    assert all(0.0 <= a <= 1.0 for _, a in result["curve"])
    assert "| tiny |" in run.stdout


def test_train_speed_splits_phases_only_when_asked(load_benchmark):
    """benchmarks/train_speed.py: `--phases` once had no effect (its flag was overwritten), so
    every measurement ran with the function timers on; Adam's step was not timed."""
    measure = load_benchmark("train_speed").measure
    kwargs = dict(game="toy/catch", steps=1, warmup=0, device="cpu", overrides=[])
    assert measure("tiny", **kwargs)["seconds_per_subphase"] == {}
    detail = measure("tiny", **kwargs, phases=True)["seconds_per_subphase"]
    assert {"update/forward", "update/backward", "update/optimizer"} <= set(detail)
    assert all(v >= 0 for v in detail.values())
