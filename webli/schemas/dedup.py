"""Arrow schemas of the dedup stage: its per-shard sidecar and its eval-set index tables."""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import KEY, UID

IMAGE_DUPLICATE = "image_duplicate"
TEXT_DUPLICATE = "text_duplicate"
DUPLICATE = "is_duplicate"
MATCHED_SET = "matched_set"
MATCHED_ITEM = "matched_item"

# One row per successfully downloaded sample of a download shard, keyed by `key`. The first five columns
# are what select copies (webli.schemas.select.DEDUP_COLUMNS); the rest say why.
DEDUP = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field(DUPLICATE, pa.bool_(), nullable=False),  # image_duplicate or text_duplicate
        pa.field(MATCHED_SET, pa.string()),  # the eval set of the image match, else of the text match
        pa.field(MATCHED_ITEM, pa.string()),  # and its item id
        pa.field(IMAGE_DUPLICATE, pa.bool_(), nullable=False),  # a verified near-duplicate of an eval image
        pa.field("image_eval_set", pa.string()),  # the best match (highest image_fit) over every eval set
        pa.field("image_eval_item", pa.string()),
        pa.field("image_similarity", pa.float32()),  # learned-embedding cosine similarity of that match
        pa.field("image_inliers", pa.int32()),  # geometrically consistent local-feature matches (0: compared
        # without local features, the eval image rescaled as a whole; see verify.verify_unaligned)
        pa.field("image_fit", pa.float32()),  # correlation of the aligned grey images, banner band left out: of
        # several eval images accepted, the one with the highest wins (see verify.fit_correlation)
        pa.field("image_verifier_score", pa.float32()),  # the learned pair verifier's copy probability (null:
        # not run, dedup.image_min_verifier_score null)
        pa.field(TEXT_DUPLICATE, pa.bool_(), nullable=False),  # caption near-duplicate of an eval caption
        pa.field("text_eval_set", pa.string()),
        pa.field("text_eval_item", pa.string()),
        pa.field("text_similarity", pa.float32()),  # Jaccard similarity of character shingles
        pa.field("image_problem", pa.string()),  # why the image could not be checked, else null
    ]
)

# One row per eval item an index was built from (images and captions), in index order.
EVAL_ITEMS = pa.schema(
    [
        pa.field("item", pa.string(), nullable=False),  # the eval set's own item id
        pa.field("source", pa.string(), nullable=False),  # file (and member) it was read from
        pa.field("kind", pa.string(), nullable=False),  # "image" or "caption"
        pa.field("problem", pa.string()),  # why the item is not in the index (decode_error, ...), else null
    ]
)

SCHEMAS = {"dedup": DEDUP, "dedup_eval_items": EVAL_ITEMS}
