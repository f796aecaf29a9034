"""One column chunk: an optional dictionary page and one data page (format v1), compressed.

A chunk takes whichever of these encodings gives it the fewest bytes (how it is judged: see
:func:`encode`; ties in this order): RLE_DICTIONARY, with the dictionary the values arrived with
(written as it is, no re-hashing), else when a dictionary of at most ``DICTIONARY_LIMIT`` bytes
holds its distinct values (pyarrow's only choice besides PLAIN); PLAIN (which a compressor makes
small where lists repeat from one row to the next, as the sliding windows of a user's history
features do); DELTA_BINARY_PACKED for integers (hashed IDs of a large table, where a dictionary
holds nearly every value and costs its full width per distinct value). All three are read by
every Parquet reader since format 2.0. For such lists the dictionary's indices are also packed
at the next whole number of bytes (17 bits: 24) and compressed against the narrowest packing: a
list repeated from the row before then repeats byte for byte, which the compressor folds away
(50 items at 15 bits take 750 bits, so each list starts 6 bits further into its byte than the
one before and only every fourth lines up; at 16 bits each is 100 whole bytes); the Taobao
sample's plain shards take 6-33% fewer bytes with Snappy, depending on where the
narrowest width falls. Where PLAIN wins for such lists, BYTE_STREAM_SPLIT (byte k
of every value, then byte k + 1 of every value, ...) is compressed against it too: the compressor
then finds the window in each byte plane, and the planes of a narrow range's high bytes (IDs
hashed below a million in int64) are runs it folds away; the deduplicated 50-item histories of
the Taobao sample take 11% fewer bytes. Integers in that encoding need format 2.11 readers
(pyarrow 16, which recprep requires, DuckDB 1.1, parquet-java 1.14). Statistics (null count,
min, max) are written for flat columns that ask for them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import thrift
from ._encode import delta_binary_packed, dict_encode, rle_hybrid
from .levels import Flat, flatten
from .schema import Leaf

# parquet.thrift enums
PLAIN, RLE, DELTA_BINARY_PACKED, RLE_DICTIONARY, BYTE_STREAM_SPLIT = 0, 3, 5, 8, 9
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


#: A list column of at least this many values per list that has any also has its PLAIN pages
#: compressed, to compare: lists may repeat from row to row (a user's history window sliding by
#: a few items), which only the compressor sees. One-element lists (``firstx`` of a sparse ID)
#: are not tried.
REPEATED_LISTS = 2
#: Bytes of a long PLAIN body compressed to judge it first, and how far under the best its
#: estimate must come for the whole body to be compressed and compared.
PLAIN_SAMPLE = 1 << 18
PLAIN_MARGIN = 1.1
#: Values whose deltas are looked at first, to judge whether the delta encoding is worth a pass.
DELTA_SAMPLE = 4096


@dataclass
class _Candidate:
    """One way to encode a chunk's values: its data page's encoding, their bytes before
    compression, how to make them, and the dictionary page's body when it has one."""

    encoding: int
    size: int  #: bytes before compression (page headers aside)
    make: Callable[[], bytes]  #: the data page's values
    dictionary: bytes | None = None
    entries: int = 0  #: values in the dictionary
    indices: np.ndarray | None = None  #: the dictionary's indices, one per value

    def pages(self, levels: bytes, num_levels: int, codec: str | None) -> tuple[bytes | None, bytes, int]:
        """(dictionary page or None, data page, uncompressed bytes of both, headers included)."""
        uncompressed, dict_page = 0, None
        if self.dictionary is not None:
            dict_page, uncompressed = _page(
                DICTIONARY_PAGE, self.dictionary, codec, (7, [(1, "i32", self.entries), (2, "i32", PLAIN)])
            )
        data_page, size = _page(
            DATA_PAGE,
            levels + self.make(),
            codec,
            (5, [(1, "i32", num_levels), (2, "i32", self.encoding), (3, "i32", RLE), (4, "i32", RLE)]),
        )
        return dict_page, data_page, uncompressed + size


def _candidates(flat: Flat, leaf: Leaf) -> tuple[list[_Candidate], int]:
    """The encodings worth weighing, in the order that breaks ties (dictionary, PLAIN, delta),
    and how many values are present. Values that arrived dictionary-encoded are expanded only
    for an encoding that needs them; integers are delta-encoded only where the deltas of their
    first ``DELTA_SAMPLE`` values say that may be smaller than the others."""
    encoded = _dictionary(flat, leaf)
    count = len(flat.values) if flat.values is not None else len(flat.indices)
    present = functools.cache(lambda: _head(flat, leaf, count))  # every value, made once if at all
    itemsize = leaf.dtype.itemsize
    found = []
    if encoded is not None:
        indices, dictionary = encoded
        body = np.ascontiguousarray(dictionary, leaf.dtype).tobytes()
        found.append(_packed(indices, body, len(dictionary), max(1, (len(dictionary) - 1).bit_length())))
    found.append(_Candidate(PLAIN, count * itemsize, lambda: present().tobytes()))
    if leaf.dtype.kind == "i" and count:
        if _delta_bits(_head(flat, leaf, DELTA_SAMPLE)) * count / 8 < min(c.size for c in found):
            deltas = delta_binary_packed(present(), itemsize)
            found.append(_Candidate(DELTA_BINARY_PACKED, len(deltas), lambda: deltas))
    return found, count


def _packed(indices: np.ndarray, dictionary: bytes, entries: int, width: int) -> _Candidate:
    """The RLE_DICTIONARY candidate: the dictionary page's body, and the indices bit-packed at
    ``width`` bits (the data page's first byte)."""
    indices = np.ascontiguousarray(indices, np.int32)
    packed = bytes([width]) + rle_hybrid(indices, 4, width)
    return _Candidate(
        RLE_DICTIONARY, len(packed) + len(dictionary), lambda: packed, dictionary, entries, indices
    )


def _aligned_of(packed: _Candidate) -> _Candidate | None:
    """The same dictionary candidate with its indices packed at the next whole number of bytes
    (17 bits: 24), or None where they already are. The format allows any width that holds the
    indices (readers take it from the page), and a wider one is what lets the compressor see
    lists that repeat from row to row: at 15 bits a 50-item list begins 6 bits further into its
    byte than the same list in the row before, so their bytes differ; at 16 they are the same."""
    width = packed.make()[0]
    if width % 8 == 0:
        return None
    return _packed(packed.indices, packed.dictionary, packed.entries, -(-width // 8) * 8)


def _head(flat: Flat, leaf: Leaf, n: int) -> np.ndarray:
    """The first ``n`` present values (expanded from their dictionary where they came in one)."""
    if flat.values is None:
        return np.ascontiguousarray(flat.dictionary, leaf.dtype)[flat.indices[:n]]
    return np.ascontiguousarray(flat.values[:n], leaf.dtype)


def _delta_bits(sample: np.ndarray) -> int:
    """Bits per value the delta encoding would take for values like ``sample``: the width of
    its deltas' range (wrapping as the encoding does). Random values take their range in bits
    and one more; sorted ones their largest step."""
    if len(sample) < 2:
        return 0
    kind = np.uint64 if sample.dtype.itemsize == 8 else np.uint32
    deltas = np.diff(sample.view(kind)).view(sample.dtype)  # the type's wrapping difference
    return (int(deltas.max()) - int(deltas.min())).bit_length()


def _plain_may_win(flat: Flat, leaf: Leaf, size: int, best: int, codec: str) -> bool:
    """Whether PLAIN compressed (``size`` bytes before) may be under ``best`` bytes, judged from
    its first ``PLAIN_SAMPLE`` bytes compressed (repetition from list to list is local: a sample
    sees it), with a margin; a body that short is compressed whole instead."""
    if size <= 2 * PLAIN_SAMPLE:
        return True
    sample = _head(flat, leaf, PLAIN_SAMPLE // leaf.dtype.itemsize).tobytes()
    return len(_compress(sample, codec)) * size / PLAIN_SAMPLE < PLAIN_MARGIN * best


def _byte_stream_split(plain: bytes, itemsize: int) -> bytes:
    """BYTE_STREAM_SPLIT of values given PLAIN: byte k of every value, for k = 0 .. itemsize - 1."""
    return np.ascontiguousarray(np.frombuffer(plain, np.uint8).reshape(-1, itemsize).T).tobytes()


def _split_of(plain: _Candidate, itemsize: int) -> _Candidate:
    """The BYTE_STREAM_SPLIT candidate of the same values as the PLAIN candidate ``plain``."""
    return _Candidate(BYTE_STREAM_SPLIT, plain.size, lambda: _byte_stream_split(plain.make(), itemsize))


def _lists(flat: Flat, leaf: Leaf) -> int:
    """Lists that begin with a value (not null, not empty, not an absent row of a padded group)."""
    starts = flat.rep == 0
    if flat.defs is not None:
        starts &= flat.defs == leaf.max_def
    return int(np.count_nonzero(starts))


def encode(array: pa.Array, leaf: Leaf, compression: str, with_statistics: bool) -> Chunk:
    """The chunk in whichever encoding is smallest: by bytes before compression (cheap, and where
    the encodings differ in kind: a dictionary's narrow indices, deltas bit-packed), and for long
    lists compressed against PLAIN compressed too (repetition only the compressor finds)."""
    codec_id, codec = CODECS[compression]
    flat = flatten(array, leaf)
    levels = _levels(flat.rep, leaf.max_rep) + _levels(flat.defs, leaf.max_def)
    candidates, count = _candidates(flat, leaf)
    chosen = min(candidates, key=lambda c: c.size)  # the first of the smallest
    dict_page, data_page, uncompressed = chosen.pages(levels, flat.num_levels, codec)
    repeats = leaf.is_list and count >= REPEATED_LISTS * _lists(flat, leaf) > 0
    aligned = (
        _aligned_of(chosen) if codec is not None and chosen.encoding == RLE_DICTIONARY and repeats else None
    )
    if aligned is not None:
        other = aligned.pages(levels, flat.num_levels, codec)
        if len(other[1]) < len(data_page):
            chosen, (dict_page, data_page, uncompressed) = aligned, other
    if codec is not None and chosen.encoding != PLAIN and repeats:
        plain = next(c for c in candidates if c.encoding == PLAIN)
        best = len(data_page) + (len(dict_page) if dict_page is not None else 0)
        if _plain_may_win(flat, leaf, plain.size, best, codec):
            other = plain.pages(levels, flat.num_levels, codec)
            if len(other[1]) < best:
                chosen, (dict_page, data_page, uncompressed) = plain, other
    if codec is not None and chosen.encoding == PLAIN and repeats and leaf.dtype.kind in "iuf":
        split = _split_of(chosen, leaf.dtype.itemsize)
        other = split.pages(levels, flat.num_levels, codec)
        if len(other[1]) < len(data_page):
            chosen, (dict_page, data_page, uncompressed) = split, other
    out, dictionary_offset = bytearray(), None
    if dict_page is not None:
        dictionary_offset = 0
        out += dict_page
    data_offset = len(out)
    out += data_page
    encodings = {RLE_DICTIONARY: [PLAIN, RLE, RLE_DICTIONARY], PLAIN: [PLAIN, RLE]}.get(
        chosen.encoding, [RLE, chosen.encoding]
    )
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
