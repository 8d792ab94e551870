"""CPU-scale XTRA pretraining demonstration on MinAtar (issue #6): data -> teachers -> student.

For each pretraining game: collect a dataset (uniform-random actions by default, or the search
policy of a model with --behaviour-root), train an offline EfficientZero teacher on it, then
distill all teachers into one student and evaluate everything in the real games (plus the
student zero-shot on the recipe's held-out target). Prints one table and writes JSON.

    python benchmarks/pretrain_minatar.py                          # recipe configs/minatar.yaml
    python benchmarks/pretrain_minatar.py --tiny --games toy/catch toy/chain   # seconds (tests)

Success criteria of the issue: every teacher beats random; the student reaches >= 80% of its
teacher's score on each game (``student/teacher`` column, measured above the random score).
Every stage resumes, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from xtra.config import make_config
from xtra.data.collect import collect
from xtra.evaluate import evaluate_random
from xtra.transfer.distill import distill
from xtra.transfer.recipes import game_dir, load_recipe
from xtra.transfer.teacher import train_teacher
from xtra.transfer.zero_shot import zero_shot

TINY = [
    "optim.training_steps=20",
    "optim.batch_size=16",
    "optim.checkpoint_interval=10",
    "optim.log_interval=10",
    "eval.interval=1000",
    "eval.num_episodes=2",
    "eval.final_max_steps=50",
    "search.num_simulations=4",
    "env.num_envs=2",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="minatar", help="recipe naming the games (configs/)")
    ap.add_argument("--games", nargs="+", help="pretraining games (default: the recipe's)")
    ap.add_argument("--target", help="held-out game for zero-shot (default: the recipe's)")
    ap.add_argument("--preset", help="config preset (default: the recipe's; tiny with --tiny)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    ap.add_argument("--data-steps", type=int, default=50_000, help="agent steps per dataset")
    ap.add_argument("--behaviour-root", help="collect with ROOT/<game>/model.pt instead of random")
    ap.add_argument("--teacher-steps", type=int, help="teacher training steps (default: preset)")
    ap.add_argument("--distill-steps", type=int, help="student training steps (default: preset)")
    ap.add_argument("--teacher-seconds", type=float, help="wall-clock budget per teacher")
    ap.add_argument("--distill-seconds", type=float, help="wall-clock budget of the student")
    ap.add_argument("--targets", default="teacher", choices=("teacher", "self", "bc"))
    ap.add_argument("--work-dir", default="runs/pretrain_minatar", help="datasets and runs")
    ap.add_argument("--out", default="benchmarks/out/pretrain_minatar.json", help="JSON result")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke setting")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    recipe = load_recipe(args.recipe)
    games = [g for g in (args.games or recipe.pretrain)]
    target = args.target if args.target is not None else (None if args.games else recipe.target)
    preset = args.preset or ("tiny" if args.tiny else recipe.preset)
    base = [*recipe.overrides] if not args.tiny else [*TINY]
    data_steps = 200 if args.tiny else args.data_steps
    cfg = make_config(preset, overrides=[*base, *args.overrides])
    work = Path(args.work_dir)
    t0 = time.perf_counter()

    def with_steps(n: int | None):
        return cfg if n is None else make_config(preset, overrides=[*base, *args.overrides,
                                                                   f"optim.training_steps={n}"])  # fmt: skip

    data, teachers, rows = {}, {}, {}
    for g in games:
        policy = "random"
        if args.behaviour_root:
            policy = f"checkpoint:{Path(args.behaviour_root) / game_dir(g) / 'model.pt'}"
        ds = collect(g, cfg, work / "data" / game_dir(g), steps=data_steps, policy=policy,
                     chunk_steps=max(data_steps // 4, 1000))  # fmt: skip
        data[g] = ds.path
        res = train_teacher(ds.path, with_steps(args.teacher_steps), work / "teachers" / game_dir(g),
                            progress=not args.tiny, max_seconds=args.teacher_seconds)  # fmt: skip
        teachers[g] = res.run_dir
        rnd = evaluate_random(g, cfg, max_steps=cfg.eval.final_max_steps)
        teacher_score = json.loads((res.run_dir / "final.json").read_text())["final"]["mean"]
        rows[g] = {"random": rnd.mean, "teacher": teacher_score, "transitions": ds.num_transitions}
        print(f"[{time.perf_counter() - t0:7.0f}s] {g}: random {rnd.mean:.2f}, teacher {teacher_score:.2f}",
              file=sys.stderr)  # fmt: skip

    student = distill(data, with_steps(args.distill_steps), work / f"student-{args.targets}",
                      teachers=teachers if args.targets == "teacher" else None,
                      targets=args.targets, progress=not args.tiny,
                      max_seconds=args.distill_seconds)  # fmt: skip
    finals = json.loads((student.run_dir / "final.json").read_text())["finals"]
    for g in games:
        r = rows[g]
        r["student"] = finals[g]["mean"]
        gain = r["teacher"] - r["random"]
        r["teacher_beats_random"] = bool(r["teacher"] > r["random"])
        r["student_over_teacher"] = (r["student"] - r["random"]) / gain if gain > 0 else None
    zero = None
    if target:
        res, _ = zero_shot(student.run_dir, target, max_steps=cfg.eval.final_max_steps,
                           policy="prior" if args.targets == "bc" else "search")  # fmt: skip
        zero = {"game": target, "student_zero_shot": res.mean,
                "random": evaluate_random(target, cfg, max_steps=cfg.eval.final_max_steps).mean}  # fmt: skip

    print(f"{'game':<24} {'random':>9} {'teacher':>9} {'student':>9} {'student/teacher':>16}")
    for g, r in rows.items():
        ratio = "-" if r["student_over_teacher"] is None else f"{r['student_over_teacher']:.2f}"
        print(f"{g:<24} {r['random']:>9.2f} {r['teacher']:>9.2f} {r['student']:>9.2f} {ratio:>16}")
    if zero:
        print(
            f"zero-shot {zero['game']}: student {zero['student_zero_shot']:.2f}, random {zero['random']:.2f}"
        )
    ok_teachers = all(r["teacher_beats_random"] for r in rows.values())
    ok_student = all((r["student_over_teacher"] or 0) >= 0.8 for r in rows.values())
    print(f"teachers beat random: {ok_teachers}; student >= 80% of teachers: {ok_student}")
    result = {
        "recipe": recipe.name,
        "games": rows,
        "zero_shot": zero,
        "targets": args.targets,
        "preset": preset,
        "overrides": [*base, *args.overrides],
        "data_steps": data_steps,
        "teachers_beat_random": ok_teachers,
        "student_at_least_80pct": ok_student,
        "wall_s": time.perf_counter() - t0,
        "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
