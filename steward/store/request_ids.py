"""Request ids that carry their request's time: UUID version 7 (RFC 9562), 32 lower-case hex digits.

The first 48 bits are the request's Unix time in milliseconds, the rest random. A label that arrives
days after its prediction names the request id, and so the time of the prediction it belongs to:
the late-label join reads only that stretch of the log, not the whole look-back (``late_label_range``).
Ids of any other shape (an older gateway's uuid4, a client's own) still work; a join that meets one
reads the whole look-back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SLICE = 65_536
_NIBBLE = np.full(256, 16, np.uint8)  # 16: not a lower-case hex digit
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)


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
    times = np.full(len(ids), -1, np.int64)
    for start, words in hex_words(ids):
        stop = start + len(words.valid)
        version_7 = words.valid & ((words.high >> np.uint64(12)) & np.uint64(15) == 7) & (
            (words.low >> np.uint64(62)) == 2)
        times[start:stop][version_7] = (words.high[version_7] >> np.uint64(16)).astype(np.int64)
    return times


@dataclass(frozen=True)
class HexWords:
    """Ids of 32 lower-case hex digits as two 64-bit words (the 128 bits of a UUID); ``valid`` False elsewhere."""

    valid: np.ndarray
    high: np.ndarray
    low: np.ndarray


def hex_words(ids: pa.Array | pa.ChunkedArray) -> Iterator[tuple[int, HexWords]]:
    """(position, words) of each slice of ``ids``, read from their bytes: millions of ids make no Python objects."""
    ids = pc.cast(ids, pa.string())
    chunked = ids if isinstance(ids, pa.ChunkedArray) else pa.chunked_array([ids], pa.string())
    for start in range(0, len(ids), _SLICE):
        yield start, _words_of(chunked.slice(start, _SLICE).combine_chunks())


def _words_of(ids: pa.StringArray) -> HexWords:
    count = len(ids)
    valid = np.zeros(count, bool)
    high, low = np.zeros(count, np.uint64), np.zeros(count, np.uint64)
    data_buffer = ids.buffers()[2]
    if count == 0 or data_buffer is None:
        return HexWords(valid, high, low)
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset:ids.offset + count + 1]
    data = np.frombuffer(data_buffer, np.uint8)
    if not ids.null_count and offsets[-1] - offsets[0] == 32 * count and (np.diff(offsets) == 32).all():
        candidates = None  # every id is 32 bytes, back to back (the gateway's): the bytes are the table
        chars = data[offsets[0]:offsets[-1]].reshape(count, 32)
    else:
        candidates = np.flatnonzero(np.diff(offsets) == 32)
        if ids.null_count:
            candidates = candidates[ids.is_valid().to_numpy(zero_copy_only=False)[candidates]]
        chars = data[offsets[candidates][:, None] + np.arange(32)]
    nibbles = _NIBBLE[chars]
    hexadecimal = (nibbles < 16).all(axis=1)
    chosen = np.flatnonzero(hexadecimal) if candidates is None else candidates[hexadecimal]
    valid[chosen] = True
    high[chosen], low[chosen] = _packed(nibbles[hexadecimal, :16]), _packed(nibbles[hexadecimal, 16:])
    return HexWords(valid, high, low)


def _packed(nibbles: np.ndarray) -> np.ndarray:
    """Sixteen 4-bit digits per row, most significant first, as one uint64."""
    word = np.zeros(len(nibbles), np.uint64)
    for place in range(16):
        word <<= np.uint64(4)
        word |= nibbles[:, place]
    return word


def late_label_range(times_ms: np.ndarray | None, first: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The part of ``[first, end)`` that holds the predictions of labels the window's own rows did not match,
    from the times their request ids carry (``request_times_ms``).

    None when there are none to look for (or all lie outside); the whole ``[first, end)`` when any id
    does not carry its time (-1), or ``times_ms`` is None (unknown).
    """
    if first >= end:
        return None
    if times_ms is None:
        return first, end
    if len(times_ms) == 0:
        return None
    if (times_ms < 0).any():
        return first, end
    earliest = datetime.fromtimestamp(int(times_ms.min()) / 1000, UTC)
    latest = datetime.fromtimestamp(int(times_ms.max()) / 1000, UTC) + timedelta(milliseconds=1)
    start, stop = max(first, earliest), min(end, latest)
    return (start, stop) if start < stop else None
