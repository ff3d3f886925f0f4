"""Alerts for ``recpipe_daily`` through Airflow's notifier mechanism, and its time limits.

Who is told, and how, is the deployment's choice, read when an alert is sent (so the process
that runs DAG callbacks needs these settings: the dag-processor, or the ``recpipe run``
process):

- ``RECPIPE_ALERT_NOTIFIER``: import path of any Airflow notifier class (a ``BaseNotifier``),
  default the SMTP provider's ``airflow.providers.smtp.notifications.smtp.SmtpNotifier``;
- ``RECPIPE_ALERT_NOTIFIER_ARGS``: a JSON object of its arguments (e.g. ``{"to": "...",
  "smtp_conn_id": "smtp_alerts"}``, or a Slack notifier's channel). Templates in them may use
  ``{{ recpipe_subject }}`` and ``{{ recpipe_message }}``; the SMTP notifier gets them as its
  subject and body unless the arguments say otherwise;
- ``RECPIPE_ALERT_EMAIL``: shortcut for ``{"to": ...}`` of the SMTP notifier.

Alerts are off when none is set. One alert per DAG run that failed (any cause: a fail-level
gate, an error, a timeout) and one summary per run that published with warn-level gate checks.

The time limits are read where the DAG is parsed: ``RECPIPE_TASK_TIMEOUT_MINUTES`` (every
task's ``execution_timeout``, default 120), ``RECPIPE_RUN_TIMEOUT_HOURS`` (the DAG's
``dagrun_timeout``, default 12) and ``RECPIPE_PUBLISH_BY`` (``HH:MM`` UTC: an Airflow deadline
alert when a run has not finished by then on its logical date; off by default).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

SMTP_NOTIFIER = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
DEFAULT_TASK_TIMEOUT_MINUTES = 120
DEFAULT_RUN_TIMEOUT_HOURS = 12
_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class AlertConfigError(ValueError):
    """An alert or time-limit setting that cannot be used (one line naming the variable)."""


# time limits (parse time) --------------------------------------------------------------------
def _positive(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError as err:
        raise AlertConfigError(f"{name} must be a number, got {text!r}") from err
    if value <= 0:
        raise AlertConfigError(f"{name} must be positive, got {text!r}")
    return value


def task_timeout() -> timedelta:
    """Every task's ``execution_timeout`` (``RECPIPE_TASK_TIMEOUT_MINUTES``)."""
    return timedelta(
        minutes=_positive("RECPIPE_TASK_TIMEOUT_MINUTES", DEFAULT_TASK_TIMEOUT_MINUTES)
    )


def run_timeout() -> timedelta:
    """The DAG's ``dagrun_timeout`` (``RECPIPE_RUN_TIMEOUT_HOURS``)."""
    return timedelta(hours=_positive("RECPIPE_RUN_TIMEOUT_HOURS", DEFAULT_RUN_TIMEOUT_HOURS))


def publish_by() -> timedelta | None:
    """``RECPIPE_PUBLISH_BY`` (``HH:MM`` UTC) as the time after midnight of the logical date."""
    text = os.environ.get("RECPIPE_PUBLISH_BY", "").strip()
    if not text:
        return None
    match = _HH_MM.match(text)
    if not match:
        raise AlertConfigError(f"RECPIPE_PUBLISH_BY must be HH:MM (UTC), got {text!r}")
    return timedelta(hours=int(match.group(1)), minutes=int(match.group(2)))


def deadline_alert():
    """An Airflow deadline alert: a run still not finished ``RECPIPE_PUBLISH_BY`` after the
    start (midnight UTC) of its logical date calls :func:`on_deadline_missed`; None when off."""
    interval = publish_by()
    if interval is None:
        return None
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=interval,
        callback=SyncCallback("recpipe.notify.on_deadline_missed"),
        name="recpipe_publish_by",
    )


# notifier (call time) ------------------------------------------------------------------------
def configured_notifier():
    """The deployment's notifier (see the module doc), or None when alerts are off."""
    from airflow.sdk.module_loading import import_string

    path = os.environ.get("RECPIPE_ALERT_NOTIFIER", "").strip()
    raw_args = os.environ.get("RECPIPE_ALERT_NOTIFIER_ARGS", "").strip()
    email = os.environ.get("RECPIPE_ALERT_EMAIL", "").strip()
    if not (path or raw_args or email):
        return None
    try:
        args: dict[str, Any] = json.loads(raw_args) if raw_args else {}
    except json.JSONDecodeError as err:
        raise AlertConfigError(f"RECPIPE_ALERT_NOTIFIER_ARGS is not JSON: {err}") from err
    if not isinstance(args, dict):
        raise AlertConfigError("RECPIPE_ALERT_NOTIFIER_ARGS must be a JSON object")
    path = path or SMTP_NOTIFIER
    if email:
        args.setdefault("to", email)
    if path == SMTP_NOTIFIER:
        args.setdefault("subject", "{{ recpipe_subject }}")
        args.setdefault("html_content", "<pre>{{ recpipe_message_html }}</pre>")
    try:
        notifier_class = import_string(path)
    except ImportError as err:
        raise AlertConfigError(f"RECPIPE_ALERT_NOTIFIER {path!r} cannot be imported") from err
    return notifier_class(**args)


def send_alert(context: dict[str, Any], subject: str, message: str) -> bool:
    """Send one alert through the configured notifier; False when alerts are off."""
    notifier = configured_notifier()
    if notifier is None:
        log.info("recpipe alerts are off (no RECPIPE_ALERT_* setting): %s", subject)
        return False
    context = dict(context)
    if not hasattr(context.get("dag"), "get_template_env"):
        # dag.test hands DAG callbacks the scheduler's SerializedDAG, which cannot render
        # templates; without a dag the notifier uses Airflow's default template environment
        context.pop("dag", None)
    context.update(
        recpipe_subject=subject,
        recpipe_message=message,
        recpipe_message_html=html.escape(message),
    )
    notifier(context)
    log.info("recpipe alert sent through %s: %s", type(notifier).__name__, subject)
    return True


# what the alerts say -------------------------------------------------------------------------
def _run_facts(run_id: str) -> dict[str, Any]:
    """The run's row of ``recpipe.pipeline_runs`` and its non-passing gate checks (empty when the
    warehouse cannot be read: the alert goes out anyway)."""
    from recpipe.settings import load_settings
    from recpipe.warehouse import BRIEF_LOCK_TIMEOUT_S, session

    facts: dict[str, Any] = {"run": {}, "checks": []}
    settings = load_settings()
    try:
        lock_timeout_s = min(settings.lock_timeout_s, BRIEF_LOCK_TIMEOUT_S)
        with session(settings, lock_timeout_s=lock_timeout_s) as wh:
            runs = wh.query_df(
                "select run_date, status, error, rows, model_version "
                f"from {wh.table('recpipe', 'pipeline_runs')} where run_id = @r",
                {"r": run_id},
            )
            checks = wh.query_df(
                "select stage, check_name, status, observed, threshold, details "
                f"from {wh.table('recpipe', 'dq_results')} where run_id = @r and status <> 'pass' "
                "order by stage, check_name",
                {"r": run_id},
            )
    except Exception as err:  # noqa: BLE001 - an alert without details beats no alert
        log.warning("recpipe alert: could not read run %s from the warehouse: %s", run_id, err)
        return facts
    if len(runs):
        facts["run"] = runs.iloc[0].to_dict()
        run_date = facts["run"].get("run_date")
        facts["run"]["run_date"] = run_date.date() if hasattr(run_date, "date") else run_date
    facts["checks"] = checks.to_dict("records")
    return facts


def _check_lines(checks: list[dict[str, Any]]) -> list[str]:
    return [
        f"  {c['status']}: {c['stage']}.{c['check_name']} observed {c['observed']} "
        f"(threshold {c['threshold']}) {c['details'] or ''}".rstrip()
        for c in checks
    ]


def _run_id(context: dict[str, Any]) -> str:
    dag_run = context.get("dag_run")
    return str(context.get("run_id") or getattr(dag_run, "run_id", "") or "")


def on_run_failed(context: dict[str, Any]) -> None:
    """DAG ``on_failure_callback``: one alert naming the run, the failed task and the reason."""
    run_id = _run_id(context)
    facts = _run_facts(run_id)
    ti = context.get("ti") or context.get("task_instance")
    task = getattr(ti, "task_id", None) or "unknown"
    reason = facts["run"].get("error") or context.get("reason") or "unknown"
    as_of = facts["run"].get("run_date", "")
    lines = [f"recpipe_daily run {run_id} (as of {as_of}) FAILED; nothing was published for it."]
    if task != "run__record_failure":  # that task only closes the run; the reason names the stage
        lines.append(f"Failed task: {task}")
    lines.append(f"Reason: {reason}")
    fails = [c for c in facts["checks"] if c["status"] == "fail"]
    if fails:
        lines += ["Failed gate checks:", *_check_lines(fails)]
    send_alert(context, f"[recpipe] recpipe_daily FAILED: {run_id}", "\n".join(lines))


def on_run_succeeded(context: dict[str, Any]) -> None:
    """DAG ``on_success_callback``: one summary when the run published with warn-level gate
    checks; nothing when every check passed."""
    run_id = _run_id(context)
    facts = _run_facts(run_id)
    warns = [c for c in facts["checks"] if c["status"] == "warn"]
    if not warns:
        return
    run = facts["run"]
    lines = [
        f"recpipe_daily run {run_id} (as of {run.get('run_date', '')}) published "
        f"{run.get('rows', '?')} recommendations (model {run.get('model_version', '?')}) "
        f"with {len(warns)} gate warning(s):",
        *_check_lines(warns),
    ]
    send_alert(
        context,
        f"[recpipe] recpipe_daily published with {len(warns)} warning(s): {run_id}",
        "\n".join(lines),
    )


def on_deadline_missed(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Deadline alert callback: the run has not published by ``RECPIPE_PUBLISH_BY``."""
    context = dict(context or {})
    run_id = _run_id(context) or str(kwargs.get("run_id", ""))
    send_alert(
        context,
        f"[recpipe] recpipe_daily not published by {os.environ.get('RECPIPE_PUBLISH_BY', '?')}"
        f" UTC: {run_id}",
        f"recpipe_daily run {run_id} had not finished by its publish-by time "
        f"({os.environ.get('RECPIPE_PUBLISH_BY', '?')} UTC on its logical date).",
    )
