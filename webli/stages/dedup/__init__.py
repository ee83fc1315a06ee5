"""Dedup stage: flag downloaded samples that near-duplicate an eval set's images or captions.

- `evalsets`: reading eval sets (folder, tar shards, Parquet; captions as text, JSONL, Parquet);
- `images`: decoding both sides, cutting the download stage's padding, one common scale;
- `descriptor`: the cheap multi-view DCT descriptor that finds candidate eval images;
- `index`: what is computed once per eval image (search vectors and their 64-bit sign codes,
  inverted file, ORB features, thumbnails, grey detail images) and the batched search itself;
- `verify`: the precise check of one pair (ORB + RANSAC, then aligned colour and 128 px structure);
- `match`: search then check, per candidate;
- `text`: caption near-duplicates with datasketch MinHash LSH;
- `shard`: one download shard against every eval set -> sidecar table + stats;
- `edits`: the tolerated edits (benchmark, tests and demo positives);
- `demo`: a small eval set made at run time from the demo site's photos.

No Dask here: webli.pipeline.dedup runs these on the cluster.
"""
