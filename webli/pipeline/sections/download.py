"""download: how images are fetched and resized."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from webli.pipeline.sections.base import Section


class DownloadConfig(Section):
    """How images are fetched and resized (img2dataset's options)."""

    image_size: int = Field(256, ge=8, description="resize target in pixels")
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    min_image_size: int = Field(32, ge=0, description="images whose smaller side is below are dropped (too_small)")
    max_aspect_ratio: float = Field(5.0, ge=1, description="images more elongated are dropped (aspect_ratio)")
    max_image_pixels: int = Field(60_000_000, ge=1, description="declared pixels above are refused before decoding")
    large_copy_size: int = Field(1024, ge=0, description="also keep a copy with this longest side (never upscaled) "
                                                        "for OCR, which reads little on a 256 px thumbnail; 0: off")
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=0, le=100)
    thread_count: int = Field(32, ge=1, description="concurrent downloads per task")
    processes: int | None = Field(None, ge=1, description="worker processes (default: cluster.workers)")
    timeout: float = Field(10.0, gt=0, description="seconds per image request")
    retries: int = Field(0, ge=0, description="retries per image")
    max_redirects: int = Field(5, ge=0)
    shard_size: int = Field(10_000, ge=1, description="samples per download shard")
    obey_robots: bool = Field(True, description="check image URLs and redirect targets against robots.txt")
    disallowed_header_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that forbid using an image")
