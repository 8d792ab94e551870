"""Every random stream of a run, derived from the one ``seed`` of its config.

Each stream gets a fixed offset so that changing one consumer (more evaluation episodes, another
augmentation) never shifts the numbers another one draws. The offsets are part of the results:
changing one changes every fixed-seed run, so they live here, once.
"""

from __future__ import annotations

ENVIRONMENTS = 0
"""Training environments: env i starts from ``seed + i`` (their own per-env streams)."""

LOOP = 0
"""The training loop's generator: PER sampling and the searches of target makers."""

ACTING = 1
"""Self-play and dataset collection: the actions drawn from visit counts, Dirichlet noise."""

AUGMENTATION = 7
"""The learner's torch generator: random shifts and intensity of the observation augmentation."""

EVALUATION = 1_000_003
"""Tie-breaks inside evaluation searches (the environments use seeds 0..E-1, spec A9)."""

RANDOM_POLICY = 2_000_003
"""The uniform-random baseline's actions."""

TASK_WEIGHTS = 3_000_017
"""Finetuning's task-weight measurements with samples of their own (``transfer.task_weight_samples``)."""


def stream(seed: int, offset: int) -> int:
    """The seed of one stream of a run seeded ``seed``."""
    return seed + offset
