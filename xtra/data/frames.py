"""How the replay holds frames: raw pixels, or JPEG bytes in a byte pool (decision 7).

Both stores keep one row per frame in FIFO order (:class:`~xtra.data.rows.RowStore`), address
frames by global index and give their arrays under the snapshot names of
:mod:`xtra.data.snapshot`. Shapes: ``F`` frames, ``C, H, W`` one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from xtra.data.rows import RowStore
from xtra.data.snapshot import JPEG_BYTE_COLUMNS, JPEG_FRAME_COLUMNS, raw_frame_columns


class JpegCodec:
    """Frames as JPEG bytes (``cv2.imencode('.jpg')``), the reference's lossy storage (spec A1.7).

    A 3-channel frame is encoded as one colour image (channel order survives the round trip, as
    in EZ); a 1-channel frame as a gray image; any other channel count as a gray image of the
    channels stacked vertically (``[C * H, W]``), so every frame shape works.
    """

    lossless = False

    def __init__(self, quality: int) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        self.quality = int(quality)

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """``[C, H, W]`` uint8 -> 1-D uint8 array of JPEG bytes."""
        c, h, w = frame.shape
        if c == 3:
            img = np.ascontiguousarray(frame.transpose(1, 2, 0))
        else:
            img = np.ascontiguousarray(frame.reshape(c * h, w))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"cv2.imencode failed for a frame of shape {frame.shape}")
        return buf.reshape(-1)

    def decode(self, data: np.ndarray, frame_shape: Sequence[int]) -> np.ndarray:
        """1-D uint8 JPEG bytes -> ``[C, H, W]`` uint8."""
        c, h, w = frame_shape
        if c == 3:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
            return img.transpose(2, 0, 1)
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        return img.reshape(c, h, w)


class RawFrames:
    """Frames kept as they are: ``[F, C, H, W]`` uint8 (lossless, the default)."""

    lossless = True

    def __init__(self, frame_shape: tuple[int, ...], soft_limit: Callable[[], int]) -> None:
        self.frame_shape = frame_shape
        self.rows = RowStore(raw_frame_columns(frame_shape), rows=1024, soft_limit=soft_limit)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        """Frames added since creation (the next global index)."""
        return self.rows.total

    def append(self, frames: np.ndarray) -> int:
        """Store ``[F, C, H, W]`` frames; returns the first one's global index."""
        return self.rows.append(len(frames), frames=frames)

    def drop_front(self, n: int) -> None:
        self.rows.drop_front(n)

    def get(self, g: np.ndarray) -> np.ndarray:
        """Frames ``[*g.shape, C, H, W]`` at global indices ``g``."""
        return self.rows.arrays["frames"][self.rows.row(g)]

    def nbytes(self) -> int:
        return self.rows.nbytes()

    def state(self) -> dict[str, np.ndarray]:
        """Snapshot arrays of the live frames (views)."""
        return self.rows.state()

    def meta(self) -> dict[str, int]:
        """Snapshot meta fields: the first live frame's global index."""
        return {"frames_first": self.rows.first}

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, int]) -> None:
        """Adopt the frames of a snapshot (no copy: memmaps stay memmaps)."""
        self.rows.load({"frames": arrays["frames"]}, first=meta["frames_first"], adopt=("frames",))


class EncodedFrames:
    """Frames kept as codec bytes (JPEG): a byte pool plus per-frame offset and length."""

    lossless = False

    def __init__(
        self, frame_shape: tuple[int, ...], codec: JpegCodec, soft_limit: Callable[[], int]
    ) -> None:
        self.frame_shape = frame_shape
        self.codec = codec
        self.rows = RowStore(JPEG_FRAME_COLUMNS, rows=1024, soft_limit=soft_limit)

        def byte_limit() -> int:
            per_frame = len(self.pool) / max(len(self.rows), 1)
            return int(per_frame * soft_limit())

        self.pool = RowStore(JPEG_BYTE_COLUMNS, rows=1 << 20, soft_limit=byte_limit)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        """Frames added since creation (the next global index)."""
        return self.rows.total

    def append(self, frames: np.ndarray) -> int:
        """Encode and store ``[F, C, H, W]`` frames; returns the first one's global index."""
        blobs = [self.codec.encode(f) for f in frames]
        sizes = np.array([b.size for b in blobs], dtype=np.int64)
        offsets = self.pool.total + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.pool.append(int(sizes.sum()), jpeg_bytes=np.concatenate(blobs))
        return self.rows.append(len(frames), frame_offsets=offsets, frame_nbytes=sizes)

    def drop_front(self, n: int) -> None:
        self.rows.drop_front(n)
        next_offset = (
            int(self.rows.arrays["frame_offsets"][self.rows.head])
            if len(self.rows)
            else self.pool.total
        )
        self.pool.drop_front(next_offset - self.pool.first)

    def get(self, g: np.ndarray) -> np.ndarray:
        """Decoded frames ``[*g.shape, C, H, W]`` at global indices ``g`` (each decoded once)."""
        g = np.asarray(g)
        uniq, inverse = np.unique(g, return_inverse=True)
        rows = self.rows.row(uniq)
        offsets = self.rows.arrays["frame_offsets"][rows]
        sizes = self.rows.arrays["frame_nbytes"][rows]
        pool = self.pool.arrays["jpeg_bytes"]
        base = self.pool.head - self.pool.first
        decoded = np.stack(
            [
                self.codec.decode(pool[base + o : base + o + s], self.frame_shape)
                for o, s in zip(offsets.tolist(), sizes.tolist())
            ]
        )
        return decoded[inverse.reshape(g.shape)]

    def nbytes(self) -> int:
        return self.rows.nbytes() + self.pool.nbytes()

    def state(self) -> dict[str, np.ndarray]:
        """Snapshot arrays of the live frames and their bytes (views)."""
        return {**self.rows.state(), **self.pool.state()}

    def meta(self) -> dict[str, int]:
        """Snapshot meta fields: the first live frame's and JPEG byte's global indices."""
        return {"frames_first": self.rows.first, "jpeg_bytes_first": self.pool.first}

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, int]) -> None:
        """Take the frames of a snapshot (the byte pool adopted: memmaps stay memmaps)."""
        self.rows.load({k: arrays[k] for k in JPEG_FRAME_COLUMNS}, first=meta["frames_first"])
        self.pool.load(
            {"jpeg_bytes": arrays["jpeg_bytes"]},
            first=meta["jpeg_bytes_first"],
            adopt=("jpeg_bytes",),
        )
