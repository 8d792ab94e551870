"""Turn observation frames into PNG strips a person can look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from xtra.atomic import atomic_write_bytes


def frame_to_rgb(frame: np.ndarray, min_height: int = 96) -> np.ndarray:
    """One frame [C, H, W] uint8 (C = 1, 3, or n MinAtar channels) -> [H', W', 3] uint8 for display.

    Small frames (MinAtar 10x10, toys) are scaled up with nearest-neighbour so cells stay sharp.
    """
    c = frame.shape[0]
    if c == 3:
        img = np.transpose(frame, (1, 2, 0))
    elif c == 1:
        img = np.repeat(np.transpose(frame, (1, 2, 0)), 3, axis=2)
    else:  # native multi-channel: show the index of the last active channel as a gray level
        active = frame > 0
        idx = np.where(active.any(0), c - 1 - np.argmax(active[::-1], axis=0), -1)
        img = np.repeat(((idx + 1) * (255 // c)).astype(np.uint8)[..., None], 3, axis=2)
    scale = max(1, int(np.ceil(min_height / img.shape[0])))
    if scale > 1:
        img = cv2.resize(
            img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST
        )
    return np.ascontiguousarray(img)


def save_frame_strip(frames: Sequence[np.ndarray], path: str | Path, gap: int = 2) -> Path:
    """Save frames [C, H, W] side by side (white gaps) as one PNG; returns the path."""
    if not frames:
        raise ValueError("no frames to save")
    imgs = [frame_to_rgb(f) for f in frames]
    h = max(i.shape[0] for i in imgs)
    parts = []
    for i, img in enumerate(imgs):
        pad = np.full((h, img.shape[1], 3), 255, np.uint8)
        pad[: img.shape[0]] = img
        parts.append(pad)
        if i < len(imgs) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    strip = np.concatenate(parts, axis=1)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    path = Path(path)
    atomic_write_bytes(path, buf.tobytes())
    return path
