"""Does EfficientZero learn on a laptop? Final score against random, over seeds, with A/B variants.

For each game and seed: the uniform-random policy's score under the evaluation protocol (same
seeds), then `xtra train` with a preset (`cpu` by default) for a wall-clock budget (or the
preset's steps with `--minutes 0`), each run in its own process with one thread. A run "beats
random" when its final mean exceeds the random mean by more than 3 standard errors of the
difference (z > 3). With `--variant NAME=FIELD=VALUE;FIELD=VALUE` (repeatable; the first variant
is the reference) every variant runs on the same games, seeds and minutes, and the table gives
each variant's mean over seeds with a 95% bootstrap interval and its difference from the
reference with a paired bootstrap interval. Prints the tables, writes JSON and PNG curves.
`--final-episodes N` scores each finished model (and the random policy) on N episodes instead of
the preset's final evaluation, e.g. the 32 of issue 17's protocol where `cpu` plays 16; finished
run directories are read back and only re-evaluated (a new evaluation: its first episodes have
the same environment seeds, not the same search draws).

    python benchmarks/learn_minatar.py --minutes 25 --seeds 0 1 2
    python benchmarks/learn_minatar.py --games breakout space_invaders --minutes 5 --seeds 0 1 2 \\
        --variant cpu= --variant no-noise="targets.reanalyze_noise=false" --workers 2
    python benchmarks/learn_minatar.py --preset tiny --games toy/chain toy/catch --minutes 0 \\
        --seeds 0 1 2 3 4

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
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

GAMES = ("breakout", "asterix", "freeway", "seaquest", "space_invaders")

# 16,000 uniform-random steps (8 whole episodes) hold about two crossings of the road: enough for
# the value to learn that UP leads to reward. Under the preset's pacing (about one env step per
# training step, counted from the warm-up) a 25-minute run then trains on those steps alone.
GAME_OVERRIDES = {"minatar/freeway": ("replay.start_transitions=16000",)}


def z_score(a: np.ndarray, b: np.ndarray) -> float:
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    diff = float(np.mean(a) - np.mean(b))
    return diff / se if se > 0 else (math.inf if diff > 0 else 0.0)


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n: int = 10_000) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``values`` [S]."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return [float(values.mean())] * 2
    means = values[rng.integers(len(values), size=(n, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _game_name(name: str) -> str:
    return name if "/" in name else f"minatar/{name}"


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def run_one(job: dict) -> dict:
    """One training run (in a worker process): the random baseline and the trained agent."""
    from xtra.act.evaluate import evaluate, evaluate_saved_model, evaluation_kwargs
    from xtra.config import make_config
    from xtra.learn.train import train
    from xtra.report.curves import eval_curve
    from xtra.rundir import read_final

    cfg = make_config(job["preset"], overrides=job["overrides"])
    protocol = evaluation_kwargs(cfg)
    if job["final_episodes"]:
        protocol["num_episodes"] = job["final_episodes"]
    rand = evaluate(
        None, job["game"], policy="random", max_steps=cfg.eval.final_max_steps, **protocol
    )
    seconds = job["minutes"] * 60 if job["minutes"] > 0 else None
    train(job["game"], cfg, job["run_dir"], progress=False, max_seconds=seconds)
    final = read_final(job["run_dir"])
    scores = np.array(
        [
            float(r["score"])
            for r in csv.DictReader(open(Path(job["run_dir"]) / "eval.csv"))
            if r["kind"] == "final"
        ]
    )
    if job["final_episodes"] and len(scores) != job["final_episodes"]:
        # The saved model under the run's own protocol on more (or fewer) episode seeds. The
        # first ones keep their environment seeds but not necessarily their moves: the search's
        # tie-breaking stream is one for the whole batch, so it depends on the batch size.
        res, _ = evaluate_saved_model(
            job["run_dir"], job["game"], episodes=job["final_episodes"], device="cpu"
        )
        scores = res.scores
    z = z_score(scores, rand.scores)
    return {
        **{k: job[k] for k in ("game", "seed", "variant", "run_dir")},
        "random_mean": rand.mean,
        "final_episodes": len(scores),
        "final_mean": float(scores.mean()),
        "final_std": float(scores.std()),
        "final_scores": scores.tolist(),
        "z_vs_random": z,
        "beats_random": bool(z > 3),
        "env_steps": final["env_steps"],
        "training_steps": final["steps"],
        "wall_s": final["wall_s"],
        "curve": [dataclasses.asdict(p) for p in eval_curve(job["run_dir"])],
    }


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: write NAME=FIELD=VALUE;FIELD=VALUE (or NAME=)")
    return name, [s.strip() for s in rest.split(";") if s.strip()]


def summarise(results: list[dict], variants: list[str], games: list[str]) -> list[dict]:
    """Per game and variant: mean over seeds with its interval, wins, and the paired difference
    from the first variant."""
    rng = np.random.default_rng(0)
    rows = []
    for game in games:
        ref = {
            r["seed"]: r["final_mean"]
            for r in results
            if r["game"] == game and r["variant"] == variants[0]
        }
        for v in variants:
            rs = sorted(
                (r for r in results if r["game"] == game and r["variant"] == v),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            finals = np.array([r["final_mean"] for r in rs])
            row = {
                "game": game,
                "variant": v,
                "seeds": [r["seed"] for r in rs],
                "finals": finals.tolist(),
                "mean": float(finals.mean()),
                "ci95": bootstrap_ci(finals, rng),
                "random_mean": float(np.mean([r["random_mean"] for r in rs])),
                "beats_random": sum(r["beats_random"] for r in rs),
                "env_steps": float(np.mean([r["env_steps"] for r in rs])),
                "training_steps": float(np.mean([r["training_steps"] for r in rs])),
            }
            paired = [r["final_mean"] - ref[r["seed"]] for r in rs if r["seed"] in ref]
            if v != variants[0] and paired:
                row["diff_vs_ref"] = float(np.mean(paired))
                row["diff_ci95"] = bootstrap_ci(np.array(paired), rng)
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--games", nargs="+", default=list(GAMES))
    p.add_argument("--preset", default="cpu")
    p.add_argument(
        "--minutes",
        type=float,
        default=25.0,
        help="wall-clock budget per run (0: the preset's steps)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variant", action="append", default=[], help="NAME=FIELD=VALUE;FIELD=VALUE")
    p.add_argument("--workers", type=int, default=1, help="runs at once, one core each")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="for every variant")
    p.add_argument(
        "--no-game-overrides",
        action="store_true",
        help="the bare preset on every game (no per-game GAME_OVERRIDES)",
    )
    p.add_argument(
        "--final-episodes",
        type=int,
        default=0,
        help="score each final model and the random policy on this many episodes "
        "(0: the preset's eval.num_episodes)",
    )
    p.add_argument("--runs", default="runs/learn_minatar")
    p.add_argument("--out", default="benchmarks/out/learn_minatar.json")
    p.add_argument("--plot", default=None, help="curves' PNG (default: --out with .png)")
    args = p.parse_args()
    if args.final_episodes < 0:
        raise SystemExit(f"--final-episodes {args.final_episodes}: give 0 or a positive count")
    variants = [parse_variant(v) for v in args.variant] or [(args.preset, [])]
    games = [_game_name(g) for g in args.games]
    # With a time budget, the clock (not the step count) ends each run.
    budget = (
        ["schedule.training_steps=1000000", "schedule.env_steps=1000000"]
        if args.minutes > 0
        else []
    )
    jobs = []
    for game in games:
        per_game = [] if args.no_game_overrides else list(GAME_OVERRIDES.get(game, ()))
        for seed in args.seeds:
            for name, over in variants:
                jobs.append(
                    {
                        "game": game,
                        "seed": seed,
                        "variant": name,
                        "preset": args.preset,
                        "minutes": args.minutes,
                        "final_episodes": args.final_episodes,
                        "overrides": [*budget, f"seed={seed}", *per_game, *args.overrides, *over],
                        "run_dir": str(
                            Path(args.runs) / name / f"{game.replace('/', '_')}-s{seed}"
                        ),
                    }
                )
    with ProcessPoolExecutor(
        max_workers=args.workers, mp_context=get_context("spawn"), initializer=_one_thread
    ) as pool:
        results = []
        for r in pool.map(run_one, jobs):
            results.append(r)
            print(
                f"{r['game']} seed {r['seed']} {r['variant']}: random {r['random_mean']:.2f}, "
                f"final {r['final_mean']:.2f} after {r['env_steps']} env steps / "
                f"{r['training_steps']} updates ({r['wall_s'] / 60:.1f} min), z = {r['z_vs_random']:.1f}",
                flush=True,
            )
    names = [n for n, _ in variants]
    rows = summarise(results, names, games)
    print(
        f"\n{'game':22s} {'variant':16s} {'random':>7s} {'mean':>7s} {'95% CI':>15s} "
        f"{'z>3':>5s} {'updates':>8s} {'diff vs ' + names[0]:>18s} {'95% CI':>15s}"
    )
    for r in rows:
        diff = (
            f"{r['diff_vs_ref']:18.2f} [{r['diff_ci95'][0]:6.2f}, {r['diff_ci95'][1]:6.2f}]"
            if "diff_vs_ref" in r
            else ""
        )
        print(
            f"{r['game']:22s} {r['variant']:16s} {r['random_mean']:7.2f} {r['mean']:7.2f} "
            f"[{r['ci95'][0]:6.2f}, {r['ci95'][1]:6.2f}] {r['beats_random']}/{len(r['seeds'])}   "
            f"{r['training_steps']:8.0f} {diff}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "preset": args.preset,
                "minutes": args.minutes,
                "seeds": args.seeds,
                "variants": dict(variants),
                "overrides": args.overrides,
                "summary": rows,
                "runs": results,
            },
            indent=2,
        )
        + "\n"
    )
    from xtra.report.curves import eval_curve, plot_curves

    curves = [
        (f"{r['game']} {r['variant']} s{r['seed']}", eval_curve(r["run_dir"]), r["random_mean"])
        for r in results
    ]
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    plot_curves(curves, plot)
    plot_curves(curves, plot.with_name(plot.stem + "_wall.png"), x="wall_s")
    print(f"wrote {out}, {plot} and {plot.with_name(plot.stem + '_wall.png')}")


if __name__ == "__main__":
    main()
