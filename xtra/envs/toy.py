"""Tiny games with a known best return, vectorised over N in numpy, for learning tests.

Both render frames [3, 10, 10] uint8 (RGB), the shape of MinAtar's "rgb" frames, so the same
small network and the same transfer code run on toys and MinAtar alike. ``frame_stack`` applies;
the other Atari options do not. There are no lives.

``toy/catch``: a 5x5 grid drawn with 2x2-pixel cells. A ball starts in a uniformly random column
(env generator) of the top row and falls one row per step; the paddle starts in the middle
column of the bottom row and moves first each step. After 4 steps the ball is on the bottom
row: reward +1 if the paddle is under it, else -1, and the game ends. Local actions
(NOOP, RIGHT, LEFT) = ALE ids [0, 3, 4], ascending like ALE's minimal sets. Ball red, paddle
green (yellow when they share the cell). Optimal return +1 (reward on step 4). A uniformly
random policy catches with probability exactly 1/5: the ball column is uniform and independent
of the paddle, so its expected return is 1/5 - 4/5 = -0.6.

``toy/chain``: a corridor of 6 cells; the agent starts in cell 0; local actions (RIGHT, LEFT) =
ALE ids [3, 4] move it one cell (LEFT in cell 0 stays). Reaching cell 5 gives +1 and ends the
game; every other step gives 0; the game is truncated after 20 steps. Optimal return 1 in 5
steps (discounted: gamma^4). A uniformly random policy reaches cell 5 within 20 steps with
probability 237063/524288 = 0.45216..., its expected return (exact, by dynamic programming over
the reflecting random walk; checked in tests). Drawn in rows 4-5, cells in columns 2-7:
corridor dim blue, goal green, agent red.
"""

from __future__ import annotations

import numpy as np

from xtra.config import EnvConfig
from xtra.envs.base import BatchedEnv

TOY_GAMES = ("toy/catch", "toy/chain")
OPTIMAL_RETURN = {"toy/catch": 1.0, "toy/chain": 1.0}
"""Best undiscounted return per game."""
OPTIMAL_STEPS = {"toy/catch": 4, "toy/chain": 5}
"""Length of an optimal game; its only non-zero reward comes on the last step."""
RANDOM_RETURN = {"toy/catch": -0.6, "toy/chain": 237063 / 524288}
"""Exact expected return of the uniformly random policy."""


def optimal_discounted_return(game: str, discount: float) -> float:
    """Best discounted return from the first observation: gamma^(steps-1) * OPTIMAL_RETURN."""
    return discount ** (OPTIMAL_STEPS[game] - 1) * OPTIMAL_RETURN[game]


class _ToyEnv(BatchedEnv):
    """Shared plumbing: one numpy generator per env, [3, 10, 10] RGB frames."""

    ALE_ACTIONS: tuple[int, ...] = ()

    def __init__(
        self,
        game: str,
        cfg: EnvConfig,
        *,
        num_envs: int,
        seed: int,
        max_episode_steps: int | None,
    ) -> None:
        self._rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        super().__init__(
            game=game,
            num_envs=num_envs,
            legal_actions=self.ALE_ACTIONS,
            frame_shape=(3, 10, 10),
            frame_stack=cfg.frame_stack,
            clip_rewards=cfg.clip_rewards,
            episode_life=False,
            max_episode_steps=max_episode_steps,
        )

    def _seed_env(self, i: int, seed: int) -> None:
        self._rngs[i] = np.random.default_rng(seed)

    # Game variables saved by state_dict: [N] int64 arrays named here.
    _GAME_ARRAYS: tuple[str, ...] = ()

    def _family_state(self) -> dict:
        return {
            "rngs": [rng.bit_generator.state for rng in self._rngs],
            "game": {name: getattr(self, name).copy() for name in self._GAME_ARRAYS},
        }

    def _load_family_state(self, state: dict) -> None:
        if len(state["rngs"]) != self.num_envs:
            raise ValueError(f"the toy state is not for {self.num_envs} environments")
        rngs = []
        for rng_state in state["rngs"]:
            rng = np.random.default_rng(0)
            rng.bit_generator.state = rng_state
            rngs.append(rng)
        game = {}
        for name in self._GAME_ARRAYS:
            a = np.array(state["game"][name], dtype=np.int64)
            if a.shape != (self.num_envs,):
                raise ValueError(f"{name} has shape {list(a.shape)}")
            game[name] = a
        self._rngs = rngs
        for name, a in game.items():
            setattr(self, name, a)


class CatchEnv(_ToyEnv):
    """``toy/catch``, see the module docstring. Frames [3, 10, 10]."""

    ALE_ACTIONS = (0, 3, 4)  # NOOP, RIGHT, LEFT
    _MOVES = np.array([0, 1, -1])
    SIZE = 5
    _GAME_ARRAYS = ("_ball_row", "_ball_col", "_paddle")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        n = self.num_envs
        self._ball_row = np.zeros(n, dtype=np.int64)
        self._ball_col = np.zeros(n, dtype=np.int64)
        self._paddle = np.zeros(n, dtype=np.int64)

    def _new_games(self, idx: np.ndarray) -> None:
        for i in idx:
            self._ball_col[i] = self._rngs[i].integers(self.SIZE)
        self._ball_row[idx] = 0
        self._paddle[idx] = self.SIZE // 2
        self._render()

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._paddle = np.clip(self._paddle + self._MOVES[actions], 0, self.SIZE - 1)
        self._ball_row += 1
        ended = self._ball_row == self.SIZE - 1
        caught = self._paddle == self._ball_col
        reward = np.where(ended, np.where(caught, 1.0, -1.0), 0.0).astype(np.float32)
        self._render()
        return reward, ended, np.zeros(self.num_envs, dtype=bool)

    def _render(self) -> None:
        n, s = self.num_envs, self.SIZE
        grid = np.zeros((n, 3, s, s), dtype=np.uint8)
        rows = np.arange(n)
        grid[rows, 0, self._ball_row, self._ball_col] = 255
        grid[rows, 1, s - 1, self._paddle] = 255
        self._frames[:] = grid.repeat(2, axis=2).repeat(2, axis=3)


class ChainEnv(_ToyEnv):
    """``toy/chain``, see the module docstring. Frames [3, 10, 10]."""

    ALE_ACTIONS = (3, 4)  # RIGHT, LEFT
    _MOVES = np.array([1, -1])
    LENGTH = 6
    time_limit = 20
    _GAME_ARRAYS = ("_pos",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pos = np.zeros(self.num_envs, dtype=np.int64)

    def _new_games(self, idx: np.ndarray) -> None:
        self._pos[idx] = 0
        self._render()

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._pos = np.maximum(self._pos + self._MOVES[actions], 0)
        ended = self._pos == self.LENGTH - 1
        self._render()
        return ended.astype(np.float32), ended, np.zeros(self.num_envs, dtype=bool)

    def _render(self) -> None:
        n, first = self.num_envs, 2  # cells occupy columns 2..7 of rows 4..5
        self._frames[:] = 0
        band = self._frames[:, :, 4:6]  # [N, 3, 2, 10] view
        band[:, 2, :, first : first + self.LENGTH] = 64
        band[:, 1, :, first + self.LENGTH - 1] = 255
        band[np.arange(n), 0, :, first + self._pos] = 255
