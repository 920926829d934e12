"""Labels looked up by request id and row while the log streams past: ``join_labels`` batch by batch.

The window's labels are read once and kept as sorted fixed-width byte keys (``<request id>\\x1f<row>``)
with their label and time, the latest label of a row winning as in ``join_labels``; each batch of
predictions is then matched by binary search, so no hash table of the labels is rebuilt per batch and
no Python object is held per label. Memory grows with the labels received in the window (about 50
bytes each), not with the predictions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = "\x1f"


_KEY_CHUNK = 262_144


def row_keys(request_ids: pa.ChunkedArray | pa.Array, rows: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Fixed-width byte keys of (request id, row), built a chunk at a time (a Python bytes object per value
    lives only for its chunk)."""
    joined = pc.binary_join_element_wise(pc.cast(request_ids, pa.string()), pc.cast(rows, pa.string()), _SEPARATOR)
    joined = pc.cast(joined, pa.binary())
    width = max(1, pc.max(pc.binary_length(joined)).as_py() or 1)
    keys = np.empty(len(joined), dtype=f"S{width}")
    for start in range(0, len(joined), _KEY_CHUNK):
        chunk = joined.slice(start, _KEY_CHUNK).to_numpy(zero_copy_only=False)
        keys[start:start + len(chunk)] = chunk
    return keys


class LabelIndex:
    """The latest label of each (request id, row) of a labels table, for matching batches of predictions."""

    def __init__(self, labels: pa.Table) -> None:
        if labels.num_rows:
            keys = row_keys(labels["request_id"], labels["row"])
            order = np.lexsort((pc.cast(labels["time"], pa.int64()).to_numpy(zero_copy_only=False), keys))
            keys = keys[order]
            last = np.append(keys[1:] != keys[:-1], True)  # the latest label of each key (sorted by time within it)
            chosen = order[last]
            self.keys = keys[last]
            self.labels = labels["label"].take(pa.array(chosen)).combine_chunks()
            self.times = labels["time"].take(pa.array(chosen)).combine_chunks()
            self.request_ids = labels["request_id"].take(pa.array(chosen)).combine_chunks()
        else:
            self.keys = np.empty(0, dtype=np.bytes_)
            self.labels = pa.array([], pa.string())
            self.times = pa.array([], pa.timestamp("us", tz="UTC"))
            self.request_ids = pa.array([], pa.string())
        self._matched = np.zeros(self.keys.size, dtype=bool)

    def __len__(self) -> int:
        return int(self.keys.size)

    def match(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``table`` with a label, the label's position here), in ``table``'s order."""
        if not len(self) or not table.num_rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        keys = row_keys(table["request_id"], table["row"])
        if keys.dtype.itemsize > self.keys.dtype.itemsize:  # widen the index, never cut a key (row 10 is not row 1)
            self.keys = self.keys.astype(keys.dtype)
        keys = keys.astype(self.keys.dtype)
        found = np.searchsorted(self.keys, keys)
        found[found == self.keys.size] = 0
        hit = np.flatnonzero(self.keys[found] == keys)
        self._matched[found[hit]] = True
        return hit, found[hit]

    def unmatched_request_ids(self) -> pa.Array:
        """Request ids of the labels no matched table held: predictions made before the scanned window."""
        return self.request_ids.filter(pa.array(~self._matched))

    def joined(self, predictions: pa.Table, positions: np.ndarray) -> pa.Table:
        """``predictions`` (the matched rows) with ``label`` and ``label_time``, as ``join_labels`` adds them."""
        taken = pa.array(positions, pa.int64())
        return predictions.append_column("label", self.labels.take(taken)).append_column(
            "label_time", self.times.take(taken))
