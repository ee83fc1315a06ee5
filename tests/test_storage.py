import pyarrow as pa
import pytest

from webli import schemas
from webli.pipeline.storage import StageDir, check_stats, sum_stats


def test_atomic_write_leaves_no_file_on_failure(tmp_path):
    store = StageDir(str(tmp_path), "s")
    with pytest.raises(RuntimeError):
        with store.atomic_path("00000.parquet") as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("killed")
    assert list((tmp_path / "s").iterdir()) == []


def test_stats_json_is_the_done_marker(tmp_path):
    store = StageDir(str(tmp_path), "s")
    assert not store.is_done(3)
    store.write_stats(3, {"total": 5, "forwarded": 3, "dropped_by_reason": {"a": 2}})
    assert store.is_done(3) and store.done_shards() == {3}
    assert store.read_all_stats()[3]["dropped"] == 2


def test_stats_must_add_up():
    with pytest.raises(ValueError, match="do not add up"):
        check_stats({"total": 5, "forwarded": 3, "dropped_by_reason": {"a": 1}})


def test_sum_stats_adds_reasons():
    total = sum_stats([{"total": 3, "forwarded": 1, "dropped": 2, "dropped_by_reason": {"a": 2}},
                       {"total": 2, "forwarded": 1, "dropped": 1, "dropped_by_reason": {"a": 1}}])
    assert total == {"shards": 2, "total": 5, "forwarded": 2, "dropped": 3, "dropped_by_reason": {"a": 3}}


def test_write_table_checks_schema(tmp_path):
    store = StageDir(str(tmp_path), "s")
    with pytest.raises(schemas.SchemaError, match="lacks column"):
        store.write_table("x.parquet", pa.table({"uid": ["a"]}), schemas.CRAWL_PAIRS)
    assert not (tmp_path / "s" / "x.parquet").exists()


def test_conform_refuses_nulls_in_required_columns():
    table = pa.table({name: pa.nulls(1, field.type) for name, field in zip(schemas.DOWNLOAD_PLAN.names,
                                                                             schemas.DOWNLOAD_PLAN)})
    with pytest.raises(schemas.SchemaError, match="not nullable"):
        schemas.conform(table, schemas.DOWNLOAD_PLAN)


def test_stale_temporaries_are_removed(tmp_path):
    store = StageDir(str(tmp_path), "s")
    store.makedirs()
    (tmp_path / "s" / "00001.tar.tmp-abcdef12").write_bytes(b"x")
    (tmp_path / "s" / "00000.tar").write_bytes(b"x")
    assert store.remove_stale_temporaries() == 1
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["00000.tar"]
