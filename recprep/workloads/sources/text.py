"""Delimited text sources (criteo, tsv, csv): line-aligned byte-range splits (``cuts``; of a
compressed file, the same cuts in its decompressed text: ``compressed``), typed reads, malformed
rows quarantined with their file and line number.

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
from .base import NULL, BadRow, ReadResult, Roles, Split, non_finite_rows, null_non_finite
from .compressed import (
    ZSTD,
    IndexStore,
    Layout,
    OnePass,
    codec_of,
    first_line,
    kept_plan,
    plan_files,
    read_range,
)
from .cuts import SAMPLE, seek_bounds
from .cuts import target as cut_rule
from .files import is_compressed, list_files, reading

try:
    from ._textscan import count_lines as _count_lines
    from ._textscan import scan as _scan
except ImportError:  # a source tree without the built extension: pyarrow reads every split
    _scan = _count_lines = None

SPARSE_TYPE = pa.dictionary(pa.int32(), pa.string())
# column kinds of the C scanner (see _textscan.c)
_INT, _FLOAT, _HEX, _STR = 1, 2, 3, 4
_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(?i:inf|infinity|nan)$"


class TextSource:
    def __init__(
        self,
        spec,
        fmt: str,
        names: list[str] | None,
        roles_fn,
        exclude: str | None = None,
        index_dir: str | None = None,
    ):
        self.spec = spec
        #: plans and indexes of compressed files (the job output's ``_index/``)
        self.store = IndexStore(index_dir)
        self._layouts: dict[str, Layout] = {}
        self.format = fmt
        self.delimiter = spec.delimiter or ("," if fmt == "csv" else "\t")
        self.fs, self.files = list_files(spec.uri, exclude)
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
        session = getattr(self.spec, "session", None)
        if session is not None and types.get(session.time) == pa.string():
            types[session.time] = pa.int64()  # a session's times: integer unix seconds
        return types

    def schema(self) -> pa.Schema:
        return pa.schema([(n, self.types[n]) for n in self.names])

    def _header_names(self, path: str) -> list[str]:
        with reading(path, "read the header of"):
            if is_compressed(path) and codec_of(path) == ZSTD:  # fsspec's zstd reader: no readline
                line = first_line(self.fs, path).decode("utf-8", errors="replace").rstrip("\r")
            else:
                with self.fs.open(path, "rb", compression="infer") as f:
                    line = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            raise SourceError(f"{path}:1: header line is empty")
        return line.split(self.delimiter)

    # -- planning -------------------------------------------------------------------------------
    def splits(self, rows_per_shard: int) -> list[Split]:
        """The splits of every file, in order. The compressed files are planned first, their
        passes at once (``compressed.plan_files``)."""
        compressed = [p for p in self.files if is_compressed(p)]
        layouts = plan_files(self.fs, compressed, bool(self.spec.header), rows_per_shard, self.store)
        self._layouts.update(zip(compressed, layouts))
        out: list[Split] = []
        for path in self.files:
            with reading(path, "plan the splits of"):
                out += self._file_splits(path, rows_per_shard, len(out))
        return out

    def _file_splits(self, path: str, rows_per_shard: int, first: int) -> list[Split]:
        """The splits of one file, numbered from ``first`` (a compressed file is cut where the
        same text uncompressed would be, as its plan says: ``cuts``, ``compressed``)."""
        if is_compressed(path):
            layout = self._layouts[path]
            bounds, lines = layout.bounds, layout.lines
            rows = [max(b - a, 1) for a, b in zip(lines, lines[1:])]
            if self.spec.header:
                rows[0] = max(rows[0] - 1, 1)
        else:
            size = self.fs.size(path)
            with self.fs.open(path, "rb") as f:
                rule = cut_rule(f.read(SAMPLE), bool(self.spec.header), rows_per_shard)
                bounds = seek_bounds(f, size, rule)
            rows = [max(int((b - a) / rule.per_line), 1) for a, b in zip(bounds, bounds[1:])]
        out: list[Split] = []
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            if b > a:
                out.append(Split(first + len(out), path, a, b, rows[i], header=self.spec.header and i == 0))
        return out

    def _layout(self, path: str) -> Layout:
        """A compressed file's plan, made by the run that planned the splits."""
        if path not in self._layouts:
            layout = self.store.load(self.store.key(self.fs, path))
            if layout is None or not layout.seekable:
                raise SourceError(
                    f"{path}: its index is not in {self.store.directory} (the run that planned the "
                    "job writes it there: has the file changed since?)"
                )
            self._layouts[path] = layout
        return self._layouts[path]

    # -- reading --------------------------------------------------------------------------------
    def _bytes(self, split: Split) -> bytes:
        with reading(split.path):
            if is_compressed(split.path):
                return read_range(
                    self.fs, split.path, self._layout(split.path), self.store, split.start, split.stop
                )
            with self.fs.open(split.path, "rb") as f:
                f.seek(split.start)
                return f.read(split.stop - split.start)

    def raw_bytes(self, split: Split) -> tuple[int, int]:
        """(bytes the split occupies in storage, bytes of text parsed): its byte range (of a
        compressed file: its share of the compressed bytes, and its decompressed range)."""
        parsed = split.stop - split.start
        if is_compressed(split.path):
            return self._layout(split.path).stored_bytes(split.start, split.stop), parsed
        return parsed, parsed

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The split as a table of :meth:`schema`'s types, except that sparse columns named in
        ``decode_hex`` may come back already decoded by ``hex_to_int`` (int64). Malformed rows
        (wrong field count, a value that does not convert, bytes that are not UTF-8, a
        non-finite number unless ``spec.source.nonFinite`` is null) are quarantined: every
        non-empty line is either a row of the table or a bad row."""
        return self._parse(self._bytes(split), split, decode_hex)

    def read_text(
        self, split: Split, data: bytes, first_line: int, decode_hex: frozenset[str] = frozenset()
    ) -> ReadResult:
        """:meth:`read` of a split whose text the caller has (a compressed file decoded once:
        ``compressed.OnePass``), ``first_line`` the 1-based line number of its first byte."""
        return self._parse(data, split, decode_hex, first_line=first_line)

    def one_pass(self, path: str, rows_per_shard: int) -> OnePass:
        """The splits of compressed file ``path`` with their text, from one pass over it."""
        return OnePass(self.fs, path, bool(self.spec.header), rows_per_shard)

    def kept_plan(self, path: str, rows_per_shard: int) -> Layout | None:
        """Compressed file ``path``'s plan kept in the store (seekable or not), or None."""
        with reading(path, "plan the splits of"):
            return kept_plan(self.fs, path, bool(self.spec.header), rows_per_shard, self.store)

    def read_piece(
        self, split: Split, nbytes: int, tail: bool = False, decode_hex: frozenset[str] = frozenset()
    ) -> pa.Table:
        """The whole lines among the first (``tail``: the last) ``nbytes`` bytes of ``split``, read
        as :meth:`read` reads them, malformed rows left out (they are the split's own read's to
        quarantine): a grouped session source's look at a neighbouring split
        (``grouped_sessions``). ``nbytes`` at least the split's size reads it whole."""
        size = split.stop - split.start
        if nbytes >= size:
            return self._parse(self._bytes(split), split, decode_hex, keep_bad=False).table
        a, b = (split.stop - nbytes, split.stop) if tail else (split.start, split.start + nbytes)
        data, piece = _whole_lines(self._bytes(Split(split.index, split.path, a, b, 0)), a, split, tail)
        return self._parse(data, piece, decode_hex, keep_bad=False).table

    def read_around(
        self,
        split: Split,
        before: Split | None,
        before_bytes: int,
        after: Split | None,
        after_bytes: int,
        decode_hex: frozenset[str] = frozenset(),
    ) -> tuple[ReadResult, pa.Table | None, pa.Table | None, pa.Table | None]:
        """:meth:`read` of ``split``, and :meth:`read_piece` of the last ``before_bytes`` of the
        split ``before`` it and of the first ``after_bytes`` of the split ``after`` it (both next
        to it in its file, or None), all from one read of the file's bytes. The fourth: when the
        three read as one (the C scanner takes all their bytes, no row is bad, no hex is
        decoded), that one table, of which the other three are slices, else None."""
        size = split.stop - split.start
        ahead = min(after_bytes, after.stop - after.start) if after else 0
        back = min(before_bytes, before.stop - before.start) if before else 0
        data = self._bytes(Split(split.index, split.path, split.start - back, split.stop + ahead, 0))
        pieces: list[tuple[bytes, Split] | None] = [None, None]
        if before is not None:
            whole = back == before.stop - before.start
            pieces[0] = (
                (data[:back], before)
                if whole
                else _whole_lines(data[:back], split.start - back, before, True)
            )
        if after is not None:
            whole = ahead == after.stop - after.start
            pieces[1] = (
                (data[back + size :], after)
                if whole
                else _whole_lines(data[back + size :], after.start, after, False)
            )
        together = self._read_together(data, back, size, pieces, split, decode_hex)
        if together is not None:
            return together
        own = self._parse(data[back : back + size], split, decode_hex)
        tables = [
            None if p is None else self._parse(p[0], p[1], decode_hex, keep_bad=False).table for p in pieces
        ]
        return own, tables[0], tables[1], None

    def _read_together(self, data: bytes, back: int, size: int, pieces, split: Split, decode_hex):
        """:meth:`read_around`'s four from one scan of the pieces' and the split's bytes, or None
        where that is not exact (the scanner declines, a row is bad, hex is decoded)."""
        if _scan is None or decode_hex or ord(self.delimiter) >= 128:
            return None
        before = pieces[0][0] if pieces[0] else b""
        after = pieces[1][0] if pieces[1] else b""
        start = back - len(before)
        header = pieces[0][1].header if pieces[0] else split.header
        whole = Split(split.index, split.path, split.start - len(before), split.stop + len(after), 0, header)
        read = self._scan(data[start : back + size + len(after)], whole, decode_hex)
        if read is None:
            return None
        table, _, nulled = read
        checked, bad = self._finite(table, [], data[start : back + size + len(after)], whole)
        if bad or nulled:
            return None
        n_back = len(_row_lines(before)) - (1 if pieces[0] and header else 0)
        n_after = len(_row_lines(after))
        n_own = table.num_rows - n_back - n_after
        own = ReadResult(checked.slice(n_back, n_own))
        back_table = checked.slice(0, n_back) if pieces[0] else None
        after_table = checked.slice(n_back + n_own) if pieces[1] else None
        return own, back_table, after_table, checked

    def _parse(
        self,
        data: bytes,
        split: Split,
        decode_hex: frozenset[str],
        keep_bad: bool = True,
        first_line: int | None = None,
    ) -> ReadResult:
        """:meth:`read` of ``data``, the bytes of ``split`` (``keep_bad``: False leaves the bad
        rows out of the result, and their lines uncounted; ``first_line``: the line number of
        its first byte, when the caller knows it)."""
        read = None
        if _scan is not None and ord(self.delimiter) < 128:  # the scanner splits on one ASCII byte
            read = self._scan(data, split, decode_hex)
        if read is None:
            read = self._read_arrow(data, split)
        table, bad, nulled = read
        table, bad = self._finite(table, bad, data, split)
        if not bad or not keep_bad:
            return ReadResult(table, nulled=nulled)
        first_line = self._first_line(split) if first_line is None else first_line
        lines = data.split(b"\n")
        quarantined = [
            BadRow(split.path, first_line + n - 1, reason, _text(lines[n - 1])) for n, reason in sorted(bad)
        ]
        return ReadResult(table, quarantined, nulled)

    def _scan(self, data: bytes, split: Split, decode_hex: frozenset[str]):
        """The C scanner's (table, [], nulled), or None when it declines the split."""
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
        rows, nulls, declined, _line, invalid = _scan(
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
        nulled = {name: n for name, kind, n in zip(self.names, kinds, invalid) if kind == _HEX and n}
        return pa.table(columns, names=self.names), [], nulled

    def _read_arrow(self, data: bytes, split: Split):
        """pyarrow's reader: (table, bad rows as (line within the piece, reason), {}), every
        non-empty line (the header aside) one of the two."""
        data, bad = _blank_malformed_lines(data)  # lines pyarrow cannot report are bad rows at once
        for _attempt in range(2):
            table, parsed_bad = self._parse_arrow(data, split)
            lines = len(_row_lines(data)) - (1 if split.header else 0)
            if table.num_rows + len(parsed_bad) == max(lines, 0):
                return table, bad + parsed_bad, {}
            # a quote left open at the end of a line made pyarrow read on into the next one
            data, unterminated = self._blank_unterminated_quotes(data, split)
            bad += unterminated
            if not unterminated:
                break
        raise SourceError(
            f"{split.path}: bytes {split.start}-{split.stop} do not read as one row per line "
            "(quoting that spans lines?)"
        )

    def _parse_arrow(self, data: bytes, split: Split):
        rejected: list[int] = []  # rows pyarrow's reader skipped, as numbered among non-empty lines
        reasons: dict[int, str] = {}

        def invalid_row(row) -> str:
            rejected.append(row.number)
            reasons[row.number] = f"expected {row.expected_columns} fields, found {row.actual_columns}"
            return "skip"

        def parse(types):
            rejected.clear()
            reasons.clear()
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

        row_lines = _row_lines(data)  # the physical line of each non-empty line
        try:
            table = parse(self.types)
            bad_values: list[tuple[int, str]] = []
        except pa.ArrowInvalid as exc:
            # a value did not convert (e.g. a non-numeric dense field): re-read numbers as text,
            # find the offending rows with vectorized pattern checks, and keep the rest
            try:
                table, bad_values = self._read_lenient(data, split, parse, rejected, row_lines)
            except pa.ArrowInvalid:
                raise SourceError(
                    f"{split.path}: cannot parse bytes {split.start}-{split.stop} ({exc})"
                ) from None
        bad = [(int(row_lines[n - 1]), reasons[n]) for n in rejected if 0 < n <= len(row_lines)]
        return table, bad + bad_values

    def _blank_unterminated_quotes(self, data: bytes, split: Split) -> tuple[bytes, list[tuple[int, str]]]:
        """Lines holding a quote that, read alone, are not exactly one row: emptied, as bad rows."""
        lines = data.split(b"\n")
        bad = []
        for i, line in enumerate(lines):
            if b'"' not in line or (split.header and i == 0):
                continue
            if self._rows_alone(line) != 1:
                bad.append((i + 1, "a quote that is not closed on its line"))
                lines[i] = b""
        return b"\n".join(lines), bad

    def _rows_alone(self, line: bytes) -> int:
        """How many rows pyarrow reads from ``line`` by itself (0 for an invalid one)."""
        invalid: list[int] = []
        try:
            table = pcsv.read_csv(
                pa.py_buffer(line + b"\n"),
                read_options=pcsv.ReadOptions(column_names=self.names, use_threads=False),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter,
                    invalid_row_handler=lambda row: invalid.append(1) or "skip",
                    newlines_in_values=False,
                ),
                convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in self.names}),
            )
        except pa.ArrowInvalid:
            return 0
        return 0 if invalid else table.num_rows

    def _read_lenient(self, data: bytes, split: Split, parse, rejected, row_lines):
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
        lines = _table_lines(row_lines, split.header, [row_lines[n - 1] for n in rejected])
        return keep, [(int(lines[i]), reasons[i]) for i in np.flatnonzero(reject)]

    def _finite(self, table: pa.Table, bad: list[tuple[int, str]], data: bytes, split: Split):
        """Non-finite dense (or label) values: bad rows, or nulls with ``nonFinite: null``."""
        roles = (*self.roles.dense, self.roles.label)
        numeric = [n for n in roles if n and self.types.get(n) == pa.float64()]
        if not numeric:
            return table, bad
        if self.spec.non_finite == NULL:
            return null_non_finite(table, numeric), bad
        mask, why = non_finite_rows(table, numeric)
        if not mask.any():
            return table, bad
        lines = _table_lines(_row_lines(data), split.header, [n for n, _ in bad])
        bad = bad + [(int(lines[i]), why[int(i)]) for i in np.flatnonzero(mask)]
        return table.filter(pa.array(~mask)), bad

    def locate(self, split: Split, bad: list[BadRow], row: int) -> str:
        """``file:line`` of row ``row`` (0-based) of the table :meth:`read` returned for ``split``
        with bad rows ``bad``: for errors about a value found after the read. It reads the split
        again, so only a failing job pays for it."""
        first = self._first_line(split)
        lines = _table_lines(_row_lines(self._bytes(split)), split.header, [b.line - first + 1 for b in bad])
        return f"{split.path}:{first + int(lines[row]) - 1}"

    def _first_line(self, split: Split) -> int:
        """1-based line number of the first byte of a split (counted only when rows go bad)."""
        if split.start == 0:
            return 1
        if is_compressed(split.path):
            return self._layout(split.path).line_of(split.start)
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


def _whole_lines(data: bytes, start: int, split: Split, tail: bool) -> tuple[bytes, Split]:
    """The whole lines of ``data``, bytes of ``split`` from file offset ``start``, and the range
    they are: of a tail, the lines after its first newline (the line before it began earlier);
    of a head, up to its last newline (the last line may run on)."""
    stop = start + len(data)
    if tail:
        cut = data.find(b"\n") + 1 or len(data)  # no newline: no whole line
        return data[cut:], Split(split.index, split.path, start + cut, stop, 0)
    cut = data.rfind(b"\n") + 1
    return data[:cut], Split(split.index, split.path, start, start + cut, 0, split.header)


def _table_lines(row_lines: np.ndarray, header: bool, excluded) -> np.ndarray:
    """The physical line of each row of a table read from a piece: its non-empty lines
    (``row_lines``), less the header and the ``excluded`` lines (rows that went bad)."""
    lines = row_lines[1:] if header else row_lines
    if len(excluded):
        lines = lines[~np.isin(lines, np.asarray(excluded, dtype=np.int64))]
    return lines


def _text(line: bytes) -> str:
    """A line as the quarantine keeps it: text, with bytes that are not UTF-8 escaped."""
    return line.rstrip(b"\r").decode("utf-8", "backslashreplace")


def _blank_malformed_lines(data: bytes) -> tuple[bytes, list[tuple[int, str]]]:
    """``data`` with every line that is not valid UTF-8, or holds a carriage return that does not
    end it, emptied (an empty line is no row, and the other lines keep their numbers), and those
    lines as bad rows (line, reason). pyarrow's reader cannot quarantine either: it fails on the
    first (it decodes a bad row's text to report it) and cuts the second into two rows."""
    buf = np.frombuffer(data, dtype=np.uint8)
    cr = np.flatnonzero(buf[:-1] == 13)
    lone_cr = cr[buf[cr + 1] != 10]
    try:
        data.decode("utf-8")
        high = np.empty(0, dtype=np.int64)
    except UnicodeDecodeError:
        high = np.flatnonzero(buf >= 0x80)
    if not len(lone_cr) and not len(high):
        return data, []
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], ends + 1])
    stops = np.append(ends, len(buf))
    with_cr = set(np.searchsorted(stops, lone_cr).tolist())
    candidates = sorted(with_cr | set(np.searchsorted(stops, high).tolist()))
    out = bytearray(data)
    bad = []
    for i in reversed(candidates):
        a, b = int(starts[i]), int(stops[i])
        try:
            data[a:b].decode("utf-8")
            reason = "a carriage return inside the line" if i in with_cr else None
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 text (byte {exc.start + 1} of the line)"
        if reason:
            bad.append((int(i) + 1, reason))
            del out[a:b]
    return bytes(out), bad[::-1]


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
