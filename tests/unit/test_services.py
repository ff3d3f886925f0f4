"""recpipe.services without Airflow: ports, the service environment, stopping a process tree,
and the API client against a fake Airflow that answers as a locked one does."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from recpipe.services import AirflowClient, free_port, service_environment, stop_processes
from recpipe.settings import load_settings


def test_stop_processes_ends_the_process_and_the_children_it_forked():
    # A parent that forks a child which ignores SIGTERM, like an executor worker might.
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child_pid = int(parent.stdout.readline())
    started = time.monotonic()
    stop_processes([parent], grace_s=2)
    assert parent.poll() is not None
    assert time.monotonic() - started < 15
    for _ in range(50):  # the orphan is reaped by init shortly after SIGKILL
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child_pid}/stat") as stat:
            if stat.read().split()[2] == "Z":
                break
        time.sleep(0.1)
    else:
        raise AssertionError(f"child {child_pid} survived")
    parent.stdout.close()


def test_service_environment_binds_loopback_and_shares_one_secret(tmp_path):
    settings = load_settings()
    port = free_port()
    env = service_environment(settings, tmp_path, port, scheduled_runs=False)
    again = service_environment(settings, tmp_path, port, scheduled_runs=False)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{port}/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    secret = env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret) >= 32 and again["AIRFLOW__API_AUTH__JWT_SECRET"] == secret


class _FakeAirflow(http.server.BaseHTTPRequestHandler):
    """Airflow's backfill API as it behaves when its SQLite is locked: the first POST answers
    503 and leaves the backfill row behind without runs (a failed clean-up), so later POSTs
    answer 409 until that orphan is cancelled."""

    state: dict

    def log_message(self, *args):
        pass

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)) or b"null")

    def do_POST(self):
        state = self.state
        body = self._body()
        state["calls"].append(("POST", self.path))
        if self.path == "/auth/token":
            return self._reply(201, {"access_token": "t"})
        if self.path == "/api/v2/pools" and state["busy_pools"] > 0:
            state["busy_pools"] -= 1
            return self._reply(503, {"detail": "Database is locked."})
        if self.path == "/api/v2/pools":
            return self._reply(201, body)
        if any(b["completed_at"] is None for b in state["backfills"]):
            return self._reply(409, {"detail": "There is already a running backfill"})
        backfill = {
            "id": len(state["backfills"]) + 1,
            "from_date": body["from_date"],
            "to_date": body["to_date"],
            "created_at": "2026-12-04T03:00:00.000001Z",
            "completed_at": None,
        }
        state["backfills"].append(backfill)
        if state["locked_posts"] > 0:
            state["locked_posts"] -= 1
            return self._reply(503, {"detail": "Database is locked."})
        return self._reply(200, backfill)

    def do_GET(self):
        self.state["calls"].append(("GET", self.path))
        if self.path.startswith("/api/v2/backfills?dag_id="):
            return self._reply(200, {"backfills": self.state["backfills"]})
        if self.path.startswith("/api/v2/dags/recpipe_daily/dagRuns?run_type=backfill"):
            # an older backfill's run, queued before the orphan was created
            old = {"dag_run_id": "backfill__old", "queued_at": "2026-12-01T00:00:00Z"}
            return self._reply(200, {"dag_runs": [old]})
        return self._reply(404, {"detail": "not found"})

    def do_PUT(self):
        self.state["calls"].append(("PUT", self.path))
        backfill_id = int(self.path.split("/")[-2])
        self.state["backfills"][backfill_id - 1]["completed_at"] = "2026-12-04T03:00:01Z"
        return self._reply(200, self.state["backfills"][backfill_id - 1])


@pytest.fixture
def fake_airflow():
    state = {"calls": [], "backfills": [], "locked_posts": 0, "busy_pools": 0}
    handler = type("Handler", (_FakeAirflow,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def test_the_client_asks_again_when_airflow_answers_503_and_gives_up_at_its_deadline(
    fake_airflow,
):
    url, state = fake_airflow
    client = AirflowClient(url, "admin", "pw", busy_retry_s=10)
    state["busy_pools"] = 2
    client.ensure_pool("p")
    assert client.busy_replies == 2
    assert state["calls"].count(("POST", "/api/v2/pools")) == 3

    state["busy_pools"] = 1000
    impatient = AirflowClient(url, "admin", "pw", busy_retry_s=1)
    with pytest.raises(RuntimeError, match="POST /api/v2/pools -> HTTP 503: .*locked"):
        impatient.ensure_pool("p")


def test_a_backfill_left_runless_by_a_locked_attempt_is_cancelled_and_created_again(
    fake_airflow,
):
    url, state = fake_airflow
    state["locked_posts"] = 1
    client = AirflowClient(url, "admin", "pw", busy_retry_s=10)
    created = client.backfill("2026-09-29", "2026-09-30", conf={"k": 10})
    assert created["id"] == 2
    assert ("PUT", "/api/v2/backfills/1/cancel") in state["calls"]
    assert [b["completed_at"] is None for b in state["backfills"]] == [False, True]

    # Without a 503 first, an active backfill is someone else's: a 409 is an error, not ours
    # to cancel.
    with pytest.raises(RuntimeError, match="HTTP 409: There is already a running backfill"):
        client.backfill("2026-09-29", "2026-09-30", conf={"k": 10})
    assert state["backfills"][1]["completed_at"] is None
