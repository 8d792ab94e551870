"""EfficientZero networks (h, g, f, SimSiam heads), the inference API and value transforms.

Search, self-play, reanalysis and evaluation use only :class:`EfficientZeroNet`'s
``initial_inference`` / ``recurrent_inference`` (returning :class:`NetworkOutput`) and
:func:`legal_logits`; the learner also calls ``represent`` / ``dynamics`` / ``predict`` /
``project`` and the transforms of :mod:`xtra.model.transforms` (spec A3, A4).
"""

from xtra.model.networks import (
    COMPONENTS,
    EfficientZeroNet,
    NetworkOutput,
    action_planes,
    legal_logits,
)
from xtra.model.transforms import (
    h,
    h_faithful,
    h_inverse,
    logits_to_scalar,
    scalar_to_logits_target,
    support,
    two_hot,
)

__all__ = [
    "COMPONENTS",
    "EfficientZeroNet",
    "NetworkOutput",
    "action_planes",
    "legal_logits",
    "h",
    "h_faithful",
    "h_inverse",
    "logits_to_scalar",
    "scalar_to_logits_target",
    "support",
    "two_hot",
]
