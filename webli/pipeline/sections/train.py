"""train: the bundled reference CLIP trainer."""

from __future__ import annotations

from pydantic import Field

from webli.pipeline.sections.base import Section


class TrainConfig(Section):
    """What the reference trainer trains and on which shards."""

    model: str = Field("webli-tiny", description="open_clip model name or a model config JSON path")
    data: str = Field("select", description="'select' (final shards), 'download', or a shard glob")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(5e-4, gt=0)
    seed: int = 0
