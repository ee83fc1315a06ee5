"""Arrow schemas of the select stage: per-shard candidates and the index of the final shards.

The OCR and dedup sidecars are joined in with their columns prefixed `ocr_`
and `dedup_` (unless they already are). Which of their columns select copies,
and which dedup columns are eval-set verdicts, is decided here and nowhere else.
"""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import DOWNLOAD, KEY, LANGUAGE, UID
from webli.schemas.dedup import DEDUP, DUPLICATE, IMAGE_DUPLICATE, TEXT_DUPLICATE
from webli.schemas.ocr import OCR
from webli.schemas.score import MODEL_ID, SCORE

OCR_PREFIX = "ocr_"
DEDUP_PREFIX = "dedup_"
SCORE_MODEL_ID = f"score_{MODEL_ID}"
SCORE_PROBLEM = "score_problem"
SHARD = "shard"


def prefixed(name: str, prefix: str) -> str:
    """A sidecar column's name in the joined table: with its stage prefix, added unless already there."""
    return name if name.startswith(prefix) else prefix + name


# Columns of `<output>/ocr/NNNNN.parquet` copied into the index and each sample's json: all of them.
OCR_COLUMNS = {field.name: field.type for field in OCR if field.name not in (KEY, UID)}
# Columns of `<output>/dedup/NNNNN.parquet` copied likewise: all of them (verdicts, matches, similarities).
DEDUP_COLUMNS = {field.name: field.type for field in DEDUP if field.name not in (KEY, UID)}
# Dedup verdicts that drop a sample, most specific first: column -> drop reason.
DEDUP_VERDICTS = {
    IMAGE_DUPLICATE: "eval_duplicate_image",
    TEXT_DUPLICATE: "eval_duplicate_text",
    DUPLICATE: "eval_duplicate",
}

# Download columns carried into the final index (the failure columns are null for every selected sample,
# the larger copy is not copied into the final shards).
DOWNLOAD_CARRIED = [f for f in DOWNLOAD if f.name not in ("status", "error_message", "drop_reason",
                                                          "large_width", "large_height")]

# `<output>/select/_candidates/NNNNN.parquet`: the eligible samples of one download shard, sorted by key.
SELECT_CANDIDATES = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(SCORE, pa.float32(), nullable=False),
        pa.field(LANGUAGE, pa.string(), nullable=False),
    ]
)

# `<output>/select/shards/NNNNN.parquet`: one row per sample of the tar beside it, in tar order.
SELECT_INDEX = pa.schema(
    [pa.field(SHARD, pa.int32(), nullable=False)]
    + DOWNLOAD_CARRIED
    + [pa.field(SCORE, pa.float32(), nullable=False), pa.field(SCORE_MODEL_ID, pa.string(), nullable=False)]
    + [pa.field(prefixed(name, OCR_PREFIX), kind) for name, kind in OCR_COLUMNS.items()]
    + [pa.field(prefixed(name, DEDUP_PREFIX), kind) for name, kind in DEDUP_COLUMNS.items()]
)
