"""MinAtar games (Young & Tian 2019) behind the batched interface.

Each env is one ``minatar.Environment``: a 10x10 grid whose state is [10, 10, n_channels] bool.
MinAtar steps one grid tick per action: ``frame_skip``, ``noop_max``, ``obs_size`` and
``grayscale`` do not apply; ``frame_stack`` does. There are no lives (terminated = game over).

Observations (``EnvConfig.minatar_obs``):

* ``"rgb"``: frames [3, 10, 10] uint8, the same shape for all five games so one network can see
  all of them. Each channel of a game paints its cells with one fixed colour,
  ``PALETTE[channel index]`` (10 distinct colours, enough for Seaquest's 10 channels); where
  channels overlap the later channel wins, as in MinAtar's own ``display_state``. Empty cells
  are black.
* ``"rgb_player_top"``: as ``"rgb"``, but channel 0 -- the player in all five games (paddle,
  cannon, chicken, player, submarine front) -- is painted last, so no other object hides it
  (under ``"rgb"`` it is hidden in 0.4-2.3% of frames, depending on the game).
* ``"channels"``: the native state as frames [n_channels, 10, 10] uint8 with values 0 / 255.
* ``"planes"``: as ``"channels"``, padded with empty planes to :data:`MAX_CHANNELS` (Seaquest's
  10), so all five games share the frame shape [10, 10, 10] and one multi-game network can see
  them; plane c holds channel c, as colour c does under ``"rgb"``, but no object hides another.

Actions: MinAtar's full set is ``['n', 'l', 'u', 'r', 'd', 'f']``; a game's local actions are
its ``minimal_action_set()`` in that order, mapped to ALE ids by :data:`MINATAR_TO_ALE`.

Seeding: env i's ``RandomState`` (game randomness and sticky actions share it) is seeded with
``seed + i``; later games continue that stream. The sticky-action memory is cleared at each new
game so a game does not start by repeating the previous game's last action.
"""

from __future__ import annotations

import pickle

import numpy as np

from xtra.config import EnvConfig
from xtra.envs.base import BatchedEnv

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")

# MinAtar action letter -> ALE action id (NOOP, FIRE, UP, RIGHT, LEFT, DOWN).
MINATAR_TO_ALE = {"n": 0, "f": 1, "u": 2, "r": 3, "l": 4, "d": 5}
MINATAR_ACTIONS = ("n", "l", "u", "r", "d", "f")  # MinAtar's own index order

MAX_CHANNELS = 10
"""The most channels of any MinAtar game (Seaquest): the frame depth of ``"planes"``."""

# Colour of channel c in "rgb" frames: [10, 3] uint8, distinct and bright on black.
PALETTE = np.array(
    [
        [255, 255, 255],  # white
        [255, 64, 64],  # red
        [64, 255, 64],  # green
        [64, 128, 255],  # blue
        [255, 255, 64],  # yellow
        [255, 64, 255],  # magenta
        [64, 255, 255],  # cyan
        [255, 160, 32],  # orange
        [160, 96, 255],  # violet
        [128, 128, 128],  # grey
    ],
    dtype=np.uint8,
)


def render_rgb(state: np.ndarray) -> np.ndarray:
    """MinAtar state [10, 10, n_channels] bool -> [3, 10, 10] uint8; the later channel wins."""
    n = state.shape[-1]
    # Index of the last active channel per cell: flip the channel axis, take the first True.
    top = n - 1 - np.argmax(state[..., ::-1], axis=-1)
    rgb = np.where(state.any(axis=-1)[..., None], PALETTE[top], 0).astype(np.uint8)
    return rgb.transpose(2, 0, 1)


def render_rgb_player_top(state: np.ndarray) -> np.ndarray:
    """As :func:`render_rgb`, with channel 0 (the player) painted over every other channel."""
    rgb = render_rgb(state)
    player = state[..., 0]
    rgb[:, player] = PALETTE[0][:, None]
    return rgb


def render_channels(state: np.ndarray) -> np.ndarray:
    """MinAtar state [10, 10, n_channels] bool -> [n_channels, 10, 10] uint8 in {0, 255}."""
    return state.transpose(2, 0, 1).astype(np.uint8) * 255


def render_planes(state: np.ndarray) -> np.ndarray:
    """MinAtar state [10, 10, n_channels] bool -> [MAX_CHANNELS, 10, 10] uint8 in {0, 255};
    planes n_channels.. are empty."""
    frame = np.zeros((MAX_CHANNELS, *state.shape[:2]), dtype=np.uint8)
    frame[: state.shape[-1]] = render_channels(state)
    return frame


RENDERERS = {
    "rgb": render_rgb,
    "rgb_player_top": render_rgb_player_top,
    "channels": render_channels,
    "planes": render_planes,
}
"""``EnvConfig.minatar_obs`` -> MinAtar state [10, 10, n] bool -> frame [C, 10, 10] uint8."""


class MinAtarBatchedEnv(BatchedEnv):
    """N MinAtar games stepped in a loop; see the module docstring.

    Args:
        game: "minatar/<name>", name one of :data:`MINATAR_GAMES`.
        cfg: frame_stack, minatar_obs, clip_rewards and repeat_action_probability (MinAtar's
            sticky_action_prob) are read from it.
        num_envs: N.
        seed: env i starts with seed ``seed + i``.
        max_episode_steps: step cap per game, or None.
    """

    def __init__(
        self,
        game: str,
        cfg: EnvConfig,
        *,
        num_envs: int,
        seed: int,
        max_episode_steps: int | None,
    ) -> None:
        # Imported here: minatar pulls in matplotlib and seaborn (~1.5 s) at import.
        import minatar

        name = game.split("/", 1)[1]
        self._envs = [
            minatar.Environment(name, sticky_action_prob=cfg.repeat_action_probability)
            for _ in range(num_envs)
        ]
        for i in range(num_envs):
            self._seed_env(i, seed + i)
        self._minimal = list(self._envs[0].minimal_action_set())
        self._render = RENDERERS[cfg.minatar_obs]
        super().__init__(
            game=game,
            num_envs=num_envs,
            legal_actions=[MINATAR_TO_ALE[MINATAR_ACTIONS[m]] for m in self._minimal],
            # The renderer fixes the depth (3, the game's channels, or MAX_CHANNELS).
            frame_shape=self._render(self._envs[0].state()).shape,
            frame_stack=cfg.frame_stack,
            clip_rewards=cfg.clip_rewards,
            episode_life=False,
            max_episode_steps=max_episode_steps,
        )

    def _seed_env(self, i: int, seed: int) -> None:
        self._envs[i].seed(seed)

    def _new_games(self, idx: np.ndarray) -> None:
        for i in idx:
            env = self._envs[i]
            env.reset()
            env.last_action = 0
            self._frames[i] = self._render(env.state())

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        ended = np.zeros(n, dtype=bool)
        for i in range(n):
            env = self._envs[i]
            reward[i], ended[i] = env.act(self._minimal[actions[i]])
            self._frames[i] = self._render(env.state())
        return reward, ended, np.zeros(n, dtype=bool)

    # ------------------------------------------------------------------ state

    def _spec(self) -> dict:
        return super()._spec() | {
            "repeat_action_probability": self._envs[0].sticky_action_prob,
        }

    def _family_state(self) -> dict:
        # A whole minatar.Environment pickles exactly: the game's variables, its RandomState
        # (shared by the game and the sticky actions, which pickle keeps shared) and last_action.
        return {"envs": [pickle.dumps(env, protocol=pickle.HIGHEST_PROTOCOL) for env in self._envs]}

    def _load_family_state(self, state: dict) -> None:
        try:
            envs = [pickle.loads(blob) for blob in state["envs"]]
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            raise ValueError(f"unreadable MinAtar state: {e!r}") from e
        name = self.game.split("/", 1)[1]
        if len(envs) != self.num_envs or any(getattr(e, "env_name", None) != name for e in envs):
            raise ValueError(f"the MinAtar state is not for {self.num_envs} {name} environments")
        self._envs = envs
