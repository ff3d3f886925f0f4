"""The local BigQuery emulator (``bqemulator``), started and stopped by the tests.

bqemulator pins duckdb 1.5.5 while recpipe runs duckdb 2.x, so it lives in its own venv
(``.venv-bqemu/`` at the repo root, created on first use from PyPI with the pins below). Its
spatial extension is imported from the ``duckdb-extension-spatial`` wheel once, because the
emulator would otherwise try to download it at start-up. The server listens on a free port of
127.0.0.1 and is stopped by its PID at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recpipe.settings import REPO_ROOT

EMULATOR_VENV = REPO_ROOT / ".venv-bqemu"
EMULATOR_PACKAGES = (
    "bqemulator==1.4.0",
    "duckdb==1.5.5",
    "duckdb-extensions==1.5.5",
    "duckdb-extension-spatial==1.5.5",
    # the emulator registers numpy UDFs but does not declare numpy
    "numpy==2.4.6",
)
EMULATOR_PROJECT = "test-project"
_IMPORT_SPATIAL = (
    "import duckdb, duckdb_extensions as e; e.import_extension('spatial', con=duckdb.connect())"
)


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    project: str


def ensure_emulator_venv(venv: Path = EMULATOR_VENV) -> Path:
    """Create the emulator's venv when missing; return its ``bqemulator`` executable."""
    executable = venv / "bin" / "bqemulator"
    stamp = venv / ".installed"
    if stamp.exists() and executable.exists():
        return executable
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():
        install = [str(uv), "pip", "install", "--quiet", "--compile-bytecode"]
        install += ["--python", str(python)]
    else:
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*install, *EMULATOR_PACKAGES], check=True)
    subprocess.run([str(python), "-c", _IMPORT_SPATIAL], check=True)
    stamp.write_text("\n".join(EMULATOR_PACKAGES) + "\n")
    return executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(endpoint: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"{endpoint}/bigquery/v2/projects/{EMULATOR_PROJECT}/datasets"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bqemulator exited with code {process.returncode} at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"bqemulator did not answer on {endpoint} within {timeout_s:.0f}s")


@pytest.fixture(scope="package")
def bq_emulator(tmp_path_factory) -> Iterator[Emulator]:
    """A running bqemulator on 127.0.0.1 for the BigQuery tests (in-memory catalog), stopped
    after the last of them: idle, it still costs ~30% of a core the later tests need."""
    executable = ensure_emulator_venv()
    port = _free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "bqemulator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(executable),
                "start",
                "--rest-host",
                "127.0.0.1",
                "--rest-port",
                str(port),
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                "0",
                "--project",
                EMULATOR_PROJECT,
                "--log-level",
                "warning",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DO_NOT_TRACK": "1"},
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(endpoint, process)
        yield Emulator(endpoint=endpoint, project=EMULATOR_PROJECT)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def emulator_uploads():
    """Emulator-only patch: bqemulator rejects the client's multipart/related uploads of
    load jobs unless the media part is sent as application/octet-stream."""
    import google.cloud.bigquery.client as client_module

    before = client_module._GENERIC_CONTENT_TYPE
    client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"
    yield
    client_module._GENERIC_CONTENT_TYPE = before


def _emulator_settings(env: pytest.MonkeyPatch, emulator: Emulator, node: pytest.Item):
    """Settings of a BigQuery warehouse on the emulator, with a dataset prefix unique to the test
    or module ``node`` (so tests share one emulator without seeing each other's tables)."""
    from recpipe.settings import load_settings

    env.setenv("RECPIPE_WAREHOUSE", "bigquery")
    env.setenv("RECPIPE_BQ_PROJECT", emulator.project)
    env.setenv("RECPIPE_BQ_API_ENDPOINT", emulator.endpoint)
    env.setenv("RECPIPE_BQ_DATASET_PREFIX", "t" + str(abs(hash(node.nodeid)) % 10**8) + "_")
    return load_settings()


@pytest.fixture
def bq_settings(bq_emulator, emulator_uploads, recpipe_home, monkeypatch, request):
    """:func:`_emulator_settings` of one test, in its own RECPIPE_HOME."""
    return _emulator_settings(monkeypatch, bq_emulator, request.node)


@pytest.fixture(scope="module")
def bq_module_settings(bq_emulator, emulator_uploads, tmp_path_factory, request):
    """:func:`_emulator_settings` shared by the tests of one module (whose fixtures build on the
    emulator once for all of them)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECPIPE_HOME", str(tmp_path_factory.mktemp("bq_module") / "recpipe_home"))
        yield _emulator_settings(env, bq_emulator, request.node)


@pytest.fixture
def bq_warehouse(bq_settings):
    from recpipe.warehouse import connect

    wh = connect(bq_settings)
    yield wh
    wh.close()
