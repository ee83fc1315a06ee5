"""select: keep the top fraction by score, write the final shards."""

from __future__ import annotations

from pydantic import Field

from webli.pipeline.sections.base import Section


class SelectConfig(Section):
    """How much is kept and how it is sharded."""

    top_fraction: float = Field(0.1, ge=0, le=1, description="fraction of eligible samples kept, by score: "
                                                             "floor(fraction x eligible), exact, ties broken by key")
    per_language: bool = Field(False, description="keep the top fraction within each language (rounded up, so "
                                                  "every language with eligible samples keeps at least one)")
    shard_size: int = Field(10_000, ge=1, description="samples per output shard (at most)")
    min_shards: int = Field(16, ge=1, description="output shards at least (if there are that many samples), so "
                                                  "that every data-loader worker of a trainer gets one")
