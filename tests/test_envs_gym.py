"""Any Gymnasium environment as a game: ``module:factory`` and ``gym:ID`` names, the observation
and action rules, one-line errors for what xtra cannot use, checkpoints, and one user env taken
through every stage of the pipeline on the command line."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xtra.cli import main
from xtra.config import make_config, tiny
from xtra.envs import make_env, resolve_game
from xtra.envs.gym import GymBatchedEnv, ObservationRule
from xtra.errors import CheckpointError, GameError, XtraError
from xtra.games import get_game

MOD = "xtra_user_envs_for_tests"
"""The user's module, written into a temporary directory on sys.path by the ``user_envs`` fixture."""

USER_ENVS = '''
import threading

import gymnasium
import numpy as np
from gymnasium import spaces


class MiniCatch(gymnasium.Env):
    """A ball falls down 5 rows of 6 columns; the paddle must be under it (+1, else -1).

    Grey float observations (H, W) in [0, 1]; Discrete(3, start=1): 1 NOOP, 2 RIGHT, 3 LEFT.
    """

    metadata = {"xtra_ale_ids": [0, 3, 4], "xtra_random_score": -2 / 3, "xtra_optimal_score": 1}

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 1.0, (5, 6), np.float32)
        self.action_space = spaces.Discrete(3, start=1)
        self.ball, self.row, self.paddle = 0, 0, 3

    def _obs(self):
        o = np.zeros((5, 6), np.float32)
        o[self.row, self.ball] = 1.0
        o[4, self.paddle] = 0.5
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ball, self.row, self.paddle = int(self.np_random.integers(6)), 0, 3
        return self._obs(), {}

    def step(self, action):
        assert action in (1, 2, 3), action
        self.paddle = min(max(self.paddle + (0, 1, -1)[action - 1], 0), 5)
        self.row += 1
        done = self.row == 4
        reward = (1.0 if self.paddle == self.ball else -1.0) if done else 0.0
        return self._obs(), reward, done, False, {}


def make_catch():
    return MiniCatch()


class MiniDodge(MiniCatch):
    """The same game where catching costs -1 and missing earns +1."""

    metadata = {"xtra_ale_ids": [0, 3, 4], "xtra_random_score": 2 / 3, "xtra_optimal_score": 1}

    def step(self, action):
        obs, reward, done, truncated, info = super().step(action)
        return obs, -reward, done, truncated, info


def make_dodge():
    return MiniDodge()


class Images(gymnasium.Env):
    """Observations of any shape and dtype; Discrete(n) actions; truncated after `limit` steps."""

    def __init__(self, shape, dtype=np.uint8, low=0, high=255, n=4, limit=3, meta=None):
        self.observation_space = spaces.Box(low, high, shape, dtype)
        self.action_space = spaces.Discrete(n)
        self.metadata = dict(meta or {})
        self.limit, self.t = limit, 0

    def _obs(self):
        return self.np_random.uniform(0, 1, self.observation_space.shape).astype(np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        obs = np.full(self.observation_space.shape, self.t, self.observation_space.dtype)
        return obs, float(action), False, self.t >= self.limit, {}


def make_big_rgb():
    return Images((120, 90, 3))


def make_chw():
    return Images((4, 8, 8))


def make_layout_override():
    return Images((3, 8, 2), meta={"xtra_obs_layout": "CHW"})


def make_vector():
    return Images((7,), dtype=np.float32, low=-1.0, high=1.0)


def make_unbounded():
    return Images((8, 8), dtype=np.float32, low=-np.inf, high=np.inf)


def make_box_actions():
    env = Images((8, 8))
    env.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    return env


def make_19_actions():
    return Images((8, 8), n=19)


def make_multidiscrete():
    env = Images((8, 8))
    env.action_space = spaces.MultiDiscrete([3, 3])
    return env


def make_dict_obs():
    env = Images((8, 8))
    env.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (8, 8), np.uint8)})
    return env


def make_4d_obs():
    return Images((2, 3, 8, 8))


def make_bad_ids():
    return Images((8, 8), n=3, meta={"xtra_ale_ids": [0, 3, 3]})


def make_not_an_env():
    return object()


def make_raises():
    raise RuntimeError("no simulator license")


NOT_CALLABLE = 3


def make_unpicklable():
    env = Images((8, 8))
    env.lock = threading.Lock()
    return env
'''


@pytest.fixture
def user_envs(tmp_path, monkeypatch):
    (tmp_path / f"{MOD}.py").write_text(textwrap.dedent(USER_ENVS))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MOD, None)
    yield tmp_path
    sys.modules.pop(MOD, None)


def _env(name: str, num_envs: int = 2, **env_overrides):
    cfg = make_config("tiny", overrides=[f"env.{k}={v}" for k, v in env_overrides.items()])
    return make_env(name, cfg.env, num_envs=num_envs, seed=0)


# --------------------------------------------------------------------------- names


def test_names_resolve_and_give_game_records(user_envs):
    name = f"{MOD}:make_catch"
    assert resolve_game(f"  {name} ") == name
    game = get_game(name)
    assert (game.name, game.suite, game.legal_actions) == (name, "gym", (0, 3, 4))
    assert (game.random_score, game.optimal_score) == (pytest.approx(-2 / 3), 1.0)
    assert get_game(name) is game  # built once
    assert resolve_game("GYM: CartPole-v1") == "gym:CartPole-v1"
    cart = get_game("gym:CartPole-v1")
    assert cart.legal_actions == (0, 1) and cart.random_score is None
    # Registered Atari envs of ale-py keep their own ALE ids.
    assert get_game("gym:ALE/Pong-v5").legal_actions == get_game("Pong").legal_actions
    # gym:module:ID imports the module, which may register the id.
    assert resolve_game("gym:gymnasium.envs.classic_control:Acrobot-v1").endswith("Acrobot-v1")


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        (f"{MOD}:make_nothing", "has no 'make_nothing'"),
        (f"{MOD}:NOT_CALLABLE", "not a callable"),
        (f"{MOD}:make_not_an_env", "returned a object, not a gymnasium.Env"),
        (f"{MOD}:make_raises", "raised RuntimeError: no simulator license"),
        (
            "gym:CartPol-v1",
            "'CartPol-v1' is not a registered Gymnasium id (did you mean CartPole-v1",
        ),
        ("gym:", "write gym:ID"),
        (":make", "write module:factory"),
        (f"{MOD}:make_box_actions", "supports Discrete(n) actions with n <= 18 only"),
        (f"{MOD}:make_multidiscrete", "supports Discrete(n) actions"),
        (f"{MOD}:make_19_actions", "Discrete(19) actions"),
        (f"{MOD}:make_bad_ids", "must list 3 distinct ALE ids 0..17"),
        (f"{MOD}:make_dict_obs", "needs a Box of images"),
        (f"{MOD}:make_unbounded", "unbounded Box low/high"),
        (f"{MOD}:make_4d_obs", "observations of shape (2, 3, 8, 8)"),
    ],
)
def test_unusable_envs_are_one_line_game_errors(user_envs, name, fragment):
    with pytest.raises(GameError) as info:
        _env(name)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg, msg


def test_cli_error_is_one_line(user_envs, capsys):
    assert main(["env", "check", f"{MOD}:make_box_actions", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Discrete(n)" in err[0], err


# --------------------------------------------------------------------------- observations


def test_observation_rules(user_envs):
    # Grey floats in [0, 1], (H, W): one channel, x * 255, size kept.
    env = _env(f"{MOD}:make_catch")
    obs = env.reset()
    assert env.frame_shape == (1, 5, 6) and obs.shape == (2, 4, 5, 6) and obs.dtype == np.uint8
    assert set(np.unique(obs[0, -1])) == {0, 128, 255}  # 0.5 -> 127.5 -> 128
    # RGB (H, W, C) larger than obs_size: INTER_AREA to obs_size x obs_size; grayscale.
    assert _env(f"{MOD}:make_big_rgb", obs_size=32).frame_shape == (3, 32, 32)
    assert _env(f"{MOD}:make_big_rgb", obs_size=32, grayscale=True).frame_shape == (1, 32, 32)
    assert _env(f"{MOD}:make_big_rgb").frame_shape == (3, 96, 96)
    # Channel-first (C, H, W) kept; metadata overrides the layout guess; vectors are 1 x D.
    assert _env(f"{MOD}:make_chw").frame_shape == (4, 8, 8)
    assert _env(f"{MOD}:make_layout_override").frame_shape == (3, 8, 2)
    vec = _env(f"{MOD}:make_vector")
    assert vec.frame_shape == (1, 1, 7)
    res = vec.reset()
    assert res.dtype == np.uint8


def test_resize_and_scale_values():
    import gymnasium

    cfg = tiny().env
    rule = ObservationRule.from_space(
        gymnasium.spaces.Box(0, 255, (200, 100, 3), np.uint8), cfg, {}, "g"
    )
    img = np.zeros((200, 100, 3), np.uint8)
    img[:100] = 200  # top half bright
    frame = rule(img)
    assert frame.shape == (3, 96, 96)
    assert (frame[:, :48] == 200).all() and (frame[:, 48:] == 0).all()
    # Channel-first with more channels than OpenCV resizes at once: each channel as on its own.
    chw = np.random.default_rng(0).integers(0, 256, (10, 200, 150)).astype(np.uint8)
    many = ObservationRule.from_space(
        gymnasium.spaces.Box(0, 255, chw.shape, np.uint8), cfg, {}, "g"
    )
    one = ObservationRule.from_space(
        gymnasium.spaces.Box(0, 255, (1, 200, 150), np.uint8), cfg, {}, "g"
    )
    assert many.frame_shape == (10, 96, 96)
    assert (many(chw)[7] == one(chw[7:8])[0]).all()
    rule = ObservationRule.from_space(
        gymnasium.spaces.Box(-1.0, 1.0, (2, 2), np.float32), cfg, {}, "g"
    )
    assert rule(np.array([[-1, 0], [1, 5]], np.float32)).tolist() == [[[0, 128], [255, 255]]]


# --------------------------------------------------------------------------- actions, episodes


def test_actions_map_onto_ale_ids_and_the_env_start(user_envs):
    env = _env(f"{MOD}:make_catch", num_envs=1)
    assert env.legal_actions.tolist() == [0, 3, 4] and env.num_actions == 3
    env.reset(seeds=[5])
    ball = env.envs[0].ball
    # Local 1 = RIGHT (env action 2), local 2 = LEFT (env action 3): walk to the ball.
    for _ in range(4):
        paddle = env.envs[0].paddle
        res = env.step(np.array([0 if paddle == ball else (1 if ball > paddle else 2)]))
    assert res.game_over[0] and res.terminated[0] and not res.truncated[0]
    assert res.episode_return[0] == 1.0 and res.episode_length[0] == 4
    with pytest.raises(XtraError, match="out of range"):
        env.step(np.array([3]))
    plain = _env(f"{MOD}:make_chw")
    assert plain.legal_actions.tolist() == [0, 1, 2, 3]  # no metadata: local i -> ALE id i


def test_own_truncation_raw_rewards_and_clipping(user_envs):
    env = _env(f"{MOD}:make_chw", num_envs=1)  # reward = action, truncated after 3 steps
    env.reset()
    for _ in range(3):
        res = env.step(np.array([3]))
        assert res.raw_reward[0] == 3.0 and res.reward[0] == 1.0  # tiny clips rewards
    assert res.truncated[0] and not res.terminated[0] and res.game_over[0]
    assert res.episode_return[0] == 9.0 and res.episode_length[0] == 3
    assert (res.final_obs[0, -4:] == 3).all() and not (res.obs[0, -4:] == 3).all()
    # The mode's cap still applies, below the env's own limit.
    cfg = tiny().env
    capped = make_env(f"{MOD}:make_chw", cfg, num_envs=1, seed=0, mode="eval", max_episode_steps=2)
    capped.reset()
    capped.step(np.array([0]))
    res = capped.step(np.array([0]))
    assert res.truncated[0] and res.episode_length[0] == 2


def test_seeds_make_games_repeat(user_envs):
    a, b = _env(f"{MOD}:make_catch", num_envs=3), _env(f"{MOD}:make_catch", num_envs=3)
    assert (a.reset() == b.reset()).all()
    first = a.reset(seeds=[7, 7, 7])
    assert (first[0] == first[1]).all() and (first[1] == first[2]).all()


# --------------------------------------------------------------------------- checkpoints


def test_state_dict_resumes_exactly(user_envs):
    env = _env(f"{MOD}:make_catch", num_envs=3)
    rng = np.random.default_rng(0)
    env.reset()
    for _ in range(5):
        env.step(rng.integers(3, size=3))
    state = pickle.loads(pickle.dumps(env.state_dict()))
    other = _env(f"{MOD}:make_catch", num_envs=3)
    other.load_state_dict(state)
    for _ in range(30):
        acts = rng.integers(3, size=3)
        x, y = env.step(acts), other.step(acts)
        assert (x.obs == y.obs).all() and (x.raw_reward == y.raw_reward).all()
        assert (x.game_over == y.game_over).all()


def test_unpicklable_env_fails_at_save_time_with_a_checkpoint_error(user_envs):
    with pytest.warns(UserWarning, match="cannot be checkpointed"):
        env = _env(f"{MOD}:make_unpicklable")
    env.reset()
    env.step(np.array([0, 1]))  # it runs
    with pytest.raises(CheckpointError, match="cannot be checkpointed: its gymnasium env does"):
        env.state_dict()


def test_env_check_on_the_command_line(user_envs, tmp_path, capsys):
    png = tmp_path / "strip.png"
    assert main(["env", "check", f"{MOD}:make_catch", "--steps", "10", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"game: {MOD}:make_catch" in out and "legal actions (ALE ids): [0, 3, 4]" in out
    assert png.exists()


# --------------------------------------------------------------------------- every stage

TINY = [
    "--preset", "tiny",
    "--set", "schedule.training_steps=20",
    "--set", "schedule.env_steps=80",
    "--set", "schedule.checkpoint_interval=10",
    "--set", "schedule.log_interval=10",
    "--set", "eval.interval=1000",
    "--set", "eval.num_episodes=2",
    "--set", "eval.final_max_steps=10",
    "--set", "search.num_simulations=2",
    "--set", "env.num_envs=2",
    "--set", "replay.start_transitions=16",
    "--set", "optim.batch_size=8",
    "--set", "transfer.offline_batch_size=8",
    "--set", "transfer.task_weight_start=5",
    "--set", "transfer.task_weight_cycle=5",
    "--set", "transfer.task_weight_window=2",
    "--quiet",
]  # fmt: skip


def test_a_user_env_goes_through_every_stage(user_envs, tmp_path, capsys):
    game = f"{MOD}:make_catch"
    other = f"{MOD}:make_dodge"  # a second game (same observations) for multi-game stages
    runs = tmp_path / "runs"

    assert main(["train", game, "--run-dir", str(runs / "train"), *TINY]) == 0
    assert json.loads((runs / "train" / "run.json").read_text())["game"] == game

    data = {}
    for g, slug in ((game, "catch"), (other, "dodge")):
        data[g] = tmp_path / f"data_{slug}"
        argv = ["data", "collect", g, "--out", str(data[g]), "--steps", "60", *TINY[:2]]
        assert main([*argv, "--set", "env.num_envs=2"]) == 0
        manifest = json.loads((data[g] / "dataset.json").read_text())
        assert manifest["game"] == g and manifest["legal_actions"] == [0, 3, 4]
    assert main(["data", "validate", str(data[game])]) == 0

    teachers = {}
    for g, slug in ((game, "catch"), (other, "dodge")):
        teachers[g] = runs / f"teacher_{slug}"
        argv = ["teacher", str(data[g]), "--game", g, "--run-dir", str(teachers[g]), *TINY]
        assert main(argv) == 0
    # The dataset's recorded game is checked on load.
    capsys.readouterr()
    assert main(["teacher", str(data[other]), "--game", game, *TINY]) == 2
    assert f"is a dataset of {other}, not {game}" in capsys.readouterr().err

    student = runs / "student"
    argv = ["distill", "--run-dir", str(student), *TINY]
    for g in (game, other):
        argv += ["--data", f"{g}={data[g]}", "--teacher", f"{g}={teachers[g]}"]
    assert main(argv) == 0

    fine = runs / "finetune"
    argv = ["finetune", game, "--pretrained", str(student), "--offline", f"{other}={data[other]}"]
    assert main([*argv, "--run-dir", str(fine), *TINY]) == 0
    final = json.loads((fine / "final.json").read_text())
    assert final

    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    argv = ["evaluate", str(fine), game, "--episodes", "2", "--json", str(out_json)]
    assert main(argv) == 0
    assert f"{game} (seen" in capsys.readouterr().out
    res = json.loads(out_json.read_text())
    assert res["game"] == game and len(res["scores"]) == 2
    assert all(-1.0 <= s <= 1.0 for s in res["scores"])


def test_module_is_also_found_in_the_current_directory(tmp_path, monkeypatch):
    name = "xtra_cwd_envs_for_tests"
    (tmp_path / f"{name}.py").write_text(
        "from xtra.envs.families import make_catch as make\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert get_game(f"{name}:make").legal_actions == (0, 3, 4)
    finally:
        sys.modules.pop(name, None)
    assert Path.cwd() == tmp_path
    assert isinstance(make_env(f"{name}:make", tiny().env, num_envs=1, seed=0), GymBatchedEnv)
