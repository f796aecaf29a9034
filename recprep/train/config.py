"""The options of a training run (``recprep train``), checked before torch is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..delivery.batching import FeatureChoice
from ..delivery.shards import ShardSource
from ..errors import RecprepError
from .pace import Pace

CACHES = ("none", "lookahead", "lru")
OPTIMIZERS = ("adagrad", "sgd")
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")  #: the devices a trainer runs on (cuda:N: the Nth GPU)


class TrainConfigError(RecprepError):
    """An invalid training option (the message names it)."""


@dataclass
class TrainConfig:
    source: ShardSource
    embedding_dim: int = 16
    batch_size: int = 256
    epochs: int = 1
    steps: int | None = None  #: stop after this many steps (default: the whole epochs)
    #: rows per embedding table; IDs are reduced modulo this (None: from the job, ``tables``)
    table_rows: int | None = None
    bottom_mlp: tuple[int, ...] = (64,)
    top_mlp: tuple[int, ...] = (64, 32)
    optimizer: str = "adagrad"
    lr: float = 0.05
    cache: str = "none"
    cache_rows: int | None = None  #: device rows per table (look-ahead and LRU caches)
    window: int = 4  #: look-ahead window in batches
    horizon: int = 0  #: look-ahead: batches read beyond the window to choose what to evict
    device: str | None = None  #: default: cuda when available, else cpu
    seed: int = 0
    prefetch: int = 4  #: batches the loader thread prepares ahead
    threads: int | None = None  #: torch intra-op threads (default: one per core the process may use)
    #: roles that replace the shards' (--label, --dense, --sparse); default: the job's
    features: FeatureChoice | None = None
    #: the demand schedule the trainer is held to (--rows-per-second); None: as fast as it can
    pace: Pace | None = None
    #: deduplicated shards: a batch may end this many rows early at a session's start
    session_slack: int = 0

    def check(self) -> None:
        for name in ("embedding_dim", "batch_size", "epochs", "table_rows", "prefetch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainConfigError(
                    f"--{name.replace('_', '-')}: must be positive, got {getattr(self, name)}"
                )
        if self.device is not None and not DEVICE.fullmatch(str(self.device)):
            raise TrainConfigError(f"--device: must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise TrainConfigError(f"--threads: must be positive, got {self.threads}")
        if self.steps is not None and self.steps < 1:
            raise TrainConfigError(f"--steps: must be positive, got {self.steps}")
        if self.cache not in CACHES:
            raise TrainConfigError(f"--cache: must be one of {', '.join(CACHES)}, got {self.cache!r}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainConfigError(
                f"--optimizer: must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not self.lr > 0:
            raise TrainConfigError(f"--lr: must be positive, got {self.lr}")
        if self.cache != "none" and (self.cache_rows is None or self.cache_rows < 1):
            raise TrainConfigError(
                f"--cache-rows: --cache {self.cache} needs a positive number of rows per table"
            )
        if not 0 <= self.session_slack < self.batch_size:
            raise TrainConfigError(f"--session-slack: must be in [0, --batch-size), got {self.session_slack}")
        if self.window < 0:
            raise TrainConfigError(f"--window: must be >= 0, got {self.window}")
        if self.horizon < 0:
            raise TrainConfigError(f"--horizon: must be >= 0, got {self.horizon}")
        if any(n < 1 for n in (*self.bottom_mlp, *self.top_mlp)):
            raise TrainConfigError("--bottom-mlp/--top-mlp: layer sizes must be positive")
