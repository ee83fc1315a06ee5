"""Tables written by the train stage and the bootstrap filter."""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import KEY, UID

SPLIT = "split"

# bootstrap_filter/splits.parquet: which downloaded pair the filter trained on ('train'), was evaluated on
# ('eval') or never saw ('unused', outside the bootstrap split). One row per successful download.
BOOTSTRAP_SPLITS = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),  # the download shard id
        pa.field(SPLIT, pa.string(), nullable=False),  # train / eval / unused
    ]
)
