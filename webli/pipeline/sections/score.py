"""score: CLIP image-text similarity of every downloaded pair."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from webli.pipeline.sections.base import Section

BOOTSTRAP_MODEL = "bootstrap"  # score.model naming the filter `webli bootstrap-filter` trains


class ScoreConfig(Section):
    """The CLIP model used to score pairs."""

    model: str = Field(BOOTSTRAP_MODEL, description="open_clip model name, a local checkpoint path, or 'bootstrap' "
                                                "(the filter trained by `make bootstrap-filter`)")
    pretrained: str | None = Field(None, description="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1)
