"""Embedding cache planning (ScratchPipe): which rows to fetch and evict, per table, per step.

This is the policy half of the embedding cache, pure numpy and independent of torch; the
mechanism that moves rows between host and device memory is ``recprep.train.cache``.

A cache holds ``capacity`` rows of a table of ``num_rows`` rows in *slots*. For every batch a
planner returns a :class:`TablePlan`: the rows to copy host-to-device into which slots, the rows
to write back device-to-host first (the slots' previous tenants), and the slot of every ID of
the batch, which is what the training step looks up.

- :class:`LookaheadPlanner` plans batch ``t`` while batch ``t - window`` trains: rows referenced
  by any batch in ``[t - window, t]`` are never evicted, so when the plan of batch ``t`` has been
  carried out before step ``t - window``, every lookup of steps ``t - window .. t`` hits. Which
  of the rows outside the window go is free; with a planning *horizon* (the loader reads
  ``horizon`` batches further ahead than it prefetches) the rows no batch of the horizon needs
  go first, then the ones needed last (Belady's rule, within what the loader has seen), and the
  least recently used break ties (then the lowest row). If the window's distinct rows exceed the
  capacity, :class:`CacheTooSmallError` says so when that batch is planned, before anything
  trains on it.
- :class:`LRUPlanner` is the backward-looking comparison: it sees batch ``t`` only when step
  ``t`` starts, keeps the rows of that batch and evicts the least recently used others; its
  misses are fetched on the training step's critical path.

:func:`plan_ahead` runs a planner ``window`` batches ahead of a batch stream (reading ``horizon``
more) and says which plans must be carried out before each step; :class:`SlotMirror` records
which row every slot holds once plans are carried out, to count the lookups that find their row
resident.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..errors import RecprepError

T = TypeVar("T")
P = TypeVar("P")


class CacheTooSmallError(RecprepError):
    """The rows a look-ahead window needs do not fit in the cache."""


@dataclass(frozen=True)
class TablePlan:
    step: int
    rows: np.ndarray  #: int64, the batch's distinct rows, ascending
    inverse: np.ndarray  #: for each ID of the batch, the index of its row in ``rows``
    unique_slots: np.ndarray  #: the cache slot of each row of ``rows``
    fetch_rows: np.ndarray  #: rows to copy host -> device ...
    fetch_slots: np.ndarray  #: ... into these slots
    evict_rows: np.ndarray  #: rows to write back device -> host (before their slots are refilled) ...
    evict_slots: np.ndarray  #: ... from these slots
    hits: int  #: IDs whose row was already cached when the plan was made
    lookups: int  #: IDs in the batch

    @property
    def slots(self) -> np.ndarray:
        """The cache slot of every ID of the batch (in the batch's order)."""
        return self.unique_slots[self.inverse]


_EMPTY = np.empty(0, dtype=np.int64)


class _Planner:
    def __init__(self, num_rows: int, capacity: int, name: str = "table"):
        if num_rows < 1:
            raise ValueError(f"{name}: num_rows must be positive, got {num_rows}")
        if capacity < 1:
            raise ValueError(f"{name}: the cache needs at least one row, got capacity {capacity}")
        self.name = name
        self.num_rows = num_rows
        self.capacity = min(capacity, num_rows)  # more slots than rows would never be used
        self.slot_of_row = np.full(num_rows, -1, dtype=np.int64)
        self.row_of_slot = np.full(self.capacity, -1, dtype=np.int64)
        self.last_use = np.full(self.capacity, -1, dtype=np.int64)  #: latest step referencing the slot's row
        self.filled = 0  #: slots [0, filled) hold rows
        self.step = 0  #: the step the next batch gets

    def _place(self, ids: np.ndarray, protect_from: int, upcoming: Sequence[np.ndarray] = ()) -> TablePlan:
        ids = np.asarray(ids, dtype=np.int64)
        step = self.step
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_rows):
            bad = ids[(ids < 0) | (ids >= self.num_rows)][0]
            raise ValueError(f"{self.name}: row {bad} is outside the table's {self.num_rows} rows")
        rows, inverse = np.unique(ids, return_inverse=True)
        slots = self.slot_of_row[rows]
        resident = slots >= 0
        hits = int(np.count_nonzero(resident[inverse]))
        self.last_use[slots[resident]] = step
        missing = rows[~resident]
        n_free = min(missing.size, self.capacity - self.filled)
        free = np.arange(self.filled, self.filled + n_free, dtype=np.int64)
        need = missing.size - n_free
        evict_slots = evict_rows = _EMPTY
        if need:  # every slot is taken (free ones just now): choose among the rows held before
            candidates = np.flatnonzero(self.last_use[: self.filled] < protect_from)
            if candidates.size < need:
                kept = self.filled - candidates.size  # protected rows that stay
                raise CacheTooSmallError(self._too_small(kept + missing.size, protect_from, step))
            if candidates.size > need:
                candidates = candidates[self._victims(candidates, need, upcoming)]
            evict_slots = np.sort(candidates)
            evict_rows = self.row_of_slot[evict_slots]
            self.slot_of_row[evict_rows] = -1
        self.filled += n_free
        fetch_slots = np.concatenate([free, evict_slots]) if need else free
        self.row_of_slot[fetch_slots] = missing
        self.slot_of_row[missing] = fetch_slots
        self.last_use[fetch_slots] = step
        self.step += 1
        return TablePlan(
            step,
            rows,
            inverse.reshape(-1),
            self.slot_of_row[rows],
            missing,
            fetch_slots,
            evict_rows,
            evict_slots,
            hits,
            int(ids.size),
        )

    def _victims(self, candidates: np.ndarray, need: int, upcoming: Sequence[np.ndarray]) -> np.ndarray:
        """Positions in ``candidates`` of the ``need`` slots to evict: rows no upcoming batch
        references first, then the one referenced last; ties by least recent use, then row."""
        rows = self.row_of_slot[candidates]
        recency = self.last_use[candidates] * self.num_rows + rows  # < (step + 1) * num_rows
        if not len(upcoming):
            return np.argpartition(recency, need - 1)[:need]
        # the first upcoming batch (1-based) that references each row, 0 if none does
        seen = np.concatenate(upcoming)
        if not seen.size:
            return np.argpartition(recency, need - 1)[:need]
        when = np.repeat(np.arange(1, len(upcoming) + 1), [len(u) for u in upcoming])
        distinct, first = np.unique(seen, return_index=True)  # first occurrence: the earliest batch
        pos = np.minimum(np.searchsorted(distinct, rows), distinct.size - 1)
        next_use = np.where(distinct[pos] == rows, when[first[pos]], 0)
        priority = np.where(next_use == 0, 0, len(upcoming) + 1 - next_use)  # smaller: evicted sooner
        span = (int(self.last_use.max()) + 1) * self.num_rows
        if (len(upcoming) + 1) * span < 2**62:
            return np.argpartition(priority * span + recency, need - 1)[:need]
        return np.lexsort((recency, priority))[:need]  # the combined key would overflow int64

    def _too_small(self, needed: int, protect_from: int, step: int) -> str:
        raise NotImplementedError


class LookaheadPlanner(_Planner):
    """ScratchPipe's planner: batch ``t`` is planned while step ``t - window`` trains."""

    def __init__(self, num_rows: int, capacity: int, window: int, name: str = "table"):
        if window < 0:
            raise ValueError(f"{name}: the look-ahead window must be >= 0, got {window}")
        super().__init__(num_rows, capacity, name)
        self.window = window

    def admit(self, ids: np.ndarray, upcoming: Sequence[np.ndarray] = ()) -> TablePlan:
        """Plan the next batch (its IDs are table rows). The plan must be carried out after step
        ``plan.step - window - 1`` finished and before step ``plan.step - window`` starts.

        ``upcoming``: the rows of the batches after this one that the loader has already read
        (the planning horizon). They only choose among the rows that may be evicted: those no
        upcoming batch needs go first, then those needed last (Belady's rule within the
        horizon). Without them, the least recently used go first."""
        return self._place(ids, self.step - self.window, upcoming)

    def _too_small(self, needed, protect_from, step):
        return (
            f"{self.name}: a cache of {self.capacity} rows cannot hold the {needed} distinct rows that "
            f"batches {max(protect_from, 0)}..{step} reference (look-ahead window {self.window}); "
            "raise the cache rows or lower the window or the batch size"
        )


class LRUPlanner(_Planner):
    """Least recently used: batch ``t`` is seen when step ``t`` starts; misses are fetched then."""

    def access(self, ids: np.ndarray) -> TablePlan:
        return self._place(ids, self.step)

    def _too_small(self, needed, protect_from, step):
        return (
            f"{self.name}: a cache of {self.capacity} rows cannot hold the {needed} distinct rows of "
            f"batch {step}; raise the cache rows or lower the batch size"
        )


class SlotMirror:
    """Which row each slot holds, as plans are carried out (``-1``: empty)."""

    def __init__(self, capacity: int):
        self.row_of_slot = np.full(capacity, -1, dtype=np.int64)

    def apply(self, plan: TablePlan) -> None:
        if plan.evict_slots.size and not np.array_equal(self.row_of_slot[plan.evict_slots], plan.evict_rows):
            raise RuntimeError(
                f"step {plan.step}: the plan evicts rows its slots do not hold (plans out of order?)"
            )
        self.row_of_slot[plan.fetch_slots] = plan.fetch_rows

    def resident(self, plan: TablePlan) -> int:
        """How many IDs of the plan's batch find their row in the slot the plan assigned it."""
        here = self.row_of_slot[plan.unique_slots] == plan.rows
        return int(np.count_nonzero(here[plan.inverse]))


def plan_ahead(
    items: Iterable[T], plan: Callable[[T, list[T]], P], window: int, horizon: int = 0
) -> Iterator[tuple[T, P, list[P]]]:
    """``(item_i, plan_i, due_i)`` for each item: ``due_i`` lists the plans to carry out before
    step ``i`` trains (plans ``0..window`` before step 0, then plan ``i + window``).

    ``plan(item, upcoming)`` is called on each item as it enters the window, ``window`` items
    ahead of its step, with the (up to) ``horizon`` items read after it: the stream is read
    ``window + horizon`` items ahead of training."""
    if window < 0 or horizon < 0:
        raise ValueError(f"the look-ahead window and horizon must be >= 0, got {window} and {horizon}")
    read: deque = deque()  # read, not yet planned
    planned: deque = deque()  # planned, not yet yielded
    due: list[P] = []

    def admit_first():
        item = read.popleft()
        p = plan(item, list(read))
        planned.append((item, p))
        due.append(p)

    def ready():
        nonlocal due
        first, first_plan = planned.popleft()
        out, due = due, []
        return first, first_plan, out

    for item in items:
        read.append(item)
        if len(read) > horizon:
            admit_first()
            if len(planned) > window:
                yield ready()
    while read:
        admit_first()
        if len(planned) > window:
            yield ready()
    while planned:
        yield ready()
