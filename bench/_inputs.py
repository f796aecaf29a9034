"""Bench inputs shared by the scripts: the public Criteo sample replicated to N rows."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path


def replicate_tsv(sample: Path, rows: int, workdir: Path) -> Path:
    """The sample's lines repeated (and cut) to ``rows`` rows as an uncompressed TSV in
    ``workdir`` (``criteo_<rows>.tsv``); an existing file of the right size is reused. Written
    to a temporary name and renamed: an interrupted run leaves no short file behind."""
    lines = gzip.decompress(sample.read_bytes()).splitlines(keepends=True)
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in lines]
    copies, rest = divmod(rows, len(lines))
    block = b"".join(lines)
    size = copies * len(block) + sum(len(line) for line in lines[:rest])
    path = workdir / f"criteo_{rows}.tsv"
    if path.is_file() and path.stat().st_size == size:
        print(f"reusing {path}", file=sys.stderr, flush=True)
        return path
    print(f"writing {path} ({rows:,} rows, {size / 1e6:.0f} MB)", file=sys.stderr, flush=True)
    partial = path.with_suffix(".tsv.partial")
    with partial.open("wb") as out:
        for _ in range(copies):
            out.write(block)
        out.writelines(lines[:rest])
    partial.replace(path)
    return path
