"""`xtra train` end to end on a toy game: run directory, exact resumption, kill -9, bad input."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xtra.act.evaluate import evaluate_saved_model
from xtra.config import make_config
from xtra.errors import CheckpointError
from xtra.learn.train import train
from xtra.rundir import load_model

SMALL = [
    "schedule.training_steps=30",
    "schedule.env_steps=200",
    "replay.start_transitions=40",
    "optim.batch_size=16",
    "schedule.checkpoint_interval=10",
    "schedule.log_interval=5",
    "eval.interval=20",
    "eval.num_episodes=4",
    "search.num_simulations=4",
    "env.num_envs=4",
    "loss.augment_shift=0",
]


def _cfg(*extra: str):
    return make_config("tiny", overrides=[*SMALL, *extra])


def _rows(path: Path, name: str) -> list[dict]:
    with open(path / name, newline="") as f:
        return list(csv.DictReader(f))


def _same_weights(a: Path, b: Path) -> None:
    ma, _, _ = load_model(a)
    mb, _, _ = load_model(b)
    for (name, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), name


def test_train_writes_a_complete_run_directory(tmp_path):
    cfg = _cfg()
    result = train("toy/chain", cfg, tmp_path / "run", progress=False)
    run = result.run_dir
    assert result.steps == 30 and result.final is not None
    for name in ("config.yaml", "run.json", "metrics.csv", "eval.csv", "model.pt", "final.json"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "step-000000030"
    metrics = _rows(run, "metrics.csv")
    assert [int(r["step"]) for r in metrics if r["loss/total"]] == [5, 10, 15, 20, 25, 30]
    evals = _rows(run, "eval.csv")
    assert {r["kind"] for r in evals} == {"periodic", "final"}
    assert sum(r["kind"] == "final" for r in evals) == 4
    model, loaded_cfg, payload = load_model(run)
    assert loaded_cfg == cfg and payload["games"] == ["toy/chain"]
    summary = json.loads((run / "final.json").read_text())
    assert summary["final"]["mean"] == pytest.approx(result.final.mean)
    # Running the finished run again does nothing and says so.
    again = train("toy/chain", cfg, run, progress=False)
    assert again.final is None and again.steps == 30


def test_cosine_learning_rate_follows_the_run(tmp_path):
    # No warm-up: step s of 30 trains at 0.01 * (0.1 + 0.9 * (1 + cos(pi s / 30)) / 2), and
    # metrics.csv holds each 5-step window's mean.
    cfg = _cfg("optim.lr_schedule=cosine", "optim.lr=0.01", "optim.warmup_steps=0")
    run = train("toy/chain", cfg, tmp_path / "run", progress=False).run_dir
    logged = [float(r["train/lr"]) for r in _rows(run, "metrics.csv") if r["train/lr"]]
    lr = [0.01 * (0.1 + 0.9 * (1 + math.cos(math.pi * s / 30)) / 2) for s in range(30)]
    assert logged == pytest.approx([sum(lr[i : i + 5]) / 5 for i in range(0, 30, 5)])


def test_saved_model_replays_the_final_evaluation(tmp_path):
    """`evaluate_saved_model` keeps the run's protocol: on the run's episode count it replays the
    final evaluation episode by episode. On another count, episode i keeps its environment seed
    but not necessarily its moves: one random stream breaks the search's ties for the whole
    batch, so its draws depend on the batch size."""
    run = train("toy/catch", _cfg(), tmp_path / "run", progress=False).run_dir
    final = [r for r in _rows(run, "eval.csv") if r["kind"] == "final"]
    res, _ = evaluate_saved_model(run, "toy/catch")
    assert [float(r["score"]) for r in final] == res.scores.tolist()
    assert [int(r["length"]) for r in final] == res.lengths.tolist()
    more, _ = evaluate_saved_model(run, "toy/catch", episodes=8)
    assert len(more.scores) == 8


@pytest.mark.parametrize("channels_last", ["false", "true"])  # the cpu preset runs NHWC
def test_interrupted_run_resumes_exactly(tmp_path, channels_last):
    cfg = _cfg(f"model.channels_last={channels_last}")
    full = train("toy/catch", cfg, tmp_path / "full", progress=False)
    # Stop 5 steps after the checkpoint at step 20 (as if killed), then resume.
    stopped = train("toy/catch", cfg, tmp_path / "resumed", progress=False, stop_after=25)
    assert stopped.final is None
    resumed = train("toy/catch", cfg, tmp_path / "resumed", progress=False)
    assert resumed.env_steps == full.env_steps
    _same_weights(full.run_dir, resumed.run_dir)
    assert resumed.final.scores.tolist() == full.final.scores.tolist()
    drop = ("perf/", "time/")
    a = [
        {k: v for k, v in r.items() if not k.startswith(drop)}
        for r in _rows(full.run_dir, "metrics.csv")
    ]
    b = [
        {k: v for k, v in r.items() if not k.startswith(drop)}
        for r in _rows(resumed.run_dir, "metrics.csv")
    ]
    assert a == b


def test_resume_with_another_config_is_refused(tmp_path):
    train("toy/chain", _cfg(), tmp_path / "run", progress=False, stop_after=10)
    with pytest.raises(CheckpointError, match="different config .*optim.lr"):
        train("toy/chain", _cfg("optim.lr=0.5"), tmp_path / "run", progress=False)


@pytest.mark.slow
def test_kill_9_then_rerun_matches_uninterrupted(tmp_path):
    args = [sys.executable, "-m", "xtra.cli", "train", "toy/catch", "--preset", "tiny", "--quiet"]
    for s in SMALL:
        args += ["--set", s]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    full = subprocess.run(
        [*args, "--run-dir", str(tmp_path / "full")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args, "--run-dir", str(killed_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = killed_dir / "checkpoints" / "LATEST"
    deadline = time.time() + 240
    while time.time() < deadline and not (
        latest.exists() and "step-000000020" in latest.read_text()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest.exists()
    rerun = subprocess.run(
        [*args, "--run-dir", str(killed_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    _same_weights(tmp_path / "full", killed_dir)


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    for argv, fragment in [
        (["train", "NoSuchGame", "--preset", "tiny"], "unknown game"),
        (["train", "toy/catch", "--preset", "huge"], "unknown preset"),
        (
            ["train", "toy/catch", "--preset", "tiny", "--set", "optim.lr=-1"],
            "optim.lr=-1.0 is out of range",
        ),
    ]:
        res = subprocess.run(
            [sys.executable, "-m", "xtra.cli", *argv, "--run-dir", str(tmp_path / "x")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (
            res.stderr
        )


@pytest.mark.longest
def test_tiny_preset_learns_toy_chain_to_90_percent_of_the_optimum(tmp_path):
    """The learning check of issue 4: a uniform-random policy returns 0.452, the optimum is 1."""
    from xtra.envs.toy import OPTIMAL_RETURN, RANDOM_RETURN

    result = train("toy/chain", make_config("tiny"), tmp_path / "run", progress=False)
    assert RANDOM_RETURN["toy/chain"] < 0.5
    assert result.final.mean >= 0.9 * OPTIMAL_RETURN["toy/chain"], result.final.scores


def test_selfplay_stores_long_episodes_in_pieces():
    import numpy as np

    from xtra.act.selfplay import SelfPlay
    from xtra.data.replay import ReplayBuffer
    from xtra.envs import make_env

    cfg = make_config("tiny", overrides=["replay.segment_length=20", "env.num_envs=2"])
    env = make_env("minatar/freeway", cfg.env, num_envs=2, seed=0, mode="train")
    replay = ReplayBuffer.from_config(
        cfg.replay, frame_shape=env.frame_shape, frame_stack=4, action_ids=env.legal_actions
    )
    sp = SelfPlay(
        env,
        np.random.default_rng(0),
        frame_stack=4,
        segment_length=cfg.replay.segment_length,
        overlap=cfg.targets.unroll_steps + cfg.targets.td_steps,
    )
    while sp.env_steps < 2 * 35:  # no Freeway episode ends this early (no lives, 200-step cap)
        for piece in sp.step(None):
            replay.add(piece.trajectory, sample_limit=piece.sample_limit)
    env.close()
    # Each env stored one piece after 20 + K + n = 30 steps: 20 sampleable positions, and the
    # 10 it shares with the next piece (still being built) only as targets.
    assert replay.num_trajectories == 2 and len(replay) == 60
    assert (replay.priorities(np.arange(60)) > 0).sum() == 40
    assert all(len(b) == 15 for b in sp.builders)  # steps 20..34 of each episode
