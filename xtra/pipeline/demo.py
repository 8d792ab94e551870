"""`xtra demo` / `make demo`: the whole XTRA pipeline on the catch task family in about 10 minutes.

One seed of :func:`xtra.pipeline.experiment.run_experiment` on the task family of
:mod:`xtra.envs.families`, whose relations are known by construction: random-policy datasets of
two related sources (``catch-colors``: the target's dynamics in other colours; ``catch-wide``: a
wider paddle) and of one opposed game (``catch-avoid``: the target's look and dynamics, reward
reversed), one offline teacher per related source, one distilled student, then finetuning on the
held-out target ``family/catch`` two ways with the same env-step budget -- XTRA (the pretrained
student, trained on the target and on all three datasets, re-weighted by Eq. 2) and EfficientZero
from scratch. It prints the results table and the sample-efficiency table (env steps to 90% of
the optimum, area under the normalised learning curve) and saves the learning curves over env
steps and the task weights per source, with the accumulated estimator's weights beside the
paper's rule. The numbers are what a few minutes of training and one seed give: the
multi-seed experiment is ``benchmarks/transfer_family.py`` (benchmarks/RESULTS.md).

MinAtar and Atari stay as recipes (``xtra distill --recipe minatar-breakout``,
``benchmarks/transfer_minatar.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

from xtra.envs.families import exact_returns
from xtra.errors import XtraError
from xtra.pipeline.experiment import ExperimentSpec, run_experiment
from xtra.report.transfer import (
    plot_finetune_curves,
    plot_task_weights,
    results_table,
    sample_efficiency,
)

TARGET = "family/catch"
SOURCES = ("family/catch-colors", "family/catch-wide")
OPPOSED = ("family/catch-avoid",)
CONDITIONS = ("xtra+extra", "efficientzero")
ENV_STEPS_PER_UPDATE = 4  # the family is short of data, not of updates (docs/training.md)
DATA_STEPS = 5000
TEACHER_STEPS = 500
DISTILL_STEPS = 500
FINETUNE_ENV_STEPS = 4000  # the first ~720 are the random warm-up (replay.start_transitions)
THRESHOLD = 0.9
# Short evaluations: 8 games of 45 steps.
EVAL = ("eval.num_episodes=8",)


def demo_spec(minutes: float = 10.0, workers: int = 2, seed: int = 0) -> ExperimentSpec:
    """The demo's experiment. Budgets are steps; ``minutes`` only caps each stage (teachers 17%,
    the student beside EfficientZero 22%, XTRA's finetuning 58%; data, evaluations and start-up
    take the rest) so that a slow machine still ends on time, with a note in the table when a
    run stopped short of its budget."""
    if not math.isfinite(minutes) or minutes <= 0:
        raise XtraError(f"--minutes must be > 0, got {minutes:g}")
    updates = FINETUNE_ENV_STEPS // ENV_STEPS_PER_UPDATE
    cycle = max(updates // 8, 1)
    return ExperimentSpec(
        sources=SOURCES,
        target=TARGET,
        preset="cpu",
        overrides=(
            f"schedule.env_steps_per_update={ENV_STEPS_PER_UPDATE}",
            # The demo was sized (3 seeds, benchmarks/RESULTS.md) with acting at temperature 1
            # for its whole 1,000 updates, before the `cpu` preset's schedule became relative.
            "search.temperature_progress=false",
            "search.temperature_steps=[10000, 15000]",
            # ... and with SGD at lr 0.1, before the `cpu` preset moved to Adam.
            "optim.optimizer=sgd",
            "optim.lr=0.1",
            # teachers and the student: the final evaluation only
            f"eval.interval={TEACHER_STEPS + DISTILL_STEPS}",
            f"seed={seed}",
        ),
        data_steps=DATA_STEPS,
        teacher_steps=TEACHER_STEPS,
        distill_steps=DISTILL_STEPS,
        finetune_env_steps=FINETUNE_ENV_STEPS,
        teacher_minutes=0.17 * minutes,
        distill_minutes=0.22 * minutes,
        finetune_minutes=0.58 * minutes,
        conditions=CONDITIONS,
        extra_offline=OPPOSED,
        seeds=(seed,),
        workers=workers,
        eval_overrides=EVAL,
        # Task weights from 1/8 of the run, every 1/8, measuring a tenth of each cycle (the
        # measurement was 40% of XTRA's time at a fifth; RESULTS.md, "Sizing make demo");
        # ten evaluations over the run.
        finetune_overrides=(
            f"transfer.task_weight_start={cycle}",
            f"transfer.task_weight_cycle={cycle}",
            f"transfer.task_weight_window={max(cycle // 10, 1)}",
            f"eval.interval={max(updates // 10, 1)}",
        ),
    )


def efficiency_table(summary: dict, threshold: float = THRESHOLD) -> str:
    """Markdown: per finetuning run, env steps to ``threshold`` of the optimum (censored at the
    budget) and the area under its normalised learning curve (0 = random, 1 = optimal)."""
    random, optimal = exact_returns(summary["spec"]["target"].split("/", 1)[1])
    budget = summary["spec"]["finetune_env_steps"]
    lines = [
        f"| finetuning on {summary['spec']['target']} (random {random:.2f}, optimum "
        f"{optimal:.2f}) | env steps to {threshold:.0%} of the optimum | AUC (normalised) "
        "| env steps run |",
        "|---|---|---|---|",
    ]
    for r in summary["finetune"]:
        eff = sample_efficiency(
            r["run_dir"], random=random, optimal=optimal, budget=budget, threshold=threshold
        )
        steps = f"{eff['steps_to_threshold']:.0f}" if eff["reached"] else f"not reached ({budget})"
        ran = eff.get("env_steps", budget)
        short = "" if ran >= budget else " (stopped on time)"
        lines.append(f"| {r['label']} | {steps} | {eff['auc']:.2f} | {ran}{short} |")
    return "\n".join(lines)


def run_demo(out: str | Path = "runs/demo", minutes: float = 10.0, workers: int = 2) -> dict:
    out = Path(out)
    spec = demo_spec(minutes, workers)
    print(
        f"XTRA demo: pretrain on {', '.join(spec.sources)} (+ offline data of "
        f"{', '.join(spec.extra_offline)}, whose reward opposes the target's), finetune on "
        f"{spec.target} (about {minutes:g} minutes with {workers} worker processes; runs in {out}/)",
        flush=True,
    )
    summary = run_experiment(spec, out)
    curves = plot_finetune_curves(summary, out / "finetune_curves.png")
    weights = plot_task_weights(summary, out / "task_weights.png", condition=CONDITIONS[0])
    print(
        f"\nResults after {summary['wall_s'] / 60:.1f} minutes on this machine (one seed, minutes "
        "of training: benchmarks/transfer_family.py is the experiment over seeds):\n"
    )
    print(results_table(summary))
    print()
    print(efficiency_table(summary))
    print(f"\ncurves: {curves}" + (f"\ntask weights: {weights}" if weights else ""))
    print(f"summary: {out / 'experiment.json'}")
    return summary
