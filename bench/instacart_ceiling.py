"""How far past TIFU-kNN can a learned ranker get on the Instacart split? (issue 11)

A study, not the pipeline: it asks whether the NDCG@10 target of issue 11 (0.50 on the truth
baskets, +4 % over the TIFUKNN-style reference 0.480) is within reach of any ranker trained on
this log, measured on many more baskets than the 593 truth baskets.

Every basket of every user in ``../shared/data/instacart_valid/`` (read in place) becomes a
query, the truth basket (on 2017-06-30) the user's last: the candidates are the items the user
bought before it (repeat items; 70 % of the truth lines), the label whether the basket holds
them. Features come only from what was known the day before the basket:

- the user's own history of the item, counted in baskets and in days (count, share of baskets,
  share since its first purchase, baskets and days since the last purchase, its usual gap and
  how overdue it is, in the last 3 / 5 baskets, streak) and the decayed personal frequency of
  TIFU-kNN at decays 0.6 / 0.8 / 0.9;
- the user's rhythm (days since the last basket, usual gap and their ratio, basket size, share
  of one-off items, the item's category share);
- the item over all users' baskets BEFORE the query's day (buyers, purchases, share of buyers
  who bought again). Counted over the whole log instead, these leak the query's own basket: the
  ranker then "gains" three times as much on held-out baskets and nothing on the truth;
- TIFU-kNN's score and rank at the query's day (``recpipe.candidates_python.tifuknn_candidates``
  over all baskets before it, the reference's settings);
- what follows the user's last basket in everyone's baskets before the query's day: for each
  item j of it, the share of baskets holding j whose next basket held the candidate, averaged.

A LightGBM lambdarank trained on the baskets of four fifths of the users ranks every basket of
the other fifth (five folds: each user held out once). Printed: mean NDCG@10 (ideal DCG over
min(10, basket size), ``recpipe.evaluation.ndcg_at_k``) over every held-out basket with at
least one earlier basket, and over the truth baskets alone, for decayed frequency, TIFU-kNN and
the ranker, with the ranker's paired gain over TIFU-kNN and its standard error, and the
oracle (the basket's repeat items first): the bound of any ranking of these candidates. The
truth rows rank repeat items only (no popularity fill, no new items), so they sit near, not on, the
published figures of ``bench/quality.py --dataset instacart``.

    .venv/bin/python bench/instacart_ceiling.py                 # 300 rounds, ~4 min on 2 cores
    .venv/bin/python bench/instacart_ceiling.py --rounds 150    # a shorter-trained ranker
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from recpipe.candidates_python import tifuknn_candidates
from recpipe.evaluation import ndcg_at_k

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instacart_valid"
TRUTH_DAY = pd.Timestamp("2017-06-30", tz="UTC")
EPOCH = pd.Timestamp("2015-01-01", tz="UTC")
DECAYS = (0.6, 0.8, 0.9)
K = 10
FOLDS = 5
QUERY_COLUMNS = ("query", "user_id", "basket", "day", "item_id", "label", "is_truth")
PARAMS = {
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
    "num_threads": 2,
    "seed": 1,
    "deterministic": True,  # with force_col_wise: the same figures on every rerun
    "force_col_wise": True,
    "verbose": -1,
}


def load_baskets(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(baskets, lines). baskets: one row per user basket in time order, the truth basket
    last, with ``basket`` (0-based index in the user's timeline), ``day`` (days since 2015-01-01)
    and ``items`` (a frozenset). lines: one row per (user, history basket, item), with its day."""
    events = pd.read_csv(data / "events.csv", dtype=str)
    truth = pd.read_csv(data / "truth.csv", dtype=str)
    events["day"] = (pd.to_datetime(events["event_ts"]) - EPOCH).dt.days
    lines = events.drop_duplicates(["user_id", "session_id", "item_id"])
    history = (
        lines.groupby(["user_id", "session_id"])
        .agg(ts=("event_ts", "min"), day=("day", "min"), items=("item_id", frozenset))
        .reset_index()
        .sort_values(["user_id", "ts", "session_id"])
    )
    last = truth.groupby("user_id")["item_id"].agg(frozenset).rename("items").reset_index()
    last["day"] = (TRUTH_DAY - EPOCH).days
    baskets = pd.concat([history[["user_id", "day", "items"]], last], ignore_index=True)
    baskets = baskets.sort_values(["user_id", "day"], kind="stable").reset_index(drop=True)
    baskets["basket"] = baskets.groupby("user_id").cumcount()
    baskets["is_truth"] = baskets["basket"] == baskets.groupby("user_id")["basket"].transform("max")
    return baskets, lines[["user_id", "session_id", "item_id", "day", "event_ts"]]


def personal_features(baskets: pd.DataFrame, categories: dict[str, str]) -> pd.DataFrame:
    """One row per (query basket, item the user bought in an earlier basket): its label and the
    user's own history of it, from the earlier baskets only."""
    rows = []
    for user, timeline in baskets.groupby("user_id", sort=False):
        contents = list(timeline["items"])
        days = list(timeline["day"])
        truth_index = len(contents) - 1
        for n in range(1, len(contents)):
            day = days[n]
            gaps = np.diff(days[:n])
            usual_gap = float(gaps.mean()) if len(gaps) else np.nan
            sizes = [len(b) for b in contents[:n]]
            positions: dict[str, list[int]] = defaultdict(list)
            for j in range(n):
                for item in sorted(contents[j]):  # not set order: it varies per process
                    positions[item].append(j)
            category_lines: dict[str, int] = defaultdict(int)
            for item, seen in positions.items():
                category_lines[categories.get(item, "unknown")] += len(seen)
            one_off_share = sum(len(seen) == 1 for seen in positions.values()) / len(positions)
            decay_totals = {d: sum(d ** (n - 1 - j) for j in range(n)) for d in DECAYS}
            for item, seen in positions.items():
                count = len(seen)
                item_gaps = np.diff([days[j] for j in seen])
                item_gap = float(item_gaps.mean()) if len(item_gaps) else np.nan
                days_since = day - days[seen[-1]]
                streak = (
                    next((s for s in range(1, n + 1) if n - s not in seen), n + 1) - 1
                )  # baskets in a row, ending with the last, that hold the item
                row = {
                    "query": f"{user}:{n}",
                    "user_id": user,
                    "basket": n,
                    "day": day,
                    "item_id": item,
                    "label": int(item in contents[n]),
                    "is_truth": n == truth_index,
                    "count": count,
                    "basket_share": count / n,
                    "share_since_first": count / (n - seen[0]),
                    "baskets_since_last": n - seen[-1],
                    "baskets_since_first": n - seen[0],
                    "days_since_last": days_since,
                    "item_gap_days": item_gap,
                    "item_overdue": days_since / item_gap if item_gap > 0 else np.nan,
                    "item_gap_baskets": (seen[-1] - seen[0]) / (count - 1) if count > 1 else np.nan,
                    "in_last_3": sum(j >= n - 3 for j in seen),
                    "in_last_5": sum(j >= n - 5 for j in seen),
                    "streak": streak,
                    "user_days_since_last": day - days[n - 1],
                    "user_usual_gap": usual_gap,
                    "user_gap_ratio": (day - days[n - 1]) / usual_gap if usual_gap > 0 else np.nan,
                    "user_basket_size": float(np.mean(sizes)),
                    "user_last_basket_size": sizes[-1],
                    "user_items": len(positions),
                    "user_one_off_share": one_off_share,
                    "category_share": category_lines[categories.get(item, "unknown")] / sum(sizes),
                }
                for d in DECAYS:
                    row[f"decayed_{d}"] = sum(d ** (n - 1 - j) for j in seen) / decay_totals[d]
                rows.append(row)
    return pd.DataFrame(rows)


def add_item_history(queries: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """Each row's item over all users' baskets strictly before the query's day: purchases,
    buyers, and the smoothed share of buyers who bought it again."""
    purchases = lines.sort_values(["day", "user_id", "session_id"], kind="stable").copy()
    nth = purchases.groupby(["user_id", "item_id"]).cumcount()
    purchases["purchases"] = 1
    purchases["buyers"] = (nth == 0).astype(int)
    purchases["rebuyers"] = (nth == 1).astype(int)
    running = (
        purchases.groupby(["item_id", "day"])[["purchases", "buyers", "rebuyers"]]
        .sum()
        .groupby(level="item_id")
        .cumsum()
        .reset_index()
        .rename(columns={"day": "known_day"})
        .sort_values("known_day")
    )
    keys = queries[["item_id", "day"]].assign(known_day=queries["day"] - 1, row=queries.index)
    known = pd.merge_asof(
        keys.sort_values("known_day"), running, on="known_day", by="item_id", direction="backward"
    ).set_index("row")
    known = known[["purchases", "buyers", "rebuyers"]].fillna(0).reindex(queries.index)
    return queries.assign(
        item_purchases=known["purchases"],
        item_buyers=known["buyers"],
        item_rebuy_share=(known["rebuyers"] + 1) / (known["buyers"] + 2),
    )


def add_tifuknn(queries: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """TIFU-kNN's score and rank (depth 300) of each row's item at its query's day, from every
    user's baskets before that day; 0 and 301 where TIFU-kNN does not list the item."""
    baskets = lines.rename(columns={"session_id": "basket_id", "event_ts": "basket_ts"})
    items = sorted(lines["item_id"].unique())
    scored = []
    for day, asking in queries[["user_id", "day", "query"]].drop_duplicates().groupby("day"):
        before = baskets[baskets["day"] < day]
        listed = tifuknn_candidates(
            before[["user_id", "item_id", "basket_id", "basket_ts"]],
            sorted(asking["user_id"]),
            items,
            depth=300,
        )
        scored.append(listed.merge(asking[["user_id", "query"]], on="user_id"))
    tifu = pd.concat(scored)[["query", "item_id", "score", "rank"]]
    merged = queries.merge(tifu, on=["query", "item_id"], how="left")
    merged.index = queries.index
    return merged.assign(
        tifuknn=merged.pop("score").fillna(0.0), tifuknn_rank=merged.pop("rank").fillna(301)
    )


def add_transitions(queries: pd.DataFrame, baskets: pd.DataFrame) -> pd.DataFrame:
    """``transition``: over the items j of the query's previous basket, the mean share of
    baskets holding j (any user's, whose next basket came before the query's day) that were
    followed by a basket holding the row's item; 0 without a known j."""
    previous: dict[str, frozenset] = {}
    pairs = []  # (day of the next basket, a basket, the next one); never a truth basket
    for user, timeline in baskets.groupby("user_id", sort=False):
        contents, days = list(timeline["items"]), list(timeline["day"])
        for n in range(1, len(contents)):
            previous[f"{user}:{n}"] = contents[n - 1]
            if n < len(contents) - 1:
                pairs.append((days[n], contents[n - 1], contents[n]))
    pairs.sort(key=lambda pair: pair[0])
    followed: dict[tuple[str, str], int] = defaultdict(int)
    held: dict[str, int] = defaultdict(int)
    scores = np.zeros(len(queries))
    position = 0
    rows = queries[["query", "day", "item_id"]].assign(row=np.arange(len(queries)))
    for day, asking in rows.groupby("day", sort=True):
        while position < len(pairs) and pairs[position][0] < day:
            _, earlier, later = pairs[position]
            for j in earlier:
                held[j] += 1
                for item in later:
                    followed[(j, item)] += 1
            position += 1
        for row, query, item in zip(asking["row"], asking["query"], asking["item_id"], strict=True):
            last = previous[query]
            shares = [followed.get((j, item), 0) / held[j] for j in last if held.get(j)]
            scores[row] = sum(shares) / len(last)
    return queries.assign(transition=scores)


def cross_validate(queries: pd.DataFrame, rounds: int) -> np.ndarray:
    """Ranker scores for every row, each from the fold model that never saw its user."""
    features = [c for c in queries.columns if c not in QUERY_COLUMNS]
    users = np.array(sorted(queries["user_id"].unique()))
    fold_of = dict(zip(users, np.arange(len(users)) % FOLDS, strict=True))
    fold = queries["user_id"].map(fold_of).to_numpy()
    scores = np.full(len(queries), np.nan)
    for k in range(FOLDS):
        train = queries[(fold != k) & ~queries["is_truth"].to_numpy()]
        train = train[train.groupby("query")["label"].transform("max") > 0]
        data = lgb.Dataset(
            train[features],
            train["label"],
            group=train.groupby("query", sort=False).size().to_numpy(),
        )
        model = lgb.train(PARAMS, data, rounds)
        held_out = np.flatnonzero(fold == k)
        scores[held_out] = model.predict(queries.iloc[held_out][features])
    return scores


def basket_ndcg(queries: pd.DataFrame, baskets: pd.DataFrame, column: str) -> pd.Series:
    """NDCG@K per query basket of the rows ranked by ``column`` (desc; ties: item_id)."""
    truth = dict(
        zip(baskets["user_id"] + ":" + baskets["basket"].astype(str), baskets["items"], strict=True)
    )
    ranked = queries.sort_values(["query", column, "item_id"], ascending=[True, False, True])
    tops = ranked.groupby("query", sort=False)["item_id"].agg(lambda s: list(s[:K]))
    return pd.Series({q: ndcg_at_k(top, truth[q], K) for q, top in tops.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=300, help="boosting rounds per fold")
    args = parser.parse_args(argv)
    missing = [f for f in ("events.csv", "items.csv", "truth.csv") if not (args.data / f).exists()]
    if missing:
        raise SystemExit(f"instacart split not found: {args.data} lacks {', '.join(missing)}")
    started = time.monotonic()
    baskets, lines = load_baskets(args.data)
    items = pd.read_csv(args.data / "items.csv", dtype=str)
    queries = personal_features(
        baskets, dict(zip(items["item_id"], items["category"], strict=True))
    )
    queries = add_transitions(add_tifuknn(add_item_history(queries, lines), lines), baskets)
    print(
        f"{queries['query'].nunique():,} query baskets of {queries['user_id'].nunique()} users, "
        f"{len(queries):,} candidate rows ({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    queries["ranker"] = cross_validate(queries, args.rounds)
    results = {}
    for column in ("decayed_0.8", "tifuknn", "transition", "ranker", "label"):
        results[column] = basket_ndcg(queries, baskets, column)
    # the labels as scores: every repeat item the basket holds first, the bound of these candidates
    results["oracle"] = results.pop("label")
    # one order of queries for every Series below (basket_ndcg's), so masks need no alignment
    is_truth = queries.groupby("query")["is_truth"].first().reindex(results["oracle"].index)
    table = pd.DataFrame(
        {
            "every held-out basket": {c: s.mean() for c, s in results.items()},
            "truth baskets": {c: s[is_truth].mean() for c, s in results.items()},
        }
    )
    print(f"NDCG@{K}, {FOLDS} folds by user, {args.rounds} rounds")
    print(table.round(4).to_string())
    for name, mask in (("every held-out basket", slice(None)), ("truth baskets", is_truth)):
        gain = (results["ranker"] - results["tifuknn"])[mask]
        base = results["tifuknn"][mask].mean()
        print(
            f"ranker - TIFU-kNN over {name} ({len(gain):,}): {gain.mean():+.4f} "
            f"(se {gain.std() / np.sqrt(len(gain)):.4f}, {gain.mean() / base:+.1%})"
        )
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
