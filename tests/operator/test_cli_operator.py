"""The CLI pieces the operator needs: ``recprep operator`` and ``recprep run - --job-env VAR``."""

from __future__ import annotations

import yaml

from recprep import cli
from recprep.operator import builders

from .conftest import job_document


def test_operator_subcommand_parses():
    args = cli.parser().parse_args(
        ["operator", "--standalone", "--namespace", "ns", "--liveness", "http://0.0.0.0:8080/healthz"]
    )
    assert (args.standalone, args.namespace, args.liveness) == (True, "ns", "http://0.0.0.0:8080/healthz")
    assert args.fn is cli.cmd_operator
    default = cli.parser().parse_args(["operator"])
    assert (default.standalone, default.namespace, default.liveness) == (False, None, None)


def test_job_env_reads_the_configmap_manifest(monkeypatch, job, settings):
    configmap = builders.build_job_configmap(job, settings)
    monkeypatch.setenv(builders.JOB_ENV, configmap["data"][builders.JOB_FILE])
    assert cli._load_job_from_env(builders.JOB_ENV) == job


def test_job_env_errors_are_spec_errors(monkeypatch, capsys):
    monkeypatch.delenv("RECPREP_TEST_JOB", raising=False)
    assert cli.main(["run", "-", "--job-env", "RECPREP_TEST_JOB"]) == 2
    assert "$RECPREP_TEST_JOB" in capsys.readouterr().err
    assert cli.main(["run", "-"]) == 2
    assert "--job-env" in capsys.readouterr().err
    bad = job_document(transforms=[{"op": "firstx", "columns": "sparse", "k": 0}])
    monkeypatch.setenv("RECPREP_TEST_JOB", yaml.safe_dump(bad))
    assert cli.main(["run", "-", "--job-env", "RECPREP_TEST_JOB"]) == 2
    assert "spec.transforms[0].k" in capsys.readouterr().err


def test_bad_operator_settings_are_one_clear_error_before_kopf_starts(monkeypatch, capsys):
    monkeypatch.setenv("RECPREP_POD_DEFAULTS", '{"pools": {"cpu": {"nodeSelector": {"spot": 1}}}}')
    assert cli.main(["operator", "--standalone"]) == 1
    err = capsys.readouterr().err
    assert "RECPREP_POD_DEFAULTS: pools.cpu.nodeSelector.spot must be a string" in err
    assert "Traceback" not in err
