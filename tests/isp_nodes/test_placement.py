"""Which node holds which split, and the locality queues' choices (pure policy)."""

from __future__ import annotations

from collections import Counter

import pytest

from recprep.isp_nodes.placement import (
    CPU,
    LocalityQueues,
    holder,
    local_nodes,
    node_of,
    split_key,
    worker_name,
)


def test_worker_names_carry_their_node():
    assert node_of(worker_name("storage-3", 0)) == "storage-3"
    assert (
        node_of(worker_name("ip-10-0-0-7.ec2.internal", "recprep-worker-isp-abc"))
        == "ip-10-0-0-7.ec2.internal"
    )
    assert node_of("cpu-0") is None and node_of("tcp://1.2.3.4:5") is None and node_of(None) is None
    with pytest.raises(ValueError):
        worker_name("a/b", 0)


def test_the_holder_is_deterministic_spread_and_moves_only_a_leaving_nodes_splits():
    keys = [split_key("/data/day_0.tsv", i * 1000, (i + 1) * 1000) for i in range(400)]
    nodes = local_nodes(4)
    first = {k: holder(k, nodes) for k in keys}
    assert first == {k: holder(k, list(reversed(nodes))) for k in keys}  # order does not matter
    counts = Counter(first.values())
    assert set(counts) == set(nodes) and min(counts.values()) > 60  # about 100 each
    fewer = [n for n in nodes if n != "storage-2"]
    for k in keys:
        if first[k] != "storage-2":
            assert holder(k, fewer) == first[k]
    assert holder(keys[0], []) is None


def _queues(n: int, nodes: list[str]) -> LocalityQueues:
    return LocalityQueues([(i, split_key("f", i, i + 1)) for i in range(n)], nodes, offload=True)


def test_isp_workers_take_what_their_node_holds_in_order():
    q = _queues(20, ["a", "b"])
    held_by_a = [i for i in range(20) if q.holder[i] == "a"]
    taken = []
    while (t := q.take_isp("a")) is not None:
        taken.append(t[0])
        assert "on a" in t[1]
    assert taken == held_by_a


def test_the_cpu_pool_waits_probes_once_then_takes_only_what_a_node_cannot_keep_up_with():
    q = _queues(40, ["a"])
    assert q.take_cpu({"a": 1})[0] == 39  # a probe (the last shard): 40 queued for one unit
    assert q.take_cpu({"a": 1}) is None  # one probe at a time
    q.observe("a", 1.0)
    q.observe(CPU, 10.0)  # the CPU pool is ten times slower per shard than a unit
    left = len(q)
    index, reason = q.take_cpu({"a": 1})  # 39 queued x 1 s > 10 s: behind
    assert index == 38 and reason.startswith("overflow") and len(q) == left - 1
    while len(q.held["a"]) * 1.0 > 10.0:
        assert q.take_cpu({"a": 1}) is not None
    assert q.take_cpu({"a": 1}) is None  # now the node reaches its last shard in time


def test_without_offload_or_nodes_everything_is_the_cpu_pools_with_the_reason():
    q = LocalityQueues([(0, "k0"), (1, "k1")], ["a"], offload=False, why_not="nothing to offload")
    assert q.take_isp("a") is None
    assert q.take_cpu({"a": 1}) == (0, "nothing to offload")
    q = LocalityQueues([(0, "k0")], [], offload=True)
    assert "CPU-centric" in q.take_cpu({})[1]


def test_a_lost_node_gives_its_shards_to_the_others_and_a_requeued_shard_comes_first():
    q = _queues(10, ["a", "b"])
    held_by_b = [i for i in range(10) if q.holder[i] == "b"]
    q.lose("b")
    taken = [q.take_cpu({"a": 1}) for _ in held_by_b]
    assert [t[0] for t in taken] == held_by_b and all("b left" in t[1] for t in taken)
    first_a = q.take_isp("a")[0]
    q.requeue(first_a, "its worker left")
    again = q.take_isp("a")
    assert again[0] == first_a and again[1].endswith("(a second time: its worker left)")
    q.requeue(held_by_b[0], "its worker left before it finished")
    assert q.take_any()[0] == held_by_b[0]
