"""How the DAG file configures cosmos' watcher: which dbt events reach XCom, dbt's environment."""

from __future__ import annotations

import pytest
from cosmos.operators._watcher import base as watcher

from recpipe.dag_definition import dbt_task_env, push_final_node_events_only
from recpipe.settings import load_settings

NODE = "model.recpipe.int_cutoffs"


class RecordingTaskInstance:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, dict]] = []

    def xcom_push(self, key: str, value: dict) -> None:
        self.pushed.append((key, value))


def node_event(name: str, status: str) -> dict:
    return {
        "info": {"name": name, "msg": f"{name} {NODE}"},
        "data": {"node_info": {"unique_id": NODE, "node_status": status}},
    }


@pytest.fixture
def final_events_only(monkeypatch):
    # restored after the test, whatever push_final_node_events_only sets
    monkeypatch.setattr(watcher, "_DBT_EVENT_ALLOWLIST", watcher._DBT_EVENT_ALLOWLIST)
    push_final_node_events_only()
    push_final_node_events_only()  # every parse of the DAG file calls it: idempotent


def test_the_producer_pushes_a_nodes_dbt_event_once_when_it_finished(final_events_only):
    ti = RecordingTaskInstance()
    for name, status in [
        ("NodeStart", "started"),
        ("NodeCompiling", "compiling"),
        ("NodeExecuting", "executing"),
        ("NodeFinished", "success"),
    ]:
        watcher._process_dbt_log_event(ti, node_event(name, status))

    assert [(key, value["status"]) for key, value in ti.pushed] == [
        ("model__recpipe__int_cutoffs_dbt_event", "success")
    ]


def test_a_failed_nodes_error_events_still_reach_its_sensor(final_events_only):
    ti = RecordingTaskInstance()
    watcher._process_dbt_log_event(ti, node_event("NodeExecuting", "executing"))
    error = node_event("RunResultError", "error")
    error["data"]["msg"] = "Binder Error: column x not found"
    watcher._process_dbt_log_event(ti, error)

    assert [value["msg"] for _, value in ti.pushed] == ["Binder Error: column x not found"]


def test_without_the_trim_cosmos_pushes_every_status_event():
    """Pins the cosmos behaviour the trim relies on: if this fails after an upgrade, cosmos
    changed how it pushes node events and push_final_node_events_only needs a new look."""
    untouched = watcher._DBT_NODE_STATUS_EVENT_TYPES | watcher._DBT_ERROR_EVENTS_TYPES
    assert {"NodeStart", "NodeCompiling", "NodeExecuting", "NodeFinished"} <= untouched


def test_dbt_tasks_keep_the_profile_environment_and_write_no_file_log():
    settings = load_settings()
    env = dbt_task_env(settings)

    assert env["DBT_LOG_LEVEL_FILE"] == "none"
    assert {k: env[k] for k in settings.dbt_env()} == settings.dbt_env()


def test_a_test_on_several_models_goes_to_one_owner_and_no_model_is_left_without_tests(tmp_path):
    import json

    from recpipe.dag_definition import multi_model_test_owners, tests_per_owner

    def node(kind, parents=(), attached=None):
        found = {"resource_type": kind, "depends_on": {"nodes": list(parents)}}
        return found | ({"attached_node": attached} if attached else {})

    a, b, c, d = (f"model.p.{name}" for name in "abcd")
    nodes = {
        a: node("model"),
        b: node("model", [a]),
        c: node("model", [b]),
        d: node("model"),
        "test.p.declared": node("test", [a, b], attached=a),  # declared on a: a owns it
        "test.p.singular": node("test", [a, c]),  # c reads a through b: c owns it
        "test.p.siblings": node("test", [a, d]),  # neither upstream of the other: no owner
        "test.p.own": node("test", [b]),
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": nodes}))
    owners = multi_model_test_owners(manifest)
    assert owners == {"test.p.declared": a, "test.p.singular": c}
    listed = {
        a: ["test.p.declared", "test.p.singular", "test.p.siblings"],
        b: ["test.p.declared", "test.p.own"],
        c: ["test.p.singular"],
        d: ["test.p.siblings"],
    }
    assert tests_per_owner(listed, owners) == {
        a: ["test.p.declared", "test.p.siblings"],
        b: ["test.p.own"],
        c: ["test.p.singular"],
        d: ["test.p.siblings"],
    }
    # a model whose only tests belong elsewhere keeps them: its sensor must hear from one
    assert tests_per_owner(
        {a: ["test.p.declared"], b: ["test.p.declared"]}, {"test.p.declared": b}
    ) == {
        a: ["test.p.declared"],
        b: ["test.p.declared"],
    }
