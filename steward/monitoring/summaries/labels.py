"""Labels looked up by request id and row while the log streams past: ``join_labels`` batch by batch.

The window's labels are read once and kept as sorted fixed-width byte keys (``<request id>\\x1f<row>``)
with their label and time, the latest label of a row winning as in ``join_labels``; each batch of
predictions is then matched by binary search, so no hash table of the labels is rebuilt per batch and
no Python object is held per label. Memory grows with the labels received in the window (about 50
bytes each), not with the predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = "\x1f"


def row_keys(request_ids: pa.ChunkedArray | pa.Array, rows: pa.ChunkedArray | pa.Array) -> np.ndarray:
    joined = pc.binary_join_element_wise(pc.cast(request_ids, pa.string()), pc.cast(rows, pa.string()), _SEPARATOR)
    return np.asarray(pc.cast(joined, pa.binary()).to_numpy(zero_copy_only=False), dtype=np.bytes_)


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
            self.labels = labels["label"].take(pa.array(chosen)).to_numpy(zero_copy_only=False)
            self.times = pc.cast(labels["time"].take(pa.array(chosen)), pa.int64()).to_numpy(zero_copy_only=False)
        else:
            self.keys = np.empty(0, dtype=np.bytes_)
            self.labels = np.empty(0, dtype=object)
            self.times = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.keys.size)

    def match(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``table`` with a label, the label's position here), in ``table``'s order."""
        if not len(self) or not table.num_rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        keys = row_keys(table["request_id"], table["row"])
        found = np.searchsorted(self.keys, keys)
        found[found == self.keys.size] = 0
        hit = np.flatnonzero(self.keys[found] == keys)
        return hit, found[hit]

    def joined(self, predictions: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
        """``predictions`` (the matched rows) with ``label`` and ``label_time``, as ``join_labels`` adds them."""
        frame = predictions.reset_index(drop=True)
        frame["label"] = self.labels[positions]
        frame["label_time"] = pd.Series(self.times[positions].astype("datetime64[us]")).dt.tz_localize("UTC")
        return frame
