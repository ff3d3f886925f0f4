"""The candidate-source registry: every source recpipe generates candidates from, declared once.

A source writes ``candidates.cand_<name>`` (user_id, item_id, score, rank per cutoff): a SQL
source is the dbt model ``models/candidates/cand_<name>.sql``, a Python source a function of the
point-in-time inputs of one cutoff. Everything else reads this list: the ranker's features
(``<name>_score``, ``<name>_rank``) and the ``sources`` column, the candidate-recall stage and
gate, the baselines a run measures the ranker against, ``bench/quality.py`` and the docs.
A test fails when a ``cand_*`` model is not registered or a registered SQL source has no model.

Adding a SQL source: the model file and one line in :data:`SOURCES`. The order of the list is the
order of the ranker's features: append, so models trained before keep their meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

if TYPE_CHECKING:
    from recpipe.warehouse import Warehouse


@dataclass(frozen=True)
class SourceInputs:
    """What a Python source may read for one cutoff (all point in time, before the cutoff).

    interactions: weighted (user_id, item_id, weight) events of the history window;
    baskets: a function returning purchased (user_id, item_id, basket_id, ...) rows of the
    same window (read only by the sources that need it); users: the active users to serve;
    items: the available catalog items; depth and seed: from Settings.
    """

    interactions: pd.DataFrame
    baskets: Callable[[], pd.DataFrame]
    users: list[str]
    items: list[str]
    depth: int
    seed: int


@dataclass(frozen=True)
class CandidateSource:
    """One candidate source.

    name: ``candidates.cand_<name>`` and the ranker's ``<name>_score`` / ``<name>_rank``;
    kind: ``sql`` (a dbt model) or ``python`` (``generate`` is called for each cutoff);
    baseline: the name under which the source's own ranking is a baseline of every run
    (``model_registry.baseline_metrics``), or None.
    """

    name: str
    kind: Literal["sql", "python"]
    baseline: str | None = None
    generate: Callable[[SourceInputs], pd.DataFrame] | None = None

    def __post_init__(self) -> None:
        if (self.kind == "python") != (self.generate is not None):
            raise ValueError(
                f"candidate source {self.name}: a python source, and only one, has generate"
            )

    @property
    def table(self) -> str:
        return f"cand_{self.name}"


def _als(inputs: SourceInputs) -> pd.DataFrame:
    from recpipe.candidates_python import als_candidates

    return als_candidates(
        inputs.interactions, inputs.users, inputs.items, depth=inputs.depth, seed=inputs.seed
    )


def _item_knn(inputs: SourceInputs) -> pd.DataFrame:
    from recpipe.candidates_python import item_knn_candidates

    return item_knn_candidates(inputs.interactions, inputs.users, inputs.items, depth=inputs.depth)


def _tifuknn(inputs: SourceInputs) -> pd.DataFrame:
    from recpipe.candidates_python import tifuknn_candidates

    return tifuknn_candidates(inputs.baskets(), inputs.users, inputs.items, depth=inputs.depth)


SOURCES: tuple[CandidateSource, ...] = (
    CandidateSource("popularity", "sql", baseline="popularity"),
    CandidateSource("category_popularity", "sql"),
    CandidateSource("repurchase", "sql"),
    CandidateSource("recent", "sql"),
    CandidateSource("covisitation", "sql"),
    CandidateSource("covisitation_purchase", "sql"),
    CandidateSource("als", "python", baseline="implicit_als", generate=_als),
    CandidateSource("knn", "python", baseline="item_knn", generate=_item_knn),
    CandidateSource("tifuknn", "python", baseline="tifuknn", generate=_tifuknn),
)

NAMES: tuple[str, ...] = tuple(source.name for source in SOURCES)
PYTHON_SOURCES: tuple[CandidateSource, ...] = tuple(s for s in SOURCES if s.kind == "python")
# baseline name -> the source whose own ranking it is, in the registry's order
SOURCE_BASELINES: dict[str, str] = {s.baseline: s.name for s in SOURCES if s.baseline}


def union_sql(wh: Warehouse, columns: str, where: str) -> str:
    """One ``union all`` over every registered source's candidate table: ``columns`` and a
    ``source`` column naming the source, from the rows matching ``where`` (parameters as in
    the caller's query). The one place that lists the candidate tables in SQL."""
    return " union all ".join(
        f"select {columns}, '{s.name}' as source from {wh.table('candidates', s.table)} "
        f"where {where}"
        for s in SOURCES
    )


def pivot_columns() -> list[str]:
    """The columns of :func:`pivot_sql`, in its order (the training sample selects them by
    name; tests/reliability/test_chunked_ranking.py fails when the two lists part)."""
    scores = [f"cand_{name}_{what}" for name in NAMES for what in ("score", "rank")]
    return ["user_id", "item_id", *scores, "cand_n_sources", "sources"]


def pivot_sql(wh: Warehouse, where: str) -> str:
    """One row per (user_id, item_id) proposed by any source among the rows matching ``where``:
    ``cand_<source>_score`` and ``cand_<source>_rank`` of every source (NULL where it did not
    propose the pair), ``cand_n_sources`` and ``sources`` (the proposing sources' names, sorted,
    comma-separated). Each branch of the union fills its own source's columns, so the group-by
    aggregates plain columns (no CASE per row and source) and ``sources`` is built after it."""
    branches = " union all ".join(
        "select user_id, item_id, "
        + ", ".join(
            f"score as cand_{other}_score, rank as cand_{other}_rank"
            if other == source.name
            else f"null as cand_{other}_score, null as cand_{other}_rank"
            for other in NAMES
        )
        + f" from {wh.table('candidates', source.table)} where {where}"
        for source in SOURCES
    )
    aggregates = ", ".join(
        f"max(cand_{name}_score) as cand_{name}_score, min(cand_{name}_rank) as cand_{name}_rank"
        for name in NAMES
    )
    names = ", ".join(
        f"case when cand_{name}_rank is not null then '{name}' end" for name in sorted(NAMES)
    )
    return f"""
        select *, array_to_string([{names}], ',') as sources
        from (
            select user_id, item_id, {aggregates}, count(*) as cand_n_sources
            from ({branches}) as unioned
            group by user_id, item_id
        ) as pivoted
    """
