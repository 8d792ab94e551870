"""Column arrays that share one row space, appended at the end and dropped from the front (FIFO).

The storage under :class:`~xtra.data.replay.ReplayBuffer`: one :class:`RowStore` each for its
transitions, trajectories and frames. An item's *global index* is its insertion order since the
store was created; global ``g`` lives at row ``g - first + head``, so every lookup is arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xtra.errors import CheckpointError


class RowStore:
    """Named column arrays sharing one row space, with FIFO append / drop and amortised growth.

    Args:
        columns: ``{name: (shape of one row, dtype)}``.
        rows: rows allocated at first.
        soft_limit: the number of live rows the store expects to reach; a growing store allocates
            at most about 1.5x it (so untouched pages never become resident).
    """

    def __init__(
        self,
        columns: dict[str, tuple[tuple[int, ...], Any]],
        *,
        rows: int,
        soft_limit: Callable[[], int],
    ) -> None:
        self.columns = {k: (tuple(s), np.dtype(d)) for k, (s, d) in columns.items()}
        self.arrays = {k: np.empty((rows, *s), dtype=d) for k, (s, d) in self.columns.items()}
        self.soft_limit = soft_limit
        # False for adopted arrays (memmaps, loaded state): those are never written in place.
        self.owned = True
        self.head = 0
        self.first = 0
        self.total = 0

    def __len__(self) -> int:
        return self.total - self.first

    @property
    def allocated(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    def row(self, g: np.ndarray | int) -> np.ndarray | int:
        """Row of global index ``g`` (any shape)."""
        return g - self.first + self.head

    def live(self, name: str) -> np.ndarray:
        """Column ``name`` over the live rows ``[len(self), ...]`` (a view)."""
        return self.arrays[name][self.head : self.head + len(self)]

    def nbytes(self) -> int:
        """Bytes of the live rows."""
        return sum(a[:1].nbytes for a in self.arrays.values()) * len(self)

    def append(self, n: int, **values: Any) -> int:
        """Append ``n`` rows (one array or scalar per column); returns the first new global index."""
        self._reserve(n)
        start = self.head + len(self)
        for name, arr in self.arrays.items():
            arr[start : start + n] = values[name]
        g = self.total
        self.total += n
        return g

    def drop_front(self, n: int) -> None:
        """Forget the ``n`` oldest rows."""
        n = min(n, len(self))
        self.first += n
        self.head += n

    def _reserve(self, n: int) -> None:
        live = len(self)
        alloc = self.allocated
        if self.head + live + n <= alloc and self.owned:
            return
        need = live + n
        if self.owned and self.head >= alloc // 4 and need <= alloc:
            # Move the live rows to the front, in chunks no longer than the gap so that source
            # and destination never overlap (numpy would otherwise copy through a temporary).
            for arr in self.arrays.values():
                for i in range(0, live, self.head):
                    c = min(self.head, live - i)
                    arr[i : i + c] = arr[self.head + i : self.head + i + c]
        else:
            limit = max(need, int(self.soft_limit()))
            new_alloc = max(need, min(2 * alloc, (3 * limit) // 2), 16)
            for name, arr in self.arrays.items():
                new = np.empty((new_alloc, *arr.shape[1:]), dtype=arr.dtype)
                new[:live] = arr[self.head : self.head + live]
                self.arrays[name] = new
            self.owned = True
        self.head = 0

    def state(self) -> dict[str, np.ndarray]:
        """The live rows of every column (views); :attr:`first` is kept separately."""
        return {name: self.live(name) for name in self.arrays}

    def load(self, arrays: dict[str, np.ndarray], *, first: int, adopt: Sequence[str] = ()) -> None:
        """Replace the content by ``arrays`` (live rows) whose first global index is ``first``.

        Columns named in ``adopt`` are used as given (no copy: memmaps stay memmaps); the rows
        are then never written in place (an append reallocates), so shared arrays stay intact.
        """
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1 or set(arrays) != set(self.arrays):
            raise CheckpointError(f"replay state columns do not match: {sorted(arrays)}")
        n = sizes.pop()
        for name, (shape, dtype) in self.columns.items():
            a = arrays[name]
            if a.shape[1:] != shape or a.dtype != dtype:
                raise CheckpointError(
                    f"replay state column {name!r} is {a.shape} {a.dtype}, expected "
                    f"[*, {', '.join(map(str, shape))}] {dtype}: the snapshot does not fit this buffer"
                )
            self.arrays[name] = a if name in adopt else np.array(a, copy=True)
        self.owned = not adopt
        self.head = 0
        self.first = int(first)
        self.total = int(first) + n
        if n == 0:
            for name, (shape, dtype) in self.columns.items():
                self.arrays[name] = np.empty((16, *shape), dtype=dtype)
            self.owned = True
