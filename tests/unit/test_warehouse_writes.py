"""write_df on DuckDB: replace by default, append parts (by column name) on request."""

from __future__ import annotations

import pyarrow as pa

from recpipe.warehouse import DuckDBWarehouse


def test_parts_append_after_a_first_write_replaces(tmp_path):
    wh = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    schema = pa.schema([("user_id", pa.string()), ("score", pa.float64())])
    stale = pa.table({"user_id": ["old"], "score": [9.0]}, schema=schema)
    wh.write_df(stale, "work", "parts")
    first = pa.table({"user_id": ["a", "b"], "score": [1.0, 2.0]}, schema=schema)
    second = pa.table({"score": [3.0], "user_id": ["c"]})  # columns in another order
    wh.write_df(first, "work", "parts")
    wh.write_df(second, "work", "parts", append=True)
    rows = wh.query_df("select user_id, score from work.parts order by user_id")
    assert rows.to_dict("list") == {"user_id": ["a", "b", "c"], "score": [1.0, 2.0, 3.0]}


def test_staged_parts_are_written_in_batches_of_a_row_budget_in_order():
    from recpipe.pipeline import _batches

    parts = [pa.table({"n": list(range(start, start + size))}) for start, size in
             [(0, 3), (3, 1), (4, 5), (9, 2)]]  # fmt: skip
    batches = list(_batches(iter(parts), 4))
    assert [b.num_rows for b in batches] == [4, 5, 2]
    assert pa.concat_tables(batches)["n"].to_pylist() == list(range(11))
    assert [b.num_rows for b in _batches(iter(parts), 100)] == [11]  # a small shop: one write
