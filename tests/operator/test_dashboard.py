"""The operator's dashboard: each followed job's looks on the board, served."""

from __future__ import annotations

import json
import types
import urllib.request

import pytest

from recprep.operator import dashboard as od
from recprep.operator import kube
from recprep.operator.settings import Settings, SettingsError

from .conftest import job_document

pytest.importorskip("prometheus_client")


def test_the_setting_is_an_address():
    assert Settings.from_env({"RECPREP_DASHBOARD": "0.0.0.0:8080"}).dashboard == "0.0.0.0:8080"
    assert Settings.from_env({}).dashboard is None
    with pytest.raises(SettingsError, match="RECPREP_DASHBOARD: expected \\[HOST:\\]PORT"):
        Settings.from_env({"RECPREP_DASHBOARD": "everywhere"})


def test_without_the_drivers_document_the_status_counts_stand_in():
    status = {"phase": "Succeeded", "shards": {"done": 4, "total": 4}, "rows": {"done": 40, "estimated": 40}}
    doc = od.progress_of(status, None)
    assert (doc["stage"], doc["shardsDone"], doc["shardsTotal"], doc["rows"]) == ("done", 4, 4, 40)
    assert od.progress_of(status, {"stage": "transform"}) == {"stage": "transform"}


def test_followed_jobs_are_shown_with_their_replicas_and_forgotten_when_deleted(monkeypatch):
    replicas = {"cpu": 3, "isp": 1}
    monkeypatch.setattr(
        kube,
        "read_worker_deployment",
        lambda api, ns, name, pool: types.SimpleNamespace(
            spec=types.SimpleNamespace(replicas=replicas[pool])
        ),
    )
    board = od.OperatorDashboard("127.0.0.1:0", clock=iter(range(100, 200)).__next__)
    try:
        body = {
            **job_document(autoscale={"deadline": 600}),
            "metadata": {"name": "clicks", "namespace": "ml"},
        }
        status = {
            "phase": "Running",
            "workers": {"cpu": 2, "isp": 1},
            "autoscaler": {
                "policy": "predictive",
                "lastDecisions": [
                    {"time": "2026-12-03T10:00:00Z", "pool": "cpu", "from": 2, "to": 3, "reason": "r"}
                ],
            },
        }
        progress = {
            "stage": "transform",
            "shardsDone": 1,
            "shardsTotal": 10,
            "rows": 100,
            "rowsEstimated": 1000,
        }
        board.look(None, body, status, progress)
        board.look(None, body, status, {**progress, "shardsDone": 2, "rows": 200})
        with urllib.request.urlopen(board.server.url + "api/jobs/ml/clicks", timeout=10) as response:
            doc = json.loads(response.read())
        f = doc["figures"]
        assert (f["shardsDone"], f["desired"], f["workers"], f["pending"]) == (
            2,
            {"cpu": 3, "isp": 1},
            {"cpu": 2, "isp": 1},
            {"cpu": 1, "isp": 0},
        )
        assert f["deadlineSeconds"] == 600.0 and doc["decisions"][0]["to"] == 3
        assert doc["links"]["dask"] == "http://clicks-scheduler.ml.svc:8787/status"
        assert doc["prices"]["cpuHourly"] > 0  # from the job's ISP model
        board.look(None, body, {"phase": "Succeeded", "workers": {"cpu": 0, "isp": 0}}, None)
        assert board.board.get("ml", "clicks").figures()["desired"] == {"cpu": 0, "isp": 0}  # not read
        board.retain({("ml", "other")})
        assert board.board.get("ml", "clicks") is None
    finally:
        board.close()
