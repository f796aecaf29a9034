"""The shard ledger: which shards of which job are committed in an output directory.

``_job.json`` names the job (a hash of everything that decides the output bytes, including the
split plan); ``_ledger.jsonl`` gets one line per committed shard (rows, checksum, quarantined
rows), appended by the driver only after the shard file was renamed into place. A re-run of the
same job skips what the ledger holds; a different job refuses the directory unless told to
overwrite it. ``_fit.json`` keeps the fitted statistics.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ..errors import OutputError
from .writer import QUARANTINE_DIR

JOB_FILE, LEDGER_FILE, FIT_FILE = "_job.json", "_ledger.jsonl", "_fit.json"


def check_writable(directory: str) -> None:
    """Create ``directory`` and prove a file can be written there, before any work."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".recprep-probe-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"spec.output.uri: cannot write to {directory!r} ({exc.strerror or exc})") from None


class Ledger:
    def __init__(self, directory: str, fsync: bool = False):
        self.directory = directory
        self.fsync = fsync
        self.path = os.path.join(directory, LEDGER_FILE)
        self.entries: dict[int, dict[str, Any]] = {}

    def open(self, identity: str, description: dict[str, Any], overwrite: bool) -> None:
        job_path = os.path.join(self.directory, JOB_FILE)
        existing = _read_json(job_path)
        if existing is not None and existing.get("identity") != identity:
            if not overwrite:
                raise OutputError(
                    f"{self.directory}: holds shards of a different job (job {existing.get('name')!r}, "
                    f"identity {str(existing.get('identity'))[:12]}); pass --overwrite to replace them"
                )
            self._clear()
            existing = None
        elif existing is None and not overwrite and self._has_shards():
            raise OutputError(
                f"{self.directory}: holds part-*.parquet files but no {JOB_FILE}; pass --overwrite to replace them"
            )
        elif overwrite:
            self._clear()
            existing = None
        if existing is None:
            _write_json(job_path, {"identity": identity, **description})
        self.entries = self._load()
        self._sweep_temporaries()

    def _load(self) -> dict[int, dict[str, Any]]:
        entries: dict[int, dict[str, Any]] = {}
        if not os.path.exists(self.path):
            return entries
        with open(self.path) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash mid-append: that shard is simply redone
                if os.path.exists(os.path.join(self.directory, e["file"])):
                    entries[e["shard"]] = e
        return entries

    def record(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self.entries[entry["shard"]] = entry

    def load_fit(self, identity: str):
        data = _read_json(os.path.join(self.directory, FIT_FILE))
        if data and data.get("identity") == identity:
            return data["states"]
        return None

    def save_fit(self, identity: str, states: dict) -> None:
        _write_json(os.path.join(self.directory, FIT_FILE), {"identity": identity, "states": states})

    def _has_shards(self) -> bool:
        return any(n.startswith("part-") for n in os.listdir(self.directory))

    def _clear(self) -> None:
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.startswith("part-") or name in (JOB_FILE, LEDGER_FILE, FIT_FILE) or ".tmp-" in name:
                os.remove(path)
        shutil.rmtree(os.path.join(self.directory, QUARANTINE_DIR), ignore_errors=True)

    def _sweep_temporaries(self) -> None:
        for root in (self.directory, os.path.join(self.directory, QUARANTINE_DIR)):
            if os.path.isdir(root):
                for name in os.listdir(root):
                    if ".tmp-" in name:
                        os.remove(os.path.join(root, name))


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path}: corrupt ({exc})") from None


def _write_json(path: str, data) -> None:
    tmp = path + ".tmp-json"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)
