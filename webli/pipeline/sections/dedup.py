"""dedup: flag near-duplicates of evaluation-set images and captions."""

from __future__ import annotations

from pydantic import Field

from webli.pipeline.sections.base import Section


class EvalSetConfig(Section):
    """One evaluation set: a name, its images (folder, tar shards or Parquet) and optional captions."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$", description="used in column values and file names")
    images: str | None = Field(None, description="folder, tar shards (glob) or Parquet of images")
    captions: str | None = Field(None, description="text file (one per line), JSONL or Parquet of captions")


class DedupConfig(Section):
    """Which eval sets to protect and how close counts as a duplicate."""

    eval_sets: list[EvalSetConfig] = Field(default_factory=list)
    text_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of caption shingles")
