"""A bounded uniform sample of a window's rows, mergeable: every row drawn with the same chance.

Each row gets a uniform random key and the sample keeps the ``capacity`` rows with the smallest keys
(a bottom-k sample). Two samples merge by keeping the smallest keys of both, so per-partition
samples combine into a uniform sample of the union. While the window holds at most ``capacity``
rows the sample is the window itself, in its order: a small window's results are exact.

What a statistic loses on a sample of n rows is its sampling error: for a distance between
distributions (Wasserstein in standard deviations, Jensen-Shannon) about 1/sqrt(n), so 0.003 at
the default 100,000 rows, thirty times below the 0.1 thresholds the drift policy applies.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SAMPLE_ROWS = 100_000


class RowSample:
    """Up to ``capacity`` rows (Arrow) of a stream of tables, each row kept with the same chance."""

    def __init__(self, capacity: int = SAMPLE_ROWS, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"a sample needs room for at least one row, got capacity {capacity}")
        self.capacity = capacity
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._order = np.empty(0, dtype=np.int64)  # position in the stream: the sample keeps the window's order
        self._tables: list[pa.Table] = []
        self._schema: pa.Schema | None = None

    @property
    def complete(self) -> bool:
        """True while every row seen is in the sample."""
        return self.seen <= self.capacity

    def keys_for(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw keys for the next ``rows`` rows and say which of them could enter: (keys, chosen positions).

        Lets a caller take only the chosen rows of a batch before calling ``add_chosen``.
        """
        keys = self._rng.random(rows)
        if len(self._keys) >= self.capacity:
            bound = np.partition(self._keys, self.capacity - 1)[self.capacity - 1]
            chosen = np.flatnonzero(keys < bound)
        else:
            chosen = np.arange(rows)
        return keys, chosen

    def add_chosen(self, keys: np.ndarray, chosen: np.ndarray, rows: pa.Table) -> None:
        """Add the ``chosen`` rows (``rows`` holds just them, in order) of a batch whose keys were drawn."""
        self._keys = np.concatenate([self._keys, keys[chosen]])
        self._order = np.concatenate([self._order, self.seen + chosen])
        self.seen += len(keys)
        if self._schema is None:
            self._schema = rows.schema
        if rows.num_rows:
            self._tables.append(rows)
        if len(self._keys) > 2 * self.capacity:
            self._trim()

    def add(self, rows: pa.Table) -> None:
        keys, chosen = self.keys_for(rows.num_rows)
        self.add_chosen(keys, chosen, rows.take(pa.array(chosen, pa.int64())))

    def merge(self, other: RowSample) -> None:
        """Fold ``other`` (a sample of other rows, drawn with another seed) into this one."""
        table = other.table()
        self._keys = np.concatenate([self._keys, other._keys])
        self._order = np.concatenate([self._order, self.seen + other._order])
        self.seen += other.seen
        if self._schema is None:
            self._schema = other._schema
        if table.num_rows:
            self._tables.append(table)
        self._trim()

    def _trim(self) -> None:
        keep = np.arange(len(self._keys))
        if len(keep) > self.capacity:
            keep = np.argpartition(self._keys, self.capacity - 1)[: self.capacity]
        keep = keep[np.argsort(self._order[keep], kind="stable")]
        self._keys, self._order = self._keys[keep], self._order[keep]
        if self._tables:
            table = pa.concat_tables(self._tables, promote_options="default").combine_chunks()
            self._tables = [table.take(pa.array(keep, pa.int64()))]

    def table(self) -> pa.Table:
        """The sampled rows, in the order they were seen."""
        self._trim()
        if self._tables:
            return self._tables[0]
        return self._schema.empty_table() if self._schema is not None else pa.table({})
