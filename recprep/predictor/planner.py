"""The pool planner: replicas per pool that meet a required rate at the lowest modelled cost.

:func:`plan` searches every allowed combination of pool sizes (each pool within its min and its
limit: spec max, and for ISP the storage nodes that can host it) for the cheapest one whose
*expected* capacity meets the required rate. Expected capacity discounts a preemptible pool by the
share of its workers that are, on average, gone and being replaced: preemption rate times
start-up lag. A finite job with a deadline also needs the rate that finishes its rows in the time
left after the start-up lag; when even every pool at its limit cannot, the plan says so.

:class:`Hysteresis` lets a pool grow at once but shrink only after the plan has wanted less for a
while, and then only to the most it wanted over that while: no flapping after a spike.

:class:`ThroughputModel` learns rows/s per worker of each pool online from the measured seconds
per shard.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

from .signals import PoolState


def fmt_rate(rows_per_s: float) -> str:
    """310000 -> '310k rows/s'."""
    if math.isinf(rows_per_s):
        return "inf rows/s"
    if rows_per_s >= 1e6:
        return f"{rows_per_s / 1e6:.2f}M rows/s"
    if rows_per_s >= 1e3:
        return f"{rows_per_s / 1e3:.0f}k rows/s"
    return f"{rows_per_s:.0f} rows/s"


class ThroughputModel:
    """Seconds per shard of each pool, an exponentially weighted mean of the measurements, and the
    rows/s of one worker that follow from it (the prior until a pool has measured a shard)."""

    def __init__(self, shard_rows: int, priors: dict[str, float], weight: float = 0.1):
        self.shard_rows = shard_rows
        self.seconds = dict(priors)  # pool -> seconds per shard
        self.measured = dict.fromkeys(priors, 0)
        self.weight = weight

    def record(self, pool: str, seconds: float) -> None:
        if seconds <= 0 or math.isnan(seconds):
            raise ValueError(f"a shard's seconds must be positive, got {seconds}")
        n = self.measured.get(pool, 0)
        if n == 0 or pool not in self.seconds:
            self.seconds[pool] = seconds
        else:
            w = max(self.weight, 1.0 / (n + 1))
            self.seconds[pool] = (1 - w) * self.seconds[pool] + w * seconds
        self.measured[pool] = n + 1

    def rows_per_worker(self, pool: str) -> float:
        return self.shard_rows / self.seconds[pool]


def expected_availability(pool: PoolState) -> float:
    """Share of a pool's workers expected to be working (not preempted and being replaced)."""
    return max(0.05, 1.0 - pool.preempt_rate * pool.startup_lag)


def capacity(pools: dict[str, PoolState], sizes: dict[str, int], expected: bool = True) -> float:
    """Rows/s of ``sizes`` workers per pool (discounted for preemption when ``expected``)."""
    total = 0.0
    for name, n in sizes.items():
        p = pools[name]
        total += n * p.rows_per_worker * (expected_availability(p) if expected else 1.0)
    return total


def cost_per_hour(pools: dict[str, PoolState], sizes: dict[str, int]) -> float:
    return sum(n * pools[name].price_per_hour for name, n in sizes.items())


@dataclass(frozen=True)
class Plan:
    """Workers per pool, the rate they must meet, and why (``reasons``: one per pool)."""

    sizes: dict[str, int]
    required: float
    capacity: float
    cost_per_hour: float
    reachable: bool
    reasons: dict[str, str]


def _cheapest(
    pools: dict[str, PoolState], required: float, budget: float | None = None
) -> tuple[dict[str, int], bool]:
    """The cheapest sizes meeting ``required`` within ``budget`` (per hour); when none does, the
    most capacity within the budget (every pool at its limit without one), and False."""
    names = list(pools)
    ranges = [range(pools[n].lower, pools[n].limit + 1) for n in names]
    best, best_key = None, None
    most, most_key = None, None
    for combo in itertools.product(*ranges):
        sizes = dict(zip(names, combo))
        cap = capacity(pools, sizes)
        price = cost_per_hour(pools, sizes)
        affordable = budget is None or price <= budget + 1e-9
        if affordable and (most_key is None or (-cap, price) < most_key):
            most, most_key = sizes, (-cap, price)
        if cap + 1e-9 < required or not affordable:
            continue
        key = (price, -cap)
        if best_key is None or key < best_key:
            best, best_key = sizes, key
    if best is None:
        if budget is not None:
            # the budget binds: the most it buys (the minimums when even they cost more)
            return (most if most is not None else {n: pools[n].lower for n in names}), False
        return {n: pools[n].limit for n in names}, False
    return best, True


def cheapest_between(
    pools: dict[str, PoolState],
    required: float,
    low: dict[str, int],
    high: dict[str, int],
    ready: dict[str, int] | None = None,
    ready_required: float = 0.0,
) -> tuple[dict[str, int], bool]:
    """The cheapest sizes with ``low[n] <= size <= high[n]`` for every pool whose expected
    capacity meets ``required`` (the most capacity for the price among equals), and, with
    ``ready`` (workers joined per pool, the last to go), whose joined workers alone meet
    ``ready_required``; when none does, ``high`` and False."""
    names = list(pools)
    ranges = [range(low[n], max(low[n], high[n]) + 1) for n in names]
    best, best_key = None, None
    for combo in itertools.product(*ranges):
        sizes = dict(zip(names, combo))
        cap = capacity(pools, sizes)
        if cap + 1e-9 < required:
            continue
        if ready is not None and ready_required > 0:
            joined = {n: min(ready[n], sizes[n]) for n in names}
            if capacity(pools, joined) + 1e-9 < ready_required:
                continue
        key = (cost_per_hour(pools, sizes), -cap)
        if best_key is None or key < best_key:
            best, best_key = sizes, key
    if best is None:
        return {n: max(low[n], high[n]) for n in names}, False
    return best, True


def plan(
    pools: dict[str, PoolState],
    demand: float,
    *,
    horizon: float,
    label: str = "forecast demand",
    now: float = 0.0,
    rows_left: float | None = None,
    deadline: float | None = None,
    trainers: bool = True,
    budget: float | None = None,
) -> Plan:
    """The cheapest sizes meeting ``demand`` rows/s (the forecast at the chosen quantile, as
    ``label`` says) over ``horizon`` seconds, and the deadline of a finite job if it has one,
    costing at most ``budget`` per hour (when it binds: the most capacity it buys, and the plan
    says so)."""
    if not pools:
        raise ValueError("no pool to plan")
    lag = max(p.startup_lag for p in pools.values())
    demand = 0.0 if (demand is None or math.isnan(demand)) else max(0.0, float(demand))
    required = demand if trainers else 0.0
    why = f"{label} {fmt_rate(demand)} in {horizon:.0f} s" if trainers else "no trainers attached"
    reachable = True
    if rows_left is not None and rows_left <= 0:
        required, why = 0.0, "no work left"
    elif deadline is not None and rows_left is not None:
        left = deadline - now
        full = {n: p.limit for n, p in pools.items()}
        max_cap = capacity(pools, full)
        usable = left - lag
        if usable <= 0 or max_cap * usable < rows_left:
            reachable = False
            finish = rows_left / max_cap + lag if max_cap > 0 else math.inf
            why = (
                f"deadline unreachable: {rows_left:,.0f} rows left need {finish:,.0f} s at the pools' "
                f"limits ({fmt_rate(max_cap)}), {max(0.0, left):,.0f} s remain"
            )
            required = max_cap
        else:
            rate = rows_left / usable
            if rate > required:
                required = rate
                why = (
                    f"deadline in {left:,.0f} s: {rows_left:,.0f} rows left need {fmt_rate(rate)} "
                    f"after {lag:.0f} s of start-up"
                )
    elif not trainers and rows_left is None:
        required, why = 0.0, "no trainers consuming an open-ended source: nothing to produce for"
    elif not trainers:
        # a finite job, no trainer to follow and no deadline: every pool at its limit (the cost
        # per row does not depend on the count, so finishing sooner costs no more)
        full = {n: p.limit for n, p in pools.items()}
        cap = capacity(pools, full)
        if budget is None or cost_per_hour(pools, full) <= budget + 1e-9:
            return Plan(
                full,
                cap,
                cap,
                cost_per_hour(pools, full),
                True,
                {n: f"no trainers and no deadline: every pool at its limit ({fmt_rate(cap)})" for n in pools},
            )
        required, why = cap, "no trainers and no deadline: the most capacity the budget buys"
    sizes, ok = _cheapest(pools, required, budget)
    reachable = reachable and ok
    cap = capacity(pools, sizes)
    if (
        not ok
        and budget is not None
        and cost_per_hour(pools, {n: p.limit for n, p in pools.items()}) > budget
    ):
        limits = capacity(pools, {n: p.limit for n, p in pools.items()})
        if limits + 1e-9 >= required or "unreachable" in why:
            why += f"; the budget of {budget:.2f}/h buys at most {fmt_rate(cap)}"
        else:
            why += (
                f"; more than the pools' limits give ({fmt_rate(limits)}), "
                f"and the budget buys {fmt_rate(cap)}"
            )
    elif not ok and "unreachable" not in why:
        why += f"; more than the pools' limits give ({fmt_rate(cap)})"
    reasons = {}
    for name in sizes:
        p = pools[name]
        detail = f"{why}; planned capacity {fmt_rate(cap)} at {cost_per_hour(pools, sizes):.2f}/h"
        if p.preempt_rate > 0:
            detail += f"; {1 - expected_availability(p):.0%} of {name} expected lost to preemption"
        if p.hosts is not None and p.hosts < p.max:
            detail += f"; {name} limited to {p.hosts} storage node(s)"
        reasons[name] = detail
    return Plan(sizes, required, cap, cost_per_hour(pools, sizes), reachable, reasons)


def _reason_line(name: str, current: int, target: int, pools: dict[str, PoolState], plan_: Plan) -> str:
    p = pools[name]
    cur_cap = capacity(pools, {n: q.replicas for n, q in pools.items()})
    head = f"{name} {current} -> {target}: "
    if target > current:
        return (
            head + plan_.reasons[name] + f"; exceeds current capacity {fmt_rate(cur_cap)}; "
            f"workers take {p.startup_lag:.0f} s to start"
        )
    return head + plan_.reasons[name]


class Hysteresis:
    """Grow at once; shrink only after ``hold`` seconds of wanting less, to the most wanted in them."""

    def __init__(self, hold: float):
        self.hold = hold
        self.history: dict[str, deque[tuple[float, int]]] = {}

    def apply(self, now: float, name: str, current: int, wanted: int) -> tuple[int, str]:
        hist = self.history.setdefault(name, deque())
        hist.append((now, wanted))
        # keep the last look at or before ``now - hold`` too: with looks at irregular times the
        # span of the kept ones would otherwise never reach ``hold``
        while len(hist) > 1 and hist[1][0] <= now - self.hold:
            hist.popleft()
        if wanted >= current:
            return wanted, ""
        span = now - hist[0][0]
        peak = max(w for _, w in hist)
        if span + 1e-9 < self.hold:
            return current, f"; shrinking waits {self.hold - span:.0f} s more (hysteresis)"
        if peak >= current:
            return current, f"; wanted {peak} within the last {self.hold:.0f} s (hysteresis)"
        return peak, (f"; wanted at most {peak} for {self.hold:.0f} s" if peak != wanted else "")


class CapacityHold:
    """Hysteresis on the rate to meet rather than on each pool's count.

    The pools grow at once to the cheapest superset of the current workers that meets the rate
    now (no worker is added while the current ones already meet it, whatever mix the plan
    prefers). They shrink, once the looks span ``hold`` seconds, to the cheapest subset of the
    current workers that meets the most rate wanted over the last ``hold`` seconds, and the most
    wanted over the last ``memory`` seconds less what the buffer can ``bridge``: rows/s the
    buffered rows supply while new workers start, so a return to that rate does not stall.
    Holding each pool at the most *its* plan wanted would keep both mixes when the cheapest mix
    flips between, say, one more ISP unit and four more CPU workers."""

    def __init__(self, hold: float, memory: float | None = None):
        self.hold = hold
        self.memory = max(hold, memory if memory is not None else hold)
        self.history: deque[tuple[float, float]] = deque()

    def _most(self, now: float, seconds: float) -> float:
        """The most rate of the looks over the last ``seconds`` (and the last look before them)."""
        hist = self.history
        first = 0
        while first + 1 < len(hist) and hist[first + 1][0] <= now - seconds:
            first += 1
        return max(hist[i][1] for i in range(first, len(hist)))

    def most(self, now: float) -> float:
        """The most rate of the looks within the memory (0 before the first look)."""
        return self._most(now, self.memory) if self.history else 0.0

    def apply(
        self,
        now: float,
        pools: dict[str, PoolState],
        rate: float,
        bridge: float | None = None,
        shrink: str = "",
        remember: float | None = None,
        wait: bool = True,
        slack: float = 0.0,
    ) -> tuple[dict[str, int], dict[str, str], float]:
        """Replicas per pool meeting ``rate`` now, a note per pool, and the rate they are sized
        for; ``shrink``: why no pool may shrink now (empty: they may); ``bridge``: rows/s the
        buffer supplies while workers start (None: the memory does not apply); ``remember``: the
        rate the hold and the memory keep of this look (None: ``rate``; less for a rate not yet
        confirmed, such as a surge the next looks may not see again); ``wait``: False when the
        current sizes were never wanted for a rate (every pool at its limit until the first
        measurement), so they shrink without waiting out the hold; ``slack``: the share of
        ``rate`` the current workers may fall short of before any is added (the caller's buffer
        covers it)."""
        hist = self.history
        hist.append((now, rate if remember is None else min(rate, remember)))
        # the last look at or before ``now - memory`` stays (see :class:`Hysteresis`)
        while len(hist) > 1 and hist[1][0] <= now - self.memory:
            hist.popleft()
        span = now - hist[0][0]
        recent = self._most(now, self.hold)
        remembered = self._most(now, self.memory) - max(0.0, bridge) if bridge is not None else 0.0
        most = max(rate, recent, remembered)
        low = {n: p.lower for n, p in pools.items()}
        high = {n: p.limit for n, p in pools.items()}
        cur = {n: max(p.lower, min(p.limit, p.replicas)) for n, p in pools.items()}
        notes = dict.fromkeys(pools, "")
        if capacity(pools, cur) + 1e-9 < rate * (1.0 - slack):
            sizes, _ = cheapest_between(pools, rate, cur, high)
            return sizes, notes, rate
        # a worker that has joined goes only when those that stay and have joined meet the rate
        # now: swapping it for one still starting would leave a gap of a start-up lag
        ready = {n: max(0, min(p.ready, cur[n])) for n, p in pools.items()}
        smaller, _ = cheapest_between(pools, most, low, cur, ready, min(rate, capacity(pools, ready)))
        if smaller == cur:
            return cur, notes, most
        if shrink:
            return cur, {n: (f"; {shrink}" if smaller[n] < cur[n] else "") for n in pools}, most
        if wait and span + 1e-9 < self.hold:
            why = f"; shrinking waits {self.hold - span:.0f} s more (hysteresis)"
            return cur, {n: (why if smaller[n] < cur[n] else "") for n in pools}, most
        if most > rate * (1 + 1e-9):
            if remembered > recent:
                why = (
                    f"; sized for {fmt_rate(most)}: the {fmt_rate(remembered + bridge)} wanted within "
                    f"the last {self.memory:.0f} s less {fmt_rate(bridge)} the buffer bridges"
                )
            else:
                why = f"; sized for {fmt_rate(most)} wanted within the last {self.hold:.0f} s (hysteresis)"
            notes = {n: (why if smaller[n] < cur[n] else "") for n in pools}
        return smaller, notes, most


def describe(name: str, current: int, target: int, pools: dict[str, PoolState], plan_: Plan) -> str:
    """The readable reason of one pool's decision under ``plan_``."""
    return _reason_line(name, current, target, pools, plan_)
