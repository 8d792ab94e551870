"""Scalar <-> categorical transforms for values and value prefixes (spec A4).

Value and value-prefix heads predict logits over the integer support ``-S..S`` (``2S+1`` atoms).
Training targets are ``two_hot(h(x))``; predictions are read back as ``h_inverse(E[support])``.

All functions take torch tensors of any shape and compute in at least float32, also under
``torch.autocast`` (bf16/fp16 would lose the precision that the inverse transform needs).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _float(x: Tensor) -> Tensor:
    """``x`` as float32, or float64 if it already is (never a lower precision)."""
    return x if x.dtype == torch.float64 else x.float()


def _sqrt1p_minus_1(a: Tensor) -> Tensor:
    """sqrt(a + 1) - 1 for a >= 0, written as a / (sqrt(a + 1) + 1) so that small a keep their
    relative precision (the subtraction loses it: in float32, 1 + 1e-6 is already rounded)."""
    return a / (torch.sqrt(a + 1.0) + 1.0)


def h(x: Tensor, eps: float) -> Tensor:
    """Value transform h(x) = sign(x)(sqrt(|x|+1) - 1) + eps*x (spec A4; EZ after c533ebf).

    Args:
        x: [...] scalars.
        eps: the linear term's weight (0.001 in EZ and XTRA).

    Returns:
        [...] transformed scalars, float32 (float64 if ``x`` is float64). Computed without the
        cancellation of sqrt(|x|+1) - 1, so h and :func:`h_inverse` round-trip to float32
        precision from 1e-6 to 1e5.
    """
    x = _float(x)
    return torch.sign(x) * _sqrt1p_minus_1(x.abs()) + eps * x


def h_faithful(x: Tensor, eps: float) -> Tensor:
    """XTRA's transform sign(x)(sqrt(|x|+1) - 1 + eps*x) (spec A4, D-XT-3).

    The linear term sits inside the sign, so for x < 0 it enters with the wrong sign
    (it equals h(x) for x >= 0). Kept for exact replication (``ModelConfig.faithful_transform``);
    its inverse is still :func:`h_inverse`, as in the reference.
    """
    x = _float(x)
    return torch.sign(x) * (_sqrt1p_minus_1(x.abs()) + eps * x)


def h_inverse(y: Tensor, eps: float) -> Tensor:
    """Exact inverse of :func:`h` (spec A4).

    The reference writes it as ``sign(y)(((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)``.
    We compute the same value rearranged so that nothing cancels: with
    ``s = sqrt(1 + 4 eps (|y| + 1 + eps))`` and ``d = 2|y| / (s + 1 + 2 eps)`` (= the reference's
    inner term minus 1), ``h^-1(y) = sign(y) d (d + 2)``. The reference form loses about three
    decimal digits near 0 in float32; this one keeps full relative precision and gives exactly 0
    at 0.

    Args:
        y: [...] transformed scalars.
        eps: as in :func:`h`.

    Returns:
        [...] scalars x with h(x) = y, float32 (float64 if ``y`` is float64).
    """
    y = _float(y)
    a = y.abs()
    s = torch.sqrt(1.0 + 4.0 * eps * (a + 1.0 + eps))
    d = 2.0 * a / (s + 1.0 + 2.0 * eps)
    return torch.sign(y) * d * (d + 2.0)


def two_hot(x: Tensor, support_size: int) -> Tensor:
    """Two-hot encoding phi over the integer support -S..S (spec A4).

    ``x`` is clamped to [-S, S]; with ``lo = floor(x)``, ``hi = ceil(x)``: ``p_hi = x - lo`` goes to
    atom ``hi`` and then ``p_lo = 1 - p_hi`` to atom ``lo``. For an integer ``x`` both land on the
    same atom and the second write leaves 1 there (the reference's order).

    Args:
        x: [...] scalars (already transformed by h).
        support_size: S.

    Returns:
        [..., 2S+1] probabilities (sum 1; expectation over the support = clamped x).
    """
    x = _float(x).clamp(-support_size, support_size)
    lo = x.floor()
    hi = x.ceil()
    p_hi = x - lo
    p_lo = 1.0 - p_hi
    out = torch.zeros(*x.shape, 2 * support_size + 1, dtype=x.dtype, device=x.device)
    out.scatter_(-1, (hi + support_size).long().unsqueeze(-1), p_hi.unsqueeze(-1))
    out.scatter_(-1, (lo + support_size).long().unsqueeze(-1), p_lo.unsqueeze(-1))
    return out


def scalar_to_logits_target(
    x: Tensor, support_size: int, eps: float, faithful: bool = False
) -> Tensor:
    """Categorical target phi(h(x)) for a value or value prefix (spec A4, A7 step 2).

    Args:
        x: [...] scalar targets.
        support_size: S.
        eps: transform epsilon.
        faithful: use XTRA's buggy :func:`h_faithful` (D-XT-3) instead of :func:`h`.

    Returns:
        [..., 2S+1] target probabilities for a cross-entropy against the head's logits.
    """
    transform = h_faithful if faithful else h
    return two_hot(transform(x, eps), support_size)


def support(support_size: int, device: torch.device | str | None = None) -> Tensor:
    """The atoms -S..S as a float32 [2S+1] tensor."""
    return torch.arange(-support_size, support_size + 1, dtype=torch.float32, device=device)


def logits_to_scalar(logits: Tensor, support_size: int, eps: float) -> Tensor:
    """Scalar read-out h^-1(sum softmax(logits) * support) (spec A4; EZ inverse_scalar_transform).

    Two details of the reference are kept because they make outputs exact: NaN becomes 0, and any
    |output| < eps becomes exactly 0 (so a head whose expectation is ~0, e.g. the zero-initialised
    one, reads as 0 rather than as float noise). The reference uses its hard-coded 0.001 for that
    threshold, which is the transform's eps; we use ``eps``.

    Args:
        logits: [..., 2S+1] head outputs (any float dtype).
        support_size: S.
        eps: transform epsilon.

    Returns:
        [...] float32 scalars.
    """
    if logits.shape[-1] != 2 * support_size + 1:
        raise ValueError(
            f"logits have {logits.shape[-1]} atoms on the last axis, expected 2*{support_size}+1"
        )
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = torch.softmax(_float(logits), dim=-1)
        atoms = support(support_size, logits.device).to(probs.dtype)
        out = h_inverse((probs * atoms).sum(-1), eps)
        out = torch.where(torch.isnan(out), torch.zeros_like(out), out)
        return torch.where(out.abs() < eps, torch.zeros_like(out), out)


__all__ = [
    "h",
    "h_faithful",
    "h_inverse",
    "two_hot",
    "scalar_to_logits_target",
    "support",
    "logits_to_scalar",
]
