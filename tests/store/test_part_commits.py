"""Row-sized parts: slides span parts, commit only when whole, no data read on commit, kill recovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixture_ray.locations import Location
from mixture_ray.store import part_commits
from mixture_ray.store.folder import StageFolder, committed_files
from mixture_ray.store.part_ledger import PartLedger
from mixture_ray.store.slide_stream import (
    COUNT_SCHEMA,
    SlideBatchRunner,
    with_tally,
    write_part,
)


def rows(slide: str, n: int, start: int = 0, *, error: str | None = None) -> pa.Table:
    return pa.table({"slide_id": [slide] * n, "case_id": ["c"] * n, "x": list(range(start, start + n)),
                     "y": [0] * n, "magnification": pa.array([20.0] * n, pa.float32()),
                     "error": pa.array([error] * n, pa.string())})


def counts(entries: list[tuple[str, int, int, int, int]], expected: dict[str, int]) -> pa.Table:
    """(slide, consumed, produced, written, errors) per slide of one part."""
    return pa.table({
        "slide_id": [e[0] for e in entries], "consumed": [e[1] for e in entries],
        "produced": [e[2] for e in entries], "expected": [expected.get(e[0], -1) for e in entries],
        "written": [e[3] for e in entries], "errors": [e[4] for e in entries],
        "first_error": [("bad tile" if e[4] else None) for e in entries],
        "magnifications": [json.dumps({"20": e[3]}) for e in entries],
        "case_id": [f"case-{e[0]}" for e in entries]}, schema=COUNT_SCHEMA)


def stage(part: Location, *tables: pa.Table) -> None:
    part.write_parquet(pa.concat_tables(tables))


@pytest.fixture
def store(tmp_path: Path) -> StageFolder:
    folder = StageFolder(tmp_path / "store", stage="embed")
    folder.prepare({"k": 1})
    return folder


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Parquet read made in this process (the driver), by path."""
    seen: list[str] = []
    original_read, original_file = pq.read_table, pq.ParquetFile

    def read_table(source: Any, *args: Any, **kwargs: Any) -> pa.Table:
        seen.append(str(source))
        return original_read(source, *args, **kwargs)

    def parquet_file(source: Any, *args: Any, **kwargs: Any) -> pq.ParquetFile:
        seen.append(str(source))
        return original_file(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_table)
    monkeypatch.setattr(pq, "ParquetFile", parquet_file)
    return seen


def test_a_slide_spanning_parts_is_committed_only_when_whole(store: StageFolder, reads: list[str]) -> None:
    staging = store.new_staging()
    p1, p2 = staging / "part-1.parquet", staging / "part-2.parquet"
    stage(p1, rows("A", 40), rows("B", 10))
    stage(p2, rows("A", 20, start=40), rows("C", 5))
    ledger = PartLedger(store, sources={"A": "a.svs", "B": "b.svs", "C": "c.svs"},
                        expected={"A": 60, "B": 10, "C": 5})
    ledger.add(p1, counts([("A", 40, 40, 40, 0), ("B", 10, 10, 10, 0)], {}))
    assert store.committed_items() == {}  # A has rows outside this part: nothing is whole yet
    assert not list(store.root.glob("chunk-*"))
    ledger.add(p2, counts([("A", 20, 20, 20, 0), ("C", 5, 5, 5, 0)], {}))
    assert store.committed_items() == {"A": 60, "B": 10, "C": 5}
    assert ledger.close(None) == []
    assert store.finish(requested=["A", "B", "C"], failures=[], extra={})
    index = store.index()
    assert sorted(index.slides["A"].files) == sorted(index.files) and len(index.files) == 2
    assert index.slides["A"].magnifications == {"20": 60}
    assert {s: e.case for s, e in index.slides.items()} == {"A": "case-A", "B": "case-B", "C": "case-C"}
    assert reads == []  # the commits and the index came from the writers' counts alone
    table = pq.read_table(committed_files(store.root))
    assert table.num_rows == 75
    assert sorted(table.filter(pa.compute.equal(table["slide_id"], "A"))["x"].to_pylist()) == list(range(60))


def test_parts_that_finish_out_of_order_wait_for_the_rows_still_being_written(store: StageFolder) -> None:
    staging = store.new_staging()
    p1, p2 = staging / "part-1.parquet", staging / "part-2.parquet"
    stage(p1, rows("A", 30))
    stage(p2, rows("A", 30, start=30))
    ledger = PartLedger(store, sources={"A": "a.svs"}, expected={"A": 60})
    # The part holding A's tally rows (all 60 inputs consumed) reports first; 30 rows are elsewhere.
    ledger.add(p2, counts([("A", 60, 60, 30, 0)], {}))
    assert store.committed_items() == {}
    ledger.add(p1, counts([("A", 0, 0, 30, 0)], {}))
    assert store.committed_items() == {"A": 60}


def test_a_failed_slide_is_removed_from_a_shared_part(store: StageFolder) -> None:
    staging = store.new_staging()
    part = staging / "part-1.parquet"
    stage(part, rows("A", 8), rows("B", 6))  # B also had 2 error rows (not written)
    ledger = PartLedger(store, sources={"A": "a.svs", "B": "b.svs"}, expected={"A": 8, "B": 8})
    ledger.add(part, counts([("A", 8, 8, 8, 0), ("B", 8, 8, 6, 2)], {}))
    failures = ledger.close(None)
    assert [(f.item_id, f.source) for f in failures] == [("B", "b.svs")]
    assert "bad tile (2 of 8 rows failed)" in failures[0].error
    assert store.committed_items() == {"A": 8}
    table = pq.read_table(committed_files(store.root, require_complete=False))
    assert set(table["slide_id"].to_pylist()) == {"A"}


def test_a_run_killed_between_the_parts_of_a_slide_is_cleaned_on_resume(tmp_path: Path) -> None:
    store = StageFolder(tmp_path / "store", stage="embed")
    store.prepare({"k": 1})
    staging = store.new_staging()
    p1, p2 = staging / "part-1.parquet", staging / "part-2.parquet"
    stage(p1, rows("A", 40), rows("B", 10))
    stage(p2, rows("A", 20, start=40), rows("C", 3))
    ledger = PartLedger(store, sources={"A": "", "B": "", "C": ""}, expected={"A": 60, "B": 10, "C": 5})
    ledger.add(p1, counts([("A", 40, 40, 40, 0), ("B", 10, 10, 10, 0)], {}))
    ledger.add(p2, counts([("A", 20, 20, 20, 0), ("C", 3, 3, 3, 0)], {}))  # C unfinished: p2 waits
    # The driver dies here: part 1 (all of B, 40 of A's 60 rows) is committed, part 2 is not.
    index = store.index()
    assert index.committed() == {"B": 10} and index.partial() == {"A"}
    again = StageFolder(tmp_path / "store", stage="embed")
    again.prepare({"k": 1})  # the rerun: A's 40 stray rows go before A is processed again
    assert again.index().partial() == set()
    assert again.committed_items() == {"B": 10}
    table = pq.read_table(committed_files(again.root, require_complete=False))
    assert table["slide_id"].to_pylist() == ["B"] * 10


def test_the_runner_and_the_writer_count_every_input_row(tmp_path: Path) -> None:
    class DropsOdd:  # like the tile reader: background rows are dropped, one row fails
        def __call__(self, batch: pa.Table) -> pa.Table:
            out = batch.filter(pa.compute.equal(pa.compute.bit_wise_and(batch["x"], 1), 0))
            errors = ["unreadable" if x == 4 else None for x in out["x"].to_pylist()]
            return out.set_column(out.schema.get_field_index("error"), "error", pa.array(errors, pa.string()))

    runner = SlideBatchRunner(inner=DropsOdd, inner_kwargs={})
    batch = pa.concat_tables([rows("A", 6), rows("B", 3)])
    batch = batch.append_column("_slide_rows", pa.array([6] * 6 + [3] * 3, pa.int64()))
    out = runner(batch)
    half = out.num_rows // 2
    result = write_part(str(tmp_path), "part-x.parquet", ["x"], [(0, half), (half, out.num_rows)], out, out)
    got = {r["slide_id"]: r for r in result.to_pylist()}
    assert got["A"]["consumed"] == 6 and got["A"]["expected"] == 6
    assert got["A"]["produced"] == 3 and got["A"]["written"] == 2 and got["A"]["errors"] == 1
    assert got["A"]["first_error"] == "unreadable"
    assert got["B"]["consumed"] == 3 and got["B"]["written"] == 2
    written = pq.read_table(tmp_path / "part-x.parquet")
    assert written.column_names == rows("A", 1).column_names  # no tally columns in the data
    assert written["slide_id"].to_pylist() == ["A", "A", "B", "B"]  # sorted by slide


def test_tally_rows_keep_the_stage_schema() -> None:
    from collections import Counter

    out = with_tally(rows("A", 2), consumed=Counter({"A": 3, "Z": 1}), expected={"A": 3}, cases={"Z": "cz"})
    tally = out.filter(out["_tally"])
    assert tally["slide_id"].to_pylist() == ["A", "Z"]
    assert tally["_consumed"].to_pylist() == [3, 1] and tally["_produced"].to_pylist() == [2, 0]
    assert tally["case_id"].to_pylist() == ["", "cz"]  # the case of a slide seen only in the input


def test_commit_parts_moves_files_without_reading_them(store: StageFolder, reads: list[str]) -> None:
    staging = store.new_staging()
    part = staging / "part-1.parquet"
    stage(part, rows("A", 5))
    staged = part_commits.StagedPart(part, {"A": 5}, {"A": {"20": 5}})
    assert part_commits.commit_parts(store, [staged], totals={"A": 5}) == {"A": 5}
    assert reads == [] and not part.exists()
