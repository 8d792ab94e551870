"""Offline training sources for the pretraining stages: datasets, teachers and target makers.

A stage (``teacher``, ``distill``) builds one :class:`~xtra.learn.train.Source` per game from a
fixed dataset and one of three target makers, then calls the one training loop:

* :func:`self_targets` -- reanalyse with the student's own target network (offline EZ, spec
  B10.2; the multi-game offline-RL baseline of App. C);
* :func:`teacher_targets` -- reanalyse with the frozen teacher of the sample's game: 50-simulation
  search policies over that game's legal ALE ids, n-step values bootstrapped with the teacher
  network's value, value prefixes from the data (decision 5; spec B10.3);
* :func:`bc_targets` -- behaviour cloning: the dataset's action as a one-hot policy target
  (Table 1's BC column; value, value-prefix and consistency losses are switched off by the stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xtra.config import Config
from xtra.data.dataset import Dataset
from xtra.data.replay import ReplayBuffer, SampledBatch
from xtra.errors import CheckpointError, DatasetError, XtraError
from xtra.games import get_game
from xtra.learn.loss import Targets
from xtra.learn.planner import Planner
from xtra.learn.train import Source, TargetMaker, reanalyze_targets, split_batch
from xtra.rundir import load_model

TARGET_KINDS = ("teacher", "self", "bc")


# --------------------------------------------------------------------------- action ids (B2)


def local_to_ale(local: np.ndarray, legal_actions: Sequence[int]) -> np.ndarray:
    """Local action indices of a game (its minimal action set) -> ALE ids 0..17 (spec B2)."""
    return np.asarray(legal_actions, dtype=np.int64)[np.asarray(local, dtype=np.int64)]


def ale_to_local(ale: np.ndarray, legal_actions: Sequence[int]) -> np.ndarray:
    """ALE ids -> local indices of the game; XtraError for an id the game does not have."""
    legal = np.asarray(legal_actions, dtype=np.int64)
    table = np.full(18, -1, dtype=np.int64)
    table[legal] = np.arange(len(legal))
    out = table[np.asarray(ale, dtype=np.int64)]
    if np.any(out < 0):
        bad = sorted(set(np.asarray(ale)[out < 0].tolist()))
        raise XtraError(f"ALE ids {bad} are not legal actions of this game ({legal.tolist()})")
    return out


# --------------------------------------------------------------------------- inputs


def parse_game_map(items: Sequence[str], flag: str) -> dict[str, str]:
    """``["GAME=PATH", ...]`` -> {canonical game name: path}; one-line XtraError on bad items."""
    out: dict[str, str] = {}
    for item in items:
        game, sep, path = item.partition("=")
        if not sep or not game or not path:
            raise XtraError(
                f"{flag} {item!r}: expected GAME=PATH, e.g. {flag} minatar/breakout=data/b"
            )
        name = get_game(game).name
        if name in out:
            raise XtraError(f"{flag} names {name} twice")
        out[name] = path
    return out


def open_dataset(path: str | Path, game: str, cfg: Config) -> ReplayBuffer:
    """The dataset at ``path`` as a replay buffer (priorities reset to 1, spec B4.2); it must be
    of ``game`` and stacked like ``cfg.env.frame_stack``."""
    ds = Dataset(path, game=game)
    if ds.frame_stack != cfg.env.frame_stack:
        raise DatasetError(
            f"{path} stacks {ds.frame_stack} frames but env.frame_stack={cfg.env.frame_stack}: "
            f"use --set env.frame_stack={ds.frame_stack}"
        )
    return ds.as_source(game=game, alpha=cfg.replay.alpha)


def obs_shape_of(replay: ReplayBuffer) -> tuple[int, int, int]:
    c, h, w = replay.frame_shape
    return (replay.frame_stack * c, h, w)


def common_obs_shape(replays: dict[str, ReplayBuffer]) -> tuple[int, int, int]:
    """The stacked observation shape shared by all datasets (DatasetError if they differ)."""
    shapes = {game: obs_shape_of(r) for game, r in replays.items()}
    first = next(iter(shapes.values()))
    for game, shape in shapes.items():
        if shape != first:
            raise DatasetError(
                f"observations differ between games ({dict(shapes)}); one student needs one shape: "
                f"check {game}'s dataset"
            )
    return first


def load_teacher(path: str | Path, game: str, obs_shape: tuple[int, int, int], device):
    """A frozen teacher (eval mode, no gradients) and its config; checks its game and shape."""
    model, tcfg, payload = load_model(path, device)
    if game not in payload.get("games", []):
        raise CheckpointError(
            f"teacher {path} was trained on {payload.get('games')}, not {game}: give {game}'s teacher"
        )
    if tuple(payload["obs_shape"]) != tuple(obs_shape):
        raise CheckpointError(
            f"teacher {path} sees observations {tuple(payload['obs_shape'])}, the data {obs_shape}"
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tcfg


# --------------------------------------------------------------------------- target makers


def self_targets(planner: Planner, cfg: Config) -> TargetMaker:
    """Reanalyse with the student's own target network (EZ with self-play off, spec B10.2)."""
    return reanalyze_targets(planner, cfg)


def teacher_targets(
    teacher: torch.nn.Module, teacher_cfg: Config, cfg: Config, device, *, noise: bool
) -> TargetMaker:
    """Targets from the frozen teacher (decision 5; B10.3): every sample's policy target is the
    visit distribution of a search with the teacher's own search settings (50 simulations in the
    paper preset) over the game's legal ids, ``noise`` = Dirichlet noise at its roots; values are
    n-step returns bootstrapped with the teacher network's value; value prefixes from the data."""
    planner = Planner(teacher, teacher_cfg, device)
    return reanalyze_targets(planner, cfg, add_noise=noise, reanalyze_ratio=1.0)


def bc_targets(cfg: Config, device) -> TargetMaker:
    """Behaviour cloning: policy target at t+u = one-hot of the dataset's ALE action a_{t+u}
    (u < K where it exists; zeros elsewhere, which the cross-entropy ignores). Value and
    value-prefix targets are zeros; the BC stage gives their losses weight 0."""
    p = cfg.model.policy_size

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        b, u_len = sample.mask.shape
        k = u_len - 1
        policy = np.zeros((b, u_len, p), dtype=np.float32)
        bi, ui = np.nonzero(sample.mask[:, :k] > 0)
        policy[bi, ui, sample.actions[bi, ui]] = 1.0
        return Targets(
            value=torch.zeros(b, u_len, device=device),
            value_prefix=torch.zeros(b, k, device=device),
            policy=torch.as_tensor(policy, device=device),
        )

    return make


def dataset_sources(
    replays: dict[str, ReplayBuffer],
    makers: dict[str, TargetMaker],
    total_batch: int,
    *,
    policy_mask: bool = True,
) -> list[Source]:
    """One fixed source per game; the batch is split evenly between them (:func:`split_batch`)."""
    games = list(replays)
    m = len(games)
    if total_batch < m:
        raise XtraError(f"optim.batch_size={total_batch} is smaller than the {m} games: raise it")
    return [
        Source(
            game=game,
            replay=replays[game],
            make_targets=makers[game],
            batch_size=(lambda step, i=i: split_batch(total_batch, m, step)[i]),
            auto_td_steps=None,  # fixed n = replay.td_steps: ages mean nothing in a fixed dataset
            fixed=True,
            policy_mask=policy_mask,
        )
        for i, game in enumerate(games)
    ]
