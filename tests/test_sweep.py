"""`xtra sweep`: the job graph of a sweep against a hand-written one, bad sweep files as one-line
errors, and a tiny sweep on toy games that is interrupted, resumed on a process pool, and run
again on a local Ray cluster with the same per-run results."""

from __future__ import annotations

import json
import os

import pytest

from xtra.cli import main
from xtra.errors import XtraError
from xtra.pipeline.scheduler import Job, LocalBackend, check_graph, run_graph
from xtra.pipeline.sweep import SweepSpec, expand, load_sweep, run_sweep, spec_from_dict

SMALL = {
    "name": "small",
    "sources": ["family/catch-colors", "family/catch-wide"],
    "targets": ["family/catch"],
    "extra_offline": ["family/courier"],
    "conditions": ["xtra", "efficientzero", "no_pretraining", "xtra+extra"],
    "seeds": [0, 1],
    "preset": "tiny",
    "student_baselines": ["self"],
    "budgets": {"data_steps": 100, "teacher_steps": 3, "distill_steps": 4,
                "finetune_env_steps": 40},
    "resources": {"cpus": 1, "distill": {"gpus": 0.5}},
}  # fmt: skip


def test_expansion_is_the_hand_written_graph(tmp_path):
    spec = spec_from_dict(SMALL, "small.yaml").validate()
    jobs = expand(spec, tmp_path)
    C, W, X = "collect:family/catch-colors", "collect:family/catch-wide", "collect:family/courier"
    TC, TW = "teacher:family/catch-colors", "teacher:family/catch-wide"
    expected = {
        C: (), W: (), X: (),
        "random:family/catch-colors": (), "random:family/catch-wide": (),
        "random:family/catch": (),
        TC: (C,), TW: (W,),
        "student": (C, W, TC, TW),
        "student-self": (C, W),
        "zero_shot:family/catch": ("student",),
        # XTRA: the student and the sources' data; from scratch: nothing; w/o pretraining: the
        # data only; +extra: the extra game's data as well.
        "finetune:family/catch:xtra:s0": (C, W, "student"),
        "finetune:family/catch:xtra:s1": (C, W, "student"),
        "finetune:family/catch:efficientzero:s0": (),
        "finetune:family/catch:efficientzero:s1": (),
        "finetune:family/catch:no_pretraining:s0": (C, W),
        "finetune:family/catch:no_pretraining:s1": (C, W),
        "finetune:family/catch:xtra+extra:s0": (C, W, X, "student"),
        "finetune:family/catch:xtra+extra:s1": (C, W, X, "student"),
    }  # fmt: skip
    assert {j.name: j.deps for j in jobs} == expected
    assert len(jobs) == 19
    check_graph(jobs)  # every dependency comes before its dependents
    by = {j.name: j for j in jobs}
    assert by["student"].gpus == 0.5 and by["student"].cpus == 1 and by[TC].gpus == 0
    assert by["finetune:family/catch:xtra:s1"].out == str(
        tmp_path / "finetune/family_catch/xtra-s1"
    )
    assert by[C].out == str(tmp_path / "data/family_catch-colors")
    # Each job's config carries its budget, seed and condition.
    ft = by["finetune:family/catch:efficientzero:s1"].args
    cfg = ft["cfg"]
    assert cfg.seed == 1 and cfg.schedule.env_steps == 40 and cfg.schedule.training_steps == 40
    assert not cfg.transfer.use_pretraining and ft["pretrained"] is None and ft["offline"] == {}
    assert by["finetune:family/catch:xtra+extra:s0"].args["offline"].keys() == {
        "family/catch-colors",
        "family/catch-wide",
        "family/courier",
    }
    assert by[TC].args["cfg"].schedule.training_steps == 3
    assert by["student"].args["cfg"].schedule.training_steps == 4
    assert (
        by["student-self"].args["targets"] == "self" and by["student-self"].args["teachers"] is None
    )


def test_teacher_target_runs_wait_for_and_get_the_teachers(tmp_path):
    spec = spec_from_dict(
        {**SMALL, "conditions": ["xtra_teacher_targets", "xtra_reanalyze+extra"], "seeds": [0]},
        "small.yaml",
    ).validate()
    by = {j.name: j for j in expand(spec, tmp_path)}
    teach = by["finetune:family/catch:xtra_teacher_targets:s0"]
    assert teach.deps == (
        "collect:family/catch-colors", "collect:family/catch-wide", "student",
        "teacher:family/catch-colors", "teacher:family/catch-wide",
    )  # fmt: skip
    assert teach.args["teachers"] == {
        g: str(tmp_path / "teachers" / d)
        for g, d in [("family/catch-colors", "family_catch-colors"),
                     ("family/catch-wide", "family_catch-wide")]
    }  # fmt: skip
    assert teach.args["cfg"].transfer.offline_targets == "teacher"
    re = by["finetune:family/catch:xtra_reanalyze+extra:s0"]
    assert re.args["teachers"] == {} and re.args["cfg"].transfer.offline_targets == "reanalyze"
    assert "family/courier" in re.args["offline"]


def test_graph_order_and_failures_block_dependents(tmp_path):
    with pytest.raises(XtraError, match="depends on 'b'"):
        check_graph([Job("a", "random", "x", ("b",), {}), Job("b", "random", "y", (), {})])
    # A job that fails (an unknown game) blocks what depends on it; the others still run.
    spec = SweepSpec(name="t", sources=("toy/chain",), targets=("toy/catch",), preset="tiny")
    cfg = spec.config("eval.num_episodes=1", "eval.final_max_steps=5")
    bad = Job("bad", "random", str(tmp_path / "bad.json"), (), {"game": "toy/nope", "cfg": cfg})
    after = Job("after", "random", str(tmp_path / "after.json"), ("bad",), {"game": "toy/catch",
                "cfg": cfg})  # fmt: skip
    ok = Job("ok", "random", str(tmp_path / "ok.json"), (), {"game": "toy/catch", "cfg": cfg})
    states = run_graph([bad, after, ok], LocalBackend(1), status=tmp_path / "s.json")
    assert [states[n].state for n in ("bad", "after", "ok")] == ["failed", "blocked", "done"]
    assert "toy/nope" in states["bad"].error
    status = json.loads((tmp_path / "s.json").read_text())
    assert status["counts"] == {"done": 1, "running": 0, "pending": 0, "failed": 1, "blocked": 1}


def test_recipes_and_shipped_sweeps_load():
    spec = load_sweep("minatar")  # a pretraining recipe: one target, seed 0, two conditions
    assert spec.targets == ("minatar/seaquest",) and len(spec.sources) == 4
    assert spec.seeds == (0,) and spec.conditions == ("xtra", "efficientzero")
    fam = load_sweep("transfer-family")
    assert fam.targets == ("family/catch",) and len(fam.sources) == 4
    assert fam.extra_offline == ("family/catch-avoid", "family/courier")
    assert "xtra_accumulated+extra" in fam.conditions and fam.seeds == (0, 1, 2, 3, 4)
    jobs = expand(fam, "/sweep")
    # 6 datasets, 5 random scores, 4 teachers, the student, its zero-shot score, 6 x 5 runs.
    assert len(jobs) == 6 + 5 + 4 + 1 + 1 + 30
    ft = next(j for j in jobs if j.name == "finetune:family/catch:xtra:s0").args["cfg"]
    assert ft.schedule.env_steps == 4000 and ft.schedule.training_steps == 1000
    assert load_sweep("transfer-minatar").targets == ("minatar/breakout",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nsources: [toy/chain]\ntargets: [toy/catch]\nseed: [1]\n", "unknown field 'seed'"),
        ("sources: [toy/chain]\ntargets: [toy/chain]\n", "both a source and a target"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nconditions: [xtra, nope]\n",
         "unknown condition 'nope'"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nconditions: [xtra+extra]\n",
         "needs extra_offline"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nextra_offline: [family/courier]\n"
         "conditions: [xtra_teacher_targets+extra]\n", "extra_offline games have none"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nseeds: [0, -1]\n", "seeds must be"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nbudgets: {teacher_steps: 0}\n",
         "budgets.teacher_steps must be >= 1"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nbudgets: {teacher_steps: many}\n",
         "budgets.teacher_steps = 'many' has the wrong type"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nresources: {gpus: -1}\n", "resources."),
        ("sources: [toy/chain]\ntargets: []\n", "at least one target"),
        ("sources: [toy/chain\n", "not valid YAML at line"),
        ("sources: [toy/chain]\ntargets: [toy/catch]\nset: [optim.nope=1]\n", "optim.nope"),
    ],
)  # fmt: skip
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(["sweep", "no-such-sweep", "--out", str(tmp_path / "o")]) == 2
    assert "unknown sweep 'no-such-sweep'" in capsys.readouterr().err
    assert main(["sweep", "minatar", "--out", str(tmp_path), "--address", "auto"]) == 2
    assert "--address is for --backend ray" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("")
    assert main(["sweep", "minatar", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_dry_run_prints_the_jobs(tmp_path, capsys):
    assert main(["sweep", "transfer-minatar", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "22 jobs" in out  # 4 datasets, 5 random, 4 teachers, student, self, zero-shot, 2 x 3
    row = next(line for line in out.splitlines() if line.startswith("teacher:minatar/asterix"))
    assert row.split()[-1] == "collect:minatar/asterix" and "to run" in row
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    # --conditions / --seeds replace the file's grid; pretraining jobs stay the same
    args = ["sweep", "transfer-minatar", "--out", str(tmp_path), "--dry-run"]
    assert main([*args, "--conditions", "no_cross_task", "--seeds", "5", "6"]) == 0
    out = capsys.readouterr().out
    assert "18 jobs" in out  # 16 before finetuning, then 2 seeds of one condition
    assert "finetune:minatar/breakout:no_cross_task:s6" in out and ":xtra:" not in out
    assert main([*args, "--seeds", "1", "1"]) == 2
    assert "seeds [1, 1] repeat one" in capsys.readouterr().err


# --------------------------------------------------------------------------- running

TINY = {
    "name": "tiny",
    "sources": ["toy/chain"],
    "targets": ["toy/catch"],
    "conditions": ["xtra", "efficientzero"],
    "seeds": [0],
    "preset": "tiny",
    "set": ["optim.batch_size=8", "transfer.offline_batch_size=8", "replay.start_transitions=20",
            "schedule.checkpoint_interval=10", "schedule.log_interval=2", "eval.interval=10",
            "eval.num_episodes=2", "eval.periodic_max_steps=10", "eval.final_max_steps=10",
            "search.num_simulations=4", "env.num_envs=2", "transfer.task_weight_start=4",
            "transfer.task_weight_cycle=6", "transfer.task_weight_window=2"],
    "budgets": {"data_steps": 60, "teacher_steps": 4, "distill_steps": 4,
                "finetune_env_steps": 24},
}  # fmt: skip


def _numbers(status: dict) -> dict:
    """Every job's result without its paths (which differ between sweep directories)."""
    drop = ("run_dir", "path")
    return {j["name"]: {k: v for k, v in j["result"].items() if k not in drop}
            for j in status["jobs"]}  # fmt: skip


def test_killed_sweep_resumes_and_ray_gives_the_same_runs(tmp_path):
    spec = spec_from_dict(TINY, "tiny").validate()
    a = tmp_path / "a"

    class Killed(KeyboardInterrupt):
        pass

    def kill_after_teacher(event, state, states):
        if event == "done" and state.job.kind == "teacher":
            raise Killed

    # One process: ready jobs run in list order, so the sweep dies after the dataset, both random
    # scores and the teacher, before the from-scratch run (listed after the student).
    with pytest.raises(Killed):
        run_sweep(spec, a, workers=1, progress=False, on_event=kill_after_teacher)
    status = json.loads((a / "sweep.json").read_text())
    first = {j["name"] for j in status["jobs"] if j["state"] == "done"}
    assert first == {"collect:toy/chain", "random:toy/chain", "random:toy/catch",
                     "teacher:toy/chain"}  # fmt: skip
    teacher_final = a / "teachers" / "toy_chain" / "final.json"
    stamp = os.stat(teacher_final).st_mtime_ns

    # Rerun on a pool of 2 processes: the finished jobs are skipped, the rest run.
    status = run_sweep(spec, a, workers=2, progress=False)
    skipped = {j["name"] for j in status["jobs"] if j["skipped"]}
    assert skipped == first and os.stat(teacher_final).st_mtime_ns == stamp
    assert status["counts"]["done"] == 8
    summary = status["experiments"]["toy/catch"]
    assert {(r["condition"], r["seed"]) for r in summary["finetune"]} == {
        ("xtra", 0),
        ("efficientzero", 0),
    }
    assert summary["student"]["zero_shot"] is not None and "toy/chain" in summary["teachers"]

    # The same sweep as Ray tasks on a local 2-CPU cluster: the same numbers, run by run.
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             object_store_memory=80 * 1024**2)  # fmt: skip
    try:
        on_ray = run_sweep(spec, tmp_path / "b", backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert on_ray["counts"]["done"] == 8 and not any(j["skipped"] for j in on_ray["jobs"])
    assert _numbers(on_ray) == _numbers(status)
    # The learning curves too (every column but the wall clock).
    curves = [
        [line.rsplit(",", 1)[0] for line in (d / "finetune/toy_catch/xtra-s0/eval.csv").open()]
        for d in (a, tmp_path / "b")
    ]
    assert curves[0] == curves[1] and len(curves[0]) > 2
    # ... and the same report: every table of `xtra report`, byte for byte.
    tables = []
    for d in (a, tmp_path / "b"):
        assert main(["report", str(d), "--out", str(d / "report"), "--reps", "50"]) == 0
        tables.append({p.name: p.read_text() for p in sorted((d / "report/tables").iterdir())})
    assert tables[0] == tables[1] and "aggregates_raw.md" in tables[0]


def test_ray_is_imported_only_by_the_ray_backend():
    """Users who run locally need no Ray: no module imports it at load time."""
    import ast
    from pathlib import Path

    import xtra

    for path in sorted(Path(xtra.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            assert not any(n.split(".")[0] == "ray" for n in names), path


def test_a_pool_worker_ends_when_its_parent_is_gone():
    """The watchdog of every pool worker: told a parent that is not (or no longer) its parent,
    the process ends at once with code 1 instead of sleeping on for 60 s."""
    import subprocess
    import sys
    import time

    code = (
        "import time; from xtra.pipeline.scheduler import exit_with_parent; "
        "exit_with_parent(-1); time.sleep(60)"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], timeout=55)
    assert done.returncode == 1 and time.perf_counter() - t0 < 55
