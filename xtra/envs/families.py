"""Task families with known relations: small pixel games as Gymnasium environments.

Every game here is a plain ``gymnasium.Env`` (numpy only, no rendering library) that reaches
xtra through the same path as a user's environment (``xtra.envs.gym``): its observations are
10x10 RGB images (H, W, C) uint8, its actions ``Discrete(3)`` = NOOP, RIGHT, LEFT, mapped to the
ALE ids (0, 3, 4) by ``metadata["xtra_ale_ids"]``, and ``metadata`` carries its exact random
and optimal returns (``xtra_random_score``, ``xtra_optimal_score``). Each variant is named twice:
``family/<variant>`` in the game registry (``xtra games``) and ``xtra.envs.families:make_<variant>``
(dashes as underscores) through the ``module:factory`` path; both build the same game.

The catch family (target ``catch``): a 10x10 grid, one pixel per cell. A ball appears in a
uniformly random column of the top row and falls one row per agent step; the paddle on the
bottom row moves first each step (NOOP, RIGHT, LEFT; stopped by the walls). When the ball reaches
the bottom row the paddle catches it if it covers the ball's column (+1) or misses it (-1), and
the next ball appears in the top row; the paddle stays where it is. A game is 5 balls
(45 steps for the target); it then ends (``terminated``). The paddle starts in column 5.

Variants change one thing each (``VARIANTS``; the table is in docs/gymnasium.md):

* appearance only (same dynamics and rewards): ``catch-colors`` (other colours),
  ``catch-texture`` (a checkerboard background);
* geometry or dynamics: ``catch-wide`` (a 3-cell paddle), ``catch-fast`` (the ball falls two
  rows per step: not every ball can be reached), ``catch-drift`` (the ball also moves one column
  per step, diagonally, bouncing off the side walls);
* reward opposed to the target's: ``catch-avoid`` (the target's look and dynamics, but a catch
  costs -1 and a miss earns +1);
* an unrelated game: ``courier`` -- carry parcels along a corridor to a depot, +1 per delivery,
  40 steps per game (``truncated`` at the limit).

Random and optimal returns are exact: :func:`exact_returns` evaluates each game as a finite
MDP (dynamic programming over every reachable state, the same step function the environment
runs), for the uniformly random policy and for the optimal one. A uniformly random paddle is
independent of the ball, whose landing column is uniform (also under drift, which permutes
(column, direction) pairs), so it catches with probability width/10: the random return of the
target is 5 * (2/10 - 1) = -4.

Randomness (ball columns and directions, parcel columns) comes from the env's ``np_random``,
seeded by ``reset(seed=...)``: a game is deterministic given its seed. The envs pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import gymnasium
import numpy as np

from xtra.games import get_game

SIZE = 10
"""Side of the square grid and of the frames (one pixel per cell)."""
ALE_IDS = (0, 3, 4)
"""ALE ids of the local actions NOOP, RIGHT, LEFT (as ``toy/catch``)."""
MOVES = (0, 1, -1)
"""Column change of each local action."""

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class CatchRules:
    """Dynamics and rewards of a catch game."""

    paddle_width: int = 1
    """cells covered by the paddle (odd); its centre stays width // 2 cells from the walls"""
    fall: int = 1
    """rows the ball falls per step (the last step stops at the bottom row)"""
    drift: bool = False
    """the ball also moves one column per step, direction +-1 at random, bouncing off the walls"""
    balls: int = 5
    """balls per game"""
    catch_reward: float = 1.0
    miss_reward: float = -1.0


@dataclass(frozen=True)
class CatchLook:
    """Colours of a catch game: a background checkerboard of two colours (equal: plain)."""

    background: tuple[RGB, RGB] = ((0, 0, 0), (0, 0, 0))
    ball: RGB = (255, 64, 64)
    paddle: RGB = (64, 255, 64)


@dataclass(frozen=True)
class CourierRules:
    """The courier game: a corridor of SIZE cells, the depot in the last one."""

    steps: int = 40
    """agent steps per game (the game is truncated there)"""


@dataclass(frozen=True)
class Variant:
    """One game of the family: its name (``family/<name>``), what changes and how it relates."""

    name: str
    changes: str
    relation: str
    rules: CatchRules | CourierRules
    look: CatchLook = field(default_factory=CatchLook)


TARGET = "catch"
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("catch", "the target", "target", CatchRules()),
        Variant(
            "catch-colors",
            "colours: yellow ball, magenta paddle, dark blue background",
            "same dynamics and rewards, new appearance",
            CatchRules(),
            CatchLook(((0, 0, 96), (0, 0, 96)), (255, 255, 64), (255, 64, 255)),
        ),
        Variant(
            "catch-texture",
            "a grey checkerboard background",
            "same dynamics and rewards, new appearance",
            CatchRules(),
            CatchLook(((0, 0, 0), (72, 72, 72))),
        ),
        Variant(
            "catch-wide",
            "the paddle is 3 cells wide",
            "same task, other geometry",
            CatchRules(paddle_width=3),
        ),
        Variant(
            "catch-fast",
            "the ball falls 2 rows per step (5 steps per ball)",
            "same task, other dynamics",
            CatchRules(fall=2),
        ),
        Variant(
            "catch-drift",
            "the ball moves diagonally, bouncing off the side walls",
            "same task, other dynamics",
            CatchRules(drift=True),
        ),
        Variant(
            "catch-avoid",
            "catching costs -1, missing earns +1",
            "same observations and dynamics, opposed reward",
            CatchRules(catch_reward=-1.0, miss_reward=1.0),
        ),
        Variant(
            "courier",
            "another game: carry parcels to the depot, +1 each",
            "unrelated task, same actions",
            CourierRules(),
        ),
    )
}
NAMES = tuple(f"family/{name}" for name in VARIANTS)
"""Registry names of the family, ``family/<variant>``."""


def factory_name(variant: str) -> str:
    """``"catch-colors"`` -> ``"make_catch_colors"``, the module-level factory of a variant."""
    return "make_" + variant.replace("-", "_")


# --------------------------------------------------------------------------- catch dynamics

# A catch state: (ball row, ball column, ball direction, paddle centre, balls left).
CatchState = tuple[int, int, int, int, int]


def catch_starts(rules: CatchRules) -> list[tuple[int, int]]:
    """The equally likely (column, direction) pairs of a new ball."""
    dirs = (-1, 1) if rules.drift else (0,)
    return [(col, d) for col in range(SIZE) for d in dirs]


def catch_move(rules: CatchRules, state: CatchState, action: int) -> tuple[float, CatchState, bool]:
    """One step before a new ball is drawn: (reward, state, ball landed)."""
    row, col, d, paddle, left = state
    half = rules.paddle_width // 2
    paddle = min(max(paddle + MOVES[action], half), SIZE - 1 - half)
    row = min(row + rules.fall, SIZE - 1)
    if d:
        col += d
        if col < 0 or col > SIZE - 1:  # bounce off a side wall
            col, d = (1, 1) if col < 0 else (SIZE - 2, -1)
    if row < SIZE - 1:
        return 0.0, (row, col, d, paddle, left), False
    caught = abs(col - paddle) <= half
    reward = rules.catch_reward if caught else rules.miss_reward
    return reward, (row, col, d, paddle, left - 1), True


def catch_spawn(state: CatchState, start: tuple[int, int]) -> CatchState:
    """The state once a new ball starts at ``start`` = (column, direction)."""
    return (0, start[0], start[1], state[3], state[4])


# --------------------------------------------------------------------------- courier dynamics

# A courier state: (time, agent cell, parcel cell, carrying).
CourierState = tuple[int, int, int, bool]
DEPOT = SIZE - 1


def courier_starts() -> list[int]:
    """The equally likely cells of a new parcel (not the depot)."""
    return list(range(DEPOT))


def courier_move(state: CourierState, action: int) -> tuple[float, CourierState, bool]:
    """One step before a new parcel is drawn: (reward, state, parcel delivered)."""
    t, pos, parcel, carrying = state
    pos = min(max(pos + MOVES[action], 0), SIZE - 1)
    if not carrying and pos == parcel:
        carrying = True
    if carrying and pos == DEPOT:
        return 1.0, (t + 1, pos, parcel, False), True
    return 0.0, (t + 1, pos, parcel, carrying), False


# --------------------------------------------------------------------------- exact returns


def exact_returns(variant: str) -> tuple[float, float]:
    """(uniform-random, optimal) expected undiscounted return of a game, by dynamic programming
    over its reachable states with the environment's own step function (exact up to float
    rounding; about a second per game)."""
    v = VARIANTS[variant]
    if isinstance(v.rules, CatchRules):
        rules = v.rules
        starts = catch_starts(rules)

        def step(s, a):
            reward, s2, landed = catch_move(rules, s, a)
            if not landed:
                return reward, [s2]
            if s2[4] == 0:
                return reward, []
            return reward, [catch_spawn(s2, st) for st in starts]

        first = [catch_spawn((0, 0, 0, SIZE // 2, rules.balls), st) for st in starts]
    else:
        limit = v.rules.steps

        def step(s, a):
            reward, s2, delivered = courier_move(s, a)
            nexts = [(s2[0], s2[1], p, False) for p in courier_starts()] if delivered else [s2]
            return reward, [n for n in nexts if n[0] < limit]

        first = [(0, DEPOT, p, False) for p in courier_starts()]
    values = []
    for best in (False, True):
        memo: dict = {}

        def value(s, best=best, memo=memo):
            if s in memo:
                return memo[s]
            qs = []
            for a in range(len(MOVES)):
                reward, nexts = step(s, a)
                qs.append(reward + (sum(value(n) for n in nexts) / len(nexts) if nexts else 0.0))
            memo[s] = max(qs) if best else sum(qs) / len(qs)
            return memo[s]

        values.append(sum(value(s) for s in first) / len(first))
    return values[0], values[1]


# --------------------------------------------------------------------------- environments


class _FamilyEnv(gymnasium.Env):
    """Shared plumbing: 10x10 RGB observations, NOOP/RIGHT/LEFT, exact scores in metadata."""

    def __init__(self, variant: str, render_mode: str | None = None) -> None:
        self.variant = VARIANTS[variant]
        game = get_game(f"family/{variant}")
        self.metadata = {
            "render_modes": ["rgb_array"],
            "xtra_ale_ids": ALE_IDS,
            "xtra_random_score": game.random_score,
            "xtra_optimal_score": game.optimal_score,
        }
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gymnasium.spaces.Discrete(len(MOVES))

    def render(self) -> np.ndarray:
        return self._frame()

    def _frame(self) -> np.ndarray:
        raise NotImplementedError

    def _check_action(self, action) -> int:
        a = int(action)
        if not 0 <= a < len(MOVES):
            raise ValueError(f"action {action!r} is not in Discrete({len(MOVES)})")
        return a


class CatchGame(_FamilyEnv):
    """A catch game of the family (see the module docstring); observations (10, 10, 3) uint8."""

    def __init__(self, variant: str = TARGET, render_mode: str | None = None) -> None:
        super().__init__(variant, render_mode)
        if not isinstance(self.variant.rules, CatchRules):
            raise ValueError(f"{variant} is not a catch game")
        self.rules: CatchRules = self.variant.rules
        look = self.variant.look
        checker = (np.add.outer(np.arange(SIZE), np.arange(SIZE)) % 2).astype(bool)
        self._background = np.where(
            checker[..., None], np.array(look.background[1]), np.array(look.background[0])
        ).astype(np.uint8)
        self._starts = catch_starts(self.rules)
        self._state: CatchState = (0, 0, 0, SIZE // 2, 0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self._starts[int(self.np_random.integers(len(self._starts)))]
        self._state = catch_spawn((0, 0, 0, SIZE // 2, self.rules.balls), start)
        return self._frame(), {}

    def step(self, action):
        reward, state, landed = catch_move(self.rules, self._state, self._check_action(action))
        over = landed and state[4] == 0
        if landed and not over:
            state = catch_spawn(
                state, self._starts[int(self.np_random.integers(len(self._starts)))]
            )
        self._state = state
        return self._frame(), reward, over, False, {}

    def _frame(self) -> np.ndarray:
        row, col, _, paddle, _ = self._state
        look, half = self.variant.look, self.rules.paddle_width // 2
        frame = self._background.copy()
        frame[SIZE - 1, paddle - half : paddle + half + 1] = look.paddle
        frame[row, col] = look.ball
        return frame


class CourierGame(_FamilyEnv):
    """The courier game (see the module docstring); observations (10, 10, 3) uint8.

    Drawn in rows 3-6: the corridor (rows 4-5) dark grey, the depot (last column, rows 3-6) blue,
    the agent white, a parcel yellow (on the corridor, or in row 3 above the agent carrying it).
    """

    CORRIDOR, DEPOT_RGB = (64, 64, 64), (64, 128, 255)
    AGENT, PARCEL = (255, 255, 255), (255, 255, 64)

    def __init__(self, variant: str = "courier", render_mode: str | None = None) -> None:
        super().__init__(variant, render_mode)
        if not isinstance(self.variant.rules, CourierRules):
            raise ValueError(f"{variant} is not a courier game")
        self.rules: CourierRules = self.variant.rules
        self._state: CourierState = (0, DEPOT, 0, False)

    def _new_parcel(self) -> int:
        return int(self.np_random.integers(DEPOT))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = (0, DEPOT, self._new_parcel(), False)
        return self._frame(), {}

    def step(self, action):
        reward, state, delivered = courier_move(self._state, self._check_action(action))
        if delivered:
            state = (state[0], state[1], self._new_parcel(), False)
        self._state = state
        return self._frame(), reward, False, state[0] >= self.rules.steps, {}

    def _frame(self) -> np.ndarray:
        _, pos, parcel, carrying = self._state
        frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        frame[4:6, :] = self.CORRIDOR
        frame[3:7, DEPOT] = self.DEPOT_RGB
        if carrying:
            frame[3, pos] = self.PARCEL
        else:
            frame[4:6, parcel] = self.PARCEL
        frame[4:6, pos] = self.AGENT
        return frame


def make(variant: str, render_mode: str | None = None) -> gymnasium.Env:
    """The family game ``variant`` ("catch", "catch-colors", ..., "courier")."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown family variant {variant!r}: one of {', '.join(VARIANTS)}")
    cls = CourierGame if isinstance(VARIANTS[variant].rules, CourierRules) else CatchGame
    return cls(variant, render_mode)


def _factory(variant: str) -> Callable[..., gymnasium.Env]:
    fn = partial(make, variant)
    fn.__doc__ = f"The ``family/{variant}`` game: {VARIANTS[variant].changes}."
    return fn


# make_catch, make_catch_colors, ..., make_courier: the module:factory names of the variants.
make_catch = _factory("catch")
make_catch_colors = _factory("catch-colors")
make_catch_texture = _factory("catch-texture")
make_catch_wide = _factory("catch-wide")
make_catch_fast = _factory("catch-fast")
make_catch_drift = _factory("catch-drift")
make_catch_avoid = _factory("catch-avoid")
make_courier = _factory("courier")
