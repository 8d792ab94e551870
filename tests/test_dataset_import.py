"""Dataset import/export: Minari (round trip and a foreign ALE-style dataset) and XTRA B4.1 buffers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from xtra.act.collect import collect
from xtra.cli import main
from xtra.config import make_config
from xtra.data.dataset import Dataset
from xtra.data.minari_io import import_minari
from xtra.data.xtra_import import import_xtra_replay
from xtra.errors import DatasetError

minari = pytest.importorskip("minari")

FIELDS = (
    "frames",
    "actions",
    "ale_actions",
    "rewards",
    "raw_rewards",
    "root_visits",
    "root_values",
)


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def _same(a: Dataset, b: Dataset) -> None:
    ta, tb = list(a.trajectories()), list(b.trajectories())
    assert len(ta) == len(tb) > 0
    for (x, fx), (y, fy) in zip(ta, tb):
        for k in FIELDS:
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k), err_msg=k)
        assert x.terminated == y.terminated and fx == fy


# --------------------------------------------------------------------------- Minari


def test_minari_round_trip(tmp_path):
    cfg = make_config("tiny")
    src = collect("toy/catch", cfg, tmp_path / "src", steps=120, chunk_steps=1000)
    assert main(["data", "export-minari", str(src.path), "xtra/catch/random-v0"]) == 0
    back = import_minari("xtra/catch/random-v0", tmp_path / "back", game="toy/catch", cfg=cfg)
    assert back.validate() == []
    _same(src, back)
    with pytest.raises(DatasetError, match="holds toy/catch, not toy/chain"):
        import_minari("xtra/catch/random-v0", tmp_path / "x", game="toy/chain", cfg=cfg)
    with pytest.raises(DatasetError, match="cannot open Minari dataset"):
        import_minari("xtra/nothing-v0", tmp_path / "y", game="toy/catch", cfg=cfg)


def _ale_like_episode(rng, t: int, lives_lost_at: int, actions):
    obs = rng.integers(0, 255, size=(t + 1, 210, 160, 3), dtype=np.uint8)
    lives = np.where(np.arange(t + 1) > lives_lost_at, 4, 5)
    return minari.data_collector.EpisodeBuffer(
        observations=obs,
        actions=np.asarray(actions, dtype=np.int64),
        rewards=rng.integers(0, 3, size=t).astype(np.float64) * 4.0,
        terminations=np.r_[np.zeros(t - 1, bool), True],
        truncations=np.zeros(t, bool),
        infos={"lives": lives},
    )


def test_minari_foreign_ale_dataset(tmp_path):
    """An ALE-style Minari dataset (210x160 RGB, 18 ALE actions, lives) made with minari's API."""
    import gymnasium as gym

    rng = np.random.default_rng(0)
    legal = [0, 1, 3, 4]  # Breakout
    eps = [_ale_like_episode(rng, 12, 5, rng.choice(legal, 12)) for _ in range(2)]
    minari.create_dataset_from_buffers(
        "atari/breakout/test-v0",
        eps,
        observation_space=gym.spaces.Box(0, 255, (210, 160, 3), np.uint8),
        action_space=gym.spaces.Discrete(18),
        data_format="hdf5",
    )
    cfg = make_config("tiny")
    ds = import_minari("atari/breakout/test-v0", tmp_path / "bo", game="Breakout", cfg=cfg)
    assert ds.validate() == []
    assert ds.frame_shape == (3, 96, 96)
    assert any("INTER_AREA" in n for n in ds.manifest["notes"])
    trajs = list(ds.trajectories())
    assert len(trajs) == 4  # 2 games x 2 lives
    (t0, f0), (t1, f1) = trajs[0], trajs[1]
    assert t0.length == 6 and t0.terminated and f0.life_loss == 1 and f0.game_over == 0
    assert f1.game_over == 1 and t1.terminated
    np.testing.assert_array_equal(t1.frames[:4], t0.frames[-4:])  # the stack carries over
    stored = minari.load_dataset("atari/breakout/test-v0")[0].observations[0]  # minari may JPEG
    first = cv2.resize(stored, (96, 96), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(t0.frames[0], first.transpose(2, 0, 1))
    np.testing.assert_array_equal(t0.ale_actions, np.asarray(eps[0].actions[:6]))
    np.testing.assert_array_equal(t0.rewards, np.sign(eps[0].rewards[:6]))
    bad = [_ale_like_episode(rng, 4, 9, [0, 0, 2, 0])]  # 2 = UP: not a Breakout action
    minari.create_dataset_from_buffers(
        "atari/breakout/bad-v0",
        bad,
        observation_space=gym.spaces.Box(0, 255, (210, 160, 3), np.uint8),
        action_space=gym.spaces.Discrete(18),
        data_format="hdf5",
    )
    with pytest.raises(DatasetError, match="ALE action 2 is not a legal action of Breakout"):
        import_minari("atari/breakout/bad-v0", tmp_path / "bad", game="Breakout", cfg=cfg)


# --------------------------------------------------------------------------- XTRA B4.1 layout


def _jpeg(rng) -> bytes:
    img = np.zeros((96, 96, 3), np.uint8)
    x, y = rng.integers(0, 80, size=2)
    img[y : y + 16, x : x + 16] = rng.integers(50, 255, size=3)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _write_block(d, obs, actions, rewards, visits, roots) -> None:
    d.mkdir(parents=True)
    arr = np.empty(len(obs), dtype=object)
    arr[:] = obs
    np.save(d / "obs.npy", arr, allow_pickle=True)
    np.save(d / "actions.npy", np.asarray(actions))
    np.save(d / "reward.npy", np.asarray(rewards, np.float32))
    np.save(d / "visits.npy", np.asarray(visits, np.float32))
    np.save(d / "root.npy", np.asarray(roots, np.float32))


def _ez_buffer(root, rng, *, a: int = 4, block: int = 6):
    """A small B4.1 replay: shard 0 holds an 11-step trajectory cut into blocks of 6 + 5
    (the first padded, EZ style) and a 3-step one, interleaved; shard 1 one 4-step trajectory
    with a trimmed look-up. Returns the expected trajectories as (frames_jpeg, actions, ...)."""
    expected = []

    def trajectory(t):
        frames = [_jpeg(rng) for _ in range(t + 1)]
        obs = [frames[0]] * 3 + frames  # 4 initial frames (reset repeated) + one per step
        return (
            obs,
            rng.integers(0, a, t),
            np.sign(rng.normal(size=t)),
            rng.dirichlet(np.ones(a), t),
            rng.normal(size=t),
        )

    shard = root / "replay" / "0"
    o, act, rew, vis, rv = trajectory(11)
    expected.append((o, act, rew, vis, rv, True))
    # block 0: steps 0..5, padded with 5 frames, 9 rewards, 10 values (A2)
    _write_block(
        shard / "0",
        o[: 4 + block] + o[4 + block : 4 + block + 5],
        act[:block],
        np.r_[rew[:block], rew[block:][:9]],
        np.r_[vis[:block], vis[block : block + 5]],
        np.r_[rv[:block], rv[block:][:10]],
    )
    o2, act2, rew2, vis2, rv2 = trajectory(3)
    expected.append((o2, act2, rew2, vis2, rv2, True))
    _write_block(shard / "1", o2, act2, rew2, vis2, rv2)
    # block 2: steps 6..10 of the first trajectory, starting from its last 4 frames
    _write_block(
        shard / "2",
        o[block : block + 4] + o[4 + block :],
        act[block:],
        rew[block:],
        vis[block:],
        rv[block:],
    )
    look = [(0, i) for i in range(6)] + [(1, i) for i in range(3)] + [(2, i) for i in range(5)]
    np.save(shard / "game_look_up.npy", np.asarray(look))
    np.save(shard / "utils.npy", np.asarray([0, 3]))
    np.save(shard / "prior.npy", np.ones(len(look)))
    shard = root / "replay" / "1"
    o3, act3, rew3, vis3, rv3 = trajectory(4)
    _write_block(shard / "0", o3, act3, rew3, vis3, rv3)
    np.save(shard / "game_look_up.npy", np.asarray([(7, i) for i in range(3)]))  # trimmed to 3
    np.save(shard / "utils.npy", np.asarray([7, 1]))
    np.save(shard / "prior.npy", np.ones(3))
    expected.append((o3[:7], act3[:3], rew3[:3], vis3[:3], rv3[:3], False))  # cut
    return expected


def test_import_xtra_replay(tmp_path):
    rng = np.random.default_rng(0)
    expected = _ez_buffer(tmp_path / "Breakout_7", rng)
    cfg = make_config("tiny")
    args = ["data", "import-xtra", str(tmp_path), str(tmp_path / "ds"), "--game", "Breakout"]
    assert main(args + ["--preset", "tiny"]) == 0
    ds = Dataset(tmp_path / "ds", game="Breakout")
    assert ds.validate() == []
    got = [t for t, _ in ds.trajectories()]
    assert [t.length for t in got] == [11, 3, 3]
    for t, (o, act, rew, vis, rv, term) in zip(got, expected):
        want = np.stack([cv2.imdecode(np.frombuffer(x, np.uint8), 1).transpose(2, 0, 1) for x in o])
        np.testing.assert_array_equal(t.frames, want)
        np.testing.assert_array_equal(t.actions, act)
        np.testing.assert_array_equal(t.ale_actions, np.array([0, 1, 3, 4])[act])
        np.testing.assert_allclose(t.rewards, rew)
        np.testing.assert_allclose(t.root_visits, vis, rtol=1e-6)
        np.testing.assert_allclose(t.root_values, rv, rtol=1e-6)
        assert t.terminated == term
    src = ds.as_source()
    b = src.sample(
        4, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=np.random.default_rng(0), beta=1.0
    )
    assert b.obs.shape == (4, 9, 3, 96, 96)
    # a buffer of another game (more actions than Breakout's 4) is refused with one line
    with pytest.raises(DatasetError, match="visits.npy is"):
        import_xtra_replay(tmp_path, tmp_path / "pong", game="toy/chain", cfg=cfg)
    with pytest.raises(DatasetError, match="not an XTRA/EfficientZero replay"):
        import_xtra_replay(tmp_path / "ds", tmp_path / "z", game="Breakout", cfg=cfg)
