"""Alerts from real DAG runs (``recpipe run``: Airflow's dag.test in this process) to a real SMTP
server on 127.0.0.1, through the SMTP provider's notifier configured by RECPIPE_ALERT_EMAIL and
an Airflow connection; and the one-line-per-stage progress ``recpipe run`` prints meanwhile."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from recpipe.cli import main
from recpipe.gates import DEFAULT_CONFIG
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import load_settings
from recpipe.warehouse import session
from tests.smtp_sink import smtp_sink_fixture  # noqa: F401 - the smtp_sink fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def shop_home(tmp_path, tiny_shop, airflow_db, monkeypatch):
    monkeypatch.setenv("RECPIPE_HOME", str(tmp_path / "home"))
    with session(load_settings()) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    monkeypatch.setenv("RECPIPE_ALERT_EMAIL", "ops@example.com")
    for name in ("RECPIPE_ALERT_NOTIFIER", "RECPIPE_ALERT_NOTIFIER_ARGS"):
        monkeypatch.delenv(name, raising=False)
    return load_settings()


def test_failed_gate_sends_one_alert(shop_home, tiny_shop, smtp_sink, capfd):
    as_of = tiny_shop.end_date + timedelta(days=10)  # events 10 days old: freshness fails
    assert main(["run", "--as-of", as_of.isoformat()]) == 1
    out, err = capfd.readouterr()
    (message,) = smtp_sink.messages
    assert message["Subject"].startswith("[recpipe] recpipe_daily FAILED: ")
    body = smtp_sink.body(message)
    assert f"(as of {as_of})" in body and "freshness_days" in body
    assert "fail: raw.freshness_days" in body
    # progress: one line as each stage starts and ends, the gate's reason on its line
    assert re.search(r"^  run__resolve_params: done in \d+\.\ds$", out, re.M), out
    assert re.search(r"^  gate__raw: FAILED after \d+\.\ds: .*freshness_days", out, re.M), out
    assert "freshness_days" in err and len(err.strip().splitlines()) == 1


def test_run_that_published_with_warnings_sends_one_summary(
    shop_home, tiny_shop, smtp_sink, capfd, tmp_path, monkeypatch
):
    # a warn level no shop reaches (a million available items): the run warns, and publishes
    shipped = DEFAULT_CONFIG.read_text()
    rule = "available_items:            {min: {fail: 1}}"
    assert rule in shipped
    gates = tmp_path / "gates.yml"
    gates.write_text(shipped.replace(rule, rule.replace("{fail: 1}", "{warn: 1000000, fail: 1}")))
    monkeypatch.setenv("RECPIPE_GATES_FILE", str(gates))
    as_of = tiny_shop.end_date + timedelta(days=1)
    assert main(["run", "--as-of", as_of.isoformat(), "--param", "k=5"]) == 0
    out, _ = capfd.readouterr()
    (message,) = smtp_sink.messages
    assert "published with 1 warning(s)" in message["Subject"]
    assert "warn: raw.available_items" in smtp_sink.body(message)

    lines = [line for line in out.splitlines() if line.startswith("  ")]
    stages = [line.split()[0].rstrip(":") for line in lines]
    assert stages[:2] == ["run__resolve_params", "run__resolve_params"]
    for stage in ("gate__raw", "dbt", "gate__features", "gate__output", "publish__recommendations"):
        assert stages.count(stage) == 2, (stage, lines)  # one line as it starts, one as it ends
    assert re.search(
        r"^  gate__raw: done in \d+\.\ds - gate WARN \(1 of \d+ checks warn: available_items\)$",
        out,
        re.M,
    ), out
    assert re.search(r"^  gate__output: done in \d+\.\ds - gate pass \(\d+ checks\)$", out, re.M)
    assert re.search(r"^  dbt: done in \d+\.\ds \(\d+ dbt tasks\)$", out, re.M), out
    # (How quiet the rest is cannot be seen here: under pytest Airflow's log handler writes to
    # pytest's capture, not to the file descriptor `recpipe run` points at its log file.)
