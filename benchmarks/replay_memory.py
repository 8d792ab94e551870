"""Replay buffer memory and speed: 100k Atari-sized transitions, lossless vs JPEG.

Measures, for 3x96x96 uint8 frames (Atari, spec A1) stored lossless and as JPEG (quality 95):
resident memory of a buffer holding N transitions, add throughput, and the time of one
``sample(B=256, K=5, n=5)`` at 10k and N transitions; plus the index-only draw (sum tree) up to
1M transitions, to show that sampling does not grow linearly with the buffer size.

Each storage mode runs in a fresh child process so resident-memory numbers do not mix. Frames
are synthetic but JPEG-realistic: a smooth low-frequency background with solid rectangles
("sprites"). Prints a table and writes JSON (``--out``).

    .venv/bin/python benchmarks/replay_memory.py [--transitions 100000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAME_SHAPE = (3, 96, 96)
STACK, K, N_TD, BATCH = 4, 5, 5, 256
ACTION_IDS = list(range(9))


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out["VmRSS"], out["VmHWM"]


def synthetic_frames(n: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    c, h, w = FRAME_SHAPE
    frames = np.empty((n, c, h, w), dtype=np.uint8)
    for i in range(n):
        low = rng.random((6, 6, c)).astype(np.float32) * 160
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(rng.integers(3, 9)):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            hh, ww = rng.integers(2, 12), rng.integers(2, 12)
            img[y : y + hh, x : x + ww] = rng.integers(0, 256, size=c)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return frames


def make_trajectory(pool: np.ndarray, length: int, rng: np.random.Generator):
    from xtra.data import Trajectory

    start = int(rng.integers(0, len(pool)))
    idx = (start + np.arange(STACK + length)) % len(pool)
    actions = rng.integers(0, len(ACTION_IDS), size=length)
    visits = rng.random((length, len(ACTION_IDS))).astype(np.float32)
    return Trajectory(
        frames=pool[idx],
        actions=actions,
        ale_actions=np.asarray(ACTION_IDS)[actions],
        rewards=rng.integers(-1, 2, size=length).astype(np.float32),
        raw_rewards=rng.integers(-1, 2, size=length).astype(np.float32),
        root_visits=visits / visits.sum(1, keepdims=True),
        root_values=rng.normal(size=length).astype(np.float32),
        terminated=True,
    )


def time_sample(buf, rng: np.random.Generator, repeats: int) -> dict[str, float]:
    kw = dict(unroll_steps=K, td_steps=N_TD, auto_td_steps=30000, beta=0.4)
    buf.sample(BATCH, rng=rng, **kw)  # warm-up
    full, idx_only = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = buf.sample(BATCH, rng=rng, **kw)
        full.append(time.perf_counter() - t0)
        # Priorities change every step in training; keep the tree realistic.
        buf.update_priorities(batch.indices, rng.random(BATCH) + 0.01)
        t0 = time.perf_counter()
        buf.sample_indices(BATCH, rng=rng, beta=0.4)
        idx_only.append(time.perf_counter() - t0)
    return {
        "sample_ms": 1e3 * float(np.median(full)),
        "indices_ms": 1e3 * float(np.median(idx_only)),
    }


def child(mode: str, transitions: int, small: int) -> dict:
    from xtra.data import ReplayBuffer

    rng = np.random.default_rng(0)
    pool = synthetic_frames(2048, rng)
    rss0, _ = rss_mb()
    buf = ReplayBuffer(
        frame_shape=FRAME_SHAPE,
        frame_stack=STACK,
        action_ids=ACTION_IDS,
        capacity=1_000_000,
        alpha=0.6,
        jpeg=mode == "jpeg",
        jpeg_quality=95,
    )
    # Trajectories are made one at a time (so they do not count as buffer memory) and only
    # buffer.add is timed; sample timing happens outside the add clock.
    add_s, at_small = 0.0, None
    repeats = 20 if mode == "lossless" else 5
    while len(buf) < transitions:
        length = int(min(rng.integers(100, 1000), transitions - len(buf)))
        tr = make_trajectory(pool, length, rng)
        t0 = time.perf_counter()
        buf.add(tr)
        add_s += time.perf_counter() - t0
        del tr
        if at_small is None and len(buf) >= small:
            at_small = {"size": len(buf), **time_sample(buf, rng, repeats)}
    rss1, peak = rss_mb()
    at_full = {"size": len(buf), **time_sample(buf, rng, repeats)}
    return {
        "mode": mode,
        "transitions": len(buf),
        "frames": buf.num_frames,
        "data_mb": buf.nbytes / 2**20,
        "bytes_per_frame": buf.frame_nbytes / buf.num_frames,
        "rss_increase_mb": rss1 - rss0,
        "rss_peak_mb": peak,
        "add_transitions_per_s": len(buf) / add_s,
        "samples": [at_small, at_full],
    }


def tree_scaling(sizes: list[int]) -> list[dict]:
    """Index-only draw of 256 distinct leaves from sum trees of growing size."""
    from xtra.data import SumTree

    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        tree = SumTree(n)
        tree.rebuild(np.pad(rng.random(n) + 0.01, (0, tree.num_leaves - n)))
        tree.sample_distinct(BATCH, rng)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            tree.sample_distinct(BATCH, rng)
            times.append(time.perf_counter() - t0)
        out.append({"leaves": n, "sample_distinct_ms": 1e3 * float(np.median(times))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--out", default="benchmarks/out/replay_memory.json")
    parser.add_argument("--child", choices=("lossless", "jpeg"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.transitions, args.small)))
        return

    results = []
    for mode in ("lossless", "jpeg"):
        cmd = [sys.executable, __file__, "--child", mode]
        cmd += ["--transitions", str(args.transitions), "--small", str(args.small)]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    scaling = tree_scaling([10_000, 100_000, 1_000_000])

    print(f"replay buffer, {FRAME_SHAPE} uint8 frames, S={STACK}, B={BATCH}, K={K}, n={N_TD}")
    print(
        f"{'storage':<9} {'transitions':>11} {'data MiB':>9} {'B/frame':>8} {'RSS +MiB':>9} "
        f"{'peak MiB':>9} {'add tr/s':>9} {'sample ms':>20} {'indices ms':>20}"
    )
    for r in results:
        samples = r["samples"]
        s_text = " / ".join(f"{s['sample_ms']:.1f}" for s in samples)
        i_text = " / ".join(f"{s['indices_ms']:.2f}" for s in samples)
        print(
            f"{r['mode']:<9} {r['transitions']:>11} {r['data_mb']:>9.0f} {r['bytes_per_frame']:>8.0f} "
            f"{r['rss_increase_mb']:>9.0f} {r['rss_peak_mb']:>9.0f} {r['add_transitions_per_s']:>9.0f} "
            f"{s_text:>20} {i_text:>20}"
        )
    sizes = " / ".join(str(s["size"]) for s in samples)
    print(f"(sample and indices columns: at {sizes} transitions; median of repeated draws)")
    tree_text = ", ".join(f"{s['leaves']:,}: {s['sample_distinct_ms']:.2f} ms" for s in scaling)
    print(f"sum tree, {BATCH} distinct leaves by tree size: {tree_text}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "replay_memory",
                "frame_shape": FRAME_SHAPE,
                "frame_stack": STACK,
                "batch_size": BATCH,
                "unroll_steps": K,
                "td_steps": N_TD,
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "results": results,
                "sum_tree_scaling": scaling,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
