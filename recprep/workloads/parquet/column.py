"""One column chunk: an optional dictionary page and one data page (format v1), compressed.

Values are dictionary-encoded (RLE_DICTIONARY) when the column arrives dictionary-encoded (its
dictionary is written as it is, no re-hashing) or when a dictionary of at most
``DICTIONARY_LIMIT`` bytes holds its distinct values, else PLAIN, as pyarrow decides it.
Statistics (null count, min, max) are written for flat columns that ask for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import thrift
from ._encode import dict_encode, rle_hybrid
from .levels import Flat, flatten
from .schema import Leaf

# parquet.thrift enums
PLAIN, RLE, RLE_DICTIONARY = 0, 3, 8
DATA_PAGE, DICTIONARY_PAGE = 0, 2
#: compression name (spec.output.compression) -> (Parquet CompressionCodec, Arrow codec name)
CODECS = {
    "none": (0, None),
    "snappy": (1, "snappy"),
    "gzip": (2, "gzip"),
    "zstd": (6, "zstd"),
    "lz4": (7, "lz4_raw"),
}
#: the largest dictionary page (bytes) before a column falls back to PLAIN (pyarrow: 1 MiB)
DICTIONARY_LIMIT = 1 << 20


@dataclass
class Chunk:
    """An encoded column chunk; offsets are relative to the chunk's first byte."""

    data: bytes
    meta: thrift.Fields  #: ColumnMetaData without the page offsets
    dictionary_offset: int | None
    data_offset: int
    uncompressed: int  #: total uncompressed size, page headers included


def _levels(levels: np.ndarray | None, max_level: int) -> bytes:
    """A v1 data page's level block: 4-byte length, then the RLE/bit-packed hybrid."""
    if levels is None:
        return b""
    encoded = rle_hybrid(levels, 1, max_level.bit_length())
    return len(encoded).to_bytes(4, "little") + encoded


def _compress(body: bytes, codec: str | None) -> bytes:
    return body if codec is None else pa.compress(body, codec=codec, asbytes=True)


def _page(kind: int, body: bytes, codec: str | None, header: tuple[int, thrift.Fields]) -> tuple[bytes, int]:
    """Page header + compressed body, and the uncompressed size (header included)."""
    packed = _compress(body, codec)
    head = thrift.struct(
        [(1, "i32", kind), (2, "i32", len(body)), (3, "i32", len(packed)), (header[0], "struct", header[1])]
    )
    return head + packed, len(head) + len(body)


def _dictionary(flat: Flat, leaf: Leaf) -> tuple[np.ndarray, np.ndarray] | None:
    """(indices, dictionary) for the present values, or None to write them PLAIN."""
    if flat.indices is not None:
        return flat.indices, flat.dictionary
    values = np.ascontiguousarray(flat.values)
    if not len(values):
        return None
    itemsize = values.dtype.itemsize
    indices = np.empty(len(values), np.int32)
    dictionary = np.empty(len(values), values.dtype)
    limit = min(len(values), DICTIONARY_LIMIT // itemsize)
    distinct = dict_encode(values, itemsize, indices, dictionary, limit)
    if distinct < 0:
        return None
    return indices, dictionary[:distinct]


def _stat_bytes(value, dtype: np.dtype) -> bytes:
    return np.asarray(value, dtype=dtype).tobytes()


def statistics(flat: Flat, leaf: Leaf) -> thrift.Fields:
    """null_count, min_value, max_value (NaN ignored; -0.0 min and +0.0 max, as the format asks)."""
    present = flat.values if flat.values is not None else flat.dictionary[flat.indices]
    fields: thrift.Fields = [(3, "i64", flat.num_levels - len(present))]
    if leaf.dtype.kind == "f":
        present = present[~np.isnan(present)]
    if not len(present):
        return fields
    low, high = present.min(), present.max()
    if leaf.dtype.kind == "f":
        low = -0.0 if low == 0 else low
        high = 0.0 if high == 0 else high
    return fields + [
        (5, "binary", _stat_bytes(high, leaf.dtype)),
        (6, "binary", _stat_bytes(low, leaf.dtype)),
    ]


def encode(array: pa.Array, leaf: Leaf, compression: str, with_statistics: bool) -> Chunk:
    codec_id, codec = CODECS[compression]
    flat = flatten(array, leaf)
    levels = _levels(flat.rep, leaf.max_rep) + _levels(flat.defs, leaf.max_def)
    out, uncompressed = bytearray(), 0
    dictionary_offset = None
    encoded = _dictionary(flat, leaf)
    if encoded is not None:
        indices, dictionary = encoded
        page, size = _page(
            DICTIONARY_PAGE,
            np.ascontiguousarray(dictionary, leaf.dtype).tobytes(),
            codec,
            (7, [(1, "i32", len(dictionary)), (2, "i32", PLAIN)]),
        )
        dictionary_offset, uncompressed = 0, size
        out += page
        width = max(1, (len(dictionary) - 1).bit_length())
        values = bytes([width]) + rle_hybrid(np.ascontiguousarray(indices, np.int32), 4, width)
        encoding, encodings = RLE_DICTIONARY, [PLAIN, RLE, RLE_DICTIONARY]
    else:
        values = np.ascontiguousarray(flat.values, leaf.dtype).tobytes()
        encoding, encodings = PLAIN, [PLAIN, RLE]
    data_offset = len(out)
    page, size = _page(
        DATA_PAGE,
        levels + values,
        codec,
        (5, [(1, "i32", flat.num_levels), (2, "i32", encoding), (3, "i32", RLE), (4, "i32", RLE)]),
    )
    out += page
    uncompressed += size
    meta: thrift.Fields = [
        (1, "i32", leaf.physical),
        (2, "list:i32", encodings),
        (3, "list:binary", list(leaf.path)),
        (4, "i32", codec_id),
        (5, "i64", flat.num_levels),
        (6, "i64", uncompressed),
        (7, "i64", len(out)),
    ]
    if with_statistics and not leaf.is_list:
        meta.append((12, "struct", statistics(flat, leaf)))
    return Chunk(bytes(out), meta, dictionary_offset, data_offset, uncompressed)
