"""``recprep train --rows-per-second``: the schedule, and a trainer held to it."""

from __future__ import annotations

import json
import math

import pytest

from recprep.train.pace import Pace, PaceError, Pacer

from ..conftest import recprep


def test_a_schedule_is_rates_from_seconds_on():
    pace = Pace.parse("5000, 30000@20,2000@60")
    assert pace.steps == ((0.0, 5000.0), (20.0, 30000.0), (60.0, 2000.0))
    assert [pace.rate(t) for t in (0, 19.9, 20, 59, 60, 1e6)] == [5000, 5000, 30000, 30000, 2000, 2000]
    assert pace.describe() == "5000 rows/s, 30000 rows/s from 20 s, 2000 rows/s from 60 s"


def _consume(pace: Pace, batch: int, until: float, speed: float = math.inf) -> list[tuple[float, int]]:
    """A consumer of ``batch`` rows at a time, at most ``speed`` rows/s of its own, held by a
    Pacer on a simulated clock: (second, rows consumed) after each batch, up to ``until``."""
    pacer, t, consumed, trace = Pacer(pace), 0.0, 0, []
    while t < until:
        hold = pacer.hold(t, consumed, batch)
        if hold > 0:
            t += hold
            continue
        t += batch / speed if math.isfinite(speed) else 1e-6
        consumed += batch
        trace.append((t, consumed))
    return trace


def _rows_by(trace, second: float) -> int:
    return max((c for t, c in trace if t <= second + 1e-9), default=0)


def test_a_consumer_is_held_to_each_stretchs_rate():
    trace = _consume(Pace.parse("1000,4000@10,500@20"), 100, 30)
    assert _rows_by(trace, 10) == pytest.approx(10_000, abs=200)
    assert _rows_by(trace, 20) == pytest.approx(10_000 + 40_000, abs=200)
    assert _rows_by(trace, 30) == pytest.approx(50_000 + 5_000, abs=500)  # (batches of 0.2 s here)


def test_unlimited_stretches_do_not_lift_the_later_ones():
    # a consumer that does 8,000 rows/s of its own: let go for 10 s, then held to 1,000 again
    trace = _consume(Pace.parse("1000,inf@10,1000@20"), 100, 40, speed=8000)
    assert _rows_by(trace, 10) == pytest.approx(10_000, abs=200)
    assert _rows_by(trace, 20) == pytest.approx(10_000 + 80_000, abs=200)
    assert _rows_by(trace, 40) - _rows_by(trace, 20) == pytest.approx(20_000, abs=200)


def test_late_data_is_not_made_up_for_in_the_next_stretch():
    pacer = Pacer(Pace.parse("1000,2000@10"))
    assert pacer.hold(0.0, 0, 100) == pytest.approx(0.1)
    # the data was late: at 12 s only 3,000 rows were consumed; the new stretch counts from here
    assert pacer.hold(12.0, 3000, 1000) == pytest.approx(0.5)
    assert pacer.hold(12.5, 4000, 1000) == pytest.approx(0.5)


def test_a_pause_waits_for_the_next_stretch():
    pacer = Pacer(Pace.parse("1000,0@10,1000@30"))
    assert pacer.hold(10.5, 10_000, 100) == pytest.approx(19.5)  # paused until 30 s
    assert pacer.hold(30.0, 10_000, 100) == pytest.approx(0.1)
    assert Pacer(Pace.parse("inf")).hold(5.0, 10**12, 10**6) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("fast", "'fast': expected RATE or RATE@SECONDS"),
        ("-5", "'-5': the rate must be rows/s >= 0"),
        ("nan", "'nan': the rate must be rows/s >= 0"),
        ("5@3", "'5@3': the first rate holds from 0"),
        ("5,6@10,7@10", "'7@10': the seconds must increase (10 before it)"),
        ("5,6@-1", "'6@-1': the second must be >= 0"),
        ("5,0@10", "the last rate is 0: the trainer would never finish"),
    ],
)
def test_a_bad_schedule_is_named(text, message):
    with pytest.raises(PaceError) as err:
        Pace.parse(text)
    assert message in str(err.value)


@pytest.mark.integration
def test_a_trainer_is_held_to_the_schedule_and_reports_it(tmp_path):
    pytest.importorskip("torch")
    job = tmp_path / "job.yaml"
    job.write_text(
        json.dumps(
            {
                "apiVersion": "recprep.io/v1alpha1",
                "kind": "PreprocessJob",
                "metadata": {"name": "paced"},
                "spec": {
                    "source": {"uri": "synthetic://criteo?rows=20000&seed=1", "format": "criteo"},
                    "transforms": [
                        {"op": "fill_null", "columns": "dense", "value": 0},
                        {"op": "hex_to_int", "columns": "sparse"},
                        {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1000},
                        {"op": "to_list", "columns": "sparse"},
                    ],
                    "output": {"uri": str(tmp_path / "out"), "rowsPerShard": 5000},
                },
            }
        )
    )
    assert recprep("run", str(job), "--workers", "1").returncode == 0
    # 20,000 rows: 4,000 at 2,000 rows/s (2 s), then 16,000 at 16,000 rows/s (1 s): 3 s at least
    res = recprep(
        "train",
        str(tmp_path / "out"),
        "--batch-size",
        "1000",
        "--embedding-dim",
        "4",
        "--threads",
        "1",
        "--rows-per-second",
        "2000,16000@2",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["samples"] == 20_000 and report["pace"] == "2000 rows/s, 16000 rows/s from 2 s"
    assert report["seconds"] >= 3.0 - 0.05 and report["held_seconds"] > 1.0
    assert report["samples_per_second"] <= 20_000 / 3.0 * 1.02
    bad = recprep("train", str(tmp_path / "out"), "--rows-per-second", "5,0@3")
    assert bad.returncode == 2 and "--rows-per-second" in bad.stderr and "the last rate is 0" in bad.stderr
    assert "Traceback" not in bad.stderr
