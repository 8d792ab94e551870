"""BatchedEnv.state_dict / load_state_dict: a restored env continues bit-identically.

Each test runs a reference env that is never saved, saves a second env with the same seed and
actions midway, loads the pickled state into a third env built with another seed (and, for
Atari, stepped with other actions first, so that its emulator, RNGs and sticky-action memory
all differ), saves that one again later into a fourth env that was never reset, and steps all of
them with the same actions through life losses, game overs and resets (new no-op counts, new
balls): every StepResult field must agree at every step.
"""

from __future__ import annotations

import pickle
from collections import Counter

import ale_py
import numpy as np
import pytest

from xtra.config import EnvConfig
from xtra.envs import make_env
from xtra.envs.atari import ale_state_rng
from xtra.errors import CheckpointError

FIELDS = (
    "obs",
    "final_obs",
    "reward",
    "raw_reward",
    "terminated",
    "truncated",
    "game_over",
    "episode_return",
    "episode_length",
)


def roundtrip(state: dict) -> dict:
    return pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def check_resume(build, *, num_envs, before, after, scramble=0) -> Counter:
    """Run the scenario of the module docstring; returns event counts after the first resume."""
    rng = np.random.default_rng(123)
    ref, saved = build(seed=7), build(seed=7)
    for env in (ref, saved):
        env.reset()
    for _ in range(before):
        actions = rng.integers(ref.num_actions, size=num_envs)
        for env in (ref, saved):
            env.step(actions)

    restored = build(seed=1000)
    restored.reset()
    for _ in range(scramble):  # a different game position, RNG stream and last action
        restored.step(np.full(num_envs, restored.num_actions - 1))
    restored.load_state_dict(roundtrip(saved.state_dict()))

    envs, events = [ref, saved, restored], Counter()
    for t in range(after):
        if t == after // 2:  # resume again, from the restored env, into an env never reset
            again = build(seed=2000)
            again.load_state_dict(roundtrip(restored.state_dict()))
            envs.append(again)
        actions = rng.integers(ref.num_actions, size=num_envs)
        results = [env.step(actions) for env in envs]
        want = results[0]
        for k, got in enumerate(results[1:], start=1):
            for field in FIELDS:
                np.testing.assert_array_equal(
                    getattr(got, field), getattr(want, field), err_msg=f"{field}, env {k}, step {t}"
                )
        events["game_over"] += int(want.game_over.sum())
        events["life_lost"] += int((want.terminated & ~want.game_over).sum())
        events["reward"] += int((want.raw_reward != 0).sum())
    return events


def test_atari_resume_is_exact_with_lives_noops_and_sticky_actions():
    cfg = EnvConfig(repeat_action_probability=0.25)

    def build(seed):
        return make_env("Breakout", cfg, num_envs=3, seed=seed, mode="train")

    events = check_resume(build, num_envs=3, before=120, after=300, scramble=9)
    assert events["game_over"] >= 2 and events["life_lost"] >= 3 and events["reward"] >= 3


def test_atari_state_rng_continues_ales_sticky_action_stream():
    """ale_state_rng reads ALE's mt19937 from an ALEState; ALE draws two numbers per frame."""
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    env = make_env("Breakout", EnvConfig(repeat_action_probability=0.25), num_envs=1, seed=0)
    ale = env.ales[0]
    before = ale_state_rng(ale.cloneState(include_rng=True))
    for _ in range(37):
        ale.act(ale_py.Action.FIRE)
    ale.reset_game()  # draws nothing
    after = ale_state_rng(ale.cloneState(include_rng=True))
    before.random_raw(2 * 37)
    assert before.state["state"]["pos"] == after.state["state"]["pos"]
    np.testing.assert_array_equal(before.state["state"]["key"], after.state["state"]["key"])
    with pytest.raises(ValueError, match="include_rng"):
        ale_state_rng(ale.cloneState(include_rng=False))


def test_minatar_resume_is_exact():
    cfg = EnvConfig(repeat_action_probability=0.1)

    def build(seed):
        return make_env("minatar/breakout", cfg, num_envs=4, seed=seed, max_episode_steps=300)

    events = check_resume(build, num_envs=4, before=40, after=200, scramble=5)
    assert events["game_over"] >= 4


@pytest.mark.parametrize("game", ["toy/catch", "toy/chain"])
def test_toy_resume_is_exact(game):
    def build(seed):
        return make_env(game, EnvConfig(), num_envs=5, seed=seed)

    events = check_resume(build, num_envs=5, before=7, after=60, scramble=3)
    assert events["game_over"] >= 10


def test_state_holds_only_plain_values():
    env = make_env("Breakout", EnvConfig(), num_envs=2, seed=0)
    env.reset()

    def walk(x):
        if isinstance(x, dict):
            assert all(isinstance(k, str) for k in x)
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        else:
            assert isinstance(x, (bool, int, float, str, bytes, np.ndarray, type(None))), type(x)

    walk(env.state_dict())


def test_state_before_reset_and_after_reset_with_seeds():
    cfg = EnvConfig()
    a = make_env("Breakout", cfg, num_envs=2, seed=3)
    b = make_env("Breakout", cfg, num_envs=2, seed=40)
    b.load_state_dict(roundtrip(a.state_dict()))
    np.testing.assert_array_equal(a.reset(), b.reset())  # the no-op generators were carried
    np.testing.assert_array_equal(a.reset(seeds=[5, 6]), b.reset(seeds=[5, 6]))
    for _ in range(5):
        x, y = a.step(np.array([1, 3])), b.step(np.array([1, 3]))
        np.testing.assert_array_equal(x.obs, y.obs)


def test_mismatched_state_is_a_checkpoint_error():
    cfg = EnvConfig()
    breakout = make_env("Breakout", cfg, num_envs=2, seed=0)
    breakout.reset()
    state = breakout.state_dict()
    others = {
        "game=": make_env("Pong", cfg, num_envs=2, seed=0),
        "num_envs=": make_env("Breakout", cfg, num_envs=3, seed=0),
        "repeat_action_probability=": make_env(
            "Breakout", EnvConfig(repeat_action_probability=0.25), num_envs=2, seed=0
        ),
        "episode_life=": make_env(
            "Breakout", cfg, num_envs=2, seed=0, mode="eval", max_episode_steps=27000
        ),
    }
    for what, env in others.items():
        with pytest.raises(CheckpointError, match=what) as info:
            env.load_state_dict(state)
        assert "\n" not in str(info.value)

    catch = make_env("toy/catch", cfg, num_envs=2, seed=0)
    chain = make_env("toy/chain", cfg, num_envs=2, seed=0)
    with pytest.raises(CheckpointError, match="game="):
        chain.load_state_dict(catch.state_dict())
    with pytest.raises(CheckpointError, match="format"):
        catch.load_state_dict({"weights": 1})
    broken = catch.state_dict()
    del broken["family"]["rngs"]
    with pytest.raises(CheckpointError, match="corrupt"):
        catch.load_state_dict(broken)
