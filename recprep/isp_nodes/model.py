"""The ISP emulation model: what one storage node's in-storage processing units can do, what
the network between storage and compute carries, and what power and money the two pools cost.

Plain data (pydantic only), so the spec validates ``spec.pools.isp.model`` with it and the
operator loads no data-plane library. Every parameter has its default *and the source of that
default* (:data:`SOURCES`): a datasheet, a paper or a public price list, or, where no public
figure exists, the word "assumption" and the reasoning behind it. The defaults describe a
SmartSSD-class computational storage device (an FPGA beside the flash, the hardware PreSto
used) in a storage server, and a general-purpose cloud CPU node.

The model turns a shard into seconds on one ISP unit (:meth:`IspModel.unit_seconds`): the read
from flash at the internal bandwidth, the parse of raw text at the decode rate, then each
offloaded op over its values at its class's rate. Paced ISP workers hold every task to that
time; the driver uses it to split shards between the pools; the accounting prices busy seconds
with it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

#: Where each default comes from (keyed by the manifest's spelling). "assumption" marks a figure
#: no public source gives; the bench (bench/presto.py) prints these beside every ratio.
SOURCES: dict[str, str] = {
    "throughput.decode": "assumption: 100 M values/s per unit for decode ops (hex and decimal "
    "strings to integers, timestamps), a 250 MHz FPGA pipeline retiring one value every 2.5 cycles; "
    "PreSto gives no per-op table we could check here",
    "throughput.generation": "assumption: 100 M values/s per unit (the same pipeline); PreSto "
    "reports generation as the CPU-centric bottleneck, not its ISP rate",
    "throughput.normalization": "assumption: 200 M values/s per unit (element-wise float ops "
    "pipeline more easily than hashing and list building)",
    "parseBytesPerSecond": "assumption: an FPGA text parser at 1 GB/s per unit, a third of the "
    "device's PCIe Gen3 x4 line rate",
    "internalReadBytesPerSecond": "SmartSSD CSD product brief: flash-to-FPGA peer-to-peer over the "
    "device's internal PCIe Gen3 x4 switch (3.94 GB/s line rate); 3.0 GB/s after protocol overhead "
    "is an assumption",
    "networkBytesPerSecond": "AWS EC2 instance types page: general-purpose nodes of 4-16 vCPUs "
    "have 'up to 10 Gbps' (1.25 GB/s); a storage-to-compute path shared by no other traffic is an "
    "assumption",
    "ispUnitWatts": "SmartSSD CSD product brief: 25 W maximum per device (the whole device "
    "counted while busy, an upper bound)",
    "cpuCoreWatts": "Intel Xeon Platinum 8380 (Intel ARK): 270 W TDP over 40 cores = 6.75 W per "
    "busy core (TDP as draw is an assumption)",
    "ispNodeHourly": "assumption: an AWS i3en.xlarge-class storage server at its us-east-1 "
    "on-demand price ($0.452/h) plus one SmartSSD at about $2,600 amortized over three years "
    "($0.10/h per unit); recprep counts a whole storage node per ISP worker",
    "cpuNodeHourly": "AWS EC2 on-demand price list, us-east-1, c5.xlarge (4 vCPU): $0.17/h",
    "cpuNodeHourlyPreemptible": "assumption: spot at 60% below on-demand, a typical c5 discount "
    "(the spot price moves by zone and hour)",
    "cpuNodeCores": "c5.xlarge: 4 vCPUs, one single-threaded Dask worker each",
}


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, allow_inf_nan=False
    )


class Throughput(_Model):
    """Values per second one ISP unit pushes through an op of each class (the op registry,
    ``recprep.op_params``, gives every op's class); an op class not named here does not exist."""

    decode: float = Field(
        1.0e8, gt=0, description="Decode ops (hex_to_int, to_int, time): values/s per unit."
    )
    generation: float = Field(
        1.0e8, gt=0, description="Feature generation (bucketize, sigrid_hash, ngram, ...): values/s per unit."
    )
    normalization: float = Field(
        2.0e8, gt=0, description="Normalization (fill_null, log, clamp, ...): values/s per unit."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_classes(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown op class {unknown[0]!r}: the op classes are {', '.join(cls.model_fields)} "
                    "(every op's class is in the op registry)"
                )
        return data


class IspModel(_Model):
    """The ISP emulation model (``spec.pools.isp.model``): any subset of the fields overrides
    the defaults. Rates are per ISP unit; prices in US dollars per hour."""

    throughput: Throughput = Field(
        default_factory=Throughput, description="Per op class, values per second of one ISP unit."
    )
    parse_bytes_per_second: float = Field(
        1.0e9, gt=0, description="Raw text one ISP unit parses into typed columns per second."
    )
    internal_read_bytes_per_second: float = Field(
        3.0e9, gt=0, description="Bytes per second an ISP unit reads from its own flash."
    )
    network_bytes_per_second: float = Field(
        1.25e9, gt=0, description="Bytes per second between a storage node and a compute node."
    )
    isp_unit_watts: float = Field(25.0, ge=0, description="Power of one busy ISP unit (W).")
    cpu_core_watts: float = Field(6.75, ge=0, description="Power of one busy CPU core (W).")
    isp_node_hourly: float = Field(
        0.552, ge=0, description="Price of one ISP storage node per hour (USD), its units included."
    )
    cpu_node_hourly: float = Field(0.17, ge=0, description="On-demand price of one CPU node per hour (USD).")
    cpu_node_hourly_preemptible: float = Field(
        0.068, ge=0, description="Preemptible (spot) price of one CPU node per hour (USD)."
    )
    cpu_node_cores: int = Field(4, ge=1, description="Cores (single-threaded workers) per CPU node.")

    def class_rate(self, op_class: str) -> float:
        """Values per second of one unit for an op class (``op_params.OFFLOAD_CLASSES``)."""
        if op_class not in Throughput.model_fields:
            raise ValueError(f"unknown op class {op_class!r}")
        return getattr(self.throughput, op_class)

    def unit_seconds(self, stored_bytes: int, parsed_bytes: int, values: dict[str, int]) -> float:
        """Seconds one ISP unit takes for a shard: its ``stored_bytes`` read from flash,
        ``parsed_bytes`` of raw text parsed, and ``values[op_class]`` values through each class."""
        seconds = stored_bytes / self.internal_read_bytes_per_second
        seconds += parsed_bytes / self.parse_bytes_per_second
        return seconds + sum(n / self.class_rate(c) for c, n in values.items())

    def network_seconds(self, nbytes: int) -> float:
        return nbytes / self.network_bytes_per_second

    def cpu_core_hourly(self, preemptible: bool) -> float:
        node = self.cpu_node_hourly_preemptible if preemptible else self.cpu_node_hourly
        return node / self.cpu_node_cores


def described(model: IspModel | None = None) -> list[tuple[str, object, str]]:
    """(manifest name, value, source of its default) of every parameter, in declaration order;
    a value that differs from the default says so instead of citing the default's source."""
    model = model or IspModel()
    defaults = IspModel()
    out = []
    for name, f in IspModel.model_fields.items():
        key = f.alias or name
        if name == "throughput":
            for cname in Throughput.model_fields:
                value = getattr(model.throughput, cname)
                same = value == getattr(defaults.throughput, cname)
                out.append(
                    (
                        f"throughput.{cname}",
                        value,
                        SOURCES[f"throughput.{cname}"] if same else "set by the job",
                    )
                )
            continue
        value = getattr(model, name)
        out.append((key, value, SOURCES[key] if value == getattr(defaults, name) else "set by the job"))
    return out
