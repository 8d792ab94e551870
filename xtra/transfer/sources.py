"""Offline sources of the transfer stages: datasets and teachers, opened and checked.

A stage (``teacher``, ``distill``, ``finetune``) opens each game's dataset as a fixed replay
(:func:`open_dataset`), checks that every network involved sees one observation shape, and
turns the datasets into one :class:`~xtra.learn.loop.Source` per game that share the batch
evenly (:func:`dataset_sources`), each with a target maker (:mod:`xtra.transfer.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from xtra.config import Config, EnvConfig, apply_overrides
from xtra.data.dataset import Dataset
from xtra.data.replay import ReplayBuffer
from xtra.envs import make_env
from xtra.envs.minatar import RENDERERS
from xtra.errors import CheckpointError, DatasetError, XtraError
from xtra.games import get_game
from xtra.learn.loop import Source, TargetMaker, split_batch
from xtra.rundir import load_model

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


def open_dataset(path: str | Path, game: str | None, cfg: Config) -> tuple[ReplayBuffer, str]:
    """The dataset at ``path`` as a replay buffer (priorities reset to 1, spec B4.2) and its
    game's canonical name; it must be of ``game`` (any game when None) and stacked like
    ``cfg.env.frame_stack``."""
    ds = Dataset(path, game=game)
    if ds.frame_stack != cfg.env.frame_stack:
        raise DatasetError(
            f"{path} stacks {ds.frame_stack} frames but env.frame_stack={cfg.env.frame_stack}: "
            f"use --set env.frame_stack={ds.frame_stack}"
        )
    check_frames(ds, cfg)
    return ds.as_source(alpha=cfg.replay.alpha), ds.game


def check_frames(ds: Dataset, cfg: Config) -> None:
    """DatasetError unless ``ds``'s frames have the shape that ``cfg``'s environment gives its
    game: a network trained on the data is evaluated in that environment."""
    data, shape = tuple(ds.frame_shape), env_frame_shape(ds.game, cfg.env)
    if data == shape:
        return
    # Which observation kind gives the data's frames: ask the environment, not a table of depths.
    kinds = RENDERERS if ds.game.startswith("minatar/") else ()
    kind = next(
        (k for k in kinds if env_frame_shape(ds.game, replace(cfg.env, minatar_obs=k)) == data),
        None,
    )
    if kind is not None:
        fix = f"train with --set env.minatar_obs={kind}, or collect the data again"
    else:
        fix = "train with the environment settings it was collected with, or collect it again"
    raise DatasetError(
        f"{ds.path} holds frames {data} but {ds.game} with this config gives {shape}: {fix}"
    )


def env_frame_shape(game: str, env_cfg: EnvConfig) -> tuple[int, ...]:
    """(C, H, W) of one frame of ``game`` under ``env_cfg``."""
    env = make_env(game, env_cfg, num_envs=1, seed=0)
    try:
        return tuple(env.frame_shape)
    finally:
        env.close()


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


def load_teachers(
    paths: dict[str, str | Path], obs_shape: tuple[int, int, int], cfg: Config, device
) -> dict[str, tuple]:
    """{game: (frozen teacher, its config)}; ``transfer.teacher_simulations`` (when not 0)
    replaces each teacher's own number of simulations."""
    out = {}
    for game, path in paths.items():
        teacher, tcfg = load_teacher(path, game, obs_shape, device)
        if cfg.transfer.teacher_simulations:
            sims = cfg.transfer.teacher_simulations
            tcfg = apply_overrides(tcfg, {"search.num_simulations": sims})
        out[game] = (teacher, tcfg)
    return out


def dataset_sources(
    replays: dict[str, ReplayBuffer],
    makers: dict[str, TargetMaker],
    total_batch: int,
    *,
    legal_softmax: bool = True,
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
            auto_td_steps=None,  # fixed n = targets.td_steps: ages mean nothing in a fixed dataset
            offline=True,
            legal_softmax=legal_softmax,
        )
        for i, game in enumerate(games)
    ]
