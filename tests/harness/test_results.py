"""The results store: schema, idempotent merge, leaderboard statistics, malformed files."""

import math

import pandas as pd
import pytest

from hti_bench.errors import ResultsError
from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.results import KEY, SCHEMA_VERSION, ResultsStore, merge
from support import row


def test_merge_keeps_the_newest_row_per_key_and_is_idempotent():
    old = pd.DataFrame([row(w2=1.0, date="2026-01-01"), row(lam=0.75, w2=2.0, date="2026-01-01")])
    new = pd.DataFrame([row(w2=3.0, date="2026-02-01")])
    merged = merge([old, new])
    assert len(merged) == 2
    assert merged.set_index("lambda_heldout").loc[0.25, "w2"] == 3.0
    pd.testing.assert_frame_equal(merge([merged, merged, new]), merged)


def test_leaderboard_statistics_and_ranks():
    rows = []
    for seed, offset in [(0, 0.0), (1, 0.2), (2, 0.4)]:
        rows += [row("good", seed, 0.25, 1.0 + offset), row("good", seed, 0.75, 2.0 + offset)]
        rows += [row("bad", seed, 0.25, 5.0 + offset), row("bad", seed, 0.75, 5.0 + offset)]
    rows += [row("broken", 0, 0.25, math.nan, status="failed")]
    board = leaderboard(pd.DataFrame(rows)).set_index("surrogate")
    assert board.loc["good", "w2_mean"] == pytest.approx(1.7)
    assert board.loc["good", "rank"] == 1 and board.loc["bad", "rank"] == 2
    assert pd.isna(board.loc["broken", "rank"]) and board.loc["broken", "status"].startswith("failed")
    # CI over per-seed means 1.5, 1.7, 1.9: t(0.975, 2) · 0.2 / √3
    assert board.loc["good", "w2_ci95"] == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-4)
    assert board.loc["good", "n_seeds"] == 3 and board.loc["good", "n_rows"] == 6


def test_store_round_trip_and_unit_identity(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_unit([row(lam=0.25), row(lam=0.75)])
    assert store.has_unit("t", "a", 0) and not store.has_unit("t", "a", 1)
    with pytest.raises(ValueError, match="share task, surrogate, seed and track"):
        store.write_unit([row(seed=0), row(seed=1)])
    df, board = store.write_tables()
    assert len(df) == 2 and (tmp_path / "leaderboard.csv").exists() and (tmp_path / "results.csv").exists()
    assert not df.duplicated(list(KEY)).any()


def test_failed_units_are_not_counted_as_done(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_unit([row(status="failed")])
    assert not store.has_unit("t", "a", 0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("just,some\n1,2\n", "lacks columns"),
        ("\x00\x01garbage", "lacks columns|cannot be read"),
    ],
)
def test_malformed_results_file_names_the_file(tmp_path, content, message):
    store = ResultsStore(tmp_path)
    store.runs.mkdir(parents=True)
    bad = store.runs / "deadbeef.csv"
    bad.write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        store.load()
    assert "deadbeef.csv" in str(info.value)


def test_future_schema_version_is_refused(tmp_path):
    store = ResultsStore(tmp_path)
    r = row()
    r["schema_version"] = SCHEMA_VERSION + 1
    store.runs.mkdir(parents=True)
    pd.DataFrame([r]).to_csv(store.runs / "x.csv", index=False)
    with pytest.raises(ResultsError, match="schema version"):
        store.load()


def test_results_readme_documents_the_current_schema():
    from pathlib import Path

    from hti_bench.harness.results import schema_markdown

    text = (Path(__file__).resolve().parents[2] / "results" / "README.md").read_text()
    assert schema_markdown() in text, (
        "regenerate results/README.md's table from hti_bench.harness.results.schema_markdown()"
    )


def test_version_1_files_are_read_with_the_anchor_cost_unknown(tmp_path):
    store = ResultsStore(tmp_path)
    r = row()
    r["schema_version"] = 1
    for col in ("anchor_train_seconds", "seed_floor_w1", "seed_floor_w2", "seed_floor_w2sq"):
        del r[col]
    store.runs.mkdir(parents=True)
    pd.DataFrame([r]).to_csv(store.unit_path(r["task"], r["surrogate"], r["seed"]), index=False)
    loaded = store.load()
    assert len(loaded) == 1 and loaded["anchor_train_seconds"].isna().all()
    assert (loaded["schema_version"].astype(int) == SCHEMA_VERSION).all()


def test_version_6_files_read_as_one_hyperparameter_with_the_point_as_text(tmp_path):
    store = ResultsStore(tmp_path)
    store.runs.mkdir(parents=True)
    for lam in (0.25, 3.0):
        r = row(lam=lam, surrogate=f"s{lam}")
        r["schema_version"] = 6
        for col in ("d", "lambda_point", "anchor_distance"):
            r.pop(col, None)
        pd.DataFrame([r]).to_csv(store.unit_path(r["task"], r["surrogate"], r["seed"]), index=False)
    loaded = store.load().sort_values("lambda_heldout")
    assert loaded["lambda_point"].tolist() == ["0.25", "3.0"] and (loaded["d"] == 1).all()
    assert loaded["anchor_distance"].isna().all() and (loaded["schema_version"].astype(int) == SCHEMA_VERSION).all()


def test_by_lambda_averages_seeds_per_heldout_lambda_and_adds_the_floor():
    from hti_bench.harness.leaderboard import by_lambda

    rows = pd.DataFrame(
        [
            row(seed=0, lam=0.25, w2=1.0),
            row(seed=1, lam=0.25, w2=3.0),
            row(seed=0, lam=0.75, w2=5.0),
            row(seed=0, lam=0.75, w2=99.0, status="failed", surrogate="b"),
        ]
    )
    table = by_lambda(rows)
    assert table.loc[("t", "a"), 0.25] == 2.0 and table.loc[("t", "a"), 0.75] == 5.0
    assert table.loc[("t", "(noise floor)"), 0.25] == pytest.approx(0.1)
    assert ("t", "b") not in table.index  # failed rows are not scores


def test_anchors_column_round_trips_exactly():
    from hti_bench.harness.results import format_anchors, parse_anchors

    anchors = (0.0, 0.1, 1 / 3, 0.99, 1e-05, 250.0)
    text = format_anchors(anchors)
    assert text == "0.0;0.1;0.3333333333333333;0.99;1e-05;250.0"
    assert parse_anchors(text) == anchors
    assert format_anchors([0, 1]) == "0.0;1.0"
    for empty in ("", None, math.nan, "  "):
        assert parse_anchors(empty) == ()
    with pytest.raises(ResultsError, match="Malformed anchors"):
        parse_anchors("0.1,0.5")


def test_anchors_and_clock_survive_a_store_round_trip(tmp_path):
    store = ResultsStore(tmp_path)
    # one anchor would read back as a number if the column were not text
    store.write_unit([dict(row(lam=0.25), anchors="0.5", clock="log"), dict(row(lam=0.75), anchors="0.5", clock="log")])
    store.write_unit([dict(row(seed=1), anchors="0.0;0.5;1.0", clock="identity")])
    loaded, _ = store.write_tables()
    assert list(loaded["anchors"]) == ["0.5", "0.5", "0.0;0.5;1.0"] and list(loaded["clock"]) == [
        "log",
        "log",
        "identity",
    ]
    again = pd.read_csv(tmp_path / "results.csv", dtype=str)
    assert list(again["anchors"]) == list(loaded["anchors"])


def test_version_2_files_are_read_with_anchors_and_clock_unknown(tmp_path):
    store = ResultsStore(tmp_path)
    r = row()
    r["schema_version"] = 2
    del r["anchors"], r["clock"]
    store.runs.mkdir(parents=True)
    pd.DataFrame([r]).to_csv(store.unit_path(r["task"], r["surrogate"], r["seed"]), index=False)
    store.write_unit([dict(row(seed=1), anchors="0.0;1.0", clock="identity")])  # a version 3 unit beside it
    loaded = store.load().set_index("seed")
    assert pd.isna(loaded.loc[0, "anchors"]) and pd.isna(loaded.loc[0, "clock"])
    assert loaded.loc[1, "anchors"] == "0.0;1.0" and loaded.loc[1, "clock"] == "identity"
    assert (loaded["schema_version"].astype(int) == SCHEMA_VERSION).all()


def test_rows_of_an_older_hti_bench_rebuilt_from_wandb_are_upgraded(tmp_path):
    from types import SimpleNamespace

    from hti_bench.harness.tracking import ROWS_SUMMARY_KEY, results_from_wandb, rows_json

    old = row()
    old["schema_version"] = 2
    del old["anchors"], old["clock"]

    class Api:
        def runs(self, path):
            return [SimpleNamespace(summary={ROWS_SUMMARY_KEY: rows_json([old])})]

    assert results_from_wandb("me/hti", str(tmp_path), api=Api()) == (1, 1)
    loaded = ResultsStore(tmp_path).load()
    assert len(loaded) == 1 and loaded["anchors"].isna().all() and loaded["clock"].isna().all()
