"""A local Airflow for recpipe: ``api-server``, ``scheduler`` and ``dag-processor`` as three
processes on 127.0.0.1, with ``AIRFLOW_HOME`` under ``$RECPIPE_HOME/airflow`` (or any folder).

Used by ``make airflow`` (``python -m recpipe.services up``) and the end-to-end service tests.
Every process is started in its own process group and stopped by its PID: SIGTERM to the group
(the process and the workers it forked), then SIGKILL after a grace period. Nothing is ever
stopped by name.

REST API v2 calls go through :class:`AirflowClient` (a JWT from ``POST /auth/token``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from recpipe.airflow_runner import airflow_environment, migrate_metadata_db
from recpipe.dag_definition import DAG_ID, WAREHOUSE_POOL
from recpipe.settings import Settings, load_settings

log = logging.getLogger(__name__)

SERVICES = ("api-server", "scheduler", "dag-processor")
# LocalExecutor forks every task from workers forked from the scheduler, and each task parses
# the DAG file and, for dbt tasks, starts dbt: ~10 s of imports per task on a 2-core machine.
# Importing them once in the scheduler makes every forked task inherit them (measured: ~15 s ->
# ~5 s per dbt task). Only imports here: nothing that starts threads or opens the warehouse.
_PRELOADED_SCHEDULER = (
    "import sys\n"
    "import cosmos, cosmos.operators.local, dbt.cli.main, dbt.adapters.duckdb, pandas, duckdb\n"
    "import recpipe.airflow_tasks, recpipe.dbt_manifest\n"
    "from airflow.__main__ import main\n"
    "sys.argv = ['airflow', 'scheduler', '--skip-serve-logs']\n"
    "sys.exit(main())\n"
)
# The scheduler's log server would listen on every interface; with LocalExecutor the api-server
# reads task logs from the shared log folder, so it is not started (--skip-serve-logs).
COMMANDS = {
    "api-server": ["-m", "airflow", "api-server"],
    "scheduler": ["-c", _PRELOADED_SCHEDULER],
    "dag-processor": ["-m", "airflow", "dag-processor"],
}
ADMIN = "admin"
FINISHED = ("success", "failed")


def _moment(stamp: str) -> datetime:
    """An ISO timestamp of the API (``...Z`` or with an offset) as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class AirflowClient:
    """A small client of Airflow's REST API v2, logged in as ``username``."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout_s: float = 30.0,
        busy_retry_s: float = 90.0,
    ):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._timeout = timeout_s
        self._busy_retry_s = busy_retry_s
        self._http = requests.Session()
        self._token: str | None = None
        self.busy_replies = 0  # 503s retried so far: backfill() tells a locked attempt by it

    def _login(self) -> None:
        reply = self._http.post(
            f"{self.base_url}/auth/token", json=self._credentials, timeout=self._timeout
        )
        reply.raise_for_status()
        self._token = reply.json()["access_token"]

    def request(self, method: str, path: str, body: Any = None, ok=(200, 201, 204)) -> Any:
        """Call ``path`` (e.g. ``/api/v2/dags``) and return the JSON reply (None when empty).

        A 503 means the server did not do it and asks to be asked again (Airflow answers so
        when its metadata database is locked, which SQLite is under concurrent writers): it is
        retried with backoff for up to ``busy_retry_s`` seconds, for every method.
        """
        if self._token is None:
            self._login()
        deadline = time.monotonic() + self._busy_retry_s
        pause_s, logged_in_again = 0.5, False
        while True:
            reply = self._http.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
            if reply.status_code == 401 and not logged_in_again:  # token expired: log in again
                self._login()
                logged_in_again = True
                continue
            if reply.status_code == 503 and time.monotonic() + pause_s < deadline:
                self.busy_replies += 1
                log.warning("%s %s -> 503, asking again in %.1fs", method, path, pause_s)
                time.sleep(pause_s)
                pause_s = min(pause_s * 2, 8.0)
                continue
            break
        if reply.status_code not in ok:
            raise RuntimeError(
                f"{method} {path} -> HTTP {reply.status_code}: {reply.text.strip()[:300]}"
            )
        return reply.json() if reply.content else None

    def get(self, path: str, ok=(200,)) -> Any:
        return self.request("GET", path, ok=ok)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    # recpipe's uses of the API -------------------------------------------------------------

    def ensure_pool(self, name: str = WAREHOUSE_POOL, slots: int = 1) -> None:
        """Create (or resize) the pool every task of the DAG runs in."""
        description = "recpipe: one task at a time touches the DuckDB file (single writer)"
        existing = self.request("GET", f"/api/v2/pools/{name}", ok=(200, 404))
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        if existing and existing.get("name") == name:
            # Airflow validates a pool PATCH as a whole pool; the mask says what changes
            self.patch(f"/api/v2/pools/{name}?update_mask=slots&update_mask=description", body)
        else:
            self.post("/api/v2/pools", body)

    def unpause(self, dag_id: str = DAG_ID) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> str:
        """Trigger a manual run (no logical date) with ``conf`` as params; returns its run id."""
        run = self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def backfill(
        self, from_date: str, to_date: str, conf: dict[str, Any], dag_id: str = DAG_ID, **extra
    ) -> dict:
        """Create an Airflow backfill over ``from_date``..``to_date`` (inclusive), one at a time."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{from_date}T00:00:00Z",
            "to_date": f"{to_date}T00:00:00Z",
            "run_backwards": False,
            "dag_run_conf": conf,
            "reprocess_behavior": "none",
            "max_active_runs": 1,
            **extra,
        }
        started = self.busy_replies
        reply = self.request("POST", "/api/v2/backfills", body, ok=(200, 409))
        if "id" in reply:
            return reply
        # 409: the DAG has an active backfill. After a 503 that can be the orphan of our own
        # attempt: Airflow commits the backfill row before creating its runs, and when the runs
        # hit the lock its clean-up can hit it too (the scheduler completes such an orphan only
        # after two minutes). Cancel it when it is ours and runless, then create again.
        orphan = self._runless_backfill(body) if self.busy_replies > started else None
        if orphan is None:
            raise RuntimeError(f"POST /api/v2/backfills -> HTTP 409: {reply.get('detail')}")
        log.warning("cancelling backfill %s, left without runs by a locked attempt", orphan)
        self.request("PUT", f"/api/v2/backfills/{orphan}/cancel", ok=(200, 409))
        return self.post("/api/v2/backfills", body)

    def _runless_backfill(self, body: dict) -> int | None:
        """The id of the active backfill of ``body``'s DAG over the same dates, when it has no
        backfill run queued since it was created; else None."""
        dag_id = body["dag_id"]
        backfills = self.get(f"/api/v2/backfills?dag_id={dag_id}")["backfills"]
        for backfill in backfills:
            same = all(
                _moment(backfill[key]) == _moment(body[key]) for key in ("from_date", "to_date")
            )
            if backfill["completed_at"] is None and same:
                runs = self.get(f"/api/v2/dags/{dag_id}/dagRuns?run_type=backfill&limit=100")
                created = _moment(backfill["created_at"])
                queued = [_moment(r["queued_at"]) for r in runs["dag_runs"] if r["queued_at"]]
                if not any(moment >= created for moment in queued):
                    return backfill["id"]
        return None

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_for_runs(
        self, run_ids: set[str] | None = None, count: int | None = None, timeout_s: float = 900
    ) -> list[dict]:
        """Wait until the runs ``run_ids`` (or at least ``count`` runs) have finished."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.dag_runs()
            chosen = [r for r in runs if run_ids is None or r["dag_run_id"] in run_ids]
            enough = len(chosen) >= (len(run_ids) if run_ids else (count or 1))
            if enough and all(r["state"] in FINISHED for r in chosen):
                return chosen
            if time.monotonic() > deadline:
                states = {r["dag_run_id"]: r["state"] for r in chosen}
                raise TimeoutError(f"DAG runs not finished after {timeout_s:.0f}s: {states}")
            time.sleep(3)


@dataclass
class AirflowServices:
    """Three running Airflow processes and how to reach them."""

    home: Path
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        generated = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(generated.read_text())[ADMIN]

    def client(self) -> AirflowClient:
        return AirflowClient(self.url, ADMIN, self.password)

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.out"

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop every process by its PID, with the children it forked; idempotent."""
        stop_processes(list(self.processes.values()), grace_s)
        pid_file = self.home / "services.pid"
        if pid_file.exists():
            pid_file.unlink()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it (best effort: psutil when available)."""
    try:
        import psutil

        parent = psutil.Process(pid)
        return [pid] + [child.pid for child in parent.children(recursive=True)]
    except Exception:
        return [pid]


def stop_processes(processes: list[subprocess.Popen], grace_s: float = 20.0) -> None:
    """SIGTERM each process (its process group and every descendant), then SIGKILL stragglers."""
    trees = {proc.pid: _process_tree(proc.pid) for proc in processes if proc.poll() is None}
    for root, pids in trees.items():
        with _quiet():
            os.killpg(root, signal.SIGTERM)  # started with start_new_session: group id == pid
        for pid in pids:
            with _quiet():
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for root, pids in trees.items():
        with _quiet():
            os.killpg(root, signal.SIGKILL)
        for pid in pids:
            with _quiet():
                os.kill(pid, signal.SIGKILL)
    for proc in processes:
        with _quiet():
            proc.wait(timeout=5)


class _quiet:
    """Ignore 'no such process' and permission errors of a kill."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        return kind is not None and issubclass(kind, (ProcessLookupError, PermissionError))


def service_environment(
    settings: Settings, home: Path, port: int, scheduled_runs: bool = True
) -> dict[str, str]:
    """The environment of the three processes (one JWT secret shared by all of them)."""
    secret_file = home / ".jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    env = dict(os.environ)
    env.update(airflow_environment(settings))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled_runs),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    bin_dir = str(Path(sys.executable).parent)  # dbt and airflow beside this Python
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def start(
    settings: Settings,
    *,
    home: Path | None = None,
    port: int | None = None,
    scheduled_runs: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> AirflowServices:
    """Start the three services, wait until the DAG is parsed, create the warehouse pool.

    ``scheduled_runs=False`` turns off the scheduler's own daily runs (tests trigger runs and
    backfills themselves); ``extra_env`` adds Airflow settings. Raises with the tail of the
    failing log when something breaks; the processes already started are stopped first.
    """
    home = Path(home or settings.airflow_home).resolve()
    port = port or free_port()
    if not _port_is_free(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is in use; choose another with --port")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = service_environment(settings, home, port, scheduled_runs) | dict(extra_env or {})
    from recpipe.dbt_manifest import ensure_manifest

    ensure_manifest(settings.dbt_manifest)  # the dag-processor only reads it
    migrate_metadata_db(env)
    services = AirflowServices(home=home, port=port)
    try:
        for name in SERVICES:
            out = open(services.log(name), "ab")  # noqa: SIM115 - the child owns it
            services.processes[name] = subprocess.Popen(
                [sys.executable, *COMMANDS[name]],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            out.close()
        (home / "services.pid").write_text(
            "\n".join(f"{n} {p.pid}" for n, p in services.processes.items()) + "\n"
        )
        _wait_ready(services, timeout_s)
        client = services.client()
        if settings.single_writer:
            client.ensure_pool()
        return services
    except BaseException:
        services.stop(grace_s=5)
        raise


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(services: AirflowServices, timeout_s: float) -> None:
    """Healthy API, scheduler and dag-processor, and ``recpipe_daily`` parsed without errors."""
    deadline = time.monotonic() + timeout_s
    client: AirflowClient | None = None
    last = "not started"
    while time.monotonic() < deadline:
        for name, proc in services.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {proc.returncode}: {_tail(services.log(name))}"
                )
        try:
            health = requests.get(f"{services.url}/api/v2/monitor/health", timeout=5).json()
            unhealthy = [
                part
                for part in ("metadatabase", "scheduler", "dag_processor")
                if health.get(part, {}).get("status") != "healthy"
            ]
            if unhealthy:
                last = f"not healthy yet: {', '.join(unhealthy)}"
            else:
                client = client or services.client()
                errors = client.get("/api/v2/importErrors")["import_errors"]
                if errors:
                    first = errors[0]["stack_trace"].strip().splitlines()[-1]
                    raise RuntimeError(f"the DAG folder has import errors: {first}")
                dag = client.request("GET", f"/api/v2/dags/{DAG_ID}", ok=(200, 404))
                if dag and dag.get("dag_id") == DAG_ID:
                    return
                last = f"{DAG_ID} not parsed yet"
        except (requests.RequestException, ValueError, KeyError, FileNotFoundError) as err:
            last = f"{type(err).__name__}: {str(err)[:120]}"
        time.sleep(2)
    raise TimeoutError(f"Airflow not ready after {timeout_s:.0f}s ({last})")


def _up(args: argparse.Namespace) -> int:
    settings = load_settings()
    print(f"starting Airflow (api-server, scheduler, dag-processor) in {settings.airflow_home} ...")
    services = start(settings, port=args.port, scheduled_runs=not args.no_schedule)
    stopping = {"now": False}

    def _stop(signum, frame):
        stopping["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"\nAirflow is up: {services.url}  (login: {ADMIN} / {services.password})\n"
        f"  DAG {DAG_ID}: {services.url}/dags/{DAG_ID} (new DAGs start paused: unpause it)\n"
        f"  recpipe page: {services.url}/plugin/recpipe  (or {services.url}/recpipe/)\n"
        f"  warehouse: {settings.warehouse} ({settings.duckdb_path})\n"
        f"  logs: {services.home / 'logs'}\n"
        "Press Ctrl-C to stop all three services.",
        flush=True,
    )
    if settings.warehouse_file is not None and not settings.warehouse_file.exists():
        print("No warehouse yet: `make demo` (or `recpipe ingest`) loads a shop first.")
    try:
        while not stopping["now"]:
            for name, proc in services.processes.items():
                if proc.poll() is not None:
                    print(f"airflow {name} exited ({proc.returncode}); stopping the others")
                    stopping["now"] = True
            time.sleep(1)
    finally:
        print("stopping Airflow ...", flush=True)
        services.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recpipe.services", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the three services and wait (Ctrl-C stops them)")
    up.add_argument("--port", type=int, default=int(os.environ.get("RECPIPE_AIRFLOW_PORT", 8080)))
    up.add_argument(
        "--no-schedule", action="store_true", help="no daily runs: manual runs and backfills only"
    )
    args = parser.parse_args(argv)
    try:
        return _up(args)
    except (RuntimeError, TimeoutError) as err:
        print(f"recpipe: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
