"""The whole pipeline (`xtra demo`, benchmarks/transfer_minatar.py) on toy games, its report,
and the improvement ratio against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xtra.errors import XtraError
from xtra.pipeline.experiment import CONDITIONS, ExperimentSpec, run_experiment
from xtra.report.transfer import (
    improvement,
    plot_finetune_curves,
    plot_task_weights,
    results_table,
    task_weight_series,
)

TINY = (
    "optim.batch_size=8",
    "transfer.offline_batch_size=8",
    "replay.start_transitions=40",
    "schedule.checkpoint_interval=10",
    "schedule.log_interval=2",
    "eval.interval=10",
    "eval.num_episodes=2",
    "eval.periodic_max_steps=10",
    "eval.final_max_steps=10",
    "search.num_simulations=4",
    "env.num_envs=2",
    "transfer.task_weight_start=4",
    "transfer.task_weight_cycle=6",
    "transfer.task_weight_window=2",
)


def _spec(**kw) -> ExperimentSpec:
    base = dict(
        sources=("toy/chain",),
        target="toy/catch",
        preset="tiny",
        overrides=TINY,
        data_steps=120,
        teacher_steps=6,
        distill_steps=6,
        finetune_env_steps=60,
        conditions=("xtra", "efficientzero"),
        seeds=(0, 1),
        workers=1,
    )
    base.update(kw)
    return ExperimentSpec(**base)


def test_improvement_ratio_and_bootstrap_interval():
    ratio, lo, hi = improvement([4.0, 4.0, 4.0], [2.0, 2.0, 2.0])
    assert (ratio, lo, hi) == (2.0, 2.0, 2.0)  # no spread: every resample gives 2
    ratio, lo, hi = improvement([1.0, 3.0], [2.0, 2.0], resamples=20000)
    # Resampled treated means are 1, 2 or 3 with probability 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles of the ratio are 0.5 and 1.5.
    assert ratio == 1.0 and lo == pytest.approx(0.5) and hi == pytest.approx(1.5)
    assert np.isnan(improvement([1.0], [0.0])[0])


def test_spec_validation_is_one_line():
    with pytest.raises(XtraError, match="both a source and the target"):
        _spec(sources=("toy/catch",)).validate()
    with pytest.raises(XtraError, match="unknown condition"):
        _spec(conditions=("xtra", "nope")).validate()
    assert set(CONDITIONS) >= {"xtra", "efficientzero", "no_pretraining"}


def test_pipeline_runs_every_stage_resumes_and_reports(tmp_path):
    spec = _spec(student_baselines=("self",))
    summary = run_experiment(spec, tmp_path, log=lambda m: None)
    assert (tmp_path / "experiment.json").exists()
    assert set(summary["teachers"]) == {"toy/chain"}
    assert set(summary["student"]["finals"]) == {"toy/chain"}
    runs = {(r["condition"], r["seed"]): r for r in summary["finetune"]}
    assert set(runs) == {("xtra", 0), ("xtra", 1), ("efficientzero", 0), ("efficientzero", 1)}
    # Each condition ran with exactly its switches (run.json records them).
    info = json.loads((tmp_path / "finetune" / "xtra-s0" / "run.json").read_text())
    assert info["pretrained"] and info["offline"]
    info = json.loads((tmp_path / "finetune" / "efficientzero-s1" / "run.json").read_text())
    assert info["pretrained"] is None and info["offline"] == {}
    # The target game's budget: 60 env steps, as many learner steps.
    final = json.loads((tmp_path / "finetune" / "xtra-s1" / "final.json").read_text())
    assert final["env_steps"] == 60 and final["steps"] == 60
    # Seeds differ.
    a = (tmp_path / "finetune" / "xtra-s0" / "metrics.csv").read_text()
    b = (tmp_path / "finetune" / "xtra-s1" / "metrics.csv").read_text()
    assert a != b
    # Running it again finds every job finished and gives the same numbers.
    again = run_experiment(spec, tmp_path, log=lambda m: None)
    assert again["finetune"] == summary["finetune"] and again["teachers"] == summary["teachers"]

    assert set(summary["student_baselines"]["self"]["finals"]) == {"toy/chain"}
    info = json.loads((tmp_path / "student-self" / "run.json").read_text())
    assert info["targets"] == "self"

    table = results_table(summary)
    assert "XTRA / EfficientZero" in table and "| toy/chain |" in table
    assert "multi-game offline RL" in table
    series = task_weight_series(tmp_path / "finetune" / "xtra-s0")
    xs, eta = series["toy/chain"]
    assert len(xs) == len(eta) > 0 and np.all((eta > 0) & (eta <= 1))
    assert plot_finetune_curves(summary, tmp_path / "curves.png").stat().st_size > 0
    assert plot_task_weights(summary, tmp_path / "weights.png").stat().st_size > 0
    assert plot_task_weights(summary, tmp_path / "none.png", condition="efficientzero") is None


def test_pipeline_in_worker_processes(tmp_path):
    spec = _spec(seeds=(0,), conditions=("efficientzero", "no_pretraining"), workers=2)
    summary = run_experiment(spec, tmp_path, log=lambda m: None)
    labels = {r["label"] for r in summary["finetune"]}
    assert labels == {"EfficientZero", "XTRA w/o pretraining"}
    assert all(np.isfinite(r["final"]) for r in summary["finetune"])


def test_demo_spec_is_the_catch_family():
    from xtra.envs.families import VARIANTS
    from xtra.pipeline.demo import demo_spec

    spec = demo_spec(minutes=10, workers=2).validate()
    assert spec.target == "family/catch" and spec.target not in spec.sources
    # related sources pretrain; the opposed game is offline data only, never a teacher
    assert all(VARIANTS[g.split("/")[1]].relation.startswith("same") for g in spec.sources)
    assert spec.extra_offline == ("family/catch-avoid",)
    assert spec.conditions == ("xtra+extra", "efficientzero") and spec.preset == "cpu"
    # The teachers' round, the student beside EfficientZero, then XTRA's finetuning run.
    assert spec.teacher_minutes + spec.distill_minutes + spec.finetune_minutes < 10
    cfg = spec.config(*spec.finetune_overrides)
    assert cfg.eval.interval * 10 == spec.finetune_env_steps // cfg.schedule.env_steps_per_update
    with pytest.raises(XtraError, match="minutes"):
        demo_spec(minutes=0)


def test_transfer_benchmark_script_on_a_toy_recipe(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(
        "name: toy\ntarget: toy/catch\npretrain: [toy/chain]\npreset: tiny\n"
        f"set: [{', '.join(TINY)}]\n"
    )
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "transfer_minatar.py"), "--recipe", str(recipe),
         "--seeds", "0", "--data-steps", "120", "--teacher-steps", "6", "--distill-steps", "6",
         "--finetune-steps", "48", "--workers", "1", "--work-dir", str(tmp_path / "w"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "XTRA / EfficientZero" in out.stdout and "zero-shot" in out.stdout
    assert "one seed: no interval" in out.stdout or "undefined" in out.stdout
    summary = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert summary["student_baselines"]["self"]["finals"].keys() == {"toy/chain"}
    # The task-weight schedule scales with the run: start and cycle 48 // 8 = 6, window 1.
    cfg = (tmp_path / "w" / "finetune" / "xtra-s0" / "config.yaml").read_text()
    assert "task_weight_cycle: 6" in cfg and "task_weight_window: 1" in cfg
    assert (tmp_path / "out" / "task_weights.png").exists()


def test_workers_end_with_a_killed_experiment(tmp_path):
    """kill -9 of the process running the pool: its workers stop within seconds instead of
    finishing their jobs into run directories the rerun will resume."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text(
        "import os, time\n"
        "from xtra.pipeline.experiment import executor\n"
        "if __name__ == '__main__':\n"
        "    with executor(2) as pool:\n"
        "        print(pool.submit(os.getpid).result(), flush=True)\n"
        "        pool.submit(time.sleep, 120)\n"
        "        time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            state = open(f"/proc/{pid}/status").read().split("State:")[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z"

    deadline = time.monotonic() + 30
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(worker)
