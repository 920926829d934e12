"""Labels looked up by request id and row while the log streams past: ``join_labels`` batch by batch.

The window's labels are read once and kept as two 64-bit keys of (request id, row), sorted by the
first, with their label and time, the latest label of a row winning as in ``join_labels``. The keys
are the id's own 128 bits for the gateway's ids (32 hex digits), two independent hashes for any
other id, mixed with the row. Each batch of predictions is keyed the same way and matched by binary
search on the first key, the second confirming it, so no hash table is rebuilt per batch and nothing
of variable width is held per label. Memory grows with the
labels received in the window (about 40 bytes each), not with the predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from steward.store.request_ids import hex_words, request_times_ms

_KEY_CHUNK = 262_144
_HASH_KEYS = ("steward-labels-1", "steward-labels-2")  # two 16-byte SipHash keys: independent hashes
_ROW_MIX = np.uint64(0x9E3779B97F4A7C15)


def row_hashes(request_ids: pa.ChunkedArray | pa.Array, rows: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 keys of each (request id, row): the id's own 128 bits when it is 32 hex digits (the gateway's
    ids: read from their bytes, exact), else two SipHashes of it (a Python str per id lives only for its slice)."""
    count = len(request_ids)
    first, second = np.empty(count, np.uint64), np.empty(count, np.uint64)
    for start, words in hex_words(request_ids):
        stop = start + len(words.valid)
        first[start:stop], second[start:stop] = words.high, words.low
        other = np.flatnonzero(~words.valid)
        if other.size:
            ids = request_ids.slice(start, stop - start).take(pa.array(other)).to_numpy(zero_copy_only=False)
            ids = np.array([value if value is not None else "" for value in ids], dtype=object)
            first[start + other] = pd.util.hash_array(ids, hash_key=_HASH_KEYS[0], categorize=False)
            second[start + other] = pd.util.hash_array(ids, hash_key=_HASH_KEYS[1], categorize=False)
    mixed = pc.cast(rows, pa.uint64()).to_numpy(zero_copy_only=False) * _ROW_MIX
    with np.errstate(over="ignore"):
        return first ^ mixed, second + mixed


class LabelIndex:
    """The latest label of each (request id, row) of a labels table, for matching batches of predictions."""

    def __init__(self, labels: pa.Table) -> None:
        if labels.num_rows:
            first, second = row_hashes(labels["request_id"], labels["row"])
            times = pc.cast(labels["time"], pa.int64()).to_numpy(zero_copy_only=False)
            order = np.lexsort((times, second, first))
            del times
            first, second = first[order], second[order]
            last = np.append((first[1:] != first[:-1]) | (second[1:] != second[:-1]), True)  # latest label of a row
            order = order[last]
            self.first, self.second = first[last], second[last]
            del first, second, last
            chosen = pa.array(order)
            self.labels = labels["label"].take(chosen).combine_chunks()
            self.times = labels["time"].take(chosen).combine_chunks()
            # the time each label's request id carries (-1: none): where a late label's prediction lies
            self.request_times_ms = request_times_ms(labels["request_id"])[order]
        else:
            self.first = self.second = np.empty(0, np.uint64)
            self.labels = pa.array([], pa.string())
            self.times = pa.array([], pa.timestamp("us", tz="UTC"))
            self.request_times_ms = np.empty(0, np.int64)
        self._matched = np.zeros(self.first.size, dtype=bool)

    def __len__(self) -> int:
        return int(self.first.size)

    def match(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``table`` with a label, the label's position here), in ``table``'s order."""
        if not len(self) or not table.num_rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        first, second = row_hashes(table["request_id"], table["row"])
        found = np.searchsorted(self.first, first)
        found[found == self.first.size] = 0
        hit = np.flatnonzero((self.first[found] == first) & (self.second[found] == second))
        self._matched[found[hit]] = True
        return hit, found[hit]

    def unmatched(self) -> UnmatchedLabels:
        """The labels no matched table held (their predictions came before the scanned window)."""
        missing = ~self._matched
        return UnmatchedLabels(self.first[missing], self.request_times_ms[missing])

    def joined(self, predictions: pa.Table, positions: np.ndarray) -> pa.Table:
        """``predictions`` (the matched rows) with ``label`` and ``label_time``, as ``join_labels`` adds them."""
        taken = pa.array(positions, pa.int64())
        return predictions.append_column("label", self.labels.take(taken)).append_column(
            "label_time", self.times.take(taken))


class UnmatchedLabels:
    """Labels of a window that matched none of its rows: late labels. ``keys`` identify them (to merge the
    partitions of one window: a label is late when no day matched it), ``times_ms`` say when each one's
    prediction was made, from its request id (-1: the id does not say)."""

    def __init__(self, keys: np.ndarray, times_ms: np.ndarray) -> None:
        self.keys, self.times_ms = keys, times_ms

    def __len__(self) -> int:
        return int(self.keys.size)

    def also_unmatched_in(self, other: UnmatchedLabels) -> UnmatchedLabels:
        common = np.isin(self.keys, other.keys)
        return UnmatchedLabels(self.keys[common], self.times_ms[common])
