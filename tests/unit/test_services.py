"""recpipe.services without Airflow: ports, the service environment, stopping a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from recpipe.services import free_port, service_environment, stop_processes
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
