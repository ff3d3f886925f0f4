"""Running the dbt CLI on recpipe's dbt project in a subprocess.

The tests, the benchmark and ``dbt parse`` (dbt_manifest) run dbt through ``run_dbt``; the DAG
runs it through cosmos, with the same profiles and the same environment (Settings.dbt_env()).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

from recpipe.settings import DBT_PROJECT_DIR, Settings, dbt_executable

# dbt colours its console lines and starts each with the time: neither helps in an error message.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_LOG_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}\s+", re.MULTILINE)
_OUTPUT_LINES_IN_ERROR = 12


class DbtCommandFailed(RuntimeError):
    """A dbt command exited non-zero. ``command`` is what ran (without the paths), ``result``
    the finished process with dbt's captured output."""

    def __init__(self, command: str, result: subprocess.CompletedProcess[str]) -> None:
        self.command = command
        self.result = result
        output = _COLOUR.sub("", (result.stdout or "") + (result.stderr or ""))
        output = _LOG_TIME.sub("", output)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        tail = " | ".join(lines[-_OUTPUT_LINES_IN_ERROR:]) or "no output"
        super().__init__(f"`{command}` failed with exit code {result.returncode}: {tail}")


def run_dbt(
    command: str,
    settings: Settings | None = None,
    *,
    as_of: date | str | None = None,
    dbt_vars: Mapping[str, object] | None = None,
    work_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    project_dir: Path = DBT_PROJECT_DIR,
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt <command>`` (``build``, ``parse``, ...) on the dbt project; return the finished
    process, its output captured as text.

    settings: the warehouse dbt works on (Settings.dbt_env(), read by profiles.yml); without
    it the profile falls back to this process's environment and its defaults.
    as_of: the run's as-of date, passed as the `as_of` var, next to the vars the Python stages
    share with dbt (Settings.dbt_vars()); dbt_vars: any further vars (they win).
    work_dir: where dbt writes its ``target`` and ``logs`` folders (default: the project's own).
    extra_args: appended after the vars (``--full-refresh``, ``--select ...``, ``--target ...``).
    Raises DbtCommandFailed, one line naming the command and the end of dbt's output, when dbt
    exits non-zero.
    """
    all_vars = {
        **(settings.dbt_vars() if settings is not None else {}),
        **({"as_of": str(as_of)} if as_of is not None else {}),
        **(dbt_vars or {}),
    }
    vars_args = ["--vars", json.dumps(all_vars)] if all_vars else []
    paths = (
        ["--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs")]
        if work_dir is not None
        else []
    )
    env = {
        **os.environ,
        **(settings.dbt_env() if settings is not None else {}),
        "DBT_PROFILES_DIR": str(project_dir),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    done = subprocess.run(
        [
            dbt_executable(),
            command,
            "--project-dir",
            str(project_dir),
            *paths,
            *vars_args,
            *extra_args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DbtCommandFailed(" ".join(["dbt", command, *vars_args, *extra_args]), done)
    return done
