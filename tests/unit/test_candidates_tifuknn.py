"""TIFU-kNN candidates: decayed personal frequency, the neighbours' blend, the output contract."""

import numpy as np
import pandas as pd
import pytest

from recpipe.candidates_python import OUTPUT_COLUMNS, tifuknn_candidates


def baskets(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "basket_id", "basket_ts", "items"])
    frame["item_id"] = frame["items"].str.split(",")
    frame = frame.explode("item_id").drop(columns="items")
    frame["basket_ts"] = pd.to_datetime(frame["basket_ts"])
    return frame[["user_id", "item_id", "basket_id", "basket_ts"]].reset_index(drop=True)


def random_shop(
    *, seed: int, users: int, per_user: tuple[int, int], items: int, basket_size: int
) -> pd.DataFrame:
    """Users with a random number of baskets (in ``per_user``, end excluded), one a day, each of
    ``basket_size`` distinct items out of ``items``."""
    rng = np.random.default_rng(seed)
    return baskets(
        [
            (f"u{u:03d}", f"o{u:03d}_{b:02d}", f"2020-01-{1 + b:02d}", ",".join(chosen))
            for u in range(users)
            for b in range(int(rng.integers(*per_user)))
            for chosen in [
                rng.choice([f"i{i}" for i in range(items)], size=basket_size, replace=False)
            ]
        ]
    )


# u1: oldest {a, b}, then {a}, latest {c}; u2 and u3 share taste, u3 also buys d
SHOP = baskets(
    [
        ("u1", "o1", "2020-01-01", "a,b"),
        ("u1", "o2", "2020-01-05", "a"),
        ("u1", "o3", "2020-01-09", "c"),
        ("u2", "o4", "2020-01-02", "x,y"),
        ("u2", "o5", "2020-01-06", "x"),
        ("u3", "o6", "2020-01-03", "x,y,d"),
        ("u4", "o7", "2020-01-03", "a,b,c"),
    ]
)
ITEMS = ["a", "b", "c", "d", "x", "y"]


def test_personal_part_is_the_decayed_basket_share():
    out = tifuknn_candidates(SHOP, ["u1"], ITEMS, decay=0.5, alpha=1.0)
    # basket weights by age: latest 1, then 0.5, then 0.25 (total 1.75)
    assert out["item_id"].tolist() == ["c", "a", "b"]
    assert out["score"].to_numpy() == pytest.approx([1 / 1.75, 0.75 / 1.75, 0.25 / 1.75])
    assert out["rank"].tolist() == [1, 2, 3]


def test_neighbours_bring_new_items_and_exclude_oneself():
    # u2's nearest user is u3 (x, y); alpha 0: only the neighbour's vector counts
    out = tifuknn_candidates(SHOP, ["u2"], ITEMS, decay=0.8, alpha=0.0, neighbours=1)
    assert set(out["item_id"]) == {"x", "y", "d"}  # d: never bought by u2, from u3
    blended = tifuknn_candidates(SHOP, ["u2"], ITEMS, decay=0.8, alpha=0.8, neighbours=1)
    assert blended["item_id"].tolist()[0] == "x"  # u2's own most frequent item stays first
    assert "d" in set(blended["item_id"])


def test_contract_depth_availability_and_determinism():
    users = ["u1", "u2", "u3", "u4", "nobody"]
    out = tifuknn_candidates(SHOP, users, ["a", "b", "c", "x"], depth=2, neighbours=2)
    assert list(out.columns) == OUTPUT_COLUMNS
    assert out["rank"].dtype == np.int64 and out["score"].dtype == np.float64
    assert set(out["item_id"]) <= {"a", "b", "c", "x"}
    assert out.groupby("user_id").size().max() <= 2
    assert "nobody" not in set(out["user_id"])
    assert (out["score"] > 0).all()
    shuffled = SHOP.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = tifuknn_candidates(shuffled, list(reversed(users)), ["x", "c", "b", "a"], depth=2,
                               neighbours=2)  # fmt: skip
    pd.testing.assert_frame_equal(out, again)


def test_scores_do_not_depend_on_the_order_of_the_rows():
    """A warehouse returns rows in any order; the decayed frequencies are sums of floats, so
    they must be added in one order whatever the input's, or a last bit flips a tie."""
    shop = random_shop(seed=7, users=200, per_user=(5, 25), items=30, basket_size=4)
    users = sorted(shop["user_id"].unique())
    items = sorted(shop["item_id"].unique())
    expected = tifuknn_candidates(shop, users, items, neighbours=20, neighbour_pool=150)
    for seed in range(3):
        shuffled = shop.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        out = tifuknn_candidates(shuffled, users, items, neighbours=20, neighbour_pool=150)
        pd.testing.assert_frame_equal(out, expected, check_exact=True)


def test_neighbours_come_from_the_pool_of_users_with_most_baskets():
    # baskets: u1 3, u2 2, u3 and u4 1 -> a pool of 2 is {u1, u2}
    alone = dict(decay=0.8, alpha=0.0, neighbours=1, neighbour_pool=2)
    u3 = tifuknn_candidates(SHOP, ["u3"], ITEMS, **alone)
    assert set(u3["item_id"]) == {"x", "y"}  # from u2, the pool's nearest
    u2 = tifuknn_candidates(SHOP, ["u2"], ITEMS, **alone)
    assert set(u2["item_id"]) == {"a", "b", "c"}  # u3 is outside the pool, u2 is not its own
    users = ["u1", "u2", "u3", "u4"]
    everyone = tifuknn_candidates(SHOP, users, ITEMS, neighbours=2, neighbour_pool=None)
    pd.testing.assert_frame_equal(
        everyone, tifuknn_candidates(SHOP, users, ITEMS, neighbours=2, neighbour_pool=4)
    )


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="decay"):
        tifuknn_candidates(SHOP, ["u1"], ITEMS, decay=0.0)
    with pytest.raises(ValueError, match="alpha"):
        tifuknn_candidates(SHOP, ["u1"], ITEMS, alpha=1.5)
    with pytest.raises(ValueError, match="neighbour_pool"):
        tifuknn_candidates(SHOP, ["u1"], ITEMS, neighbour_pool=1)
    with pytest.raises(ValueError, match="basket_id"):
        tifuknn_candidates(SHOP.drop(columns="basket_id"), ["u1"], ITEMS)
    assert tifuknn_candidates(SHOP.iloc[:0], ["u1"], ITEMS).empty


def test_one_thread_or_four_score_alike(monkeypatch):
    """Blocks of users (here 6 each) are scored on several threads and joined in order."""
    import recpipe.candidates_python as module

    shop = random_shop(seed=11, users=120, per_user=(3, 12), items=40, basket_size=5)
    users, items = sorted(shop["user_id"].unique()), sorted(shop["item_id"].unique())
    monkeypatch.setattr(module, "_BLOCK_CELLS", 2 * 120)
    runs = []
    for workers in (1, 4):
        monkeypatch.setattr(module, "_workers", lambda workers=workers: workers)
        runs.append(tifuknn_candidates(shop, users, items, neighbours=15, neighbour_pool=100))
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)
