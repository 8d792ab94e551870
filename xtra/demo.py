"""`xtra demo` / `make demo`: the furthest pipeline that exists, on a small built-in default.

Today that is single-task EfficientZero (issue 4): train on `toy/chain` (a known optimum of 1)
with the `tiny` preset, then on `minatar/breakout` with the `cpu` preset for a few minutes, and
compare each with the uniform-random policy under the same evaluation protocol. The cross-task
pipeline (datasets -> teachers -> distillation -> finetuning) joins the demo when `xtra finetune`
lands. The numbers are whatever this budget gives on this machine, labelled as such.
"""

from __future__ import annotations

from pathlib import Path

from xtra.config import make_config
from xtra.evaluate import evaluate_random
from xtra.learn.train import train
from xtra.report.curves import eval_curve, plot_curves


def run_demo(
    out: str | Path = "runs/demo", minutes: float = 4.0, progress: bool = True
) -> list[dict]:
    out = Path(out)
    jobs = [
        ("toy/chain", make_config("tiny"), None),
        (
            "minatar/breakout",
            make_config(
                "cpu",
                overrides=[
                    "optim.training_steps=100000",
                    "optim.env_steps=100000",
                    "eval.num_episodes=8",
                ],
            ),
            minutes * 60,
        ),
    ]
    rows, curves = [], []
    for game, cfg, seconds in jobs:
        print(
            f"\n== EfficientZero on {game} (preset {cfg.preset}{f', {minutes:g} min' if seconds else ''})"
        )
        rand = evaluate_random(game, cfg, max_steps=cfg.eval.final_max_steps)
        run_dir = out / game.replace("/", "_")
        result = train(game, cfg, run_dir, progress=progress, max_seconds=seconds)
        points = eval_curve(run_dir)
        final = points[-1]
        rows.append(
            {
                "game": game,
                "preset": cfg.preset,
                "random": rand.mean,
                "final": final.mean,
                "env_steps": final.env_steps,
                "minutes": final.wall_s / 60,
                "run_dir": str(result.run_dir),
            }
        )
        curves.append((f"{game} ({cfg.preset})", points, rand.mean))
    plot = plot_curves(curves, out / "curves.png")
    print("\nResults (this machine, this budget; single-task EfficientZero, not yet XTRA):")
    print(
        f"{'game':18s} {'preset':6s} {'random':>8s} {'EfficientZero':>14s} {'env steps':>10s} {'minutes':>8s}"
    )
    for r in rows:
        print(
            f"{r['game']:18s} {r['preset']:6s} {r['random']:8.2f} {r['final']:14.2f} {r['env_steps']:10d} {r['minutes']:8.1f}"
        )
    print(f"\nlearning curves: {plot}\nrun directories: {out}/")
    return rows
