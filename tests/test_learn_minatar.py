"""benchmarks/learn_minatar.py: its statistics against hand-worked numbers, and one A/B run on a
toy game end to end (JSON, curves beside --out, finished runs read back)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("learn_minatar")


def test_z_score_by_hand(bench):
    # Means 3 and 1; variances (ddof 1) 1 and 1 over 3 samples: se = sqrt(2/3).
    z = bench.z_score(np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0]))
    assert z == pytest.approx(2.0 / math.sqrt(2.0 / 3.0))
    assert bench.z_score(np.ones(3), np.zeros(3)) == math.inf
    assert bench.z_score(np.ones(3), np.ones(3)) == 0.0


def test_bootstrap_interval_of_the_mean(bench):
    rng = np.random.default_rng(0)
    assert bench.bootstrap_ci(np.array([2.0, 2.0, 2.0]), rng) == [2.0, 2.0]
    assert bench.bootstrap_ci(np.array([5.0]), rng) == [5.0, 5.0]
    # Resampled means of (0, 3) lie in {0, 1.5, 3}; the 2.5% and 97.5% points are the ends.
    assert bench.bootstrap_ci(np.array([0.0, 3.0]), rng) == [0.0, 3.0]
    lo, hi = bench.bootstrap_ci(np.arange(10.0), rng)
    assert lo < 4.5 < hi and 0.0 < lo and hi < 9.0


def test_parse_variant(bench):
    assert bench.parse_variant("cpu=") == ("cpu", [])
    assert bench.parse_variant("cq=a.b=1; c.d=[1,2] ;") == ("cq", ["a.b=1", "c.d=[1,2]"])
    with pytest.raises(SystemExit, match="NAME=FIELD=VALUE"):
        bench.parse_variant("=a.b=1")


def _result(game, seed, variant, final, random=0.0):
    return {
        "game": game, "seed": seed, "variant": variant, "final_mean": final,
        "random_mean": random, "beats_random": final > 1.0, "env_steps": 10,
        "training_steps": 10,
    }  # fmt: skip


def test_summary_pairs_each_variant_with_the_reference_by_seed(bench):
    results = [
        *(_result("g", s, "ref", f) for s, f in [(0, 1.0), (1, 2.0), (2, 3.0)]),
        # Listed out of seed order, and seed 5 has no reference run to pair with.
        *(_result("g", s, "b", f) for s, f in [(2, 3.0), (0, 2.0), (1, 4.0), (5, 9.0)]),
    ]
    ref, b = bench.summarise(results, ["ref", "b"], ["g", "other"])
    assert ref["finals"] == [1.0, 2.0, 3.0] and ref["mean"] == 2.0 and "diff_vs_ref" not in ref
    assert ref["beats_random"] == 2
    assert b["seeds"] == [0, 1, 2, 5] and b["finals"] == [2.0, 4.0, 3.0, 9.0]
    assert b["mean"] == pytest.approx(4.5)
    # Paired differences over seeds 0-2: 1, 2, 0.
    assert b["diff_vs_ref"] == pytest.approx(1.0)
    assert 0.0 <= b["diff_ci95"][0] <= 1.0 <= b["diff_ci95"][1] <= 2.0


def test_ab_run_on_a_toy_game_writes_json_and_curves_and_reads_runs_back(run_benchmark, tmp_path):
    tiny = [
        "schedule.training_steps=24", "schedule.env_steps=64", "replay.start_transitions=16",
        "optim.batch_size=8", "env.num_envs=2", "search.num_simulations=2",
        "eval.interval=12", "eval.num_episodes=2", "eval.periodic_max_steps=10",
        "eval.final_max_steps=10", "schedule.checkpoint_interval=12",
    ]  # fmt: skip
    args = [
        "--preset", "tiny",
        "--games", "toy/chain", "--minutes", "0", "--seeds", "0", "1", "--final-episodes", "3",
        "--variant", "ref=", "--variant", "wide=search.num_simulations=3",
        *(a for o in tiny for a in ("--set", o)),
        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "ab.json"),
    ]  # fmt: skip
    first = run_benchmark("learn_minatar", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    out = json.loads((tmp_path / "ab.json").read_text())
    assert [(r["variant"], r["seeds"]) for r in out["summary"]] == [
        ("ref", [0, 1]),
        ("wide", [0, 1]),
    ]
    assert "diff_vs_ref" in out["summary"][1] and "diff_vs_ref" not in out["summary"][0]
    assert all(r["final_episodes"] == 3 and len(r["final_scores"]) == 3 for r in out["runs"])
    assert (tmp_path / "ab.png").stat().st_size > 0
    assert (tmp_path / "ab_wall.png").stat().st_size > 0
    cfg = (tmp_path / "runs" / "wide" / "toy_chain-s1" / "config.yaml").read_text()
    assert "num_simulations: 3" in cfg and "seed: 1" in cfg

    # A second call trains nothing: every run directory is finished and is only re-evaluated.
    again = run_benchmark("learn_minatar", *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("is finished") == 4
    rerun = json.loads((tmp_path / "ab.json").read_text())
    assert [r["training_steps"] for r in rerun["runs"]] == [
        r["training_steps"] for r in out["runs"]
    ]
