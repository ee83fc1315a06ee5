"""ocr: tesseract on every downloaded image (metadata only: it drops nothing)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from webli.pipeline.sections.base import Section


class OcrConfig(Section):
    """How images are read."""

    languages: Literal["auto"] | list[str] = Field(
        "auto", description="'auto' (from the alt text's language and tesseract's script detection) "
                            "or a list of tesseract packs, e.g. [eng, deu]")
    use_large_copy: bool = Field(True, description="read the larger copy kept by the download stage, if any")
    text_check: bool = Field(True, description="skip images a cheap check finds without text")
    time_limit: float = Field(10.0, gt=0, description="seconds per image before tesseract is stopped")
