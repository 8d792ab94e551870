"""Atari protocol (spec A1, A9) checked against ale-py itself.

Two references step alongside our env, with the same seed and actions:
* ``RefA1``: the protocol written plainly on gymnasium's ``ALE/<Game>-v5`` at frameskip 1
  (EZ's wrapper stack NoopReset -> MaxAndSkip -> TimeLimit -> EpisodicLife -> WarpFrame);
* gymnasium's own ``AtariPreprocessing`` wrapper, which implements the eval-mode protocol
  independently of us.
"""

from __future__ import annotations

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import AtariPreprocessing

from xtra.config import EnvConfig
from xtra.envs import make_env, resolve_game
from xtra.errors import GameError, XtraError

gym.register_envs(ale_py)

SIZE = 96
SKIP = 4


def raw_env(game: str, sticky: float = 0.0) -> gym.Env:
    return gym.make(
        f"ALE/{game}-v5", frameskip=1, repeat_action_probability=sticky, full_action_space=False
    )


def warp(rgb: np.ndarray, gray: bool = False) -> np.ndarray:
    """[210, 160, 3] -> [C, 96, 96], as A1.6 describes it."""
    if gray:
        gray_frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return cv2.resize(gray_frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)[None]
    return cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


class RefA1:
    """The A1 protocol for one env, written step by step on gymnasium's raw ALE env."""

    def __init__(self, game, seed, *, train, cap, sticky=0.0, gray=False, noop_max=30):
        self.env = raw_env(game, sticky)
        self.ale = self.env.unwrapped.ale
        self.train, self.cap, self.gray, self.noop_max = train, cap, gray, noop_max
        self.env.reset(seed=seed)
        self.fresh = True

    def _game(self):
        if not self.fresh:
            self.env.reset()
        self.fresh = False
        k = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(k):
            frame, _, term, _, _ = self.env.step(0)
            if term:
                frame, _ = self.env.reset()
        self.noops = k
        self.stack = [warp(frame, self.gray)] * 4
        self.lives, self.count, self.ret, self.length = self.ale.lives(), 0, 0.0, 0

    def reset(self):
        self._game()
        return np.concatenate(self.stack)

    def _skip(self, a):
        total, frames = 0.0, []
        for _ in range(SKIP):
            frame, r, term, _, _ = self.env.step(a)
            total += r
            frames.append(frame)
            if term:
                break
        pooled = np.maximum(frames[-2], frames[-1]) if len(frames) == SKIP else frames[-1]
        return warp(pooled, self.gray), total, term

    def step(self, a):
        frame, r, over = self._skip(a)
        self.stack = self.stack[1:] + [frame]
        final = np.concatenate(self.stack)
        self.count += 1
        self.length += 1
        self.ret += r
        lives = self.ale.lives()
        lost = 0 < lives < self.lives
        self.lives = lives
        term = over or (self.train and lost)
        capped = self.count >= self.cap
        game_over = over or capped
        ret, length = self.ret, self.length
        if term and not game_over:  # EpisodicLifeEnv.reset: one NOOP step through TimeLimit
            self.count += 1
            frame, _, over2 = self._skip(0)
            self.lives = self.ale.lives()
            self.stack = [frame] * 4
            game_over = over2
        if game_over:
            self._game()
        return dict(
            obs=np.concatenate(self.stack),
            final_obs=final,
            raw_reward=r,
            terminated=term,
            truncated=capped and not term,
            game_over=game_over,
            episode_return=ret if game_over else np.nan,
            episode_length=length if game_over else 0,
        )


def compare_run(game, *, mode, steps, seed=3, cap=27000, **cfg_kw):
    cfg = EnvConfig(**cfg_kw)
    env = make_env(game, cfg, num_envs=1, seed=seed, mode=mode, max_episode_steps=cap)
    ref = RefA1(
        game,
        seed,
        train=mode == "train" and cfg.episode_life,
        cap=cap,
        sticky=cfg.repeat_action_probability,
        gray=cfg.grayscale,
    )
    np.testing.assert_array_equal(env.reset()[0], ref.reset())
    rng = np.random.default_rng(seed)
    events = {"life": 0, "game_over": 0, "reward": 0}
    for t in range(steps):
        a = int(rng.integers(env.num_actions))
        res = env.step(np.array([a]))
        want = ref.step(a)  # gymnasium takes the index into the minimal action set
        for key, value in want.items():
            got = getattr(res, key)[0]
            if key in ("episode_return",):
                np.testing.assert_equal(got, value, err_msg=f"{key} at step {t}")
            else:
                np.testing.assert_array_equal(got, value, err_msg=f"{key} at step {t}")
        events["life"] += bool(res.terminated[0] and not res.game_over[0])
        events["game_over"] += bool(res.game_over[0])
        events["reward"] += bool(res.raw_reward[0] != 0)
    return events


@pytest.mark.parametrize(
    "game,mode,steps,kw",
    [
        ("Breakout", "train", 500, {}),
        ("Breakout", "eval", 500, {}),
        ("MsPacman", "train", 300, {}),
        ("Breakout", "eval", 150, {"repeat_action_probability": 0.25}),
        ("Breakout", "train", 150, {"grayscale": True}),
    ],
)
def test_protocol_matches_reference_on_ale(game, mode, steps, kw):
    events = compare_run(game, mode=mode, steps=steps, **kw)
    if steps >= 300:  # the runs are long enough to see what they are meant to test
        assert events["reward"] > 0
        assert events["life"] > 0 if mode == "train" else events["life"] == 0
    if game == "Breakout" and steps == 500:
        assert events["game_over"] >= 1


def test_cap_reached_by_the_life_loss_noop_step():
    """A1: the NOOP step after a life loss counts against the cap, so the next step truncates."""
    env = make_env("Breakout", EnvConfig(), num_envs=1, seed=3, max_episode_steps=10**6)
    env.reset()
    rng = np.random.default_rng(3)  # the action stream compare_run uses for seed 3
    t = 1
    while not env.step(np.array([rng.integers(env.num_actions)])).terminated[0]:
        t += 1
    events = compare_run("Breakout", mode="train", steps=t + 3, seed=3, cap=t + 1)
    assert events["life"] == 1 and events["game_over"] == 1


def test_eval_mode_matches_gymnasium_atari_preprocessing():
    """Independent check: gymnasium's wrapper implements the eval protocol (noops, skip, max, resize)."""
    seed = 11
    env = make_env(
        "Breakout", EnvConfig(), num_envs=1, seed=seed, mode="eval", max_episode_steps=10**6
    )
    ref = AtariPreprocessing(
        raw_env("Breakout"), noop_max=30, frame_skip=4, screen_size=SIZE, grayscale_obs=False
    )
    obs = env.reset()
    want, _ = ref.reset(seed=seed)
    np.testing.assert_array_equal(obs[0, -3:], want.transpose(2, 0, 1))
    rng = np.random.default_rng(0)
    games = 0
    for _ in range(600):
        a = int(rng.integers(env.num_actions))
        res = env.step(np.array([a]))
        want, r, term, trunc, _ = ref.step(a)
        assert res.raw_reward[0] == r
        assert res.terminated[0] == term and not res.truncated[0]
        if term:  # its terminal frame is a stale buffer; compare the next game's first frame
            games += 1
            want, _ = ref.reset()
        np.testing.assert_array_equal(res.obs[0, -3:], want.transpose(2, 0, 1))
    assert games >= 1


def test_noop_reset_draws_count_from_the_seeded_generator():
    counts = []
    env = make_env("Breakout", EnvConfig(), num_envs=8, seed=0, mode="eval", max_episode_steps=100)
    env.reset()
    for i, ale in enumerate(env.ales):
        ref = raw_env("Breakout")
        ref.reset(seed=i)
        k = int(ref.unwrapped.np_random.integers(1, 31))
        assert 1 <= k <= 30
        # ALE's episode frame counter starts at 0 on reset_game: k frames of no-ops were taken.
        assert ale.getEpisodeFrameNumber() == k
        counts.append(k)
    assert len(set(counts)) >= 5


def test_life_loss_train_vs_eval():
    cfg = EnvConfig()
    rng = np.random.default_rng(1)
    actions = rng.integers(4, size=(400, 1))
    for mode in ("train", "eval"):
        env = make_env("Breakout", cfg, num_envs=1, seed=2, mode=mode, max_episode_steps=10**6)
        env.reset()
        ale = env.ales[0]
        losses = 0
        for a in actions:
            lives, frame = ale.lives(), ale.getEpisodeFrameNumber()
            res = env.step(a)
            if res.game_over[0]:
                break
            lost = ale.lives() < lives
            if mode == "eval":
                assert not res.terminated[0]
                continue
            assert res.terminated[0] == lost
            if lost:
                losses += 1
                # Game continues: 4 action frames + 4 NOOP frames, no real reset.
                assert ale.getEpisodeFrameNumber() == frame + 8
                stack = res.obs[0].reshape(4, 3, SIZE, SIZE)
                assert all(np.array_equal(stack[0], f) for f in stack[1:])
                assert not np.array_equal(res.final_obs[0], res.obs[0])
        assert mode == "eval" or losses >= 2


def test_reward_clipping():
    env = make_env("MsPacman", EnvConfig(), num_envs=2, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    raw = []
    for _ in range(150):
        res = env.step(rng.integers(env.num_actions, size=2))
        np.testing.assert_array_equal(res.reward, np.sign(res.raw_reward))
        assert res.reward.dtype == np.float32 and res.raw_reward.dtype == np.float32
        raw.append(res.raw_reward)
    assert np.max(raw) > 1  # MsPacman pellets give 10: clipping did something
    env = make_env("MsPacman", EnvConfig(clip_rewards=False), num_envs=1, seed=0)
    env.reset()
    for _ in range(60):
        res = env.step(np.array([1]))
        np.testing.assert_array_equal(res.reward, res.raw_reward)


def test_step_cap_truncates_at_exactly_max_steps():
    env = make_env("Breakout", EnvConfig(), num_envs=2, seed=0, max_episode_steps=5)
    first = env.reset()
    total = np.zeros(2)
    for t in range(1, 6):
        res = env.step(np.zeros(2, dtype=np.int64))
        total += res.raw_reward
        assert res.truncated.all() == (t == 5) and not res.terminated.any()
        assert res.game_over.all() == (t == 5)
    np.testing.assert_array_equal(res.episode_length, [5, 5])
    np.testing.assert_array_equal(res.episode_return, total)
    # New games started, with fresh no-ops (ALE's per-game frame counter restarted).
    assert all(ale.getEpisodeFrameNumber() <= 30 for ale in env.ales)
    stack = res.obs.reshape(2, 4, 3, SIZE, SIZE)
    assert (stack == stack[:, :1]).all()
    assert res.obs.shape == first.shape
    res = env.step(np.zeros(2, dtype=np.int64))
    assert np.isnan(res.episode_return).all() and (res.episode_length == 0).all()


def test_batch_equals_single_envs_and_is_deterministic():
    cfg = EnvConfig()
    rng = np.random.default_rng(0)
    actions = rng.integers(4, size=(40, 3))
    batch = make_env("Breakout", cfg, num_envs=3, seed=7)
    singles = [make_env("Breakout", cfg, num_envs=1, seed=7 + i) for i in range(3)]
    obs = batch.reset()
    for i, s in enumerate(singles):
        np.testing.assert_array_equal(obs[i], s.reset()[0])
    for a in actions:
        res = batch.step(a)
        for i, s in enumerate(singles):
            r = s.step(a[i : i + 1])
            np.testing.assert_array_equal(res.obs[i], r.obs[0])
            assert res.raw_reward[i] == r.raw_reward[0]
    # reset(seeds) restores the streams: the same seeds replay the same trajectory.
    obs2 = batch.reset(seeds=[7, 8, 9])
    np.testing.assert_array_equal(obs, obs2)
    again = make_env("Breakout", cfg, num_envs=3, seed=100)
    np.testing.assert_array_equal(again.reset(seeds=[7, 8, 9]), obs)


def test_interface_fields():
    env = make_env("ms_pacman", EnvConfig(frame_stack=2), num_envs=2, seed=0)
    assert env.game == "MsPacman"
    assert env.legal_actions.dtype == np.int64 and env.num_actions == 9
    np.testing.assert_array_equal(env.legal_actions, [0, 2, 3, 4, 5, 6, 7, 8, 9])
    assert env.frame_shape == (3, SIZE, SIZE) and env.obs_shape == (6, SIZE, SIZE)
    obs = env.reset()
    assert obs.shape == (2, 6, SIZE, SIZE) and obs.dtype == np.uint8
    res = env.step(np.array([0, 1]))
    # Channel order: oldest frame first, newest frame in the last C channels.
    np.testing.assert_array_equal(res.obs[:, :3], obs[:, 3:])
    assert res.terminated.dtype == bool and res.episode_length.dtype == np.int64
    env.close()
    with pytest.raises(XtraError):
        env.step(np.array([0, 0]))
    with pytest.raises(XtraError, match="closed"):
        env.reset()


def test_bad_input():
    with pytest.raises(GameError) as e:
        resolve_game("Breakot")
    assert "Breakout" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GameError):
        make_env("NotAGame", EnvConfig(), num_envs=1, seed=0)
    with pytest.raises(XtraError, match="max_episode_steps"):
        make_env("Breakout", EnvConfig(), num_envs=1, seed=0, mode="eval")
    with pytest.raises(XtraError, match="mode"):
        make_env("Breakout", EnvConfig(), num_envs=1, seed=0, mode="test")
    env = make_env("Breakout", EnvConfig(), num_envs=2, seed=0)
    with pytest.raises(XtraError, match="reset"):
        env.step(np.array([0, 0]))
    env.reset()
    with pytest.raises(XtraError, match="out of range"):
        env.step(np.array([0, 4]))
    with pytest.raises(XtraError, match="out of range"):
        env.step(np.array([-1, 0]))
    with pytest.raises(XtraError, match="shape"):
        env.step(np.array([0]))
    with pytest.raises(XtraError, match="integer"):
        env.step(np.array([0.0, 1.0]))
    with pytest.raises(XtraError, match="seeds"):
        env.reset(seeds=[1])
