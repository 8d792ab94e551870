"""Agent steps per second of the batched environments (xtra.envs), 1 and 8 envs per batch.

Random actions from a seeded generator, auto-resets included, construction and the first reset
excluded. One agent step = one action of one env (Atari: 4 emulator frames, 96x96 RGB, 4-frame
stack). Prints a table and writes JSON.

    .venv/bin/python benchmarks/env_speed.py [--out benchmarks/out/env_speed.json] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from xtra.config import EnvConfig
from xtra.envs import make_env

GAMES = ("Breakout", "MsPacman", "minatar/breakout", "minatar/seaquest", "toy/catch")
NUM_ENVS = (1, 8)


def measure(game: str, num_envs: int, seconds: float, cfg: EnvConfig) -> dict:
    """Step ``num_envs`` envs of ``game`` for at least ``seconds``; return the row of the table."""
    env = make_env(game, cfg, num_envs=num_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(10):  # warm-up: first-touch allocations
        env.step(rng.integers(env.num_actions, size=num_envs))
    batch_steps, games = 0, 0
    start = time.perf_counter()
    while True:
        res = env.step(rng.integers(env.num_actions, size=num_envs))
        batch_steps += 1
        games += int(res.game_over.sum())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and batch_steps >= 20:
            break
    env.close()
    return {
        "game": game,
        "num_envs": num_envs,
        "agent_steps": batch_steps * num_envs,
        "seconds": elapsed,
        "agent_steps_per_s": batch_steps * num_envs / elapsed,
        "ms_per_batch_step": 1000 * elapsed / batch_steps,
        "games_ended": games,
        "obs_shape": list(env.obs_shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/out/env_speed.json", help="JSON output path")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--games", nargs="*", default=list(GAMES), help="games to measure")
    args = parser.parse_args()

    cfg = EnvConfig()
    rows = [measure(g, n, args.seconds, cfg) for g in args.games for n in NUM_ENVS]

    print(f"{'game':<18} {'envs':>4} {'agent steps/s':>14} {'ms/batch step':>14}  obs")
    for r in rows:
        print(
            f"{r['game']:<18} {r['num_envs']:>4} {r['agent_steps_per_s']:>14,.0f} "
            f"{r['ms_per_batch_step']:>14.3f}  {r['obs_shape']}"
        )
    import ale_py
    import cv2

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ale_py": ale_py.__version__,
        "opencv": cv2.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "seconds_per_row": args.seconds,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
