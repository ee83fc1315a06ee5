"""dedup: flag near-duplicates of evaluation-set images and captions."""

from __future__ import annotations

from pydantic import Field, model_validator

from webli.pipeline.sections.base import Section
from webli.stages.dedup.verifier import THRESHOLD as VERIFIER_THRESHOLD


class EvalSetConfig(Section):
    """One evaluation set: a name, its images (folder, tar shards or Parquet) and optional captions."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$", description="used in column values and file names")
    images: str | None = Field(None, description="a folder of image files, tar shards (path or glob, members "
                                                 "KEY.jpg/png/...), or Parquet file(s) with an `image` column "
                                                 "(bytes or {bytes, path}) and optional `id`")
    captions: str | None = Field(None, description="text file (one caption per line, or `id<TAB>caption`), "
                                                   "JSONL or Parquet with `caption` or `text` and optional `id`")



class DedupConfig(Section):
    """Which eval sets to protect and how close counts as a duplicate."""

    eval_sets: list[EvalSetConfig] = Field(default_factory=list)
    text_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of caption shingles")
    text_shingle_size: int = Field(5, ge=1, le=16, description="characters per shingle (works without spaces)")
    text_num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    image_neighbours: int = Field(8, ge=1, le=64, description="nearest eval images by the DCT views (hash path)")
    image_learned_neighbours: int = Field(4, ge=1, le=64, description="nearest eval images by the learned "
                                                                      "embedding")
    image_min_similarity: float = Field(0.5, ge=-1, le=1, description="learned-embedding cosine below which a "
                                                                      "neighbour is not verified")
    image_min_inliers: int = Field(12, ge=4, description="geometrically consistent local matches to accept")
    image_min_agreement: float = Field(0.5, ge=0, le=1, description="share of the textured aligned cells "
                                                                    "(128 px scale, banner band left out) whose "
                                                                    "structure correlates, to accept a match")
    image_max_local_change: int = Field(2, ge=0, description="a match is refused when this many neighbouring "
                                                             "strongly textured aligned cells (8x8 px at 128 px "
                                                             "scale) disagree together (a changed part of the "
                                                             "picture); 0: no limit")
    image_min_verifier_score: float | None = Field(VERIFIER_THRESHOLD, ge=0, le=1,
                                                   description="the learned pair verifier's copy probability "
                                                               "below which a match that passed every other "
                                                               "test is refused; null: the verifier is not run")
    index_probe: int = Field(4, ge=1, description="inverted lists each DCT query view scans in large indexes")
    index_learned_probe: int = Field(256, ge=1, description="inverted lists each learned query vector scans in "
                                                            "large indexes")
    index_part_size: int = Field(2000, ge=1, description="eval images per index-building task")
    processes: int | None = Field(None, ge=1, description="worker processes (default: cluster.workers)")

    @model_validator(mode="after")
    def _unique_names(self) -> DedupConfig:
        names = [s.name for s in self.eval_sets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"eval set names must be unique, repeated: {duplicates}")
        return self
