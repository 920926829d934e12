"""Request ids that carry their request's time: UUID version 7 (RFC 9562), 32 lower-case hex digits.

The first 48 bits are the request's Unix time in milliseconds, the rest random. A label that arrives
days after its prediction names the request id, and so the time of the prediction it belongs to:
the late-label join reads only that stretch of the log, not the whole look-back (``late_label_range``).
Ids of any other shape (an older gateway's uuid4, a client's own) still work; a join that meets one
reads the whole look-back.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PATTERN = r"^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$"
_HEX = np.full(256, 0, np.int64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_PLACES = 16 ** np.arange(11, -1, -1, dtype=np.int64)


def new_request_id(time_ns: int, random_bits: int | None = None) -> str:
    """A version-7 id for a request made at ``time_ns``; ``random_bits`` (74 are used) for a reproducible id."""
    bits = secrets.randbits(74) if random_bits is None else random_bits % (1 << 74)
    value = (time_ns // 1_000_000 % (1 << 48)) << 80 | 7 << 76 | (bits >> 62) << 64 | 0b10 << 62 | bits % (1 << 62)
    return f"{value:032x}"


def new_request_ids(time_ns: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """``new_request_id`` for many requests at once (synthetic logs of millions of rows), as a string array."""
    count = len(time_ns)
    ms = (np.asarray(time_ns, np.int64) // 1_000_000).astype(np.uint64)
    high, low = generator.integers(0, 2**62, size=(2, count), dtype=np.uint64)
    nibbles = np.empty((count, 32), np.uint8)
    for place in range(12):
        nibbles[:, place] = (ms >> np.uint64(4 * (11 - place))) & np.uint64(15)
    nibbles[:, 12] = 7
    for place in range(3):
        nibbles[:, 13 + place] = (high >> np.uint64(4 * place)) & np.uint64(15)
    nibbles[:, 16] = 8 | ((high >> np.uint64(12)) & np.uint64(3))
    for place in range(15):
        nibbles[:, 17 + place] = (low >> np.uint64(4 * place)) & np.uint64(15)
    return np.frombuffer(b"0123456789abcdef", np.uint8)[nibbles].view("S32").ravel().astype(str)


def request_times_ms(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The Unix time in milliseconds each id carries, or -1 where the id is not a version-7 id."""
    ids = pc.cast(ids, pa.string())
    valid = pc.fill_null(pc.match_substring_regex(ids, _PATTERN), False).to_numpy(zero_copy_only=False)
    times = np.full(len(ids), -1, np.int64)
    if valid.any():
        heads = pc.utf8_slice_codeunits(ids.filter(pa.array(valid)), 0, 12)
        digits = np.frombuffer(np.asarray(heads.to_pylist(), dtype="S12").tobytes(), np.uint8).reshape(-1, 12)
        times[valid] = _HEX[digits] @ _PLACES
    return times


def late_label_range(unmatched_ids: pa.Array | pa.ChunkedArray | None, first: datetime,
                     end: datetime) -> tuple[datetime, datetime] | None:
    """The part of ``[first, end)`` that holds the predictions of labels the window's own rows did not match.

    None when there are none to look for (or all lie outside); the whole ``[first, end)`` when any id
    does not carry its time (or ``unmatched_ids`` is None: unknown).
    """
    if first >= end:
        return None
    if unmatched_ids is None:
        return first, end
    if len(unmatched_ids) == 0:
        return None
    times = request_times_ms(unmatched_ids)
    if (times < 0).any():
        return first, end
    earliest = datetime.fromtimestamp(int(times.min()) / 1000, UTC)
    latest = datetime.fromtimestamp(int(times.max()) / 1000, UTC) + timedelta(milliseconds=1)
    start, stop = max(first, earliest), min(end, latest)
    return (start, stop) if start < stop else None
