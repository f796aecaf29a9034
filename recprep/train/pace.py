"""A trainer held to a demand schedule: ``recprep train --rows-per-second SCHEDULE``.

A trainer on this machine is not the trainer a job will feed: a GPU's step rate is another. To
load-test a pipeline (does the autoscaler keep up when the trainers' demand rises, and let go when
it falls?) the trainer is held to the rows/s the schedule gives from each point on, as a faster
or slower model would consume. It never consumes faster than the schedule; it consumes slower when
the data is not there (the stall, which is what the test measures) or its own steps are slower.

A schedule is ``RATE[@SECONDS],...``: each rate holds from its second (counted from the first
batch) until the next one's; the first holds from 0. ``inf`` is no limit; ``0`` a pause.
``5000`` is 5,000 rows/s throughout; ``5000,30000@20,2000@60`` rises at 20 s and drops at 60 s.
Each rate counts from the rows consumed when it began: rows not consumed in one stretch (the
data was late) are not made up for in the next.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


class PaceError(ValueError):
    """A schedule that does not parse (the message names the part)."""


@dataclass(frozen=True)
class Pace:
    #: (from second, rows/s), by second, the first at 0.
    steps: tuple[tuple[float, float], ...]

    @classmethod
    def parse(cls, text: str) -> Pace:
        steps: list[tuple[float, float]] = []
        for i, part in enumerate(p.strip() for p in str(text).split(",")):
            rate_text, at, start_text = part.partition("@")
            try:
                rate = float(rate_text)
                start = float(start_text) if at else 0.0
            except ValueError:
                raise PaceError(f"{part!r}: expected RATE or RATE@SECONDS") from None
            if not rate >= 0 or math.isnan(rate):
                raise PaceError(f"{part!r}: the rate must be rows/s >= 0 (or inf)")
            if not 0 <= start < math.inf:
                raise PaceError(f"{part!r}: the second must be >= 0")
            if i == 0 and start != 0:
                raise PaceError(f"{part!r}: the first rate holds from 0 (give it without @)")
            if steps and start <= steps[-1][0]:
                raise PaceError(f"{part!r}: the seconds must increase ({steps[-1][0]:g} before it)")
            steps.append((start, rate))
        if steps[-1][1] == 0:
            raise PaceError(f"{text!r}: the last rate is 0: the trainer would never finish")
        return cls(tuple(steps))

    def rate(self, t: float) -> float:
        """Rows/s at second ``t``."""
        i = bisect.bisect_right([s for s, _ in self.steps], t) - 1
        return self.steps[max(i, 0)][1]

    def describe(self) -> str:
        return ", ".join(
            (f"{r:g} rows/s" if math.isfinite(r) else "unlimited") + (f" from {s:g} s" if s else "")
            for s, r in self.steps
        )


class Pacer:
    """Holds a consumer to a :class:`Pace`: :meth:`hold` says how long to wait before taking
    more rows."""

    def __init__(self, pace: Pace):
        self.pace = pace
        self._starts = [s for s, _ in pace.steps]
        self._segment = -1
        self._begin = 0.0  # when (seconds) the current stretch's count began
        self._base = 0  # rows consumed then

    def hold(self, t: float, consumed: int, rows: int) -> float:
        """Seconds to wait from second ``t`` (``consumed`` rows so far) before ``rows`` more may
        be consumed: 0 when now; up to the next stretch's start when this one allows no more
        (call again then)."""
        starts = self._starts
        i = max(0, bisect.bisect_right(starts, t) - 1)
        if i != self._segment:
            self._segment, self._begin, self._base = i, t, consumed
        rate = self.pace.steps[i][1]
        end = starts[i + 1] if i + 1 < len(starts) else math.inf
        if math.isinf(rate):
            return 0.0
        if rate > 0:
            due = self._begin + (consumed + rows - self._base) / rate
            if due <= end:
                return max(0.0, due - t)
        return max(0.0, end - t)
