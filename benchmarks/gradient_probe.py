"""Do related games' gradients point the same way on a real network, and at what batch size can
a measurement see it? (issue 18: the task weights measure nothing on the catch family.)

For each finished model and each game (a dataset per game, the target's included), the gradient
of the game's mean training loss over N samples, for several N. Per N and game, over
``--repeats`` draws:

* ``floor``: the noise floor, the cosine between the gradients of two disjoint N-sample draws of
  the same game (what a perfectly related game reaches at this N);
* ``cos``: the cosine between the game's gradient and the target's (independent draws), which is
  what Eq. 2 counts when N is the measurement batch;
* ``true``: ``cos / sqrt(floor_target * floor_game)``, the disattenuated cosine: for gradients
  that are an expectation plus independent noise, an estimate of the cosine between the two
  games' expected gradients that the noise does not shrink (it can leave [-1, 1] when the floors
  are near 0).

Each game's samples go through the network alone, in train mode with the running statistics
left as they were (:func:`~xtra.model.networks.frozen_running_stats`), as the separate-BatchNorm
measurement does. The sources' targets are read from the data (``data_targets``), as in
finetuning; the target's too with ``--target-targets data`` (the games then differ only in what
their data hold), or, with ``reanalyze``, from a search by a copy of the model, as finetuning
makes the target's (reanalysed share 1 here). Prints a table, writes JSON (``--out``).

    python benchmarks/gradient_probe.py runs/family-8k/student RUN ... \
        --data family/catch=DIR family/catch-colors=DIR ... --sizes 8 32 128 512 --repeats 4
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import torch

from xtra.config import apply_overrides
from xtra.learn.batch import to_learn_batch
from xtra.learn.loop import build_learner
from xtra.model.networks import frozen_running_stats
from xtra.rundir import load_model
from xtra.transfer.sources import open_dataset, parse_game_map
from xtra.transfer.targets import data_targets, offline_target_makers
from xtra.transfer.task_weights import gradient_cosines, per_task_gradients_reference


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(gradient_cosines(a, b[None], clamp=None)[0])


def game_gradient(learner, replay, make_targets, cfg, n: int, rng) -> torch.Tensor:
    """[P] gradient of the mean loss (per-sample total / K, PER weights 1) of n fresh samples."""
    tg = cfg.targets
    sample = replay.sample(
        n, unroll_steps=tg.unroll_steps, td_steps=tg.td_steps, auto_td_steps=None, rng=rng, beta=1.0
    )
    batch = to_learn_batch(
        sample,
        make_targets(sample, replay, rng),
        replay.action_ids,
        policy_size=cfg.model.policy_size,
        device=learner.device,
    )
    with frozen_running_stats(learner.model):
        terms = learner.losses(batch)
    per_sample = batch.weights * terms.total.float() / batch.actions.shape[1]
    one_group = torch.zeros(n, dtype=torch.int64)
    grads = per_task_gradients_reference(
        per_sample, one_group, 1, learner.parameters(), retain_graph=False
    )
    return grads[0].double()


def probe(
    model_path: str,
    data: dict[str, str],
    target: str,
    sizes: list[int],
    repeats: int,
    seed: int,
    target_targets: str,
) -> dict:
    model, cfg, _ = load_model(model_path, "cpu")
    cfg = apply_overrides(cfg, {"transfer.offline_value_target": "n_step"})
    learner = build_learner(model, cfg, torch.device("cpu"))
    replays = {g: open_dataset(p, g, cfg)[0] for g, p in data.items()}
    makers = {g: data_targets(cfg, "cpu") for g in data}
    if target_targets == "reanalyze":
        search_cfg = apply_overrides(cfg, {"transfer.offline_targets": "reanalyze"})
        makers.update(
            offline_target_makers(
                search_cfg, [target], copy.deepcopy(model), torch.device("cpu"), amp=False
            )
        )
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for n in sizes:
        rows: dict[str, dict[str, list[float]]] = {g: {"floor": [], "cos": []} for g in data}
        for _ in range(repeats):
            # Three independent draws per game: A and B give the floor, C meets the target's A.
            draws = {
                g: [game_gradient(learner, r, makers[g], cfg, n, rng) for _ in range(3)]
                for g, r in replays.items()
            }
            for g in data:
                rows[g]["floor"].append(cosine(draws[g][0], draws[g][1]))
                rows[g]["cos"].append(cosine(draws[target][0], draws[g][2]))
        floor_t = float(np.mean(rows[target]["floor"]))
        out[str(n)] = {}
        for g, r in rows.items():
            floor, cos = float(np.mean(r["floor"])), float(np.mean(r["cos"]))
            denom = math.sqrt(max(floor_t, 1e-12) * max(floor, 1e-12))
            out[str(n)][g] = {
                "floor": floor,
                "floor_sd": float(np.std(r["floor"])),
                "cos": cos,
                "cos_sd": float(np.std(r["cos"])),
                "true": cos / denom if floor_t > 0 and floor > 0 else float("nan"),
            }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model.pt files or finished run directories")
    ap.add_argument("--data", nargs="+", required=True, help="GAME=DATASET_DIR, the target's first")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-targets", choices=("data", "reanalyze"), default="data")
    ap.add_argument("--out", default="benchmarks/out/gradient_probe.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = parse_game_map(args.data, "--data")
    target = next(iter(data))
    result = {}
    for m in args.models:
        result[m] = probe(m, data, target, args.sizes, args.repeats, args.seed, args.target_targets)
        print(
            f"\n{m} (target {target}, its targets: {args.target_targets}; "
            f"mean over {args.repeats} draws)"
        )
        print(f"{'N':>5} {'game':<24} {'floor':>7} {'cos':>7} {'true':>7}")
        for n, games in result[m].items():
            for g, r in games.items():
                print(f"{n:>5} {g:<24} {r['floor']:7.3f} {r['cos']:7.3f} {r['true']:7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"target": target, "target_targets": args.target_targets, "models": result}, indent=1
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
