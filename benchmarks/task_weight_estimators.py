"""Task-weight estimators side by side on synthetic gradients with known relations (issue 18).

The target's expected gradient g (P entries), and offline sources whose expected gradient is g
(related), 0.5 g + an orthogonal part (half-related), -g (opposed) or orthogonal to g; every
measured gradient is its expectation plus Gaussian noise of ``sigma`` per entry (the signal is
about 1 per entry), measured as two halves as ``TaskWeights.weights_for`` does. For each noise
level and seed, one window of ``--window`` measurements goes through ``TaskWeights`` with the
paper's per-step rule and with the accumulated estimator; the table gives the mean eta of each
source over seeds, the mean per-step cross-game cosine and the mean noise floor (the cosine
between two halves of the same game).

    python benchmarks/task_weight_estimators.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from xtra.transfer.task_weights import TaskWeights

SOURCES = ("related", "half-related", "opposed", "orthogonal")


def expected_gradients(p: int, gen: torch.Generator) -> list[torch.Tensor]:
    """[target, related, half-related, opposed, orthogonal], each of norm about sqrt(p)."""
    g = torch.randn(p, generator=gen, dtype=torch.float64)
    o = torch.randn(p, generator=gen, dtype=torch.float64)
    o -= (o @ g) / (g @ g) * g
    o *= g.norm() / o.norm()
    half = 0.5 * g + (0.75**0.5) * o
    return [g, g, half, -g, o]


def one_window(estimator: str, sigma: float, seed: int, p: int, window: int) -> TaskWeights:
    gen = torch.Generator().manual_seed(seed)
    expected = expected_gradients(p, gen)
    tw = TaskWeights(
        list(SOURCES),
        enabled=True,
        start=0,
        cycle=window,
        window=window,
        threshold=0.1,
        smoothing=1.0,
        round_to=None,
        clamp=None,
        estimator=estimator,
    )
    noise = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(window):
        halves = torch.stack(
            [
                e + sigma * torch.randn(p, generator=noise, dtype=torch.float64)
                for e in expected
                for _ in range(2)
            ]
        )
        tw.observe_gradients((halves[0::2] + halves[1::2]) / 2, halves)
    tw.maybe_update(window)
    return tw


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 3.0, 10.0, 30.0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--params", type=int, default=4000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/out/task_weight_estimators.json")
    args = ap.parse_args()
    rows = []
    for sigma in args.sigmas:
        for estimator in ("per_step", "accumulated"):
            etas, cos, floors = [], [], []
            for seed in range(args.seeds):
                tw = one_window(estimator, sigma, seed, args.params, args.window)
                rec = tw.history[-1]
                etas.append(rec.eta)
                cos.append(rec.mean_cos)
                floors.append(rec.target_floor)
            rows.append(
                {
                    "sigma": sigma,
                    "estimator": estimator,
                    "eta": dict(zip(SOURCES, np.mean(etas, axis=0).tolist())),
                    "eta_min": dict(zip(SOURCES, np.min(etas, axis=0).tolist())),
                    "eta_max": dict(zip(SOURCES, np.max(etas, axis=0).tolist())),
                    "mean_cos": dict(zip(SOURCES, np.mean(cos, axis=0).tolist())),
                    "target_noise_floor": float(np.mean(floors)),
                }
            )
    head = " ".join(f"{s:>13s}" for s in SOURCES)
    print(f"{'sigma':>6s} {'floor':>6s} {'estimator':12s} {head}   (mean eta over seeds; cos)")
    for r in rows:
        cells = " ".join(f"{r['eta'][s]:5.2f} ({r['mean_cos'][s]:+.2f})".rjust(13) for s in SOURCES)
        print(f"{r['sigma']:6.1f} {r['target_noise_floor']:6.2f} {r['estimator']:12s} {cells}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
