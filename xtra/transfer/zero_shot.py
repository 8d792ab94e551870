"""Evaluating a pretrained model on any game, seen or not (Table 1's zero-shot columns; B10.6).

The network's 18-way policy head is sliced to the game's legal ALE ids (spec B2). Two acting
rules: ``search`` (the evaluation protocol of spec A9: MCTS, no noise, most visited child) and
``prior`` (argmax of the sliced policy head, no search: how behaviour cloning acts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from xtra.config import Config, apply_overrides, parse_set_args
from xtra.envs import make_env
from xtra.errors import CheckpointError, XtraError
from xtra.evaluate import EvalResult, evaluate, evaluate_prior
from xtra.rundir import load_model

POLICIES = ("search", "prior")


def evaluate_with(
    policy: str,
    model: torch.nn.Module,
    game: str,
    cfg: Config,
    *,
    max_steps: int,
    device: torch.device,
    num_episodes: int | None = None,
    amp: bool = False,
) -> EvalResult:
    """:func:`xtra.evaluate.evaluate` (``search``) or :func:`evaluate_prior` (``prior``)."""
    if policy not in POLICIES:
        raise XtraError(f"unknown policy {policy!r}: choose search or prior")
    fn = evaluate if policy == "search" else evaluate_prior
    return fn(
        model, game, cfg, max_steps=max_steps, device=device, num_episodes=num_episodes, amp=amp
    )


def zero_shot(
    model_path: str | Path,
    game: str,
    *,
    episodes: int | None = None,
    max_steps: int | None = None,
    policy: str = "search",
    device: str = "cpu",
    overrides: Sequence[str] = (),
) -> tuple[EvalResult, dict]:
    """Evaluate the model at ``model_path`` (a model.pt or finished run directory) on ``game``,
    with the model's own config (protocol, search) changed by ``overrides``
    (``SECTION.FIELD=VALUE``, e.g. ``eval.action_ties=prior``). Returns the result and the
    model's payload."""
    model, cfg, payload = load_model(model_path, device)
    cfg = apply_overrides(cfg, parse_set_args(list(overrides)))
    env = make_env(game, cfg.env, num_envs=1, seed=0, mode="eval", max_episode_steps=1)
    shape = env.obs_shape
    env.close()
    if tuple(payload["obs_shape"]) != tuple(shape):
        raise CheckpointError(
            f"{model_path} sees observations {tuple(payload['obs_shape'])} but {game} gives {shape}"
        )
    res = evaluate_with(
        policy,
        model,
        game,
        cfg,
        max_steps=max_steps or cfg.eval.final_max_steps,
        device=torch.device(device),
        num_episodes=episodes,
    )
    return res, payload
