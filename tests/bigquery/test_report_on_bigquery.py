"""``recpipe report`` and the Airflow page on the BigQuery emulator: GoogleSQL-only queries
(no DuckDB ``count(*) filter``), reading only (no dataset or table created)."""

from __future__ import annotations

import pytest

from recpipe.cli import main
from recpipe.report import collect, read_only_session
from tests.report_rows import check_report_data, seed_report_rows


def datasets(wh) -> set[str]:
    return {d.dataset_id for d in wh.client.list_datasets() if d.dataset_id.startswith(wh.prefix)}


def test_report_on_an_empty_project_creates_nothing(bq_settings, bq_warehouse, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out)]) == 0
    page = out.read_text()
    assert "Warehouse: bigquery" in page and page.count("nothing yet") >= 3
    assert datasets(bq_warehouse) == set()


def test_report_counts_gates_in_googlesql(bq_settings, bq_warehouse, tmp_path):
    seed_report_rows(bq_warehouse)
    before = datasets(bq_warehouse)
    tables = {d: {t.table_id for t in bq_warehouse.client.list_tables(d)} for d in before}
    with read_only_session(bq_settings) as wh:
        check_report_data(collect(wh))
    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out)]) == 0
    page = out.read_text()
    assert "<td>24680</td>" in page and "<span class='status status-warn'>warn</span>" in page
    assert page.count("data:image/png;base64,") == 2
    after = {d: {t.table_id for t in bq_warehouse.client.list_tables(d)} for d in before}
    assert datasets(bq_warehouse) == before and after == tables


@pytest.fixture
def viewer_client(airflow_db):
    from airflow import plugins_manager
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    plugins, _ = plugins_manager._get_plugins()
    (plugin,) = [p for p in plugins if p.name == "recpipe"]
    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="v", role="viewer"))
    client = TestClient(plugin.fastapi_apps[0]["app"])
    client.cookies.set("_token", token)
    return client


def test_page_on_bigquery(bq_settings, bq_warehouse, viewer_client):
    seed_report_rows(bq_warehouse)
    reply = viewer_client.get("/")
    assert reply.status_code == 200, reply.text[:300]
    assert "Warehouse: bigquery" in reply.text and "Read live from the warehouse" in reply.text
    assert "<td>run30</td>" in reply.text and "union_recall_valid" in reply.text
    from fastapi.testclient import TestClient

    assert TestClient(viewer_client.app).get("/").status_code == 401  # anonymous
