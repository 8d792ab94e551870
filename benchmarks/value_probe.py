"""What finished models predict on a target game's frames, alone and in a batch mixed as in
finetuning, in train mode (batch statistics) and eval mode (the running statistics every search
uses). A large gap between the two, or values below any return the game allows, is the mark of
BatchNorm statistics that do not describe the target's frames (RESULTS.md, "Offline targets").

    python benchmarks/value_probe.py runs/family-8k/finetune/family_catch/xtra-s0 ... \
        --target family/catch --data runs/family-8k/data \
        --sources family/catch-colors family/catch-texture family/catch-wide family/catch-drift

Frames: ``--envs`` environments x ``--steps`` uniform-random steps of the target (seeded).
Mixed batches: 32 target frames + 8 frames of each source's dataset, ``--batches`` of them.
Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from xtra.config import Config
from xtra.envs import make_env
from xtra.pipeline.recipes import game_dir
from xtra.rundir import load_model
from xtra.transfer.sources import open_dataset


def target_frames(game: str, cfg: Config, envs: int, steps: int, seed: int) -> torch.Tensor:
    """[envs * (steps + 1), S*C, H, W] float frames in [0, 1] of a uniform-random policy."""
    env = make_env(game, cfg.env, num_envs=envs, seed=seed, mode="train")
    rng = np.random.default_rng(seed)
    obs = [env.reset()]
    for _ in range(steps):
        obs.append(env.step(rng.integers(0, len(env.legal_actions), size=envs)).obs)
    env.close()
    return torch.as_tensor(np.concatenate(obs)).float() / 255.0


def source_frames(data: Path, game: str, cfg: Config, n: int, seed: int) -> torch.Tensor:
    """[n, S*C, H, W] stacked frames sampled from ``game``'s dataset under ``data``."""
    replay, _ = open_dataset(data / game_dir(game), game, cfg)
    rng = np.random.default_rng(seed)
    s = replay.sample(n, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
    o = torch.as_tensor(s.obs[:, : replay.frame_stack]).float() / 255.0
    return o.reshape(n, -1, *o.shape[3:])


def mean_value(model: torch.nn.Module, obs: torch.Tensor, train: bool, rows: int) -> float:
    model.train(train)
    with torch.no_grad():
        return float(model.initial_inference(obs).value[:rows].float().mean())


def probe(run: str, frames: torch.Tensor, sources: list[torch.Tensor], batches: int) -> dict:
    model, _, _ = load_model(run, "cpu")
    gen = torch.Generator().manual_seed(0)
    mixed = {"train": [], "eval": []}
    for i in range(batches):
        tgt = frames[torch.randint(0, len(frames), (32,), generator=gen)]
        batch = torch.cat([tgt] + [s[i * 8 : (i + 1) * 8] for s in sources])
        for mode in mixed:
            mixed[mode].append(mean_value(model, batch, mode == "train", 32))
    return {
        "alone_train": mean_value(model, frames, True, len(frames)),
        "alone_eval": mean_value(model, frames, False, len(frames)),
        "mixed_train": float(np.mean(mixed["train"])),
        "mixed_eval": float(np.mean(mixed["eval"])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories or model.pt files")
    ap.add_argument("--target", default="family/catch")
    ap.add_argument("--data", default="runs/family-8k/data", help="the sources' datasets")
    ap.add_argument("--sources", nargs="+", default=[f"family/catch-{v}" for v in
                    ("colors", "texture", "wide", "drift")])  # fmt: skip
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", default="benchmarks/out/value_probe.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_model(args.runs[0], "cpu")[1]  # observations as the (first) model was trained on
    frames = target_frames(args.target, cfg, args.envs, args.steps, args.seed)
    sources = [
        source_frames(Path(args.data), g, cfg, 8 * args.batches, args.seed + i)
        for i, g in enumerate(args.sources)
    ]
    rows = {run: probe(run, frames, sources, args.batches) for run in args.runs}
    print(f"k=0 value on {len(frames)} {args.target} frames; mixed = 32 target + 8 per source")
    print("| run | alone, train | alone, eval | mixed, train | mixed, eval |")
    print("|---|---|---|---|---|")
    for run, r in rows.items():
        print(f"| {run} | {r['alone_train']:.2f} | {r['alone_eval']:.2f} | "
              f"{r['mixed_train']:.2f} | {r['mixed_eval']:.2f} |")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "values": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
