"""Tables written by the train stage and the bootstrap filter."""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import KEY, UID

SPLIT = "split"
FOLD = "fold"
TRAINED_BY = "trained_by"

# bootstrap_filter/splits.parquet: one row per successful download. The bootstrap filter is cross-fitted:
# `fold` names the filter (bootstrap_filter/fold_<fold>/) that scores the pair and never trained on it;
# `split` says what that filter did with it: 'eval' (held out for its AUC), 'scored' (only scored) or 'unused'
# (outside the bootstrap split: no filter saw it); `trained_by` lists the filters that trained on it (every
# other fold's, for a pair of the bootstrap split).
BOOTSTRAP_SPLITS = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),  # the download shard id
        pa.field(FOLD, pa.int16(), nullable=False),  # the fold: its filter scores the pair
        pa.field(SPLIT, pa.string(), nullable=False),  # eval / scored / unused, for the filter of its fold
        pa.field(TRAINED_BY, pa.list_(pa.int16()), nullable=False),  # folds whose filters trained on it
    ]
)
