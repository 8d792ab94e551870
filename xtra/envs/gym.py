"""Any Gymnasium environment behind the batched interface (``module:factory`` or ``gym:ID``).

:class:`GymBatchedEnv` steps N ``gymnasium.Env`` of one game in lock-step; the base class adds
the frame stack, reward clipping, the step cap and auto-reset, as for every family. The game is
named ``module:factory`` (a callable that returns a ``gymnasium.Env``) or ``gym:ID`` (a
registered id); ``xtra.games`` opens it and maps its actions (see :func:`xtra.games.get_game`).

Observations (:class:`ObservationRule`; a ``Box`` space, else GameError):

* layout: (H, W, C) when the last axis is the smallest and has at most 4 entries (grey, RGB,
  RGBA, ...), else channel-first (C, H, W) with any C; ``metadata["xtra_obs_layout"] = "HWC"``
  or ``"CHW"`` overrides the guess. (H, W) is a grey image; a 1-D vector (D,) becomes a
  1 x D grey image; more axes are refused.
* values: uint8 as they are; any other dtype is mapped linearly from the Box bounds to 0..255
  (floats in [0, 1] -> round(255 x)), rounded and clipped: the replay stores uint8 frames.
  Non-uint8 observations need finite bounds (GameError otherwise).
* ``env.grayscale``: a 3-channel image becomes one grey channel (``cv2.COLOR_RGB2GRAY``).
* size: an image larger than ``env.obs_size`` on either side is resized to
  ``obs_size x obs_size`` with ``cv2.INTER_AREA`` (as Atari frames are); one that fits is kept
  as it is (a 10x10 grid stays 10x10). Vectors are never resized.

Actions: ``Discrete(n)``, n <= 18; local action i is the env's action ``start + i``, its ALE id
``legal_actions[i]`` (``metadata["xtra_ale_ids"]``, else i).

Episodes: the env's ``terminated`` ends the game (no bootstrap); its ``truncated`` (its own time
limit) truncates it, as the step cap does. There are no lives: ``frame_skip``, ``noop_max``,
``episode_life`` and ``repeat_action_probability`` do not apply (wrap the env for those);
``frame_stack``, ``obs_size``, ``grayscale``, ``clip_rewards`` and the caps do.

Seeding: env i's first reset is ``reset(seed=seed + i)``, later ones ``reset(seed=None)`` (the
env's own stream continues); ``reset(seeds)`` passes those seeds.

Checkpoints: ``state_dict`` pickles each env (wrappers, ``np_random`` and all). An env that
cannot be pickled (open windows, sockets, handles of a simulator) raises CheckpointError when a
state is taken, i.e. at a training run's first checkpoint and at a dataset's first chunk; a
warning says so when such an env is built.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from xtra.config import EnvConfig
from xtra.envs.base import BatchedEnv
from xtra.errors import CheckpointError, GameError, XtraError
from xtra.games import gym_action_ids, open_gym_env

LAYOUTS = ("HWC", "CHW")
MAX_LAST_AXIS_CHANNELS = 4
"""(H, W, C) is assumed when the last axis is the smallest and at most this long."""


@dataclass(frozen=True)
class ObservationRule:
    """How one observation of a Gymnasium env becomes a frame [C, H, W] uint8."""

    game: str
    space_shape: tuple[int, ...]
    layout: str
    """"HWC", "CHW", "HW" or "D" (a vector)"""
    frame_shape: tuple[int, int, int]
    """(C, H, W) of the frames produced"""
    low: np.ndarray | None
    """Box lower bounds in the frame's layout before resizing, or None (uint8: kept)"""
    span: np.ndarray | None
    """high - low (1 where they are equal)"""
    gray: bool
    resize: bool

    @classmethod
    def from_space(cls, space, cfg: EnvConfig, metadata: dict | None, game: str) -> ObservationRule:
        """The rule for ``space``; GameError (one line) when xtra cannot use it."""
        import gymnasium

        if not isinstance(space, gymnasium.spaces.Box):
            raise GameError(
                f"{game} has observations {space}: xtra needs a Box of images (H, W, C), "
                "(C, H, W) or (H, W), or a 1-D vector (not Dict, Tuple, Discrete or others)"
            )
        shape = tuple(int(s) for s in space.shape)
        layout = _layout(shape, (metadata or {}).get("xtra_obs_layout"), game)
        if min(shape, default=0) < 1:
            raise GameError(f"{game} has observations of shape {shape}: every axis needs a size")
        if layout == "D":
            chw = (1, 1, shape[0])
        elif layout == "HW":
            chw = (1, *shape)
        elif layout == "HWC":
            chw = (shape[2], shape[0], shape[1])
        else:
            chw = shape
        low = span = None
        if space.dtype != np.uint8:
            lo = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape)
            hi = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape)
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                raise GameError(
                    f"{game} has {space.dtype} observations with unbounded Box low/high: xtra "
                    "stores uint8 frames scaled from the bounds, so give the Box finite bounds "
                    "(e.g. 0..1) or return uint8 images"
                )
            low = _to_chw(lo, layout)
            span = _to_chw(np.where(hi > lo, hi - lo, 1.0), layout)
        c, h, w = chw
        gray = bool(cfg.grayscale) and c == 3 and layout != "D"
        if gray:
            c = 1
        resize = layout != "D" and (h > cfg.obs_size or w > cfg.obs_size)
        if resize:
            h = w = cfg.obs_size
        return cls(game, shape, layout, (c, h, w), low, span, gray, resize)

    def __call__(self, obs) -> np.ndarray:
        """One observation -> frame [C, H, W] uint8."""
        a = np.asarray(obs)
        if a.shape != self.space_shape:
            raise GameError(
                f"{self.game} returned an observation of shape {a.shape} but its "
                f"observation_space has shape {self.space_shape}: make them agree"
            )
        a = _to_chw(a, self.layout)
        if self.low is None:
            frame = a.astype(np.uint8, copy=False)
        else:
            x = (np.nan_to_num(a.astype(np.float64)) - self.low) / self.span
            frame = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        if self.gray:
            frame = cv2.cvtColor(np.ascontiguousarray(frame.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)
            frame = frame[None]
        if self.resize:
            frame = _resize(frame, self.frame_shape[1], self.frame_shape[2])
        return frame


def _resize(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """[C, H0, W0] uint8 -> [C, h, w] with INTER_AREA (OpenCV takes at most 4 channels a call)."""
    parts = []
    for c0 in range(0, frame.shape[0], 4):
        hwc = np.ascontiguousarray(frame[c0 : c0 + 4].transpose(1, 2, 0))
        small = cv2.resize(hwc, (w, h), interpolation=cv2.INTER_AREA)
        parts.append(small.reshape(h, w, -1).transpose(2, 0, 1))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _layout(shape: tuple[int, ...], given, game: str) -> str:
    if len(shape) == 1:
        return "D"
    if len(shape) == 2:
        return "HW"
    if len(shape) != 3:
        raise GameError(
            f"{game} has observations of shape {shape}: xtra takes images (H, W, C), (C, H, W) "
            "or (H, W), or 1-D vectors"
        )
    if given is not None:
        if given not in LAYOUTS:
            raise GameError(
                f"{game}: metadata['xtra_obs_layout'] = {given!r} must be one of {', '.join(LAYOUTS)}"
            )
        return given
    last_is_channels = shape[2] <= MAX_LAST_AXIS_CHANNELS and shape[2] == min(shape)
    return "HWC" if last_is_channels else "CHW"


def _to_chw(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "D":
        return a.reshape(1, 1, -1)
    if layout == "HW":
        return a[None]
    if layout == "HWC":
        return a.transpose(2, 0, 1)
    return a


class GymBatchedEnv(BatchedEnv):
    """N Gymnasium envs of one game stepped in a loop; see the module docstring.

    Args:
        game: the game's name (``module:factory``, ``gym:ID`` or a family name).
        cfg: frame_stack, obs_size, grayscale and clip_rewards are read from it.
        num_envs: N.
        seed: env i's first reset gets seed ``seed + i``.
        max_episode_steps: step cap per game, or None.
        source: the ``module:factory`` or ``gym:ID`` that builds the env (default: ``game``).
    """

    def __init__(
        self,
        game: str,
        cfg: EnvConfig,
        *,
        num_envs: int,
        seed: int,
        max_episode_steps: int | None,
        source: str | None = None,
    ) -> None:
        if num_envs < 1:
            raise XtraError(f"num_envs={num_envs} must be at least 1")
        self._source = game if source is None else source
        self._envs: list = []
        try:
            for _ in range(num_envs):
                self._envs.append(open_gym_env(self._source))
            first = self._envs[0]
            legal = gym_action_ids(first, game)
            self._rule = ObservationRule.from_space(
                first.observation_space, cfg, getattr(first, "metadata", None), game
            )
            for env in self._envs[1:]:
                if (env.observation_space, env.action_space) != (
                    first.observation_space,
                    first.action_space,
                ):
                    raise GameError(
                        f"{game} built environments with different spaces: every call of the "
                        "factory must give the same observation and action spaces"
                    )
        except BaseException:
            for env in self._envs:
                env.close()
            raise
        self._action_start = int(first.action_space.start)
        self._next_seeds: list[int | None] = [seed + i for i in range(num_envs)]
        self._own_truncation = np.zeros(num_envs, dtype=bool)
        self.unpicklable = _pickle_problem(first)
        """Why the env cannot be checkpointed (None: it can)."""
        if self.unpicklable is not None:
            warnings.warn(
                f"{game} cannot be checkpointed ({self.unpicklable}): training and data "
                "collection will stop at their first checkpoint; make the env picklable",
                stacklevel=2,
            )
        super().__init__(
            game=game,
            num_envs=num_envs,
            legal_actions=legal,
            frame_shape=self._rule.frame_shape,
            frame_stack=cfg.frame_stack,
            clip_rewards=cfg.clip_rewards,
            episode_life=False,
            max_episode_steps=max_episode_steps,
        )

    @property
    def envs(self) -> list:
        """The N ``gymnasium.Env`` objects (for tests and diagnostics)."""
        return self._envs

    def close(self) -> None:
        super().close()
        for env in self._envs:
            env.close()
        self._envs = []

    # ------------------------------------------------------------------ hooks

    def _seed_env(self, i: int, seed: int) -> None:
        self._next_seeds[i] = seed

    def _new_games(self, idx: np.ndarray) -> None:
        for i in idx:
            obs, _ = self._envs[i].reset(seed=self._next_seeds[i])
            self._next_seeds[i] = None
            self._frames[i] = self._rule(obs)

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        ended = np.zeros(n, dtype=bool)
        for i in range(n):
            obs, r, terminated, truncated, _ = self._envs[i].step(
                self._action_start + int(actions[i])
            )
            r = float(r)
            if not np.isfinite(r):
                raise GameError(f"{self.game} returned the reward {r}: rewards must be finite")
            reward[i], ended[i] = r, bool(terminated)
            self._own_truncation[i] = bool(truncated)
            self._frames[i] = self._rule(obs)
        return reward, ended, np.zeros(n, dtype=bool)

    def _truncated_by_game(self) -> np.ndarray:
        return self._own_truncation

    # ------------------------------------------------------------------ state

    def _family_state(self) -> dict:
        blobs = []
        for env in self._envs:
            try:
                blobs.append(pickle.dumps(env, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as e:
                raise CheckpointError(
                    f"{self.game} cannot be checkpointed: its gymnasium env does not pickle "
                    f"({_short(e)}); make it picklable (plain attributes, or __getstate__ / "
                    "__setstate__) to train on it or collect data from it"
                ) from e
        return {"envs": blobs, "next_seeds": list(self._next_seeds)}

    def _load_family_state(self, state: dict) -> None:
        import gymnasium

        blobs, seeds = state["envs"], list(state["next_seeds"])
        if len(blobs) != self.num_envs or len(seeds) != self.num_envs:
            raise ValueError(f"the gymnasium state is not for {self.num_envs} environments")
        try:
            envs = [pickle.loads(blob) for blob in blobs]
        except Exception as e:
            raise ValueError(f"unreadable gymnasium env state: {_short(e)}") from e
        if not all(isinstance(env, gymnasium.Env) for env in envs):
            raise ValueError("the gymnasium state does not hold gymnasium envs")
        for env in self._envs:
            env.close()
        self._envs = envs
        self._next_seeds = [None if s is None else int(s) for s in seeds]


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _pickle_problem(env) -> str | None:
    try:
        pickle.dumps(env, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        return _short(e)
    return None
