"""card: the dataset card written from the run's own stats and tables."""

from __future__ import annotations

from pydantic import Field

from webli.pipeline.sections.base import Section


class CardConfig(Section):
    """Fields of the card a run cannot know by itself, and how much of the data it shows."""

    pretty_name: str = Field("WebLI-style image-text dataset", description="the card's title")
    license: str = Field("other", description="Hugging Face license id of the released metadata")
    description: str = Field("", description="a paragraph by the publisher: purpose, contact, terms of use")
    samples_per_group: int = Field(8, ge=0, le=100, description="sample images shown per group (kept, rejected, "
                                                                 "failed)")
    thumbnail_size: int = Field(160, ge=32, le=1024, description="longest side of the sample thumbnails, pixels")
    sample_seed: int = Field(0, description="seed of the reproducible draw of sample images")
    chart_languages: int = Field(25, ge=1, description="languages shown in the languages chart (most pairs first)")
    html: bool = Field(True, description="also write card.html, self-contained (images inlined)")
