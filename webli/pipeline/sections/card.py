"""card: the dataset card written from the run's own stats and tables."""

from __future__ import annotations

from pydantic import Field

from webli.pipeline.sections.base import Section


class CardConfig(Section):
    """Fields of the card a run cannot know by itself."""

    pretty_name: str = Field("WebLI-style image-text dataset", description="the card's title")
    license: str = Field("other", description="Hugging Face license id of the released metadata")
