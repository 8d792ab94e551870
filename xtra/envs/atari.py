"""Atari 2600 games on ale-py with EfficientZero's protocol (spec A1).

Each env is one ``ale_py.ALEInterface`` stepped at frame level (no ALE frame skip), seeded the
way gymnasium's ``ALE/<Game>-v5`` is (``AtariEnv.seed_game``), so that
``gym.make("ALE/<Game>-v5", frameskip=1, repeat_action_probability=p).reset(seed=s)`` is the
same emulator with the same random stream; the tests step both side by side. On top:

1. No-op reset: after a real reset, k ~ U{1..noop_max} NOOP *frames*, k drawn from the env's
   own generator (gymnasium's ``np_random``); if the game ends during them it is reset and the
   remaining no-ops continue (EZ ``NoopResetEnv``). Their rewards are discarded.
2. Frame skip: the agent's action is repeated ``frame_skip`` frames, rewards summed, stopping
   early at game over. The frame returned is the element-wise max of the last two frames.
   When the game ends before the last frame of the skip, the last emulated frame is returned
   as is (EZ returns a stale buffer there; that terminal frame is never bootstrapped from).
3. Life loss (train mode with ``episode_life``): ``terminated`` when ``ale.lives()`` drops and
   stays > 0. The env then takes one NOOP agent step (``frame_skip`` frames, reward discarded,
   counted against the cap like EZ's TimeLimit) and starts the new episode with a stack of that
   frame; the game, its score and its step count go on. A real reset (new no-ops) only follows
   game over or the cap.
4. Warp: the pooled 210x160 RGB frame is resized to ``obs_size`` x ``obs_size`` with
   ``cv2.INTER_AREA`` (``grayscale``: ``cv2.COLOR_RGB2GRAY`` first); frames are [C, H, W] uint8.

The frame after a real reset is the raw screen after the last no-op (no max-pool), as in EZ.

Saving and restoring (``state_dict``): an ``ALEState`` cloned with its RNG holds the console,
the ROM's score/lives and the sticky-action random stream, but not ALE's sticky-action memory
(the action last applied, which a sticky frame repeats). With sticky actions on, each env keeps
the ALEState at a point where that memory is known (a new game: NOOP) and the actions acted
since; ``state_dict`` replays ALE's mt19937 draws (two per frame, player A's first: a frame
applies the new action when draw / 2**32 >= p) to find the memory, and ``load_state_dict``
re-creates it by acting it until ALE's next draw applies it, then restores the state again.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from xtra.config import EnvConfig
from xtra.envs.base import BatchedEnv
from xtra.errors import GameError

_DIGITS = frozenset(b"0123456789 ")

NOOP = 0  # ALE action id of NOOP; every minimal action set starts with it


def camel_name(rom_id: str) -> str:
    """ALE ROM id to our game name: ``"ms_pacman"`` -> ``"MsPacman"``."""
    return "".join(part.capitalize() for part in rom_id.split("_"))


@functools.cache
def atari_games() -> dict[str, str]:
    """Every ROM bundled with ale-py: {game name ("MsPacman"): ROM id ("ms_pacman")}."""
    from ale_py import roms

    return {camel_name(rom_id): rom_id for rom_id in roms.get_all_rom_ids()}


def ale_seeds(seed: int) -> tuple[np.random.Generator, int]:
    """(env generator, ALE ``random_seed``) for ``seed``, exactly as gymnasium's AtariEnv derives them."""
    np_seed, ale_seed = np.random.SeedSequence(seed).generate_state(n_words=2)
    # gymnasium: np_random = Generator(PCG64(SeedSequence(np_seed))); ALE gets np.int32(ale_seed).
    return np.random.default_rng(int(np_seed)), int(ale_seed.astype(np.int32))


def ale_state_rng(state) -> np.random.MT19937:
    """The sticky-action generator stored in an ``ALEState`` cloned with ``include_rng=True``.

    ``ALEState.serialize()`` is six int32, then the length-prefixed emulator string, then two
    int32; that string ends with the environment RNG, a length-prefixed std::mt19937 written
    as text (624 words and the position), which numpy's MT19937 continues exactly.
    """
    data = state.serialize()
    size = int.from_bytes(data[24:28], "little")
    inner = data[28 : 28 + size]
    start = len(inner)
    while start > 0 and inner[start - 1] in _DIGITS:
        start -= 1
    words = inner[start:].split()
    if (
        int.from_bytes(inner[start - 4 : start], "little") != len(inner) - start
        or len(words) != 625
    ):
        raise ValueError("the ALE state holds no RNG: clone it with include_rng=True")
    rng = np.random.MT19937(0)
    key = np.array([int(w) for w in words[:624]], dtype=np.uint32)
    rng.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": int(words[624])}}
    return rng


class AtariBatchedEnv(BatchedEnv):
    """N ALE emulators of one game stepped in a loop; see the module docstring for the protocol.

    Args:
        game: our game name, a key of :func:`atari_games` ("Breakout").
        cfg: frame_skip, frame_stack, obs_size, grayscale, noop_max, clip_rewards and
            repeat_action_probability are read from it.
        num_envs: N.
        seed: env i starts with seed ``seed + i``.
        episode_life: a lost life ends the episode (train mode).
        max_episode_steps: step cap per game, or None.

    Frames are [3, obs_size, obs_size] (RGB) or [1, obs_size, obs_size] (grayscale) uint8.
    ``ales`` exposes the N ``ALEInterface`` objects for tests and diagnostics.
    """

    def __init__(
        self,
        game: str,
        cfg: EnvConfig,
        *,
        num_envs: int,
        seed: int,
        episode_life: bool,
        max_episode_steps: int | None,
    ) -> None:
        import ale_py
        from ale_py import roms

        rom_id = atari_games()[game]
        rom_path = roms.get_rom_path(rom_id)
        if rom_path is None:
            raise GameError(f"the ROM of {game} is missing from ale-py: reinstall ale-py==0.12.1")
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._rom_path = str(rom_path)
        self._skip = cfg.frame_skip
        self._noop_max = cfg.noop_max
        self._size = cfg.obs_size
        self._gray = cfg.grayscale
        self._sticky = cfg.repeat_action_probability
        # ALE compares each frame's draw in [0, 1) with p held as a C float.
        self._sticky_p = float(np.float32(self._sticky))
        # Track the sticky-action memory (module docstring) only when it can matter: at p = 0
        # no frame repeats, at p = 1 the memory stays NOOP.
        self._track = 0.0 < self._sticky_p < 1.0
        self.ales = []
        self._rngs: list[np.random.Generator] = []
        self._seeds: list[int] = []
        # fresh[i]: env i's emulator is untouched since its ROM was loaded with _seeds[i], so a
        # reset(seeds) with that seed need not reload it (loadROM costs ~0.2 s).
        self._fresh: list[bool] = []
        # Sticky memory of env i = _memory[i] at ALEState _anchor[i] (None: at ROM load), then
        # updated by the (ALE action id, frames) acted since, listed in _acted[i].
        self._anchor: list = []
        self._memory: list[int] = []
        self._acted: list[list[tuple[int, int]]] = []
        for i in range(num_envs):
            ale = ale_py.ALEInterface()
            ale.setFloat("repeat_action_probability", cfg.repeat_action_probability)
            self.ales.append(ale)
            self._rngs.append(np.random.default_rng(0))
            self._seeds.append(-1)
            self._fresh.append(False)
            self._anchor.append(None)
            self._memory.append(NOOP)
            self._acted.append([])
            self._seed_env(i, seed + i)
        self._ale_actions = list(self.ales[0].getMinimalActionSet())
        h, w = self.ales[0].getScreenDims()
        c = 1 if self._gray else 3
        super().__init__(
            game=game,
            num_envs=num_envs,
            legal_actions=[a.value for a in self._ale_actions],
            frame_shape=(c, self._size, self._size),
            frame_stack=cfg.frame_stack,
            clip_rewards=cfg.clip_rewards,
            episode_life=episode_life,
            max_episode_steps=max_episode_steps,
        )
        self._noop = ale_py.Action.NOOP
        self._lives = np.zeros(num_envs, dtype=np.int64)
        # Screens of the last two frames of a skip, and their max; reused by every env in turn.
        self._raw = np.empty((2, h, w, 3), dtype=np.uint8)
        self._pooled = np.empty((h, w, 3), dtype=np.uint8)

    def lives(self) -> np.ndarray:
        """[N] int64: lives left in each env's game, as the ROM reports them."""
        return np.array([ale.lives() for ale in self.ales], dtype=np.int64)

    def close(self) -> None:
        super().close()
        self.ales = []

    # ------------------------------------------------------------------ hooks

    def _seed_env(self, i: int, seed: int) -> None:
        if self._fresh[i] and self._seeds[i] == seed:
            return
        rng, ale_seed = ale_seeds(seed)
        self._rngs[i] = rng
        self.ales[i].setInt("random_seed", ale_seed)
        # ALE reads random_seed when a ROM is loaded, so re-seeding means re-loading.
        self.ales[i].loadROM(self._rom_path)
        self._seeds[i] = seed
        self._fresh[i] = True
        self._set_anchor(i, None, NOOP)

    def _new_games(self, idx: np.ndarray) -> None:
        for i in idx:
            ale = self.ales[i]
            ale.reset_game()
            k = int(self._rngs[i].integers(1, self._noop_max + 1)) if self._noop_max > 0 else 0
            for _ in range(k):
                ale.act(self._noop)
                if ale.game_over(with_truncation=False):
                    ale.reset_game()
            ale.getScreenRGB(self._raw[1])
            self._warp(self._raw[1], i)
            self._lives[i] = ale.lives()
            self._fresh[i] = False
            if self._track:  # reset_game cleared the memory and only NOOPs followed
                self._set_anchor(i, ale.cloneState(include_rng=True), NOOP)

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        ended = np.zeros(n, dtype=bool)
        life_lost = np.zeros(n, dtype=bool)
        for i in range(n):
            reward[i], ended[i] = self._skip_step(i, self._ale_actions[actions[i]])
            lives = self.ales[i].lives()
            # EZ EpisodicLifeEnv: a life counts as lost only while the game still has lives.
            life_lost[i] = 0 < lives < self._lives[i]
            self._lives[i] = lives
        return reward, ended, life_lost

    def _new_life(self, i: int) -> bool:
        _, ended = self._skip_step(i, self._noop)
        self._lives[i] = self.ales[i].lives()
        return ended

    # ------------------------------------------------------------------ state

    def _spec(self) -> dict:
        return super()._spec() | {
            "frame_skip": self._skip,
            "noop_max": self._noop_max,
            "grayscale": self._gray,
            "repeat_action_probability": self._sticky,
        }

    def _family_state(self) -> dict:
        states = [ale.cloneState(include_rng=True) for ale in self.ales]
        memory = [self._sticky_memory(i, st) for i, st in enumerate(states)]
        return {
            "ale": [st.serialize() for st in states],
            "sticky_action": np.array(memory, dtype=np.int64),
            "rngs": [rng.bit_generator.state for rng in self._rngs],
            "seeds": list(self._seeds),
            "lives": self._lives.copy(),
        }

    def _load_family_state(self, state: dict) -> None:
        import ale_py

        n = self.num_envs
        blobs, memory = list(state["ale"]), np.asarray(state["sticky_action"], dtype=np.int64)
        seeds, lives = [int(s) for s in state["seeds"]], np.asarray(state["lives"], np.int64)
        if not len(blobs) == len(memory) == len(seeds) == len(lives) == len(state["rngs"]) == n:
            raise ValueError(f"the Atari state is not for {n} environments")
        try:
            states = [ale_py.ALEState(bytes(b)) for b in blobs]
        except RuntimeError as e:
            raise ValueError(f"unreadable ALE state: {e}") from e
        rngs = []
        for rng_state in state["rngs"]:
            rng = np.random.default_rng(0)
            rng.bit_generator.state = rng_state
            rngs.append(rng)
        for i, (ale, st) in enumerate(zip(self.ales, states)):
            ale.restoreState(st)
            if self._track:
                self._restore_memory(ale, st, int(memory[i]))
                self._set_anchor(i, st, int(memory[i]))
            # A reset(seeds) reloads the ROM even with the saved seed (always correct).
            self._fresh[i] = False
        self._rngs, self._seeds, self._lives = rngs, seeds, lives.copy()

    def _set_anchor(self, i: int, state, memory: int) -> None:
        self._anchor[i] = state
        self._memory[i] = memory
        self._acted[i] = []

    def _sticky_memory(self, i: int, now) -> int:
        """ALE's sticky-action memory of env i (an ALE action id); re-anchors env i at ``now``."""
        if not self._track:
            return NOOP
        memory, acted = self._memory[i], self._acted[i]
        if self._anchor[i] is not None and acted:
            actions = np.array([a for a, _ in acted], dtype=np.int64)
            frames = np.array([k for _, k in acted], dtype=np.int64)
            draws = ale_state_rng(self._anchor[i]).random_raw(2 * int(frames.sum()))[0::2]
            applied = np.flatnonzero(draws / 2.0**32 >= self._sticky_p)
            if applied.size:
                memory = int(np.repeat(actions, frames)[applied[-1]])
        self._set_anchor(i, now, memory)
        return memory

    def _restore_memory(self, ale, state, memory: int) -> None:
        """Give ``ale`` (just restored to ``state``) the sticky memory ``memory``.

        ALE sets the memory on a frame whose draw applies the new action; act ``memory`` until
        the predicted first such frame, then restore ``state`` (emulator and RNG) again.
        """
        import ale_py

        rng, frames = ale_state_rng(state), 0
        while True:
            draws = rng.random_raw(256)[0::2]
            applied = np.flatnonzero(draws / 2.0**32 >= self._sticky_p)
            if applied.size:
                frames += int(applied[0]) + 1
                break
            frames += draws.size
        action = ale_py.Action(memory)
        for _ in range(frames):
            ale.act(action)
        ale.restoreState(state)

    # ------------------------------------------------------------------ protocol

    def _skip_step(self, i: int, action) -> tuple[float, bool]:
        """One agent step of env i: repeat ``action``, sum rewards, max-pool the last two frames."""
        ale = self.ales[i]
        skip = self._skip
        reward = 0
        for f in range(skip):
            reward += ale.act(action)
            over = ale.game_over(with_truncation=False)
            if f == skip - 2:
                ale.getScreenRGB(self._raw[0])
            if over:
                break
        if self._track:
            self._acted[i].append((action.value, f + 1))
        ale.getScreenRGB(self._raw[1])
        if f == skip - 1 and skip > 1:
            np.maximum(self._raw[0], self._raw[1], out=self._pooled)
            self._warp(self._pooled, i)
        else:  # frame_skip 1, or the game ended before the last frame
            self._warp(self._raw[1], i)
        return float(reward), over

    def _warp(self, rgb: np.ndarray, i: int) -> None:
        """Resize one [210, 160, 3] RGB screen into ``_frames[i]`` [C, obs_size, obs_size]."""
        size = (self._size, self._size)
        if self._gray:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            self._frames[i, 0] = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            self._frames[i] = small.transpose(2, 0, 1)
