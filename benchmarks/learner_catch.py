"""How many updates the EfficientZero learner needs to learn ``toy/catch``'s reward, without search.

``toy/catch`` pays +1 or -1 on its fourth and last step, decided by the last move
(xtra/envs/toy.py). Every other signal of the game (values, then the search's policy) stands on
the model predicting that reward, so the updates it takes bound how fast any run can learn the
game. This benchmark trains the library's learner (``build_learner``: the preset's unroll,
losses, 1/K loss scaling, optimiser and schedule) on uniform-random games with exact targets
(returns to the end of each 4-step game, the stored uniform policy, value prefixes from the
data): no search, no self-play, no reanalysis. Every ``--every`` updates it measures, on fresh
games and in eval mode (as the search uses the model), the share of last-decision (state,
action) pairs whose predicted value prefix has the sign of the true reward. Always predicting
a miss scores about 0.8 (a random paddle is under the ball one time in five).

    python benchmarks/learner_catch.py --updates 1200 --seeds 0 1 2 \
        --variant "tiny=" --variant "lr0.25=optim.lr=0.25"

Prints, per variant and seed, the accuracy at each measurement and the first update at which it
reaches ``--threshold``; writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xtra.act.collect import collect
from xtra.config import Config, make_config
from xtra.envs import make_env
from xtra.learn.batch import to_learn_batch
from xtra.learn.loop import build_learner
from xtra.model.networks import EfficientZeroNet
from xtra.transfer.sources import open_dataset
from xtra.transfer.targets import data_targets

GAME = "toy/catch"
MOVES = np.array([0, 1, -1])  # paddle move of local actions NOOP, RIGHT, LEFT
SIZE = 5  # grid cells per side; frames draw each cell as 2x2 pixels


def last_decision_probe(cfg: Config, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` games after 3 random moves (ball on row 3): frames [n, S*3, 10, 10] in [0, 1] and
    the true reward of each local action, [n, 3] in {-1, +1}, decoded from the last frame."""
    env = make_env(GAME, cfg.env, num_envs=n, seed=seed, mode="train")
    rng = np.random.default_rng(seed)
    obs = env.reset()
    for _ in range(3):
        obs = env.step(rng.integers(0, 3, size=n)).obs
    env.close()
    frame = obs[:, -3:, ::2, ::2]  # [n, 3, 5, 5], one pixel per cell
    ball = frame[:, 0, SIZE - 2].argmax(-1)  # red on row 3
    paddle = frame[:, 1, SIZE - 1].argmax(-1)  # green on the bottom row
    moved = np.clip(paddle[:, None] + MOVES[None, :], 0, SIZE - 1)
    reward = np.where(moved == ball[:, None], 1.0, -1.0)
    return torch.as_tensor(obs).float() / 255.0, reward


def sign_accuracy(
    model: EfficientZeroNet, frames: torch.Tensor, reward: np.ndarray, action_ids: np.ndarray
) -> float:
    """Share of (state, action) pairs whose predicted value prefix has the true reward's sign."""
    model.eval()
    with torch.no_grad():
        root = model.initial_inference(frames)
        n = frames.shape[0]
        pred = np.stack(
            [
                model.recurrent_inference(
                    root.latent, root.lstm_state, torch.full((n,), int(a))
                ).value_prefix.numpy()
                for a in action_ids
            ],
            axis=1,
        )
    return float(((pred > 0) == (reward > 0)).mean())


def run_one(data: Path, preset: str, overrides: list[str], seed: int, args) -> dict:
    cfg = make_config(preset, overrides=[*overrides, f"seed={seed}"])
    if cfg.targets.td_steps < 4:
        raise SystemExit("targets.td_steps must cover a 4-step game (>= 4) for exact targets")
    replay, _ = open_dataset(data, GAME, cfg)
    action_ids = np.asarray(replay.action_ids)
    frames, reward = last_decision_probe(cfg, args.probe_games, seed=10_000)
    torch.manual_seed(cfg.seed)
    model = EfficientZeroNet(cfg.model, tuple(frames.shape[1:]))
    learner = build_learner(model, cfg, torch.device("cpu"))
    # The data's targets as offline training uses them; no bootstrap reaches past a 4-step game,
    # so the values are exact returns.
    targets = data_targets(cfg, "cpu")
    rng = np.random.default_rng(cfg.seed)
    curve, first, seconds = [], None, 0.0
    for step in range(1, args.updates + 1):
        sample = replay.sample(
            cfg.optim.batch_size,
            unroll_steps=cfg.targets.unroll_steps,
            td_steps=cfg.targets.td_steps,
            auto_td_steps=None,
            rng=rng,
            beta=1.0,
        )
        batch = to_learn_batch(
            sample,
            targets(sample, replay, rng),
            action_ids,
            policy_size=cfg.model.policy_size,
            device=torch.device("cpu"),
        )
        start = time.perf_counter()
        learner.update(batch, step)
        seconds += time.perf_counter() - start
        if step % args.every == 0 or step == args.updates:
            acc = sign_accuracy(model, frames, reward, action_ids)
            curve.append([step, acc])
            if first is None and acc >= args.threshold:
                first = step
    return {
        "seed": seed,
        "curve": curve,
        "first_at_threshold": first,
        "final_accuracy": curve[-1][1] if curve else None,
        "update_ms": 1000 * seconds / args.updates,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--variant", action="append", default=[], help="NAME=FIELD=VALUE;FIELD=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=1200)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--games", type=int, default=1000, help="random games in the training data")
    p.add_argument("--probe-games", type=int, default=600)
    p.add_argument("--out", default="benchmarks/out/learner_catch.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    variants = []
    for text in args.variant or ["default="]:
        name, _, rest = text.partition("=")
        if not name:
            raise SystemExit(f"--variant {text!r}: write NAME=FIELD=VALUE;FIELD=VALUE (or NAME=)")
        variants.append((name, [s.strip() for s in rest.split(";") if s.strip()]))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "catch"
        collect(GAME, make_config(args.preset), data, steps=4 * args.games, policy="random")
        for name, overrides in variants:
            for seed in args.seeds:
                r = run_one(data, args.preset, overrides, seed, args)
                results.append({"variant": name, "overrides": overrides, **r})
                print(
                    f"{name} seed {seed}: "
                    + " ".join(f"{s}:{a:.2f}" for s, a in r["curve"])
                    + f" | >= {args.threshold} at {r['first_at_threshold']}"
                    + f" | {r['update_ms']:.0f} ms/update",
                    flush=True,
                )

    print(
        f"\n| variant | accuracy at {args.updates} updates, per seed | mean | "
        f"first update >= {args.threshold}, per seed |"
    )
    print("|---|---|---|---|")
    for name, _ in variants:
        rs = [r for r in results if r["variant"] == name]
        finals = [r["final_accuracy"] for r in rs]
        print(
            f"| {name} | {', '.join(f'{a:.2f}' for a in finals)} | {np.mean(finals):.2f} | "
            + ", ".join(str(r["first_at_threshold"] or "-") for r in rs)
            + " |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
