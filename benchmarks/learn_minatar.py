"""Does EfficientZero learn on MinAtar on a laptop? Return against env steps and wall clock.

For each game: the uniform-random policy's score under the evaluation protocol, then `xtra train`
with the `cpu` preset for a wall-clock budget (periodic evaluations give the curve), then the final
evaluation. A game counts as "beats random" when the final mean exceeds the random mean by more than
3 standard errors of the difference. Prints a table, writes JSON and a PNG of the curves.

    python benchmarks/learn_minatar.py --minutes 30
    python benchmarks/learn_minatar.py --games breakout freeway --minutes 10 --set search.num_simulations=8

Freeway runs with a longer random warm-up (GAME_OVERRIDES; `--no-game-overrides` for the bare
preset): its only reward needs ~9 consecutive UP steps, which the 500 random transitions of the
`cpu` preset almost never contain (benchmarks/RESULTS.md, "Learning on MinAtar").
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from xtra.act.evaluate import evaluate, evaluation_kwargs
from xtra.config import make_config
from xtra.learn.train import train
from xtra.report.curves import eval_curve, plot_curves

GAMES = ("breakout", "asterix", "freeway", "seaquest", "space_invaders")

# 16,000 uniform-random steps (8 whole episodes) hold about two crossings of the road: enough for
# the value to learn that UP leads to reward. Under the preset's pacing (about one env step per
# training step, counted from the warm-up) a 25-minute run then trains on those steps alone.
GAME_OVERRIDES = {"minatar/freeway": ("replay.start_transitions=16000",)}


def z_score(a: np.ndarray, b: np.ndarray) -> float:
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    diff = float(np.mean(a) - np.mean(b))
    return diff / se if se > 0 else (math.inf if diff > 0 else 0.0)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--games", nargs="+", default=list(GAMES))
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget per game")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument(
        "--no-game-overrides",
        action="store_true",
        help="the bare `cpu` preset on every game (no per-game GAME_OVERRIDES)",
    )
    p.add_argument("--runs", default="runs/learn_minatar")
    p.add_argument("--out", default="benchmarks/out/learn_minatar.json")
    p.add_argument("--plot", default="benchmarks/out/learn_minatar.png")
    args = p.parse_args()
    # The time budget, not the step count, ends each run.
    base = ["schedule.training_steps=1000000", "schedule.env_steps=1000000", f"seed={args.seed}"]
    results = []
    for name in args.games:
        game = name if name.startswith("minatar/") else f"minatar/{name}"
        per_game = [] if args.no_game_overrides else list(GAME_OVERRIDES.get(game, ()))
        cfg = make_config("cpu", overrides=base + per_game + args.overrides)
        rand = evaluate(
            None,
            game,
            policy="random",
            max_steps=cfg.eval.final_max_steps,
            **{**evaluation_kwargs(cfg), "seed": args.seed},
        )
        run_dir = Path(args.runs) / f"{game.replace('/', '_')}-s{args.seed}"
        res = train(game, cfg, run_dir, progress=False, max_seconds=args.minutes * 60)
        final = json.loads((run_dir / "final.json").read_text())
        scores = np.array(
            [
                float(r["score"])
                for r in csv.DictReader(open(run_dir / "eval.csv"))
                if r["kind"] == "final"
            ]
        )
        z = z_score(scores, rand.scores)
        results.append(
            {
                "game": game,
                "random_mean": rand.mean,
                "random_std": rand.std,
                "final_mean": float(scores.mean()),
                "final_std": float(scores.std()),
                "z_vs_random": z,
                "beats_random": bool(z > 3),
                "env_steps": final["env_steps"],
                "training_steps": final["steps"],
                "game_overrides": per_game,
                "wall_s": final["wall_s"],
                "curve": [dataclasses.asdict(p) for p in eval_curve(run_dir)],
                "run_dir": str(res.run_dir),
            }
        )
        print(
            f"{game}: random {rand.mean:.2f}, EfficientZero {scores.mean():.2f} after {final['env_steps']} env steps "
            f"({final['wall_s'] / 60:.1f} min), z = {z:.1f}",
            flush=True,
        )

    print(
        f"\n{'game':24s} {'random':>8s} {'EZ (cpu)':>9s} {'z':>6s} {'env steps':>10s} {'minutes':>8s} beats random"
    )
    for r in results:
        print(
            f"{r['game']:24s} {r['random_mean']:8.2f} {r['final_mean']:9.2f} {r['z_vs_random']:6.1f} "
            f"{r['env_steps']:10d} {r['wall_s'] / 60:8.1f} {r['beats_random']}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"minutes": args.minutes, "overrides": args.overrides, "results": results}, indent=2
        )
        + "\n"
    )
    curves = [(r["game"], eval_curve(r["run_dir"]), r["random_mean"]) for r in results]
    plot = Path(args.plot)
    plot_curves(curves, plot)
    plot_curves(curves, plot.with_name(plot.stem + "_wall.png"), x="wall_s")
    print(f"wrote {out}, {plot} and {plot.with_name(plot.stem + '_wall.png')}")


if __name__ == "__main__":
    main()
