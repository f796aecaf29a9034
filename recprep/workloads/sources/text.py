"""Delimited text sources (criteo, tsv, csv): line-aligned byte-range splits, typed reads,
malformed rows quarantined with their file and line number.

Types: the label is int64, dense features float64, sparse features dictionary<int32, string>
(each distinct ID string is stored, and later transformed, once per shard), other columns string.
Quoted fields must not contain newlines (splits are cut on newlines).

Two readers, one result. A split is first given to the C scanner (``_textscan.c``), which parses
typed columns in one pass and decodes the sparse columns that the plan sends straight to
``hex_to_int`` into int64 on the way (the op pushed down into the scan: no string column is built
for them). It reads only what it reads exactly as pyarrow would and declines the rest (quotes,
CR line ends, malformed rows, unusual number spellings, non-ASCII IDs); a declined split is read
by pyarrow's CSV reader, which also quarantines malformed rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ...errors import SourceError, SpecError
from .base import BadRow, ReadResult, Roles, Split
from .files import is_compressed, list_files

try:
    from ._textscan import count_lines as _count_lines
    from ._textscan import scan as _scan
except ImportError:  # a source tree without the built extension: pyarrow reads every split
    _scan = _count_lines = None

SPARSE_TYPE = pa.dictionary(pa.int32(), pa.string())
# column kinds of the C scanner (see _textscan.c)
_INT, _FLOAT, _HEX, _STR = 1, 2, 3, 4
_SAMPLE = 1 << 20  # bytes read to estimate the line length
_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(?i:inf|infinity|nan)$"


class TextSource:
    def __init__(self, spec, fmt: str, names: list[str] | None, roles_fn):
        self.spec = spec
        self.format = fmt
        self.delimiter = spec.delimiter or ("," if fmt == "csv" else "\t")
        self.fs, self.files = list_files(spec.uri)
        if fmt == "criteo":
            self.names = names
        elif spec.header:
            self.names = self._header_names(self.files[0])
            if spec.columns and list(spec.columns) != self.names:
                raise SpecError(
                    f"spec.source.columns: {spec.columns} differ from the header of {self.files[0]}: "
                    f"{self.names}"
                )
        elif spec.columns:
            self.names = list(spec.columns)
        else:
            raise SpecError(
                f"spec.source.columns: required for format {fmt} without a header (or set header: true)"
            )
        self.roles: Roles = roles_fn(self.names)
        self.types = self._types()

    # -- schema ---------------------------------------------------------------------------------
    def _types(self) -> dict[str, pa.DataType]:
        types = {n: pa.string() for n in self.names}
        for n in self.roles.dense:
            types[n] = pa.float64()
        for n in self.roles.sparse:
            types[n] = SPARSE_TYPE
        if self.roles.label:
            types[self.roles.label] = pa.int64()
        return types

    def schema(self) -> pa.Schema:
        return pa.schema([(n, self.types[n]) for n in self.names])

    def _header_names(self, path: str) -> list[str]:
        with self.fs.open(path, "rb", compression="infer") as f:
            line = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            raise SourceError(f"{path}:1: header line is empty")
        return line.split(self.delimiter)

    # -- planning -------------------------------------------------------------------------------
    def splits(self, rows_per_shard: int) -> list[Split]:
        out: list[Split] = []
        for path in self.files:
            size = self.fs.size(path)
            if is_compressed(path):
                out.append(Split(len(out), path, 0, size, self._gz_rows(path, size), header=self.spec.header))
                continue
            with self.fs.open(path, "rb") as f:
                sample = f.read(_SAMPLE)
                body = 0
                if self.spec.header:
                    body = sample.find(b"\n") + 1 if b"\n" in sample else len(sample)
                lines = max(sample.count(b"\n", body), 1)
                per_line = max((len(sample) - body) / lines, 1.0)
                target = max(int(rows_per_shard * per_line), 1)
                bounds = [0]
                pos = body + target
                while pos < size:
                    cut = _next_line_start(f, pos, size)
                    if cut >= size:
                        break
                    bounds.append(cut)
                    pos = cut + target
                bounds.append(size)
            for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
                if b > a:
                    est = max(int((b - a) / per_line), 1)
                    out.append(Split(len(out), path, a, b, est, header=self.spec.header and i == 0))
        return out

    def _gz_rows(self, path: str, size: int) -> int:
        """Rows of a compressed file, estimated from a decompressed sample and the file size."""
        with self.fs.open(path, "rb", compression="infer") as f:
            sample = f.read(_SAMPLE)
        lines = max(sample.count(b"\n"), 1)
        ratio = 4.0
        if path.endswith(".gz") and size >= 4:
            with self.fs.open(path, "rb") as raw:
                raw.seek(size - 4)
                isize = int.from_bytes(raw.read(4), "little")  # uncompressed size mod 2**32
            if isize:
                ratio = max(isize / size, 1.0)
        return max(int(size * ratio * lines / max(len(sample), 1)), 1)

    # -- reading --------------------------------------------------------------------------------
    def _bytes(self, split: Split) -> bytes:
        if is_compressed(split.path):
            with self.fs.open(split.path, "rb", compression="infer") as f:
                return f.read()
        with self.fs.open(split.path, "rb") as f:
            f.seek(split.start)
            return f.read(split.stop - split.start)

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The split as a table of :meth:`schema`'s types, except that sparse columns named in
        ``decode_hex`` may come back already decoded by ``hex_to_int`` (int64)."""
        data = self._bytes(split)
        if _scan is not None and ord(self.delimiter) < 128:  # the scanner splits on one ASCII byte
            table = self._scan(data, split, decode_hex)
            if table is not None:
                return ReadResult(table)
        return self._read_arrow(data, split)

    def _scan(self, data: bytes, split: Split, decode_hex: frozenset[str]) -> pa.Table | None:
        """The C scanner's table, or None when it declines the split."""
        capacity = _count_lines(data) + 1
        kinds, outputs = bytearray(), []
        for name in self.names:
            t = self.types[name]
            if t == pa.int64() or t == pa.float64():
                kinds.append(_INT if t == pa.int64() else _FLOAT)
                outputs.append((np.empty(capacity, t.to_pandas_dtype()), np.empty(capacity, np.uint8)))
            elif t == SPARSE_TYPE and name in decode_hex:
                kinds.append(_HEX)
                outputs.append((np.empty(capacity, np.int64), np.empty(capacity, np.uint8)))
            else:
                kinds.append(_STR)
                outputs.append(
                    (
                        np.empty(capacity + 1, np.int32),
                        np.empty(len(data), np.uint8),
                        np.empty(capacity, np.uint8),
                    )
                )
        rows, nulls, declined, _line = _scan(
            data, ord(self.delimiter), split.header, bytes(kinds), outputs, capacity
        )
        if declined:
            return None
        columns = []
        for name, kind, out, null_count in zip(self.names, kinds, outputs, nulls):
            valid = pa.py_buffer(np.packbits(out[-1][:rows], bitorder="little")) if null_count else None
            if kind == _STR:
                used = int(out[0][rows])
                array = pa.Array.from_buffers(
                    pa.string(),
                    rows,
                    [valid, pa.py_buffer(out[0][: rows + 1]), pa.py_buffer(out[1][:used])],
                    null_count,
                )
                if self.types[name] == SPARSE_TYPE:
                    array = array.dictionary_encode().cast(SPARSE_TYPE)
            else:
                dtype = pa.float64() if kind == _FLOAT else pa.int64()
                array = pa.Array.from_buffers(dtype, rows, [valid, pa.py_buffer(out[0][:rows])], null_count)
            columns.append(array)
        return pa.table(columns, names=self.names)

    def _read_arrow(self, data: bytes, split: Split) -> ReadResult:
        bad: list[tuple[int, str, str]] = []  # (line within the piece, reason, text)

        def invalid_row(row) -> str:
            bad.append(
                (row.number, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text)
            )
            return "skip"

        def parse(types):
            bad.clear()
            return pcsv.read_csv(
                pa.py_buffer(data),
                read_options=pcsv.ReadOptions(
                    column_names=self.names,
                    skip_rows=1 if split.header else 0,
                    use_threads=False,
                    block_size=max(len(data) + 1, 1 << 16),
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter, invalid_row_handler=invalid_row, newlines_in_values=False
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=True
                ),
            )

        try:
            table = parse(self.types)
            bad_values: list[tuple[int, str, str]] = []
        except pa.ArrowInvalid:
            # a value did not convert (e.g. a non-numeric dense field): re-read numbers as text,
            # find the offending rows with vectorized pattern checks, and keep the rest
            table, bad_values = self._read_lenient(data, split, parse, bad)
        rows = bad + bad_values
        if not rows:
            return ReadResult(table)
        first_line = self._first_line(split)
        quarantined = [
            BadRow(split.path, first_line + n - 1, reason, text) for n, reason, text in sorted(rows)
        ]
        return ReadResult(table, quarantined)

    def _read_lenient(self, data: bytes, split: Split, parse, bad):
        numeric = {n: t for n, t in self.types.items() if t in (pa.int64(), pa.float64())}
        loose = {n: (pa.string() if n in numeric else t) for n, t in self.types.items()}
        table = parse(loose)
        reject = np.zeros(table.num_rows, dtype=bool)
        reasons = np.full(table.num_rows, "", dtype=object)
        for name, target in numeric.items():
            col = table[name]
            ok = pc.match_substring_regex(col, _INT_RE if target == pa.int64() else _FLOAT_RE)
            wrong = np.asarray(pc.invert(ok).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
            new = wrong & ~reject
            reasons[new] = f"column {name}: not a valid {'integer' if target == pa.int64() else 'number'}"
            reject |= wrong
        keep = table.filter(pa.array(~reject))
        keep = keep.cast(pa.schema([(n, self.types[n]) for n in self.names]))
        # physical line (within the piece) of every parsed row: non-empty lines minus the header
        # and minus the rows the parser already skipped
        lines = _row_lines(data)
        if split.header:
            lines = lines[1:]
        skipped = np.array([n for n, _, _ in bad], dtype=np.int64)
        lines = lines[~np.isin(lines, skipped)]
        text_rows = data.split(b"\n")
        bad_values = [
            (int(lines[i]), reasons[i], text_rows[lines[i] - 1].decode("utf-8", "replace").rstrip("\r"))
            for i in np.flatnonzero(reject)
        ]
        return keep, bad_values

    def _first_line(self, split: Split) -> int:
        """1-based line number of the first byte of a split (counted only when rows go bad)."""
        if split.start == 0:
            return 1
        count = 0
        with self.fs.open(split.path, "rb") as f:
            left = split.start
            while left:
                block = f.read(min(left, 16 << 20))
                if not block:
                    break
                count += block.count(b"\n")
                left -= len(block)
        return count + 1


def _next_line_start(f, pos: int, size: int) -> int:
    """The offset just after the first newline at or after ``pos`` (``size`` if none)."""
    f.seek(pos)
    while True:
        block = f.read(1 << 16)
        if not block:
            return size
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(block)


def _row_lines(data: bytes) -> np.ndarray:
    """1-based numbers of the non-empty lines of ``data`` (empty lines are not rows)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if not len(buf) or buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts
    cr = np.zeros_like(length)
    has = length > 0
    cr[has] = buf[ends[has] - 1] == 13
    return (np.flatnonzero(length - cr > 0) + 1).astype(np.int64)
