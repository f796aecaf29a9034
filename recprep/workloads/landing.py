"""What the driver does with a shard that landed: its commit record in the ledger, then the
run's accounting, summary and progress (the same for a shard read by splits, ``runner``, and one
of a file decoded once, ``decode_once``)."""

from __future__ import annotations

from ..isp_nodes.accounting import Account
from .output import CommitRecord, OutputWriter
from .tasks import ShardResult


def land(
    ledger: OutputWriter,
    r: ShardResult,
    source: dict,
    placement: dict,
    summary,
    account: Account,
    units: dict[str, int],
    progress,
) -> None:
    """Commit shard ``r.index`` (read from ``source``: its split's path and bounds) and count it:
    ``summary`` (``runner.RunSummary``), ``account`` (``units``: the ISP workers' units),
    ``progress``."""
    ledger.commit(
        CommitRecord(
            r.index,
            r.file,
            r.rows,
            r.bad_rows,
            r.bytes,
            r.sha256,
            r.quarantine,
            source,
            r.nulled or None,
            placement,
        )
    )
    account.add(r.rows + r.bad_rows, r.bytes, placement, units)
    summary.rows_written += r.rows
    summary.rows_quarantined += r.bad_rows
    summary.rows_read += r.rows + r.bad_rows
    summary.rows_processed += r.rows + r.bad_rows
    if r.quarantine:
        summary.quarantine_files.append(r.quarantine)
    if progress:
        progress.advance(r)


def landed_before(summary, records) -> None:
    """Count in ``summary`` the shards earlier runs committed (``records``: their commit
    records), which this run skips."""
    summary.shards_skipped = len(records)
    for e in records:
        summary.rows_written += e.rows
        summary.rows_quarantined += e.bad_rows
        if e.quarantine:
            summary.quarantine_files.append(e.quarantine)
    summary.rows_read = summary.rows_written + summary.rows_quarantined


def accounted(account: Account, summary, ledger: OutputWriter, progress) -> None:
    """The run's accounting, once every shard has landed: in the summary, the output
    (``_accounting.json``) and the progress."""
    summary.accounting = account.to_json()
    ledger.save_accounting(summary.accounting)
    if progress and hasattr(progress, "accounted"):
        progress.accounted(summary.accounting)
