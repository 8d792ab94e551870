"""Value transforms and two-hot supports (spec A4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xtra.model.transforms import (
    h,
    h_faithful,
    h_inverse,
    logits_to_scalar,
    scalar_to_logits_target,
    two_hot,
)

EPS = 0.001


def wide_range(dtype=torch.float32) -> torch.Tensor:
    """-1e5..1e5, log-spaced on both sides, and 0."""
    pos = torch.logspace(-6, 5, 400, dtype=torch.float64)
    return torch.cat([-pos.flip(0), torch.zeros(1, dtype=torch.float64), pos]).to(dtype)


def test_h_matches_formula():
    x = wide_range(torch.float64)
    expected = np.sign(x.numpy()) * (np.sqrt(np.abs(x.numpy()) + 1) - 1) + EPS * x.numpy()
    np.testing.assert_allclose(h(x, EPS).numpy(), expected, rtol=1e-12, atol=1e-15)


def test_h_inverse_round_trip_float32():
    x = wide_range(torch.float32)
    y = h(x, EPS)
    assert y.dtype == torch.float32
    back = h_inverse(y, EPS)
    # float32 precision, relative, over the whole range (no cancellation near 0).
    torch.testing.assert_close(back, x, rtol=2e-6, atol=0)
    assert h_inverse(torch.zeros(3), EPS).eq(0).all()


def test_h_inverse_round_trip_float64_and_both_directions():
    x = wide_range(torch.float64)
    torch.testing.assert_close(h_inverse(h(x, EPS), EPS), x, rtol=1e-13, atol=0)
    torch.testing.assert_close(h(h_inverse(x, EPS), EPS), x, rtol=1e-13, atol=0)


def test_h_inverse_equals_reference_formula():
    """Our cancellation-free form equals A4's written formula (checked in float64)."""
    y = wide_range(torch.float64)
    a = y.abs()
    ref = torch.sign(y) * (((torch.sqrt(1 + 4 * EPS * (a + 1 + EPS)) - 1) / (2 * EPS)) ** 2 - 1)
    torch.testing.assert_close(h_inverse(y, EPS), ref, rtol=1e-9, atol=1e-9)


def test_faithful_h_differs_only_for_negative_inputs():
    x = wide_range(torch.float64)
    xs = x.numpy()
    expected = np.sign(xs) * (np.sqrt(np.abs(xs) + 1) - 1 + EPS * xs)
    np.testing.assert_allclose(h_faithful(x, EPS).numpy(), expected, rtol=1e-12, atol=1e-15)
    nonneg = x >= 0
    assert torch.equal(h_faithful(x, EPS)[nonneg], h(x, EPS)[nonneg])
    neg = x < 0
    diff = h_faithful(x, EPS)[neg] - h(x, EPS)[neg]
    # The linear term enters with the wrong sign: h_faithful - h = -2 eps x > 0.
    torch.testing.assert_close(diff, -2 * EPS * x[neg], rtol=1e-9, atol=1e-15)
    assert (diff > 0).all()


@pytest.mark.parametrize("support_size", [5, 300])
def test_two_hot_sums_to_one_and_expectation_is_clamped_input(support_size):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(1000, generator=gen, dtype=torch.float64) * 2 - 1) * 1.5 * support_size
    p = two_hot(x, support_size)
    assert p.shape == (1000, 2 * support_size + 1)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(1000, dtype=torch.float64), rtol=0, atol=0)
    atoms = torch.arange(-support_size, support_size + 1, dtype=torch.float64)
    expectation = (p * atoms).sum(-1)
    clamped = x.clamp(-support_size, support_size)
    torch.testing.assert_close(expectation, clamped, rtol=0, atol=1e-12)
    # At most two atoms, adjacent.
    nonzero = (p > 0).sum(-1)
    assert nonzero.max() <= 2


def test_two_hot_float32_expectation():
    x = torch.linspace(-12.0, 12.0, 97)
    p = two_hot(x, 10)
    assert p.dtype == torch.float32
    atoms = torch.arange(-10, 11, dtype=torch.float32)
    torch.testing.assert_close((p * atoms).sum(-1), x.clamp(-10, 10), rtol=0, atol=1e-6)


def test_two_hot_integer_inputs_give_a_single_one():
    x = torch.tensor([-7.0, -3.0, 0.0, 2.0, 5.0, 9.0])  # -7 and 9 clamp to -5 and 5
    p = two_hot(x, 5)
    expected_idx = torch.tensor([0, 2, 5, 7, 10, 10])
    assert torch.equal(p.argmax(-1), expected_idx)
    assert torch.equal(p.max(-1).values, torch.ones(6))
    assert torch.equal((p != 0).sum(-1), torch.ones(6, dtype=torch.long))


def test_two_hot_keeps_leading_shape():
    p = two_hot(torch.zeros(4, 6), 3)
    assert p.shape == (4, 6, 7)


def _slow_target(x: float, support_size: int, eps: float, faithful: bool) -> list[float]:
    """Plain-Python phi(h(x)) following A4 word by word."""
    sign = 1.0 if x >= 0 else -1.0
    if faithful:
        y = sign * (math.sqrt(abs(x) + 1) - 1 + eps * x)
    else:
        y = sign * (math.sqrt(abs(x) + 1) - 1) + eps * x
    y = min(max(y, -support_size), support_size)
    lo, hi = math.floor(y), math.ceil(y)
    p_hi = y - lo
    out = [0.0] * (2 * support_size + 1)
    out[hi + support_size] = p_hi
    out[lo + support_size] = 1 - p_hi
    return out


@pytest.mark.parametrize("faithful", [False, True])
def test_scalar_to_logits_target_matches_slow_loop(faithful):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64) * 30
    x[0, :] = torch.tensor([0.0, 1.0, -1.0, 3.0, -3.0, 1e6])  # integers, exact transforms, clamp
    fast = scalar_to_logits_target(x, 20, EPS, faithful=faithful)
    slow = torch.tensor(
        [[_slow_target(float(v), 20, EPS, faithful) for v in row] for row in x], dtype=torch.float64
    )
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)


def test_logits_to_scalar_inverts_the_target():
    s = 300
    x = torch.cat([wide_range(torch.float64)[200:-200], torch.tensor([1.0, -1.0, 57.0, -250.0])])
    x = x[h(x, EPS).abs() <= s].to(torch.float32)  # inside the support
    target = scalar_to_logits_target(x, s, EPS)
    logits = torch.log(target.clamp_min(1e-38))
    out = logits_to_scalar(logits, s, EPS)
    assert out.dtype == torch.float32
    # |x| < eps reads as exactly 0 (A4); everything else round-trips.
    small = x.abs() < 2 * EPS
    torch.testing.assert_close(out[~small], x[~small], rtol=1e-4, atol=1e-4)
    assert out[x.abs() < 0.5 * EPS].eq(0).all()


def test_logits_to_scalar_zero_and_nan_details():
    s = 300
    # Uniform logits: the expectation is ~0 up to float noise; the |out| < eps rule makes it exact.
    assert logits_to_scalar(torch.zeros(3, 2 * s + 1), s, EPS).eq(0).all()
    bad = torch.zeros(2, 2 * s + 1)
    bad[0, 5] = float("nan")
    out = logits_to_scalar(bad, s, EPS)
    assert out[0] == 0 and out[1] == 0
    # A value below eps after the inverse becomes 0, one above it does not.
    tiny = scalar_to_logits_target(torch.tensor([4e-4, 4e-3]), s, EPS)
    out = logits_to_scalar(torch.log(tiny.clamp_min(1e-38)), s, EPS)
    assert out[0] == 0
    assert out[1] == pytest.approx(4e-3, rel=1e-3)


def test_logits_to_scalar_checks_atoms():
    with pytest.raises(ValueError, match="atoms"):
        logits_to_scalar(torch.zeros(2, 7), 4, EPS)


def test_transforms_stay_float32_under_autocast():
    logits = torch.randn(4, 21).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = logits_to_scalar(logits, 10, EPS)
        target = scalar_to_logits_target(torch.tensor([1.5, -2.25]).bfloat16(), 10, EPS)
    assert out.dtype == torch.float32 and target.dtype == torch.float32
    torch.testing.assert_close(out, logits_to_scalar(logits.float(), 10, EPS))
