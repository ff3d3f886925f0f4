"""run_dbt: the command line and environment it gives dbt, and one clear line when dbt fails."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from datetime import date

import pytest

from recpipe import dbt_cli
from recpipe.settings import DBT_PROJECT_DIR, load_settings


def fake_dbt(monkeypatch, returncode: int, stdout: str = "") -> list[dict]:
    calls = []

    def run(argv, **kwargs):
        calls.append({"argv": argv, **kwargs})
        return subprocess.CompletedProcess(argv, returncode, stdout, "")

    monkeypatch.setattr(dbt_cli.subprocess, "run", run)
    return calls


def test_build_passes_project_paths_vars_args_and_the_warehouse(monkeypatch, tmp_path):
    calls = fake_dbt(monkeypatch, 0)
    settings = replace(load_settings(), home=tmp_path / "home")
    dbt_cli.run_dbt(
        "build",
        settings,
        as_of=date(2026, 10, 1),
        dbt_vars={"label_days": 14},
        work_dir=tmp_path / "dbt",
        extra_args=("--full-refresh",),
    )
    (call,) = calls
    assert call["argv"][1:] == [
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(tmp_path / "dbt" / "target"),
        "--log-path",
        str(tmp_path / "dbt" / "logs"),
        "--vars",
        json.dumps({**settings.dbt_vars(), "as_of": "2026-10-01", "label_days": 14}),
        "--full-refresh",
    ]
    assert call["env"]["RECPIPE_DUCKDB_PATH"] == str(settings.duckdb_path)
    assert call["env"]["DBT_PROFILES_DIR"] == str(DBT_PROJECT_DIR)


def test_a_failure_is_one_line_naming_the_command_and_the_end_of_the_output(monkeypatch):
    fake_dbt(monkeypatch, 2, "\x1b[0m12:43:24  Encountered an error:\n\n12:43:24  Bad as_of\n")
    with pytest.raises(dbt_cli.DbtCommandFailed) as failed:
        dbt_cli.run_dbt("parse", as_of="2026-13-01", extra_args=("--target", "duckdb"))
    assert str(failed.value) == (
        '`dbt parse --vars {"as_of": "2026-13-01"} --target duckdb` failed with exit code 2: '
        "Encountered an error: | Bad as_of"
    )
    assert failed.value.result.returncode == 2
