"""One download shard joined with its sidecars, and which of its samples may be selected."""

from __future__ import annotations

import math
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from webli import schemas
from webli.schemas.score import MODEL_ID, PROBLEM, SCORE
from webli.schemas.select import (
    DEDUP_COLUMNS,
    DEDUP_PREFIX,
    DEDUP_VERDICTS,
    OCR_COLUMNS,
    OCR_PREFIX,
    SCORE_MODEL_ID,
    SCORE_PROBLEM,
    SELECT_CANDIDATES,
    prefixed,
)

DOWNLOAD_FAILED = "download_failed"
KEY_HAS_DOT = "key_has_dot"


def sidecar_part(table: pa.Table | None, columns: dict[str, pa.DataType], prefix: str) -> pa.Table:
    """`key` + the wanted columns of a sidecar under their joined names; null columns where the sidecar lacks one.

    None (the stage did not run) gives an empty part, so every joined row gets nulls.
    """
    if table is None:
        table = pa.table({schemas.KEY: pa.array([], pa.string())})
    keys = table.column(schemas.KEY)
    distinct = pc.count_distinct(keys).as_py()
    if distinct != table.num_rows:
        raise ValueError(f"a sidecar repeats keys ({table.num_rows} rows, {distinct} keys): it is corrupt")
    arrays = {schemas.KEY: keys}
    for name, kind in columns.items():
        column = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, kind)
        arrays[prefixed(name, prefix)] = column.cast(kind)
    return pa.table(arrays)


def score_part(score: pa.Table) -> pa.Table:
    """The score sidecar's columns under their joined names."""
    return sidecar_part(score, {SCORE: pa.float32(), MODEL_ID: pa.string(), PROBLEM: pa.string()}, "") \
        .rename_columns([schemas.KEY, SCORE, SCORE_MODEL_ID, SCORE_PROBLEM])


def left_join(left: pa.Table, right: pa.Table) -> pa.Table:
    """`left` with `right`'s columns (but key) matched by key; nulls where `right` has no row.

    A take by index rather than Arrow's hash join, which refuses list and struct columns (OCR words).
    """
    rows = right.drop_columns([schemas.KEY]).take(pc.index_in(left.column(schemas.KEY), value_set=right.column(
        schemas.KEY)))
    for name, column in zip(rows.column_names, rows.columns):
        left = left.append_column(name, column)
    return left


def join_shard(download: pa.Table, score: pa.Table, ocr: pa.Table | None, dedup: pa.Table | None) -> pa.Table:
    """Every row of the download table with its score, OCR and dedup columns, sorted by key."""
    joined = download.sort_by(schemas.KEY)
    for part in (score_part(score), sidecar_part(ocr, OCR_COLUMNS, OCR_PREFIX),
                 sidecar_part(dedup, DEDUP_COLUMNS, DEDUP_PREFIX)):
        joined = left_join(joined, part)
    return joined


def _verdict(row: dict) -> str | None:
    for column, reason in DEDUP_VERDICTS.items():
        if row[prefixed(column, DEDUP_PREFIX)]:
            return reason
    return None


def drop_reason(row: dict) -> str | None:
    """Why a joined row cannot be selected, or None if it is eligible; the first reason that applies."""
    if row[schemas.STATUS] != "success":
        return DOWNLOAD_FAILED
    if "." in row[schemas.KEY]:
        return KEY_HAS_DOT  # WebDataset would split the key at the dot
    verdict = _verdict(row)
    if verdict:
        return verdict
    score = row[SCORE]
    if score is None:
        return f"unscored_{row[SCORE_PROBLEM] or 'no_score_row'}"
    if not math.isfinite(score):
        return "unscored_non_finite"
    return None


def drop_reasons(joined: pa.Table) -> list[str | None]:
    """`drop_reason` of every row."""
    columns = [schemas.STATUS, schemas.KEY, SCORE, SCORE_PROBLEM] + [prefixed(c, DEDUP_PREFIX) for c in DEDUP_VERDICTS]
    return [drop_reason(row) for row in joined.select(columns).to_pylist()]


def candidates(joined: pa.Table, reasons: list[str | None]) -> pa.Table:
    """The eligible rows as (key, score, language), in key order."""
    eligible = joined.filter(pa.array([r is None for r in reasons], pa.bool_()))
    return schemas.conform(eligible.select([schemas.KEY, SCORE, schemas.LANGUAGE]), SELECT_CANDIDATES)


def candidate_stats(joined: pa.Table, reasons: list[str | None], eligible: pa.Table) -> dict:
    """Stats of the eligibility pass: forwarded = eligible; languages and score models seen."""
    dropped = Counter(r for r in reasons if r is not None)
    languages = Counter(eligible.column(schemas.LANGUAGE).to_pylist())
    models = {m for m in joined.column(SCORE_MODEL_ID).to_pylist() if m is not None}
    return {
        "stage": "select-candidates",
        "total": joined.num_rows,
        "forwarded": eligible.num_rows,
        "dropped_by_reason": dict(sorted(dropped.items())),
        "eligible_by_language": dict(sorted(languages.items())),
        "score_model_ids": sorted(models),
    }


def eligibility(joined: pa.Table) -> tuple[pa.Table, dict]:
    """(candidates table, stats) of one joined shard."""
    reasons = drop_reasons(joined)
    eligible = candidates(joined, reasons)
    return eligible, candidate_stats(joined, reasons, eligible)


def eligible_mask(joined: pa.Table) -> pa.Array:
    """Which joined rows are candidates (the rows `candidates` keeps, in the same order)."""
    return pa.array([r is None for r in drop_reasons(joined)], pa.bool_())
