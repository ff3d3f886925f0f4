"""The glue between Airflow task bodies and recpipe stages.

Stage errors that retrying cannot fix (a failed gate, a bad param) become
``AirflowFailException`` so Airflow fails the task at once with a one-line reason instead of
retrying; every failure is also written to ``pipeline_runs`` before it propagates.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

from recpipe.gates import GateFailed
from recpipe.runs import ParamError, Run, mark_failed, resolve_run, start_run
from recpipe.settings import Settings, load_settings, settings_mismatch
from recpipe.warehouse import BRIEF_LOCK_TIMEOUT_S, WarehouseBusyError

log = logging.getLogger(__name__)
# bench/scale.py reads this line to separate a stage's own work from orchestration time.
STAGE_TIMING = "recpipe stage body: %s took %.3f s"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:500]


@contextlib.contextmanager
def stage(run: dict[str, Any]) -> Iterator[Run]:
    """Run one stage of ``run`` (the dict the first task returned)."""
    from airflow.sdk.exceptions import AirflowFailException

    current = Run(**run)
    started = time.perf_counter()
    succeeded = False
    try:
        yield current
        succeeded = True
    except (GateFailed, ParamError) as err:
        mark_failed(current, _one_line(err))
        raise AirflowFailException(str(err)) from err
    except WarehouseBusyError:
        raise  # recording it would wait for the same lock again; the recorder task tries once
    except Exception as err:
        mark_failed(current, _one_line(err))
        raise
    finally:
        log.info(STAGE_TIMING, _task_id(), time.perf_counter() - started)
        # a failing stage's traceback still holds its frames: nothing to freeze then
        release_freed_memory(freeze=succeeded)


def release_freed_memory(freeze: bool = True) -> None:
    """Give the memory a stage freed back to the operating system. glibc keeps freed heap for
    reuse, so a process that runs several stages (``recpipe run``, a worker) held the largest
    stage's frames long after it ended: at 10M events the stages peaked at 3.5-4.2 GB alone and
    7.1 GB in one process. No-op where there is no glibc.

    Also drops dbt-duckdb's cached connection if dbt ran in this process (cosmos' dbt runner
    in ``recpipe run``): it kept DuckDB's buffer pool (up to the memory limit) filled until the
    process exited, under every later stage. dbt reopens it if it runs again.

    With ``freeze``, the objects that survive the collection are then frozen: later collections
    do not scan them again. In ``recpipe run`` the process holds Airflow, dbt's manifest and
    every imported module, millions of objects: a full collection took ~0.6 s after each stage
    (6.6 s of a 1M run). Frozen objects that later become cyclic garbage are not reclaimed;
    the stages' own frames are freed by reference counting and collected before the freeze."""
    connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if connections is not None:
        connections.DuckDBConnectionManager.close_all_connections()
    gc.collect()
    if freeze:
        gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _task_id() -> str:
    """The running Airflow task's id, for the timing line ("?" outside a task)."""
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["ti"].task_id)
    except Exception:  # noqa: BLE001 - a label for a log line, never worth failing a stage
        return "?"


def begin(
    params: dict[str, Any],
    logical_date,
    run_after,
    run_id: str,
    parsed_with: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Validate params, settle the as-of date and record the run; returns the run for XCom.

    parsed_with: the settings the DAG was parsed with (Settings.parse_time_settings()); when
    this worker's differ the run fails here, before anything is written, with one line.
    """
    from airflow.sdk.exceptions import AirflowFailException

    if parsed_with is not None:
        mismatch = settings_mismatch(parsed_with, load_settings())
        if mismatch:
            raise AirflowFailException(mismatch)
    try:
        run = resolve_run(dict(params or {}), logical_date, run_after, run_id)
    except ParamError as err:
        raise AirflowFailException(str(err)) from err
    try:
        start_run(run)
    except WarehouseBusyError as err:  # already waited one lock timeout: no retry
        raise AirflowFailException(str(err)) from err
    return asdict(run)


def fail_run(run: dict[str, Any]) -> None:
    """Close ``run`` as failed in ``pipeline_runs`` and raise so the DAG run is failed too."""
    from airflow.sdk.exceptions import AirflowFailException

    current = Run(**run)
    settings = load_settings()
    try:
        reason = mark_failed(
            current,
            None,
            replace(
                settings,
                lock_timeout_s=min(settings.lock_timeout_s, BRIEF_LOCK_TIMEOUT_S),
            ),
        )
    except WarehouseBusyError as err:
        reason = f"not recorded in pipeline_runs: {err}"
    raise AirflowFailException(f"recpipe run for {current.as_of} failed: {reason}")


def dbt_vars_template(task_id: str, settings: Settings) -> dict[str, Any]:
    """dbt vars for the run: ``as_of`` rendered by Airflow from the first task's XCom, and the
    settings the Python stages share with dbt."""
    as_of = "{{ ti.xcom_pull(task_ids='" + task_id + "')['as_of'] }}"
    return {"as_of": as_of, **settings.dbt_vars()}
