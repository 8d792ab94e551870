"""Offline datasets: collect -> validate -> load round trips, resume, from-run, bad input (#5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xtra.act.collect import collect
from xtra.act.selfplay import SelfPlay
from xtra.atomic import sha256_file
from xtra.cli import main
from xtra.config import make_config
from xtra.data.dataset import Dataset
from xtra.data.dataset_format import MANIFEST, read_manifest
from xtra.data.replay import ReplayBuffer, SampledBatch
from xtra.data.validate import validate_dataset
from xtra.envs import make_env
from xtra.errors import DatasetError

GAME = "toy/catch"
STEPS = 240


def _fill(sp, replay, until: int) -> None:
    """Random self-play into ``replay`` until ``until`` agent steps."""
    while sp.env_steps < until:
        for piece in sp.step(None):
            replay.add(piece.trajectory, sample_limit=piece.sample_limit)


def _cfg(*overrides: str):
    return make_config("tiny", overrides=list(overrides))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "catch"
    collect(GAME, _cfg(), out, steps=STEPS, chunk_steps=64)
    return out


def _columns(path: Path) -> dict[str, np.ndarray]:
    ds = Dataset(path)
    (chunk,) = ds.chunk_dirs()
    snap = chunk / "replay" / (chunk / "replay" / "LATEST").read_text().strip()
    cols = {f.stem: np.load(f) for f in snap.glob("*.npy")}
    cols.update({f.stem: np.load(f) for f in chunk.glob("episodes.*.npy")})
    return cols


def _rewrite(path: Path, rel: str, arr: np.ndarray) -> None:
    """Replace one file of the (single) chunk and fix its checksum, so only the content is wrong."""
    m = read_manifest(path)
    chunk = path / "chunks" / m["chunks"][0]["name"]
    np.save(chunk / rel, arr)
    m["chunks"][0]["files"][rel] = sha256_file(chunk / rel)
    (path / MANIFEST).write_text(json.dumps(m))


def _snap_rel(path: Path) -> str:
    chunk = Dataset(path).chunk_dirs()[0]
    return "replay/" + (chunk / "replay" / "LATEST").read_text().strip()


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- round trips


def test_collect_matches_selfplay_replay(dataset):
    """collect -> validate -> load gives the very frames and rewards SelfPlay produces."""
    assert validate_dataset(dataset) == []
    cfg = _cfg()
    env = make_env(GAME, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    ref = ReplayBuffer.from_config(
        cfg.replay, frame_shape=env.frame_shape, frame_stack=4, action_ids=env.legal_actions
    )
    sp = SelfPlay(env, np.random.default_rng(cfg.seed + 1), frame_stack=cfg.env.frame_stack)
    _fill(sp, ref, STEPS)
    for piece in sp.flush():
        ref.add(piece.trajectory)
    ds = Dataset(dataset, game=GAME)
    got = list(ds.trajectories())
    assert len(got) == ref.num_trajectories == ds.num_trajectories
    for (traj, flags), tid in zip(got, ref.trajectory_ids()):
        want = ref.trajectory(int(tid))
        np.testing.assert_array_equal(traj.frames, want.frames)
        np.testing.assert_array_equal(traj.rewards, want.rewards)
        np.testing.assert_array_equal(traj.raw_rewards, want.raw_rewards)
        np.testing.assert_array_equal(traj.ale_actions, want.ale_actions)
        assert traj.terminated == want.terminated
        assert flags.game_over in (0, 1) and flags.life_loss == 0
    info = ds.info()
    assert info["transitions"] == STEPS and info["complete"]
    assert sum(info["action_histogram"].values()) == STEPS


def test_as_source_samples_like_replay(dataset):
    buf = Dataset(dataset).as_source(game=GAME)
    assert isinstance(buf._frames.rows.arrays["frames"], np.memmap)  # memory-mapped frames
    b = buf.sample(
        16, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=np.random.default_rng(0), beta=1.0
    )
    assert isinstance(b, SampledBatch)
    assert b.obs.shape == (16, 4 + 5, 3, 10, 10) and b.mask.shape == (16, 6)
    assert np.all(b.mask[:, 0] == 1) and np.all(b.weights == 1.0)  # priorities reset to 1
    assert set(np.unique(b.actions)) <= {0, 3, 4}


def test_resume_equals_uninterrupted(dataset, tmp_path):
    out = tmp_path / "resumed"
    collect(GAME, _cfg(), out, steps=STEPS, chunk_steps=64, stop_after_chunks=2)
    assert not Dataset(out).complete and len(Dataset(out).manifest["chunks"]) == 2
    assert Dataset(out).validate() == []  # a partial dataset is readable
    assert len(Dataset(out).as_source()) > 0
    # debris of a killed commit: an unlisted chunk directory; never read, removed on resume
    (out / "chunks" / ".chunk-000002.tmp").mkdir()
    (out / "chunks" / "chunk-000002").mkdir()
    (out / "chunks" / "chunk-000002" / "junk.npy").write_bytes(b"half")
    collect(GAME, _cfg(), out, steps=STEPS, chunk_steps=64)
    assert Dataset(out).complete and validate_dataset(out) == []
    a, b = _columns(dataset), _columns(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with pytest.raises(DatasetError, match="another policy or protocol"):
        collect(GAME, _cfg("env.frame_stack=2"), out, steps=STEPS)


def test_jpeg_dataset_merges_chunks(tmp_path):
    out = tmp_path / "jpeg"
    ds = collect(GAME, _cfg("replay.jpeg=true"), out, steps=96, chunk_steps=32)
    assert ds.manifest["jpeg"] and len(ds.manifest["chunks"]) == 1
    assert ds.validate() == []
    buf = ds.as_source()
    assert len(buf) == 96 and buf.trajectory(int(buf.trajectory_ids()[-1])).frames.dtype == np.uint8


def test_from_run(tmp_path):
    """A run's latest replay snapshot (after FIFO eviction: ids not starting at 0) kept as a dataset."""
    cfg = _cfg()
    env = make_env(GAME, cfg.env, num_envs=2, seed=0, mode="train")
    replay = ReplayBuffer(
        frame_shape=env.frame_shape,
        frame_stack=4,
        action_ids=env.legal_actions,
        capacity=50,
        alpha=0.6,
    )
    sp = SelfPlay(env, np.random.default_rng(0), frame_stack=cfg.env.frame_stack)
    _fill(sp, replay, 120)
    assert replay.trajectory_ids()[0] > 0  # evicted
    run = tmp_path / "run"
    replay.save(run / "checkpoints" / "step-000000010" / "replay")
    (run / "checkpoints" / "step-000000010" / "state.pt").write_bytes(b"")  # a complete checkpoint
    (run / "checkpoints" / "LATEST").write_text("step-000000010\n")
    (run / "run.json").write_text(json.dumps({"stage": "train", "game": GAME}))
    assert main(["data", "from-run", str(run), str(tmp_path / "kept")]) == 0
    ds = Dataset(tmp_path / "kept", game=GAME)
    assert ds.validate() == [] and ds.num_transitions == len(replay)
    buf = ds.as_source()
    for a, b in zip(buf.trajectory_ids(), replay.trajectory_ids()):
        np.testing.assert_array_equal(buf.trajectory(a).frames, replay.trajectory(b).frames)
    assert ds.flags()["game_over"].tolist() == [-1] * ds.num_trajectories
    assert main(["data", "from-run", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2


def test_cli_collect_info_validate(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "collect", GAME, "--out", str(out), "--steps", "40", "--quiet"]
    assert main(args + ["--preset", "tiny"]) == 0
    assert main(["data", "validate", str(out)]) == 0
    png = tmp_path / "strip.png"
    assert main(["data", "info", str(out), "--frames", str(png)]) == 0
    assert png.stat().st_size > 0
    assert "action_histogram" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "collect",
                GAME,
                "--out",
                str(tmp_path / "y"),
                "--steps",
                "5",
                "--policy",
                "expert",
                "--preset",
                "tiny",
            ]
        )
        == 2
    )


# --------------------------------------------------------------------------- bad input


def test_flipped_byte_and_truncated_file(dataset, tmp_path):
    d = _copy(dataset, tmp_path / "bad")
    snap = Dataset(d).chunk_dirs()[0] / _snap_rel(d)
    frames = snap / "frames.npy"
    data = bytearray(frames.read_bytes())
    data[-5] ^= 0xFF  # one pixel: still a well-formed file, silently wrong without checksums
    frames.write_bytes(bytes(data))
    problems = validate_dataset(d)
    assert any("frames.npy fails its SHA-256" in p for p in problems)
    with pytest.raises(DatasetError, match="SHA-256"):
        Dataset(d).as_source()
    reward = snap / "transitions.reward.npy"
    reward.write_bytes(reward.read_bytes()[:-40])  # truncated
    problems = validate_dataset(d)
    assert len(problems) >= 2  # validate lists every problem
    assert any("transitions.reward.npy fails" in p for p in problems)
    assert any("cannot be read" in p for p in problems)
    assert all("\n" not in p for p in problems)
    assert main(["data", "validate", str(d)]) == 2


def test_wrong_shape(dataset, tmp_path):
    d = _copy(dataset, tmp_path / "shape")
    rel = _snap_rel(d) + "/frames.npy"
    frames = np.load(Dataset(d).chunk_dirs()[0] / rel)
    _rewrite(d, rel, frames[:, :, :8, :])
    assert any("column frames is" in p for p in validate_dataset(d))
    with pytest.raises(DatasetError, match="column frames"):
        Dataset(d).as_source()
    rel = _snap_rel(d) + "/frames.npy"
    _rewrite(d, rel, frames[:-1])  # one frame missing
    assert any("frames are missing" in p for p in validate_dataset(d))


def test_action_outside_legal_set(dataset, tmp_path):
    d = _copy(dataset, tmp_path / "act")
    rel = _snap_rel(d) + "/transitions.action_ale.npy"
    ale = np.load(Dataset(d).chunk_dirs()[0] / rel)
    ale[7] = 1  # FIRE is not a legal action of toy/catch
    _rewrite(d, rel, ale)
    problems = validate_dataset(d)
    assert any("outside toy/catch's legal set" in p for p in problems)
    with pytest.raises(DatasetError, match="legal set"):
        Dataset(d).as_source()
    rel = _snap_rel(d) + "/transitions.action.npy"
    act = np.load(Dataset(d).chunk_dirs()[0] / rel)
    act[3] = 9
    _rewrite(d, rel, act)
    assert len(validate_dataset(d)) >= 2


def test_flags_agree_with_termination(dataset, tmp_path):
    """A game may be over without termination (cut at the step cap); a life loss terminates."""
    d = _copy(dataset, tmp_path / "flags")
    cols = _columns(d)
    cut = int(np.flatnonzero(cols["episodes.game_over"] == 1)[0])
    terminated = cols["trajectories.terminated"].copy()
    terminated[cut] = False
    _rewrite(d, _snap_rel(d) + "/trajectories.terminated.npy", terminated)
    assert validate_dataset(d) == []
    life_loss = cols["episodes.life_loss"].copy()
    life_loss[cut] = 1
    _rewrite(d, "episodes.life_loss.npy", life_loss)
    (problem,) = validate_dataset(d)
    assert problem.endswith("a trajectory ends with a life loss but is not marked terminated")


def test_other_game_and_future_version(dataset, tmp_path):
    with pytest.raises(DatasetError, match="dataset of toy/catch, not toy/chain"):
        Dataset(dataset).as_source(game="toy/chain")
    with pytest.raises(DatasetError, match="not toy/chain"):
        Dataset(dataset, game="toy/chain")
    d = _copy(dataset, tmp_path / "future")
    m = json.loads((d / MANIFEST).read_text())
    m["format_version"] = 99
    (d / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="format version 99.*upgrade xtra"):
        Dataset(d)
    assert len(validate_dataset(d)) == 1
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        Dataset(d)
    with pytest.raises(DatasetError, match="no dataset"):
        Dataset(tmp_path / "missing")


def test_unfinished_chunk_is_invisible(dataset, tmp_path):
    """A commit killed before the manifest switch leaves files a reader never sees."""
    d = _copy(dataset, tmp_path / "killed")
    (d / "chunks" / ".chunk-000007.tmp").mkdir()
    (d / "chunks" / "chunk-000007").mkdir()
    np.save(d / "chunks" / "chunk-000007" / "frames.npy", np.zeros(3))
    ds = Dataset(d)
    assert ds.validate() == [] and ds.num_transitions == STEPS


def test_collect_with_checkpoint_policy(tmp_path):
    from xtra.model.networks import EfficientZeroNet
    from xtra.rundir import save_model

    cfg = _cfg()
    env = make_env(GAME, cfg.env, num_envs=1, seed=0)
    model = EfficientZeroNet(cfg.model, env.obs_shape)
    save_model(tmp_path / "m.pt", model, cfg, games=[GAME], obs_shape=env.obs_shape,
               stage="train", step=1)  # fmt: skip
    ds = collect(GAME, cfg, tmp_path / "ds", steps=24, policy=f"checkpoint:{tmp_path / 'm.pt'}")
    assert ds.validate() == []
    bp = ds.manifest["behaviour_policy"]
    assert bp["kind"] == "checkpoint" and bp["dirichlet_noise"] is False
    traj, _ = next(ds.trajectories())
    np.testing.assert_allclose(traj.root_visits.sum(1), 1.0, rtol=1e-5)  # search statistics kept
    with pytest.raises(DatasetError, match="trained on"):
        collect("toy/chain", cfg, tmp_path / "x", steps=8, policy=f"checkpoint:{tmp_path / 'm.pt'}")
