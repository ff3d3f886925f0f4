"""recpipe.notify: alerts go through the configured Airflow notifier (here the SMTP provider's,
to a real SMTP server on 127.0.0.1); time limits and the publish-by deadline from settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk import BaseNotifier

from recpipe import notify
from recpipe.settings import load_settings
from recpipe.warehouse import session
from tests.report_rows import seed_report_rows
from tests.smtp_sink import smtp_sink_fixture  # noqa: F401 - the smtp_sink fixture


@pytest.fixture
def alerts_to_ops(monkeypatch):
    for name in ("RECPIPE_ALERT_NOTIFIER", "RECPIPE_ALERT_NOTIFIER_ARGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECPIPE_ALERT_EMAIL", "ops@example.com")


@pytest.fixture
def seeded(recpipe_home):
    with session(load_settings()) as wh:
        seed_report_rows(wh)  # run30 published with a warn; run29 failed on a fail-level check


def test_alerts_are_off_unless_configured(monkeypatch, smtp_sink):
    for name in ("RECPIPE_ALERT_NOTIFIER", "RECPIPE_ALERT_NOTIFIER_ARGS", "RECPIPE_ALERT_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    assert notify.configured_notifier() is None
    assert notify.send_alert({}, "s", "m") is False
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECPIPE_ALERT_NOTIFIER_ARGS": "{to: x}"}, "not JSON"),
        ({"RECPIPE_ALERT_NOTIFIER_ARGS": "[1]"}, "JSON object"),
        ({"RECPIPE_ALERT_NOTIFIER": "no.such.Notifier"}, "cannot be imported"),
    ],
)
def test_bad_alert_settings_are_one_line_errors(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(notify.AlertConfigError, match=message):
        notify.configured_notifier()


def test_any_notifier_class_can_be_configured(monkeypatch):
    monkeypatch.delenv("RECPIPE_ALERT_EMAIL", raising=False)
    monkeypatch.setenv("RECPIPE_ALERT_NOTIFIER", "tests.unit.test_notify.RecordingNotifier")
    monkeypatch.setenv("RECPIPE_ALERT_NOTIFIER_ARGS", '{"text": "{{ recpipe_subject }}!"}')
    RecordingNotifier.sent.clear()
    assert notify.send_alert({}, "hello", "body") is True
    assert RecordingNotifier.sent == ["hello!"]


def test_warned_run_sends_one_summary_and_a_clean_run_none(
    alerts_to_ops, seeded, smtp_sink, monkeypatch
):
    notify.on_run_succeeded({"run_id": "run30"})
    (message,) = smtp_sink.messages
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "[recpipe] recpipe_daily published with 1 warning(s): run30"
    body = smtp_sink.body(message)
    assert "warn: raw.events_fresh observed 0.6 (threshold 0.2)" in body
    assert "24680 recommendations (model m30)" in body

    with session(load_settings()) as wh:
        wh.execute("delete from recpipe.dq_results where status <> 'pass'")
    notify.on_run_succeeded({"run_id": "run30"})
    assert len(smtp_sink.messages) == 1  # every check passed: nothing to say


def test_failed_run_sends_one_alert_with_the_reason(alerts_to_ops, seeded, smtp_sink):
    notify.on_run_failed({"run_id": "run29", "reason": "task_failure"})
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[recpipe] recpipe_daily FAILED: run29"
    body = smtp_sink.body(message)
    assert "Reason: gate__raw failed: events_fresh" in body
    assert "fail: raw.events_volume" in body


def test_deadline_callback_sends_an_alert(alerts_to_ops, smtp_sink, monkeypatch):
    monkeypatch.setenv("RECPIPE_PUBLISH_BY", "06:30")
    notify.on_deadline_missed({"run_id": "scheduled__2026-10-01"})
    (message,) = smtp_sink.messages
    assert "not published by 06:30 UTC" in message["Subject"]


def test_time_limits_and_deadline_from_settings(monkeypatch):
    for name in ("RECPIPE_TASK_TIMEOUT_MINUTES", "RECPIPE_RUN_TIMEOUT_HOURS", "RECPIPE_PUBLISH_BY"):
        monkeypatch.delenv(name, raising=False)
    assert notify.task_timeout() == timedelta(minutes=notify.DEFAULT_TASK_TIMEOUT_MINUTES)
    assert notify.run_timeout() == timedelta(hours=notify.DEFAULT_RUN_TIMEOUT_HOURS)
    assert notify.deadline_alert() is None
    monkeypatch.setenv("RECPIPE_TASK_TIMEOUT_MINUTES", "30")
    monkeypatch.setenv("RECPIPE_PUBLISH_BY", "6:05")
    assert notify.task_timeout() == timedelta(minutes=30)
    alert = notify.deadline_alert()
    assert alert.interval == timedelta(hours=6, minutes=5)
    assert type(alert.reference).__name__ == "DagRunLogicalDateDeadline"
    for name, value in (
        ("RECPIPE_PUBLISH_BY", "25:00"),
        ("RECPIPE_TASK_TIMEOUT_MINUTES", "-1"),
        ("RECPIPE_RUN_TIMEOUT_HOURS", "soon"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(notify.AlertConfigError, match=name):
            notify.publish_by() if name == "RECPIPE_PUBLISH_BY" else (
                notify.task_timeout() if "TASK" in name else notify.run_timeout()
            )


class RecordingNotifier(BaseNotifier):
    """A stand-in for a deployment's own notifier class (Slack, PagerDuty, ...)."""

    sent: list[str] = []
    template_fields = ("text",)

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def notify(self, context):
        RecordingNotifier.sent.append(self.text)
