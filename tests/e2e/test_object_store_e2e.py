"""End to end: a PreprocessJob whose source is in S3 (a real S3 API, moto's server, in this
process) runs on the test cluster with the chart's ``data.credentialsSecret``: the driver and the
workers get the Secret's keys as their environment (the only place the endpoint and the keys are),
read the gzip file through s3fs, and write the shards a local run of the same job writes."""

from __future__ import annotations

import gzip
import json
import os
import secrets

import pytest

from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from .conftest import Deployed
from .test_operator_e2e import CRITEO_TRANSFORMS, assert_committed_exactly_once, preprocess_job

pytestmark = pytest.mark.integration

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


def test_an_s3_source_job_reads_with_the_secret_the_chart_names(deploy, criteo_lines, tmp_path):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        creds = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        assert not any(k in os.environ for k in creds)  # the pods can only have them from the Secret
        fs = s3fs.S3FileSystem(
            key=creds["AWS_ACCESS_KEY_ID"],
            secret=creds["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=creds["AWS_ENDPOINT_URL"],
        )
        fs.mkdir("logs")
        local = tmp_path / "day.tsv.gz"
        local.write_bytes(gzip.compress(b"".join(criteo_lines) * 2))  # 20,000 real rows
        fs.put(str(local), "logs/day.tsv.gz")

        deployed: Deployed = deploy(values={"data": {"credentialsSecret": "s3-creds"}})
        deployed.kubectl(
            "create", "secret", "generic", "s3-creds", *(f"--from-literal={k}={v}" for k, v in creds.items())
        )
        out = tmp_path / "out"
        deployed.apply_job(preprocess_job("from-s3", out, source="s3://logs/day.tsv.gz", rows_per_shard=5000))
        status = deployed.wait_phase("from-s3", "Succeeded", timeout=180)
        shards = status["shards"]["total"]
        assert status["rows"]["written"] == 20_000 and status["shards"]["done"] == shards >= 4
        driver = deployed.pods("from-s3", "driver")[0]
        assert driver["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert_committed_exactly_once(out, shards)

        # the same job on the local file, run here: the same shards, byte for byte
        doc = preprocess_job("from-s3", tmp_path / "local", source=str(local), rows_per_shard=5000)
        doc["spec"]["transforms"] = CRITEO_TRANSFORMS
        run_job(load_job_dict(doc), workers=1)
        ours = sorted(out.glob("part-*.parquet"))
        theirs = sorted((tmp_path / "local").glob("part-*.parquet"))
        assert len(ours) == len(theirs) == shards
        assert [p.read_bytes() for p in ours] == [p.read_bytes() for p in theirs]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_job_whose_output_is_in_s3_runs_and_feeds_a_trainer_without_any_volume(deploy, tmp_path):
    from ..s3 import moto_s3
    from .test_operator_e2e import _serving, _trained, _trainer_job, _wait_shard_service

    with moto_s3("out", set_env=False) as (fs, creds):
        assert not any(k in os.environ for k in creds)  # the pods can only have them from the Secret
        fs.make_bucket_versioned("out")
        # no shared volume at all: the chart's storage is empty, the data is in S3
        deployed: Deployed = deploy(
            values={"data": {"credentialsSecret": "s3-creds"}, "storage": {"volumes": [], "volumeMounts": []}}
        )
        deployed.kubectl(
            "create", "secret", "generic", "s3-creds", *(f"--from-literal={k}={v}" for k, v in creds.items())
        )
        out = "s3://out/to-s3"
        seed = secrets.randbelow(1 << 30)  # a job of its own: no other run's state in the bucket
        deployed.apply_job(_serving(deployed, preprocess_job("to-s3", out, ttl=0, seed=seed)))
        _wait_shard_service(deployed, "to-s3", out)
        (server,) = deployed.pods("to-s3", "shards")[0]["spec"]["containers"]
        assert "--state-dir" not in server["command"]  # the acknowledgements go to the bucket
        deployed.cluster.apply(_trainer_job("to-s3-trainer-0", "to-s3-shards", 0, 1, "to-s3-token"))
        (report,) = _trained(deployed, ["to-s3-trainer-0"], timeout=120)
        status = deployed.wait_phase("to-s3", "Succeeded", timeout=60)
        assert status["shards"] == {"done": 4, "total": 4} and status["rows"]["written"] == 20_000
        assert sorted(report["acknowledged"]) == [0, 1, 2, 3] and report["samples"] == 20_000
        driver = deployed.pods("to-s3", "driver")[0]["spec"]
        assert [v["name"] for v in driver["volumes"]] == ["tmp"]

        # each shard committed once (the bucket keeps every version of every record)
        versioned = type(fs)(
            key=creds["AWS_ACCESS_KEY_ID"],
            secret=creds["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=creds["AWS_ENDPOINT_URL"],
            version_aware=True,
            skip_instance_cache=True,
        )
        records = versioned.ls("out/to-s3/_ledger")
        assert len(records) == 4 and all(len(versioned.object_version_info(r)) == 1 for r in records)
        # the same job on a local path, run here: the same shards, byte for byte
        run_job(load_job_dict(preprocess_job("to-s3", tmp_path / "local", seed=seed)), workers=1)
        local = sorted((tmp_path / "local").glob("part-*.parquet"))
        assert [p.read_bytes() for p in local] == [fs.cat(f"out/to-s3/{p.name}") for p in local]
        # the trainer's acknowledgements are in the bucket, one object each, beside the shards
        identity = json.loads(fs.cat("out/to-s3/_job.json"))["identity"]
        fs.invalidate_cache()
        state = fs.ls(f"out/to-s3/_service/{identity[:16]}", detail=False)  # and the server's _lock
        (group,) = [p for p in state if p.endswith(".acks")]
        acks = fs.ls(f"{group}/epoch-00000", detail=False)
        assert sorted(a.rsplit("/", 1)[1] for a in acks) == [f"{s:05d}.json" for s in range(4)]
