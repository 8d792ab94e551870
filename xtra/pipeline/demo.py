"""`xtra demo` / `make demo`: the whole XTRA pipeline on MinAtar in about 15 minutes on 2 cores.

One seed of :func:`xtra.pipeline.experiment.run_experiment` on the ``minatar-breakout`` recipe:
random-policy datasets of four MinAtar games, one offline teacher per game, one distilled
student, then finetuning on the held-out fifth game (Breakout) three ways -- XTRA (pretrained
student + offline data + task weights), XTRA without pretraining, and EfficientZero from scratch --
each with the same wall-clock budget. Prints the results table and saves the curves and task
weights in the run directory. The numbers are what this budget gives on this machine: minutes of
training, one seed, not the paper's setting.
"""

from __future__ import annotations

from pathlib import Path

from xtra.errors import XtraError
from xtra.pipeline.experiment import ExperimentSpec, run_experiment
from xtra.pipeline.recipes import load_recipe
from xtra.report.transfer import plot_finetune_curves, plot_task_weights, results_table

RECIPE = "minatar-breakout"
# Evaluations short enough for the budget: 8 episodes of at most 1,000 steps.
EVAL = ("eval.num_episodes=8", "eval.final_max_steps=1000", "eval.periodic_max_steps=500")
# A finetuning run gets a few hundred steps here: re-weight from step 100, every 100 steps
# (measuring the first 20), instead of the preset's 2,000 / 1,000 / 100.
TASK_WEIGHTS = (
    "transfer.task_weight_start=100",
    "transfer.task_weight_cycle=100",
    "transfer.task_weight_window=20",
)


def demo_spec(minutes: float = 15.0, workers: int = 2, seed: int = 0) -> ExperimentSpec:
    """The demo's experiment. Stage budgets are shares of ``minutes`` sized for 2 workers: four
    teachers in two rounds of 15%, the student beside EfficientZero (20%), the two finetuning
    runs from the student (20%); data, evaluations and start-up take the rest. One worker takes
    about twice as long."""
    if minutes <= 0:
        raise XtraError(f"--minutes must be > 0, got {minutes:g}")
    recipe = load_recipe(RECIPE)
    return ExperimentSpec(
        sources=recipe.pretrain,
        target=recipe.target,
        preset=recipe.preset,
        overrides=(*recipe.overrides, *TASK_WEIGHTS, f"seed={seed}"),
        data_steps=5000,
        teacher_steps=100_000,
        distill_steps=100_000,
        finetune_env_steps=100_000,
        teacher_minutes=0.15 * minutes,
        distill_minutes=0.2 * minutes,
        finetune_minutes=0.2 * minutes,
        conditions=("xtra", "no_pretraining", "efficientzero"),
        seeds=(seed,),
        workers=workers,
        eval_overrides=EVAL,
    )


def run_demo(out: str | Path = "runs/demo", minutes: float = 15.0, workers: int = 2) -> dict:
    out = Path(out)
    spec = demo_spec(minutes, workers)
    print(
        f"XTRA demo: pretrain on {', '.join(spec.sources)}, finetune on {spec.target} "
        f"(about {minutes:g} minutes with {workers} worker processes; runs in {out}/)",
        flush=True,
    )
    summary = run_experiment(spec, out)
    curves = plot_finetune_curves(summary, out / "finetune_curves.png")
    weights = plot_task_weights(summary, out / "task_weights.png")
    print(
        f"\nResults after {summary['wall_s'] / 60:.1f} minutes on this machine (budgets of minutes, "
        "one seed: a smoke test of the pipeline, not the paper's numbers):\n"
    )
    print(results_table(summary))
    print(f"\ncurves: {curves}" + (f"\ntask weights: {weights}" if weights else ""))
    print(f"summary: {out / 'experiment.json'}")
    return summary
