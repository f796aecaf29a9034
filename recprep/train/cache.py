"""The mechanism of the embedding cache: a table's rows in host memory, ``capacity`` of them in a
tensor on the training device, moved as the plans of ``recprep.train.cache_plan`` say.

The device rows are the weight of an ``nn.Embedding(capacity, dim, sparse=True)``, looked up
by cache slot; the optimizer updates them in place. Row-aligned optimizer state (Adagrad's
``sum``) lives beside the weight: the host keeps a full-size copy, and a row's state travels with
the row, so a row evicted and fetched again continues exactly where it was. Evicted rows are
written back before their slots are refilled, and :meth:`DeviceCache.flush` writes back every
cached row at the end: the host table then equals the table of an uncached run.

Copies host-to-device use pinned staging memory and ``non_blocking=True`` on a GPU; they are
queued on the current stream, so they run in order with the training step (on CPU, where these
runs happen, nothing overlaps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .cache_plan import SlotMirror, TablePlan


@dataclass
class CacheStats:
    lookups: int = 0  #: IDs looked up at training steps
    hits: int = 0  #: ... whose row was on the device when the step started
    rows_h2d: int = 0  #: rows (weight + optimizer state) copied host -> device
    rows_d2h: int = 0  #: rows written back device -> host (evictions and the final flush)
    evictions: int = 0  #: rows evicted to make room

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 1.0

    def add(self, other: CacheStats) -> None:
        self.lookups += other.lookups
        self.hits += other.hits
        self.rows_h2d += other.rows_h2d
        self.rows_d2h += other.rows_d2h
        self.evictions += other.evictions


class DeviceCache:
    """One embedding table: ``host`` (num_rows, dim) on the CPU, ``capacity`` rows on ``device``."""

    def __init__(self, host: torch.Tensor, capacity: int, device, name: str = "table"):
        if host.dim() != 2 or host.device.type != "cpu":
            raise ValueError(f"{name}: the host table must be a 2-d CPU tensor")
        self.name = name
        self.host = host
        self.device = torch.device(device)
        self.capacity = min(capacity, host.shape[0])
        self.table = nn.Embedding(
            self.capacity,
            host.shape[1],
            sparse=True,
            _weight=torch.zeros(self.capacity, host.shape[1], device=self.device),
        )
        self.mirror = SlotMirror(self.capacity)
        self._states: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name: (device rows, host rows)
        self.stats = CacheStats()
        self._pin = self.device.type == "cuda"

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep the optimizer's row-aligned state of this cache's weight with the rows. Call it
        right after creating the optimizer (its state must still be the initial constant).
        Supported: SGD without momentum (no state) and Adagrad (``sum``, created up front)."""
        if isinstance(optimizer, torch.optim.SGD):
            if any(g.get("momentum", 0) for g in optimizer.param_groups):
                raise ValueError(
                    f"{self.name}: SGD momentum buffers are dense and created lazily; "
                    "the cache supports SGD without momentum and Adagrad"
                )
        elif not isinstance(optimizer, torch.optim.Adagrad):
            raise ValueError(
                f"{self.name}: the cache supports SGD and Adagrad, not {type(optimizer).__name__}"
            )
        weight = self.table.weight
        for key, value in optimizer.state.get(weight, {}).items():
            if not (torch.is_tensor(value) and value.shape == weight.shape):
                continue  # scalars such as Adagrad's step count are the same for every row
            fill = float(value.flatten()[0]) if value.numel() else 0.0
            if value.numel() and not bool((value == fill).all()):
                raise ValueError(f"{self.name}: optimizer state {key!r} is not at its initial value")
            self._states[key] = (value, torch.full(self.host.shape, fill, dtype=value.dtype))

    def _pairs(self):
        return [(self.table.weight.data, self.host), *self._states.values()]

    def apply(self, plan: TablePlan) -> None:
        """Carry out one plan: write back the evicted rows, then fetch the new ones."""
        self.mirror.apply(plan)  # raises if plans come out of order
        if plan.evict_slots.size:
            slots = torch.from_numpy(plan.evict_slots).to(self.device)
            rows = torch.from_numpy(plan.evict_rows)
            for dev, host in self._pairs():
                host.index_copy_(0, rows, dev.index_select(0, slots).to("cpu"))
            self.stats.rows_d2h += plan.evict_slots.size
            self.stats.evictions += plan.evict_slots.size
        if plan.fetch_slots.size:
            slots = torch.from_numpy(plan.fetch_slots).to(self.device, non_blocking=True)
            rows = torch.from_numpy(plan.fetch_rows)
            for dev, host in self._pairs():
                staged = host.index_select(0, rows)
                if self._pin:
                    staged = staged.pin_memory()
                dev.index_copy_(0, slots, staged.to(self.device, non_blocking=True))
            self.stats.rows_h2d += plan.fetch_slots.size

    def resident(self, plan: TablePlan) -> int:
        """How many lookups of the plan's batch find their row on the device now."""
        return self.mirror.resident(plan)

    def flush(self) -> torch.Tensor:
        """Write every cached row back; returns the host table (the whole trained table)."""
        slots = np.flatnonzero(self.mirror.row_of_slot >= 0)
        if slots.size:
            s = torch.from_numpy(slots).to(self.device)
            rows = torch.from_numpy(self.mirror.row_of_slot[slots])
            for dev, host in self._pairs():
                host.index_copy_(0, rows, dev.index_select(0, s).to("cpu"))
            self.stats.rows_d2h += slots.size
        return self.host

    def host_state(self, key: str) -> torch.Tensor:
        """The full host copy of optimizer state ``key`` (current after :meth:`flush`)."""
        return self._states[key][1]
