"""Delivery to trainers: the shard service (``service``), shard streams (``shards``) and
KeyedJaggedTensor-layout batches (``batching``). It reads a job's output through the output
contract (``recprep.workloads.output``) and never transforms data."""
