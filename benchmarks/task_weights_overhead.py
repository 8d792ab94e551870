"""Cost of one task-weight measurement step vs one plain update (docs/task_weights.md).

A measurement step needs G = 1 + M gradients (target + each offline game) besides the update.
Times, per step, on one CPU thread: the plain update (Learner.update), the G gradients from the
shared forward pass by a loop of G backward passes (reference) or by one vmapped backward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from xtra.config import cpu, tiny
from xtra.learn.batch import LearnBatch
from xtra.learn.loop import build_learner
from xtra.learn.loss import Targets
from xtra.model.networks import EfficientZeroNet
from xtra.transfer.task_weights import per_task_gradients, per_task_gradients_reference


def make(preset: str, batch: int, games: int, seed: int = 0):
    cfg = {"tiny": tiny, "cpu": cpu}[preset]()
    torch.manual_seed(seed)
    model = EfficientZeroNet(cfg.model, (12, 10, 10))
    k, s = cfg.targets.unroll_steps, 4
    g = torch.Generator().manual_seed(seed)
    policy = torch.rand(batch, k + 1, 18, generator=g)
    b = LearnBatch(
        obs=torch.randint(0, 256, (batch, s + k, 3, 10, 10), generator=g, dtype=torch.uint8),
        actions=torch.randint(0, 18, (batch, k), generator=g),
        mask=torch.ones(batch, k + 1),
        targets=Targets(
            value=torch.randn(batch, k + 1, generator=g),
            value_prefix=torch.randn(batch, k, generator=g),
            policy=policy / policy.sum(-1, keepdim=True),
        ),
        weights=torch.ones(batch),
        # half target (group 0), half split evenly over the offline games (App. D)
        groups=torch.cat(
            [torch.zeros(batch // 2), 1 + torch.arange(batch - batch // 2) % games]
        ).long(),
    )
    return cfg, model, b


def timeit(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms per call; the functions run round-robin so that a changing load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1000 for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny", choices=("tiny", "cpu"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, model, batch = make(args.preset, args.batch, args.games)
    learner = build_learner(model, cfg, torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    k = batch.actions.shape[1]
    num_groups = 1 + args.games

    def update():
        learner.update(batch, step=1000)

    def forward():
        return learner.losses(batch).total

    def one_backward():
        loss = (batch.weights * learner.losses(batch).total).mean() / k
        torch.autograd.grad(loss, params, allow_unused=True)

    def loop():
        per_task_gradients_reference(
            batch.weights * forward() / k, batch.groups, num_groups, params, retain_graph=False
        )

    def vmapped():
        per_task_gradients(
            batch.weights * forward() / k, batch.groups, num_groups, params, retain_graph=False
        )

    r = args.repeats
    t = timeit(
        {
            "update": update,
            "forward": forward,
            "forward+1 backward": one_backward,
            "forward+G backward (loop)": loop,
            "forward+G backward (vmap)": vmapped,
        },
        r,
    )
    fwd = t["forward"]
    loop_g = t["forward+G backward (loop)"] - fwd
    vmap_g = t["forward+G backward (vmap)"] - fwd
    rows = {
        "G grads, loop (forward shared)": loop_g,
        "G grads, vmap (forward shared)": vmap_g,
        "measurement step, vmap, shared fwd": t["update"] + vmap_g,
        "measurement step, vmap, own fwd": t["update"] + fwd + vmap_g,
    }
    print(
        f"preset={args.preset} B={args.batch} M={args.games} (G={num_groups}) "
        f"params={sum(p.numel() for p in params)} threads=1, median of {r}"
    )
    print(f"{'what':<40}{'ms':>9}{'x update':>10}")
    for name, ms in {**t, **rows}.items():
        print(f"{name:<40}{ms:>9.1f}{ms / t['update']:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "ms": {**t, **rows}}, f, indent=1)


if __name__ == "__main__":
    main()
