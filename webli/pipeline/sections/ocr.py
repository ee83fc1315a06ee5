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
    text_threshold: float = Field(1.0, ge=0, description="word-shaped blobs the text check needs to read an image")
    min_script_confidence: float = Field(
        2.0, ge=0, description="auto: OSD's script adds its pack only at this confidence or above")
    fallback_languages: list[str] = Field(
        default_factory=lambda: ["eng"], min_length=1,
        description="auto: packs used when neither the alt text's language nor OSD names one")
    secondary_language: str | None = Field(
        "eng", description="auto: pack added after a non-Latin choice (Latin text is everywhere); null: none")
    max_languages: int = Field(3, ge=1, description="auto: at most this many packs per image")
    psm: Literal[1, 3, 4, 6, 11, 12] = Field(
        11, description="tesseract page segmentation mode: 11 (sparse text) reads signs, banners and UI "
                        "screenshots; 3 (a page) finds nothing in many single-line images")
    margin: int = Field(
        32, ge=0, description="when an image gives no word, read it again inside a margin of this many pixels "
                              "of its own background, with `retry_psm` (tesseract misses text touching a frame or "
                              "the edge, as on signs and buttons); 0: no second read")
    retry_psm: Literal[1, 3, 4, 6, 11, 12] = Field(6, description="page segmentation mode of that second read")
    processes: int | None = Field(None, ge=1, description="worker processes (default: cluster.workers)")
