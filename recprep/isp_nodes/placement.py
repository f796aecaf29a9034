"""Which storage node holds a split's raw data, and how ISP workers are named: one rule for
``recprep run`` on a laptop and for the operator's pods.

Holding. A split (file and byte, row-group or row range) lives on one storage node, chosen by
rendezvous (highest-random-weight) hashing of the split over the storage nodes' names, the way
a distributed file system places blocks deterministically: every party computes the same holder
from the same names without asking anyone, and when a node leaves only its own splits move.
On Kubernetes the names are the nodes' names (the pods learn theirs from the downward API);
locally they are ``storage-0`` ... ``storage-<N-1>``.

Naming. An ISP worker's Dask name is ``isp/<node>/<id>``: the storage node it stands for, and
an id that tells apart several workers on one node. :func:`node_of` reads the node back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

PREFIX = "isp"


def worker_name(node: str, ident: str | int) -> str:
    """The Dask worker name of an ISP worker on storage node ``node``."""
    if not node or "/" in node:
        raise ValueError(f"a storage node's name must be non-empty and hold no '/', got {node!r}")
    return f"{PREFIX}/{node}/{ident}"


def node_of(name: object) -> str | None:
    """The storage node of an ISP worker's name, or None for any other worker."""
    parts = str(name).split("/")
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX and parts[1] else None


def local_nodes(count: int) -> list[str]:
    """The storage nodes of an embedded cluster with ``count`` ISP workers."""
    return [f"storage-{i}" for i in range(count)]


def split_key(path: str, start: int, stop: int) -> str:
    """What identifies a split's raw data: its file and range (not its shard number, which
    depends on the other files of the source)."""
    return f"{path}\0{start}\0{stop}"


def _weight(node: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{node}\0{key}".encode(), digest_size=8).digest(), "big")


def holder(key: str, nodes: Iterable[str]) -> str | None:
    """The storage node that holds the split ``key`` among ``nodes`` (None when there is none)."""
    best, best_weight = None, -1
    for node in sorted(set(nodes)):
        w = _weight(node, key)
        if w > best_weight:
            best, best_weight = node, w
    return best


# --- which pool takes which shard next: the policy the driver's locality scheduler asks -------

ISP, CPU = "isp", "cpu"


class LocalityQueues:
    """The shards still to do, queued by the storage node that holds each.

    An ISP worker takes the next shard its node holds (``take_isp``): data-local, only the
    result leaves the node. A CPU worker (``take_cpu``) takes first the shards no ISP worker can
    take (the job offloads nothing, or their node left), then the *last* shard of the longest
    node queue, but only when that node would reach it later than the CPU pool would finish it
    (``behind``): the share of shards the ISP pool cannot keep up with, decided from the
    measured seconds per shard of each pool (``observe``). Every answer carries its reason, which
    the ledger keeps beside the shard.
    """

    def __init__(self, shards: list[tuple[int, str]], nodes: list[str], offload: bool, why_not: str = ""):
        from collections import deque

        self.nodes = sorted(set(nodes)) if offload else []
        self.held: dict[str, deque[int]] = {n: deque() for n in self.nodes}
        self.holder: dict[int, str] = {}
        self.orphans: deque[tuple[int, str]] = deque()
        for index, key in shards:
            node = holder(key, self.nodes)
            if node is None:
                self.orphans.append(
                    (index, why_not or "no ISP worker: CPU-centric, the raw data crosses the network")
                )
            else:
                self.holder[index] = node
                self.held[node].append(index)
        #: measured seconds per shard (exponential average), per ISP node and for the CPU pool
        self.seconds: dict[str, float] = {}
        self._probing = False
        #: shards queued again after their worker left, and why (their next reason says so)
        self._again: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.orphans) + sum(len(q) for q in self.held.values())

    def observe(self, who: str, seconds: float) -> None:
        """A shard took ``seconds`` on ISP node ``who`` (or on the CPU pool: ``who`` = CPU)."""
        old = self.seconds.get(who)
        self.seconds[who] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def _told(self, took: tuple[int, str] | None) -> tuple[int, str] | None:
        if took is not None and took[0] in self._again:
            return took[0], f"{took[1]} (a second time: {self._again.pop(took[0])})"
        return took

    def take_isp(self, node: str) -> tuple[int, str] | None:
        queue = self.held.get(node)
        if not queue:
            return None
        return self._told((queue.popleft(), f"its raw data is on {node}: read and transformed there"))

    def behind(self, node: str, slots: int) -> bool:
        """Would ``node``, at its measured pace, reach its last queued shard later than the CPU
        pool would finish it? Without measurements of both, the CPU pool waits for them."""
        isp, cpu = self.seconds.get(node), self.seconds.get(CPU)
        if isp is None or cpu is None:
            return False
        return len(self.held[node]) * isp / max(slots, 1) > cpu

    def take_cpu(self, slots: dict[str, int]) -> tuple[int, str] | None:
        """The next shard for the CPU pool, or None when every node keeps up with its queue.
        ``slots``: each live node's ISP units."""
        return self._told(self._take_cpu(slots))

    def _take_cpu(self, slots: dict[str, int]) -> tuple[int, str] | None:
        if self.orphans:
            return self.orphans.popleft()
        queued = [n for n in self.held if self.held[n]]
        if not queued:
            return None
        node = max(
            queued, key=lambda n: len(self.held[n]) * self.seconds.get(n, 0.0) / max(slots.get(n, 1), 1)
        )
        if node not in slots:  # its worker is gone: nothing local can take it
            return self.held[node].pop(), f"{node} has no ISP worker: the raw data crosses the network"
        n = len(self.held[node])
        if CPU not in self.seconds:  # the CPU pool's pace is unknown: measure it on one shard
            if self._probing or n <= 2 * slots[node]:
                return None
            self._probing = True
            return self.held[node].pop(), (
                f"probe: {node} had {n} shards queued for {slots[node]} unit(s) and the CPU pool's pace "
                "was not measured yet; its raw data crosses the network"
            )
        if not self.behind(node, slots[node]):
            return None
        return self.held[node].pop(), (
            f"overflow: {node} had {n} shards queued at {self.seconds[node]:.2f} s each on "
            f"{slots[node]} unit(s), the CPU pool takes one in {self.seconds[CPU]:.2f} s; "
            "its raw data crosses the network"
        )

    def lose(self, node: str) -> None:
        """``node``'s workers left: its queued shards go to whoever can take them."""
        for index in self.held.pop(node, ()):
            self.orphans.append(
                (index, f"{node} left (its ISP worker is gone): the raw data crosses the network")
            )
        if node in self.nodes:
            self.nodes.remove(node)

    def requeue(self, index: int, reason: str) -> None:
        """A shard whose worker died before it finished: it is done again."""
        self._again[index] = reason
        node = self.holder.get(index)
        if node in self.held:
            self.held[node].appendleft(index)
        else:
            self.orphans.appendleft((index, reason))

    def take_any(self) -> tuple[int, str] | None:
        """For a cluster without a CPU pool: a shard no live node holds, for any ISP worker."""
        if self.orphans:
            index, reason = self.orphans.popleft()
            return self._told((index, reason + " (no CPU worker: an ISP worker of another node took it)"))
        return None
