"""Download stage: one planned shard of pairs -> WebDataset tar + Parquet of every row.

img2dataset does the fetching, decoding and resizing (its `Downloader` shard
loop, `Resizer` and `WebDatasetSampleWriter`). Around it this module adds:
URLs refused before any request (non-http schemes, private addresses), a
header probe that refuses non-images and decompression bombs before decoding,
a truncation check (OpenCV silently decodes half a JPEG), planned keys, an
optional larger copy for OCR, and one normalised drop reason per row.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections import Counter
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from img2dataset.downloader import Downloader
from img2dataset.resizer import Resizer
from img2dataset.writer import WebDatasetSampleWriter
from PIL import Image, UnidentifiedImageError

from webli import schemas
from webli.pipeline.config import DownloadConfig
from webli.stages.netguard import build_guarded_opener, literal_host_drop_reason, scheme_drop_reason
from webli.stages.robots import RobotsCache, urllib_robots_loader

PASSED_COLUMNS = ["url", "caption", "plan_key", "uid", "page_url", "language", "language_score",
                  "large_width", "large_height"]
SVG_MARKERS = (b"<svg", b"<!doctype svg")
IMAGE_SIGNATURES = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
                    (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]

# img2dataset's error messages (and ours) -> drop reason.
ERROR_REASONS = [
    ("x-robots-tag", "noai"),
    ("robots.txt", "robots_disallowed"),
    ("incompleteread", "truncated_download"),
    ("refused to connect to non-public address", "private_address"),
    ("timed out", "timeout"),
    ("http error", "http_error"),
    ("decompression bomb", "decompression_bomb"),
    ("image area too large", "decompression_bomb"),
    ("not an image", "not_an_image"),
    ("unsupported image format", "unsupported_format"),
    ("truncated", "decode_error"),
    ("decoding error", "decode_error"),
    ("image too small", "too_small"),
    ("aspect ratio too large", "aspect_ratio"),
]


def drop_reason(status: str, error_message: str | None) -> str | None:
    """The normalised reason a row was dropped, from img2dataset's status and message."""
    if status == "success":
        return None
    message = (error_message or "").lower()
    for needle, reason in ERROR_REASONS:
        if needle in message:
            return reason
    return "failed_to_download" if status == "failed_to_download" else "failed_to_resize"


def is_truncated(data: bytes, image_format: str | None) -> bool:
    """Cheap end-of-file checks: JPEG EOI marker, PNG IEND chunk, WebP RIFF length, GIF trailer."""
    if image_format == "JPEG":
        return b"\xff\xd9" not in data[-4096:]
    if image_format == "PNG":
        return b"IEND" not in data[-4096:]
    if image_format == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if image_format == "GIF":
        return not data.rstrip(b"\x00").endswith(b"\x3b")
    return False


def sniff_image_format(data: bytes) -> str | None:
    """The image format the leading bytes announce, whether or not the rest is valid."""
    for signature, name in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "HEIF"
    return None


def probe_image(data: bytes, max_pixels: int) -> str | None:
    """Read only the header: an error message if the bytes are not a usable image, else None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as err:
        return f"decompression bomb: {err}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        head = data[:512].lower()
        if any(marker in head for marker in SVG_MARKERS):
            return "unsupported image format: svg"
        announced = sniff_image_format(data)
        if announced:
            return f"truncated or corrupt {announced} file"
        return f"not an image (starts with {data[:16]!r})"
    if width * height > max_pixels:
        return f"decompression bomb: {width}x{height} pixels declared, limit {max_pixels}"
    if is_truncated(data, image_format):
        return f"truncated {image_format} file"
    return None


class ProbingResizer:
    """img2dataset's Resizer behind a header probe; optionally also makes a larger copy."""

    def __init__(self, config: DownloadConfig):
        self.max_pixels = config.max_image_pixels
        common = dict(encode_format=config.encode_format, encode_quality=config.encode_quality)
        self.resizer = Resizer(
            image_size=config.image_size, resize_mode=config.resize_mode, resize_only_if_bigger=False,
            min_image_size=config.min_image_size, max_aspect_ratio=config.max_aspect_ratio,
            max_image_area=config.max_image_pixels, **common)
        self.large = Resizer(image_size=config.large_copy_size, resize_mode="keep_ratio_largest",
                             resize_only_if_bigger=True, **common) if config.large_copy_size else None
        self._last_large: tuple[bytes, tuple] | None = None

    def __call__(self, img_stream, blurring_bbox_list=None):
        error = probe_image(img_stream.getvalue(), self.max_pixels)
        if error:
            return None, None, None, None, None, error
        result = self.resizer(img_stream, blurring_bbox_list)
        if result[5] is None and self.large is not None:
            img_stream.seek(0)
            large = self.large(img_stream)
            self._last_large = (result[0], large[:3]) if large[5] is None else None
        return result

    def large_copy_for(self, img_str: bytes) -> tuple | None:
        """The larger copy made alongside `img_str` (matched by identity), once."""
        if self._last_large is None or self._last_large[0] is not img_str:
            return None
        large, self._last_large = self._last_large[1], None
        return large


class PlannedKeySampleWriter(WebDatasetSampleWriter):
    """img2dataset's WebDataset writer, keyed by the planned key, with the larger copy."""

    def __init__(self, *args, resizer: ProbingResizer, **kwargs):
        super().__init__(*args, **kwargs)
        self.resizer = resizer

    def write(self, img_str, key, caption, meta):
        meta["key"] = key = meta["plan_key"]
        large = self.resizer.large_copy_for(img_str) if img_str is not None else None
        meta["large_width"], meta["large_height"] = (large[1], large[2]) if large else (None, None)
        if img_str is not None:
            sample = {"__key__": key, self.encode_format: img_str, "txt": caption or "",
                      "json": json.dumps({k: v for k, v in meta.items() if k != "plan_key"}, ensure_ascii=False)}
            if large:
                sample[f"large.{self.encode_format}"] = large[0]
            self.tarwriter.write(sample)
        self.buffered_parquet_writer.write(meta)


def refusal_reason(url: str, allow_private: bool, robots: RobotsCache | None) -> str | None:
    """Why `url` never reaches img2dataset (scheme, private address, robots.txt), or None."""
    reason = scheme_drop_reason(url) or literal_host_drop_reason(url, allow_private)
    if reason is None and robots is not None and not robots.allowed(url):
        reason = "robots_disallowed"
    return reason


def _refused_rows(plan: pa.Table, reasons: list[str | None]) -> pa.Table:
    refused = plan.filter(pa.array([r is not None for r in reasons], pa.bool_()))
    kept_reasons = [r for r in reasons if r is not None]
    return refused.append_column("status", pa.array(["failed_to_download"] * refused.num_rows, pa.string())) \
        .append_column("error_message", pa.array([f"refused before download: {r}" for r in kept_reasons])) \
        .append_column(schemas.DROP_REASON, pa.array(kept_reasons, pa.string()))


def _with_drop_reasons(fetched: pa.Table) -> pa.Table:
    statuses, messages = fetched.column("status").to_pylist(), fetched.column("error_message").to_pylist()
    return fetched.append_column(schemas.DROP_REASON, pa.array(
        [drop_reason(s, m) for s, m in zip(statuses, messages)], pa.string()))


def _run_img2dataset(to_fetch: pa.Table, shard_id: int, work_dir: Path, config: DownloadConfig,
                     user_agent_token: str) -> pa.Table:
    feed = to_fetch.rename_columns(["plan_key" if c == "key" else c for c in to_fetch.column_names]) \
        .append_column("large_width", pa.nulls(to_fetch.num_rows, pa.int32())) \
        .append_column("large_height", pa.nulls(to_fetch.num_rows, pa.int32()))
    feed_path = work_dir / "feed.feather"
    feather.write_feather(feed.select(PASSED_COLUMNS), feed_path)
    resizer = ProbingResizer(config)
    downloader = Downloader(
        sample_writer_class=partial(PlannedKeySampleWriter, resizer=resizer), resizer=resizer,
        thread_count=config.thread_count, save_caption=True, extract_exif=False, output_folder=str(work_dir),
        column_list=PASSED_COLUMNS, timeout=config.timeout, number_sample_per_shard=config.shard_size,
        oom_shard_count=5, compute_hash="sha256", verify_hash_type=None, encode_format=config.encode_format,
        retries=config.retries, user_agent_token=user_agent_token,
        disallowed_header_directives=config.disallowed_header_directives)
    downloader.download_shard((shard_id, str(feed_path)))  # raises on a broken shard; Dask retries
    return pq.read_table(work_dir / f"{shard_id:05d}.parquet").drop_columns(["plan_key"])


def download_shard(plan: pa.Table, shard_id: int, work_dir: Path, config: DownloadConfig,
                   user_agent_token: str, allow_private: bool,
                   robots: RobotsCache | None = None) -> tuple[pa.Table, Path, dict]:
    """Download one planned shard into `work_dir`.

    urllib must already route through the guarded opener (see
    `install_download_opener`). Returns the table of every planned row
    (schema DOWNLOAD, sorted by key), the path of the tar written, and the
    shard's stats.
    """
    started = time.time()
    reasons = [refusal_reason(url, allow_private, robots) for url in plan.column("url").to_pylist()]
    to_fetch = plan.filter(pa.array([r is None for r in reasons], pa.bool_()))
    fetched = _run_img2dataset(to_fetch, shard_id, work_dir, config, user_agent_token)
    rows = pa.concat_tables([_with_drop_reasons(fetched), _refused_rows(plan, reasons)], promote_options="default")
    table = schemas.conform(rows.sort_by("key"), schemas.DOWNLOAD)
    if table.num_rows != plan.num_rows:
        raise RuntimeError(f"shard {shard_id}: {plan.num_rows} rows planned but {table.num_rows} written")
    return table, work_dir / f"{shard_id:05d}.tar", download_stats(table, started)


def install_download_opener(allow_private: bool, max_redirects: int, obey_robots: bool, user_agent: str,
                            agent_token: str, timeout: float) -> RobotsCache | None:
    """Route this process's urllib (what img2dataset calls) through the SSRF guard.

    With `obey_robots`, returns the robots.txt cache the shard's URLs are
    checked against, which also vets every redirect target.
    """
    robots = None
    if obey_robots:
        loader = urllib_robots_loader(build_guarded_opener(allow_private, max_redirects), user_agent, timeout)
        robots = RobotsCache(loader, agent_token)
    opener = build_guarded_opener(allow_private, max_redirects, robots.allowed if robots else None)
    urllib.request.install_opener(opener)
    return robots


def download_stats(table: pa.Table, started: float) -> dict:
    """Stats vocabulary plus img2dataset's own fields (count, successes, failed_to_*, status_dict)."""
    reasons = Counter(r for r in table.column(schemas.DROP_REASON).to_pylist() if r is not None)
    statuses = Counter(table.column("status").to_pylist())
    messages = Counter(m for m in table.column("error_message").to_pylist() if m)
    return {
        "stage": "download",
        "total": table.num_rows,
        "forwarded": statuses.get("success", 0),
        "dropped_by_reason": dict(sorted(reasons.items())),
        "count": table.num_rows,
        "successes": statuses.get("success", 0),
        "failed_to_download": statuses.get("failed_to_download", 0),
        "failed_to_resize": statuses.get("failed_to_resize", 0),
        "status_dict": dict(messages.most_common(50)),
        "duration_s": round(time.time() - started, 3),
    }
