"""N environments of one game stepped together, behind one interface (spec A1, A9).

:class:`BatchedEnv` owns everything that does not depend on the emulator: the frame stack,
action checks, reward clipping, episode and game bookkeeping, the step cap and auto-reset.
A family (Atari, MinAtar, toy, Gymnasium) subclasses it and only moves its emulators through
four hooks (``_seed_env``, ``_new_games``, ``_act``, ``_new_life``; ``_truncated_by_game`` for a
game with its own time limit), writing the newest frame of each env into ``self._frames``.

Shape letters: ``N`` environments, ``S`` stacked frames, ``C`` channels of one frame,
``H x W`` frame size, ``A`` legal actions of the game.

Terms (the same in every family):

* *game*: from a real reset to game over (or the step cap). Scores are per game.
* *episode*: a training trajectory. It is the game, except in train mode with
  ``episode_life`` where each life is its own episode (``terminated`` on life loss).
* *agent step*: one call of :meth:`BatchedEnv.step` (Atari: ``frame_skip`` emulator frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xtra.errors import CheckpointError, XtraError

STATE_FORMAT = 1
"""Version of the dict that :meth:`BatchedEnv.state_dict` returns."""


@dataclass
class StepResult:
    """What one :meth:`BatchedEnv.step` returns; every array has the env axis ``N`` first."""

    obs: np.ndarray
    """[N, S*C, H, W] uint8: the stack after the step; where an episode ended it is already the
    first observation of the next episode (new life or new game: auto-reset)."""
    final_obs: np.ndarray
    """[N, S*C, H, W] uint8: the stack the step reached, before any auto-reset (== obs elsewhere;
    the same array as obs when no env was reset: treat observations as read-only)."""
    reward: np.ndarray
    """[N] float32: training reward, sign(raw_reward) when EnvConfig.clip_rewards, else raw."""
    raw_reward: np.ndarray
    """[N] float32: unclipped reward summed over the step's emulator frames (for scores)."""
    terminated: np.ndarray
    """[N] bool: the episode ended by the game (game over, or a life lost in train mode with
    episode_life); no value bootstrap past it."""
    truncated: np.ndarray
    """[N] bool: the step cap was reached and the episode was not terminated."""
    game_over: np.ndarray
    """[N] bool: the real game ended (game over or cap); ``obs`` starts a new game."""
    episode_return: np.ndarray
    """[N] float64: raw score of the game that just ended where game_over, else nan."""
    episode_length: np.ndarray
    """[N] int64: agent steps of the game that just ended where game_over, else 0."""


class BatchedEnv:
    """Abstract base: steps ``num_envs`` environments of one game in lock-step, with auto-reset.

    Attributes:
        game: canonical game name ("Breakout", "minatar/breakout", "toy/catch").
        num_envs: N.
        legal_actions: [A] int64, the ALE action id (0..17) of each local action 0..A-1.
        num_actions: A.
        frame_shape: (C, H, W) of one frame.
        obs_shape: (S*C, H, W); channels are ordered oldest frame first, [f0c0, f0c1, ..., f1c0, ...].
        time_limit: the game's own step limit (toy/chain), combined with the mode's cap by min.
    """

    time_limit: int | None = None

    # Arrays of the base class saved by state_dict: {attribute: dtype}. (Not ``_frames``: the
    # hooks write it before every read.)
    _STATE_ARRAYS = {
        "_stack": np.uint8,
        "_game_return": np.float64,
        "_game_length": np.int64,
        "_cap_count": np.int64,
    }

    def __init__(
        self,
        *,
        game: str,
        num_envs: int,
        legal_actions: Sequence[int],
        frame_shape: tuple[int, int, int],
        frame_stack: int,
        clip_rewards: bool,
        episode_life: bool,
        max_episode_steps: int | None,
    ) -> None:
        if num_envs < 1:
            raise XtraError(f"num_envs={num_envs} must be at least 1")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise XtraError(f"max_episode_steps={max_episode_steps} must be at least 1")
        self.game = game
        self.num_envs = num_envs
        self.legal_actions = np.asarray(legal_actions, dtype=np.int64)
        self.num_actions = len(self.legal_actions)
        self.frame_shape = tuple(int(x) for x in frame_shape)
        c, h, w = self.frame_shape
        self.obs_shape = (frame_stack * c, h, w)
        self._clip_rewards = clip_rewards
        self._episode_life = episode_life
        caps = [x for x in (max_episode_steps, self.time_limit) if x is not None]
        self._cap = min(caps) if caps else np.iinfo(np.int64).max
        # Newest frame of each env, written by the family hooks: [N, C, H, W].
        self._frames = np.zeros((num_envs, c, h, w), dtype=np.uint8)
        # Stack kept as [N, S, C, H, W] so that pushing a frame is one slice shift.
        # Returned observations are views of it; it is replaced, never mutated, after that.
        self._stack = np.zeros((num_envs, frame_stack, c, h, w), dtype=np.uint8)
        self._game_return = np.zeros(num_envs, dtype=np.float64)
        self._game_length = np.zeros(num_envs, dtype=np.int64)
        # Steps counted against the cap: agent steps plus Atari's life-loss NOOP steps (A1).
        self._cap_count = np.zeros(num_envs, dtype=np.int64)
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ family hooks

    def _seed_env(self, i: int, seed: int) -> None:
        """Re-seed env i's random streams (emulator and reset noise) with ``seed``."""
        raise NotImplementedError

    def _new_games(self, idx: np.ndarray) -> None:
        """Start a new game in each env of ``idx`` [k]; write its first frame to ``_frames[idx]``."""
        raise NotImplementedError

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply local ``actions`` [N] to every env; write the reached frames to ``_frames``.

        Returns ``(raw_reward [N] float32, game_ended [N] bool, life_lost [N] bool)``.
        """
        raise NotImplementedError

    def _new_life(self, i: int) -> bool:
        """Continue env i after a life loss (train mode); write the frame to ``_frames[i]``.

        Returns True when the game ended meanwhile (the caller then starts a new game).
        """
        raise NotImplementedError

    def _truncated_by_game(self) -> np.ndarray | None:
        """[N] bool: envs whose game cut itself short in the last ``_act`` (its own time limit:
        a Gymnasium env's ``truncated``); None when the family has no such limit. Such an env is
        truncated (not terminated) and starts a new game, as at the step cap."""
        return None

    def _spec(self) -> dict:
        """What a saved state must agree on to be loaded here: game, N and the env's config."""
        return {
            "game": self.game,
            "family": type(self).__name__,
            "num_envs": self.num_envs,
            "obs_shape": tuple(self.obs_shape),
            "num_actions": self.num_actions,
            "step_cap": int(self._cap),
            "clip_rewards": bool(self._clip_rewards),
            "episode_life": bool(self._episode_life),
        }

    def _family_state(self) -> dict:
        """The family's own state (emulators, generators, game variables) as plain values."""
        raise NotImplementedError

    def _load_family_state(self, state: dict) -> None:
        """Inverse of :meth:`_family_state` on an env with the same :meth:`_spec`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API

    def reset(self, seeds: Sequence[int] | None = None) -> np.ndarray:
        """Start a new game in every env and return the first observations [N, S*C, H, W] uint8.

        Args:
            seeds: [N] per-env seeds (evaluation uses 0..31). None keeps each env's own random
                stream: the seed given at construction (``seed + i``) before the first reset,
                the continued stream afterwards.
        """
        self._check_open()
        if seeds is not None:
            seeds = [int(s) for s in seeds]
            if len(seeds) != self.num_envs:
                raise XtraError(
                    f"reset() got {len(seeds)} seeds for {self.num_envs} environments: give one per env"
                )
            if min(seeds) < 0:
                raise XtraError(f"reset() got a negative seed in {seeds}: seeds must be >= 0")
            for i, s in enumerate(seeds):
                self._seed_env(i, s)
        self._stack = np.empty_like(self._stack)
        self._start_games(np.arange(self.num_envs))
        self._started = True
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        """Advance every env by one agent step with local ``actions`` [N] (0..A-1); auto-reset.

        The cap counts agent steps per game, across lives; in train mode the NOOP step that
        starts a new life counts too (EZ's TimeLimit sits under EpisodicLifeEnv, spec A1).
        """
        if not self._started:
            raise XtraError("step() was called before reset(): call reset() first")
        actions = self._check_actions(actions)
        raw, ended, life_lost = self._act(actions)
        self._push()
        final_obs = self._obs()
        self._game_return += raw
        self._game_length += 1
        self._cap_count += 1

        terminated = ended | (life_lost & self._episode_life)
        capped = self._cap_count >= self._cap
        own = self._truncated_by_game()
        if own is not None:
            capped = capped | (own & ~ended)
        truncated = capped & ~terminated
        game_over = ended | capped
        new_life = np.flatnonzero(terminated & ~game_over)
        if new_life.size or game_over.any():
            # final_obs shares memory with the stack: copy before writing first frames.
            self._stack = self._stack.copy()

        # Train mode, life lost, game goes on: one NOOP step, then a fresh stack (A1.5).
        for i in new_life:
            self._cap_count[i] += 1
            if self._new_life(int(i)):
                game_over[i] = True
            else:
                self._stack[i] = self._frames[i]

        episode_return = np.where(game_over, self._game_return, np.nan)
        episode_length = np.where(game_over, self._game_length, 0)
        over = np.flatnonzero(game_over)
        if over.size:
            self._start_games(over)

        reward = np.sign(raw) if self._clip_rewards else raw.copy()
        return StepResult(
            obs=self._obs(),
            final_obs=final_obs,
            reward=reward.astype(np.float32),
            raw_reward=raw.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            game_over=game_over,
            episode_return=episode_return,
            episode_length=episode_length.astype(np.int64),
        )

    def state_dict(self) -> dict:
        """Everything needed to continue this env bit-identically, as plain picklable values.

        Emulator states with their random streams, our own generators (no-op counts, toy
        games), frame stacks, lives, step counters, running game returns and lengths and the
        sticky-action memory: values, numpy arrays, bytes, lists and dicts only (for
        ``torch.save`` or ``pickle``). Taking it does not change the env's future.
        """
        self._check_open()
        return {
            "format": STATE_FORMAT,
            "spec": self._spec(),
            "started": self._started,
            "arrays": {name: getattr(self, name).copy() for name in self._STATE_ARRAYS},
            "family": self._family_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of an env of the same game, config
        and ``num_envs``, built with any seed): the next steps are those the saved env would
        have taken. CheckpointError when the state does not fit this env."""
        self._check_open()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"environment state has format {found!r}, expected {STATE_FORMAT}: "
                "it was not written by BatchedEnv.state_dict of this version"
            )
        spec, saved = self._spec(), state.get("spec")
        saved = saved if isinstance(saved, dict) else {}
        for key, value in spec.items():
            if saved.get(key) != value:
                raise CheckpointError(
                    f"environment state is for {key}={saved.get(key)!r} but this env has "
                    f"{key}={value!r}: build the env with the checkpoint's game, config and num_envs"
                )
        try:
            arrays = {}
            for name, dtype in self._STATE_ARRAYS.items():
                a = np.asarray(state["arrays"][name])
                if a.shape != getattr(self, name).shape:
                    raise ValueError(f"{name} has shape {list(a.shape)}")
                arrays[name] = np.array(a, dtype=dtype)  # a copy: the state stays untouched
            started = bool(state["started"])
            self._load_family_state(state["family"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"environment state of {self.game} is incomplete or corrupt ({e!r}): "
                "resume from another checkpoint"
            ) from e
        for name, a in arrays.items():
            setattr(self, name, a)
        self._started = started

    def close(self) -> None:
        """Release the emulators; the env cannot be used afterwards."""
        self._started = False
        self._closed = True

    def __enter__(self) -> BatchedEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(game={self.game!r}, num_envs={self.num_envs}, "
            f"num_actions={self.num_actions}, obs_shape={self.obs_shape})"
        )

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise XtraError(f"this {self.game} env was closed: make a new one with make_env")

    def _start_games(self, idx: np.ndarray) -> None:
        self._new_games(idx)
        # A new game starts with S copies of its first frame (A1, last paragraph).
        self._stack[idx] = self._frames[idx][:, None]
        self._game_return[idx] = 0.0
        self._game_length[idx] = 0
        self._cap_count[idx] = 0

    def _push(self) -> None:
        # A new array each step, never written in place once returned (copy-on-write in step):
        # the observations handed out are views of it, so a step costs one copy of the stack.
        stack = np.empty_like(self._stack)
        stack[:, :-1] = self._stack[:, 1:]
        stack[:, -1] = self._frames
        self._stack = stack

    def _obs(self) -> np.ndarray:
        return self._stack.reshape(self.num_envs, *self.obs_shape)

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
            raise XtraError(
                f"actions must be an integer array of shape [{self.num_envs}], "
                f"got dtype {a.dtype} shape {list(a.shape)}"
            )
        bad = np.flatnonzero((a < 0) | (a >= self.num_actions))
        if bad.size:
            i = int(bad[0])
            raise XtraError(
                f"action {int(a[i])} of env {i} is out of range: {self.game} has "
                f"{self.num_actions} legal actions, local indices 0..{self.num_actions - 1}"
            )
        return a.astype(np.int64, copy=False)
