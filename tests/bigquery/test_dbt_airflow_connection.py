"""RECPIPE_BQ_CREDENTIALS=airflow: dbt, run by cosmos, reads the Airflow connection
``google_cloud_default`` (defined in the environment as AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT), the
connection the Python stages read.

The connection holds a service account key generated here whose ``token_uri`` is a token server
on 127.0.0.1: dbt-bigquery signs its token request with that key, so the server seeing an
assertion issued by the key's ``client_email`` proves dbt's credentials came from the
connection (profiles.yml, the ADC path, never calls it). The emulator then runs the model.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recpipe.warehouse import session
from tests.bigquery.stages import ingest_shop

pytestmark = pytest.mark.slow

CLIENT_EMAIL = "recpipe-dbt@test-project.iam.gserviceaccount.com"
RESOLVE = "run__resolve_params"
# the one `dbt build` (cosmos watcher mode) and the sensor that reports one of its models
PRODUCER = "dbt.dbt_producer_watcher"
MODEL = "stg_shop__items"
MODEL_TASK = f"dbt.{MODEL}.run"


class _TokenServer(ThreadingHTTPServer):
    issuers: list[str]


class _TokenHandler(BaseHTTPRequestHandler):
    """Google's OAuth token endpoint, as far as a service account JWT grant needs it."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        payload = form["assertion"][0].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.server.issuers.append(claims["iss"])
        body = json.dumps(
            {"access_token": "token-from-test", "expires_in": 3600, "token_type": "Bearer"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[_TokenServer]:
    server = _TokenServer(("127.0.0.1", 0), _TokenHandler)
    server.issuers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _service_account_key(token_uri: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "recpipe-test-key",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1",
        "token_uri": token_uri,
    }


def test_dbt_through_cosmos_reads_the_airflow_connection(
    bq_settings, tiny_shop, airflow_db, token_server, monkeypatch
):
    from recpipe.airflow_runner import load_dag
    from recpipe.dbt_profile import AirflowConnectionProfileMapping, profile_config
    from recpipe.settings import load_settings

    host, port = token_server.server_address[:2]
    keyfile = _service_account_key(f"http://{host}:{port}/token")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"keyfile_dict": json.dumps(keyfile), "project": "test-project"},
            }
        ),
    )
    monkeypatch.setenv("RECPIPE_BQ_CREDENTIALS", "airflow")
    settings = load_settings()
    assert isinstance(profile_config(settings).profile_mapping, AirflowConnectionProfileMapping)
    ingest_shop(settings, tiny_shop)

    # recpipe_daily as parsed with these settings; only its first task, the dbt build and one
    # model's sensor run (the others are marked done): the DAG's own cosmos operator and profile.
    # The build selects that one model: the connection is what is under test, and a whole build
    # on the emulator (~3 min) is test_recpipe_daily_on_bigquery's.
    dag = load_dag()
    producer = dag.get_task(PRODUCER)
    producer.select, producer.indirect_selection = MODEL, "cautious"  # with its own tests only
    as_of = tiny_shop.end_date + timedelta(days=1)
    dag_run = dag.test(
        logical_date=datetime.combine(as_of, time(), tzinfo=UTC),
        run_conf={"as_of": as_of.isoformat()},
        # Airflow fullmatches it: every task but these three is marked done without running
        mark_success_pattern=rf"(?!{RESOLVE}$|{re.escape(PRODUCER)}$|{re.escape(MODEL_TASK)}$).*",
    )

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states[PRODUCER].endswith("success"), states
    assert states[MODEL_TASK].endswith("success"), states
    assert str(dag_run.state).endswith("success"), states
    # dbt signed its token request with the connection's key ...
    assert token_server.issuers and set(token_server.issuers) == {CLIENT_EMAIL}
    # ... and built the model on the emulator with the token it got.
    with session(settings) as wh:
        n = wh.query_df(f"select count(*) as n from {wh.table('staging', MODEL)}")
        items = wh.query_df(f"select count(*) as n from {wh.table('raw', 'items')}")
    n, items = n["n"].iloc[0], items["n"].iloc[0]
    assert n == items > 0
