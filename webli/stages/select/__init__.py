"""Select stage: keep the top fraction of samples by CLIP score, then write the final WebDataset shards.

- `join`: a download shard joined with its score, OCR and dedup sidecars; each
  sample's drop reason (failed download, eval-set duplicate, unscored) or
  eligibility.
- `threshold`: the exact top-k threshold over all shards by radix selection on
  counts (mergeable histograms), ties broken by key; bounded memory at any scale.
- `shards`: the output shards planned from per-shard counts, and their tars.

Pure functions, no Dask; `webli.pipeline.select` runs them.
"""
