"""Batched environments of one game behind one interface: Atari (ale-py), MinAtar, toys, task
families and any Gymnasium environment.

Use :func:`make_env`; every env returns :class:`StepResult` from ``step`` (see ``base.py`` for
the terms game / episode / agent step and the auto-reset rules).

Game names: Atari games by their CamelCase ALE name ("Breakout", "MsPacman"), MinAtar games as
"minatar/<game>" ("minatar/space_invaders"), toys as "toy/catch" and "toy/chain", the task
families as "family/<variant>" ("family/catch-colors"); these are matched ignoring case, "_",
"-" and spaces. A name with a colon is a Gymnasium environment, matched exactly:
"module:factory" (a callable that returns a ``gymnasium.Env``) or "gym:ID" (a registered id);
see ``gym.py`` for how its observations and actions are mapped.
"""

from __future__ import annotations

import difflib

from xtra.config import EnvConfig
from xtra.envs.base import BatchedEnv, StepResult
from xtra.envs.minatar import MINATAR_GAMES
from xtra.envs.toy import OPTIMAL_RETURN, RANDOM_RETURN, TOY_GAMES
from xtra.errors import GameError, XtraError
from xtra.games import FAMILY, gym_name, is_gym_name

MODES = ("train", "eval")


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "_- ")


def resolve_game(name: str) -> str:
    """Canonical name of ``name`` ("ms_pacman" -> "MsPacman"); GameError with close matches if
    unknown. ``module:factory`` and ``gym:ID`` names are checked (the module imports and has the
    callable, the id is registered) and kept as written."""
    if is_gym_name(name):
        return gym_name(name)
    family, _, rest = name.strip().partition("/")
    if rest:
        if _key(family) == "minatar":
            names = [f"minatar/{g}" for g in MINATAR_GAMES]
        elif _key(family) == "toy":
            names = list(TOY_GAMES)
        elif _key(family) == "family":
            names = list(FAMILY)
        else:
            names = []
    else:
        from xtra.envs.atari import atari_games

        names = list(atari_games())
    by_key = {_key(n): n for n in names}
    if _key(name.strip()) not in by_key:
        raise _unknown(name)
    return by_key[_key(name.strip())]


def _unknown(name: str) -> GameError:
    from xtra.envs.atari import atari_games

    everything = (
        list(atari_games())
        + [f"minatar/{g}" for g in MINATAR_GAMES]
        + list(TOY_GAMES)
        + list(FAMILY)
    )
    lower = {n.lower(): n for n in everything}
    close = difflib.get_close_matches(name.strip().lower(), list(lower), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(lower[c] for c in close)}? " if close else ""
    return GameError(
        f"unknown game {name!r}: {hint}use an ALE name like 'Breakout', "
        f"'minatar/<{'|'.join(MINATAR_GAMES)}>', '<{'|'.join(TOY_GAMES)}>', "
        "'family/<variant>' (`xtra games`), 'module:factory' or 'gym:ID'"
    )


def make_env(
    game: str,
    cfg: EnvConfig,
    *,
    num_envs: int,
    seed: int,
    mode: str = "train",
    max_episode_steps: int | None = None,
) -> BatchedEnv:
    """Build ``num_envs`` environments of ``game``; env i is seeded ``seed + i`` (call ``reset``).

    Args:
        game: a game name (see the module docstring); registered names match case-insensitively.
        cfg: the environment protocol.
        num_envs: N, environments stepped together.
        seed: env i gets seed ``seed + i`` at its first reset; ``reset(seeds)`` overrides.
        mode: "train": a lost life ends the episode when ``cfg.episode_life`` (Atari), cap =
            ``cfg.max_episode_steps`` unless ``max_episode_steps`` is given. "eval": whole games
            (no life-loss termination), cap = ``max_episode_steps``, which is then required.
            Rewards are clipped per ``cfg.clip_rewards`` in both modes; scores use raw rewards.
        max_episode_steps: agent-step cap per game.
    """
    if mode not in MODES:
        raise XtraError(f"mode={mode!r} is not allowed: choose one of {', '.join(MODES)}")
    if mode == "eval" and max_episode_steps is None:
        raise XtraError(
            "mode='eval' needs max_episode_steps: pass the evaluation cap (cfg.eval.final_max_steps)"
        )
    if mode == "train" and max_episode_steps is None:
        max_episode_steps = cfg.max_episode_steps
    if seed < 0:
        raise XtraError(f"seed={seed} must be >= 0")
    if num_envs < 1:
        raise XtraError(f"num_envs={num_envs} must be at least 1")
    name = resolve_game(game)
    common = dict(num_envs=num_envs, seed=seed, max_episode_steps=max_episode_steps)
    if is_gym_name(name) or name.startswith("family/"):
        from xtra.envs.families import factory_name
        from xtra.envs.gym import GymBatchedEnv

        source = None
        if name.startswith("family/"):
            source = "xtra.envs.families:" + factory_name(name.removeprefix("family/"))
        return GymBatchedEnv(name, cfg, source=source, **common)
    if name.startswith("minatar/"):
        from xtra.envs.minatar import MinAtarBatchedEnv

        return MinAtarBatchedEnv(name, cfg, **common)
    if name.startswith("toy/"):
        from xtra.envs.toy import CatchEnv, ChainEnv

        cls = {"toy/catch": CatchEnv, "toy/chain": ChainEnv}[name]
        return cls(name, cfg, **common)
    from xtra.envs.atari import AtariBatchedEnv

    episode_life = mode == "train" and cfg.episode_life
    return AtariBatchedEnv(name, cfg, episode_life=episode_life, **common)


__all__ = [
    "BatchedEnv",
    "StepResult",
    "make_env",
    "resolve_game",
    "MODES",
    "MINATAR_GAMES",
    "TOY_GAMES",
    "FAMILY",
    "OPTIMAL_RETURN",
    "RANDOM_RETURN",
]
