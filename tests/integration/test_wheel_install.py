"""recpipe installs as a wheel into an environment that already holds Airflow (README
"Deploying" follows these steps).

A fresh venv gets the tested lock (requirements.txt, Airflow 3 included) as the "existing
Airflow"; the wheel is installed on top with its own dependency ranges and must change nothing
already there. Airflow's DAGs folder is the DAG file inside the installed package: without a
manifest it is an import error naming `recpipe manifest`; after that step none is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recpipe.settings import REPO_ROOT

pytestmark = pytest.mark.slow

UV = Path(sys.executable).with_name("uv")


def _run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, ok=(0,)
) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode in ok, f"{args[:3]} failed: {done.stderr[-2000:] or done.stdout[-2000:]}"
    return done.stdout


def _freeze(python: Path) -> dict[str, str]:
    """name -> version, or -> where from for a file install (``name @ file:///...``)."""
    lines = _run([UV, "pip", "freeze", "--python", python]).splitlines()
    pairs = (line.split(" @ " if " @ " in line else "==", 1) for line in lines if line.strip())
    return {name.strip().lower(): value.strip() for name, value in pairs}


def _import_errors(venv: Path, env: dict[str, str], cwd: Path) -> list[dict]:
    """What a dag-processor would record: parse the DAGs folder into the metadata DB, then
    `airflow dags list-import-errors`."""
    _run([venv / "bin" / "airflow", "dags", "reserialize"], env, cwd)
    # exits 1 when it lists any
    out = _run(
        [venv / "bin" / "airflow", "dags", "list-import-errors", "-o", "json"], env, cwd, ok=(0, 1)
    )
    return _json_lines(out)


def _json_lines(out: str) -> list:
    """The JSON list an `airflow ... -o json` printed (after any log lines)."""
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("[")))


def test_the_wheel_installs_into_an_existing_airflow_and_its_dag_imports(tmp_path):
    if not UV.exists():
        pytest.skip("uv is installed into .venv by `make venv`")
    dist = tmp_path / "dist"
    _run([UV, "build", "--wheel", "--out-dir", dist, REPO_ROOT])
    (wheel,) = dist.glob("recpipe-*.whl")

    # the "existing Airflow": a fresh venv holding the lock, Airflow at the lock's version
    venv = tmp_path / "airflow-venv"
    python = venv / "bin" / "python"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv])
    lock = REPO_ROOT / "requirements.txt"
    _run([UV, "pip", "install", "--quiet", "--compile-bytecode", "--python", python, "-r", lock])
    before = _freeze(python)
    _run([UV, "pip", "install", "--quiet", "--python", python, wheel])
    after = _freeze(python)
    assert after.pop("recpipe").endswith(wheel.name)
    assert after == before  # recpipe's ranges accept the installed Airflow, dbt, ... as they are

    # Airflow's processes point at the DAG inside the installed package (not this checkout)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # the DAG file imports recpipe's stages (pandas, scipy, LightGBM): >30 s on a busy box
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(tmp_path / "cosmos"),
        "DO_NOT_TRACK": "1",
        "RECPIPE_HOME": str(tmp_path / "recpipe_home"),
    }
    where = _run(
        [python, "-c", "import recpipe.settings as s; print(s.DAGS_DIR); print(s.DBT_PROJECT_DIR)"],
        env,
        work,
    ).split()
    dags_dir, dbt_project = Path(where[0]), Path(where[1])
    site_packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert dags_dir.is_relative_to(site_packages) and dbt_project.is_relative_to(site_packages)
    assert (dbt_project / "dbt_project.yml").exists() and (dags_dir / "recpipe_daily.py").exists()
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_dir)
    _run([venv / "bin" / "airflow", "db", "migrate"], env, work)

    # no manifest yet: the DAG is an import error naming the build step, and parsing built none
    (error,) = _import_errors(venv, env, work)
    assert "build it with `recpipe manifest`" in error["error"]
    assert not (dbt_project / "target").exists()

    # the deploy step, then the DAG imports cleanly
    assert "dbt manifest:" in _run([venv / "bin" / "recpipe", "manifest"], env, work)
    assert _import_errors(venv, env, work) == []
    out = _run([venv / "bin" / "airflow", "dags", "list", "-o", "json"], env, work)
    assert [d["dag_id"] for d in _json_lines(out)] == ["recpipe_daily"]
