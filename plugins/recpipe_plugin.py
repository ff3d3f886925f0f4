"""The recpipe page inside the Airflow UI (an Airflow 3 plugin).

A FastAPI app mounted on the api-server at ``/recpipe`` serves one HTML page — recent runs, gate
results, ranker vs baseline metrics over time, candidate recall, a sample of the latest
recommendations — built by :mod:`recpipe.report` from the warehouse; an external view adds
"recpipe" to the UI's navigation (shown in an iframe at ``/plugin/recpipe``).

Every route requires Airflow's own authentication and authorisation: the auth manager's
``requires_access_dag`` dependency (read access to ``recpipe_daily``'s runs) is declared on the
app, because Airflow mounts plugin apps with ``app.mount()`` and none of the core API's auth
dependencies reach them. A browser inside the UI sends the UI's JWT cookie, a REST client a
``Bearer`` token; anonymous callers get 401, users without access to the DAG 403.

The page only reads. On DuckDB it opens the file ``read_only`` for the few milliseconds of its
queries, and not at all while a ``recpipe_daily`` run is queued or running (a reader would make
dbt-duckdb, which does not wait for the lock, fail): it then shows the last page it rendered.
"""

from __future__ import annotations

import threading
import time

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from recpipe.dag_definition import DAG_ID

URL_PREFIX = "/recpipe"

# The page shows runs and published recommendations of recpipe_daily: whoever may read that
# DAG's runs may read the page (Airflow's auth manager decides, with its roles or policies).
READ_RECPIPE_RUNS = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))

app = FastAPI(
    title="recpipe",
    description="recpipe runs, gates, metrics and recommendations",
    dependencies=[READ_RECPIPE_RUNS],
)
_cache: dict[str, object] = {}
_lock = threading.Lock()


def _run_in_progress() -> bool:
    """Whether a recpipe_daily run is queued or running (Airflow's metadata database)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import func, select

    with create_session() as db:
        active = db.scalar(
            select(func.count())
            .select_from(DagRun)
            .where(
                DagRun.dag_id == DAG_ID,
                DagRun.state.in_([DagRunState.RUNNING, DagRunState.QUEUED]),
            )
        )
    return bool(active)


def _render() -> str:
    from recpipe.report import WarehouseNotReadyError, collect, read_only_session, render_page
    from recpipe.settings import load_settings
    from recpipe.warehouse import WarehouseBusyError

    settings = load_settings()
    with _lock:
        cached = _cache.get("page")
        if settings.single_writer and _run_in_progress():
            if cached is None:
                return (
                    "<!doctype html><title>recpipe</title><h1>recpipe</h1><p>A run is in "
                    "progress; the page reads the warehouse once it has finished.</p>"
                )
            rendered_at = time.strftime("%H:%M:%S UTC", time.gmtime(_cache["at"]))
            return str(cached).replace(
                "<p class='note'>",
                "<p class='note'><b>A run is in progress</b>: showing the page as of "
                f"{rendered_at}; reload when it has finished. ",
                1,
            )
        try:
            with read_only_session(settings) as wh:
                data = collect(wh)
        except WarehouseNotReadyError as err:
            return f"<!doctype html><title>recpipe</title><h1>recpipe</h1><p>{err}</p>"
        except WarehouseBusyError as err:
            return f"<!doctype html><title>recpipe</title><h1>recpipe</h1><p>{err}</p>"
        page = render_page(data, settings, note="Read live from the warehouse.")
        _cache.update(page=page, at=time.time())
        return page


@app.get("/", response_class=HTMLResponse)
def recpipe_page() -> HTMLResponse:
    """The recpipe page."""
    return HTMLResponse(_render())


@app.get("/health")
def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


class RecpipePlugin(AirflowPlugin):
    name = "recpipe"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "recpipe"}]
    external_views = [
        {
            "name": "recpipe",
            "href": "recpipe/",  # relative: works behind a proxy with a base URL
            "destination": "nav",
            "url_route": "recpipe",
            "category": "browse",
        }
    ]
