"""Arrow schema of the score stage's sidecar: one row per downloaded sample."""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import KEY, UID

SCORE = "score"
MODEL_ID = "model_id"
PROBLEM = "problem"

# `<output>/score/NNNNN.parquet`: every successful row of the download shard, sorted by key.
SCORE_SIDECAR = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field(SCORE, pa.float32()),  # cosine similarity of the normalised embeddings; null when unscored
        pa.field(MODEL_ID, pa.string(), nullable=False),  # "ViT-B-32/laion2b_s34b_b79k" or "name@sha256:..."
        pa.field(PROBLEM, pa.string()),  # why unscored (decode_error, missing_image), null when scored
    ]
)
