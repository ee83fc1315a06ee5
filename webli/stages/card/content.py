"""The card's Languages and Images sections, folded from the download tables shard by shard."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webli.stages.card.distributions import Distribution
from webli.stages.card.outputs import RunOutputs

SUCCESS = "success"
# Extensions seen in image URLs, folded to one name per format.
EXTENSION_FORMATS = {"jpg": "jpeg", "jpeg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "png": "png", "gif": "gif",
                     "webp": "webp", "bmp": "bmp", "tif": "tiff", "tiff": "tiff", "avif": "avif", "heic": "heif",
                     "heif": "heif", "svg": "svg", "ico": "ico"}
NO_EXTENSION = "(no known extension)"


def value_counts(column: pa.ChunkedArray) -> Counter:
    """Counter of a column's values (nulls under None)."""
    counts = pc.value_counts(column).to_pylist()
    return Counter({item["values"]: item["counts"] for item in counts})


def successes(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("status"), SUCCESS))


# --- languages --------------------------------------------------------------------------------------------

def download_languages(outputs: RunOutputs) -> tuple[Counter, Counter]:
    """(planned pairs, downloaded images) per language, over every finished download shard."""
    planned, downloaded = Counter(), Counter()
    for shard in outputs.shard_tables("download", ["language", "status"]):
        planned.update(value_counts(shard.table.column("language")))
        downloaded.update(value_counts(successes(shard.table).column("language")))
    return planned, downloaded


def selected_languages(outputs: RunOutputs) -> Counter | None:
    """Selected samples per language from select/selection.json, or None when select has not run."""
    selection = outputs.read_json("select", "selection.json")
    if selection is None:
        return None
    return Counter({language: counts["selected"] for language, counts in selection.get("languages", {}).items()})


def language_rows(planned: Counter, downloaded: Counter, selected: Counter | None) -> list[dict]:
    """One row per language, most pairs first (ties by code); keep rate = kept / planned."""
    rows = []
    for language, pairs in sorted(planned.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        kept = selected.get(language, 0) if selected is not None else downloaded.get(language, 0)
        rows.append({"language": language, "pairs": pairs, "downloaded": downloaded.get(language, 0),
                     "selected": None if selected is None else selected.get(language, 0),
                     "keep_rate": kept / pairs if pairs else 0.0})
    return rows


def collect_languages(outputs: RunOutputs) -> dict | None:
    """Pairs, downloads, selections and keep rate per language; None when nothing was downloaded."""
    planned, downloaded = download_languages(outputs)
    if not planned:
        return None
    selected = selected_languages(outputs)
    return {"rows": language_rows(planned, downloaded, selected),
            "keep_rate_of": "selected" if selected is not None else "downloaded",
            "languages": len(planned), "pairs": sum(planned.values()), "downloaded": sum(downloaded.values()),
            "selected": None if selected is None else sum(selected.values())}


# --- images -----------------------------------------------------------------------------------------------

# The file extension of an URL's last path segment (before any query or fragment).
URL_EXTENSION = r"^[^?#]*/[^/?#]*\.(?P<extension>[^./?#]+)(?:[?#].*)?$"


def url_formats(urls: pa.ChunkedArray) -> Counter:
    """Image formats named by the URLs' file extensions (a hint only: servers may disagree), counted."""
    extensions = pc.struct_field(pc.extract_regex(urls, URL_EXTENSION), "extension")
    counts = Counter()
    for extension, count in value_counts(pc.utf8_lower(extensions)).items():
        counts[EXTENSION_FORMATS.get(extension, NO_EXTENSION)] += count
    return counts


def image_formats(table: pa.Table) -> tuple[Counter, str]:
    """Formats of the downloaded originals: the sniffed `original_format` column if the table has one,
    else the URL file extension; returns the counts and which of the two was used."""
    if "original_format" in table.column_names:
        return value_counts(table.column("original_format")), "original_format"
    return url_formats(table.column("url")), "url_extension"


def aspect_ratios(table: pa.Table) -> np.ndarray:
    """width / height of the originals (rows without both sizes skipped)."""
    width = table.column("original_width").to_numpy(zero_copy_only=False).astype(np.float64)
    height = table.column("original_height").to_numpy(zero_copy_only=False).astype(np.float64)
    valid = np.isfinite(width) & np.isfinite(height) & (height > 0)
    return width[valid] / height[valid]


IMAGE_COLUMNS = ["status", "url", "width", "height", "original_width", "original_height", "large_width"]


def collect_images(outputs: RunOutputs) -> dict | None:
    """Size and aspect-ratio distributions and formats of the downloaded images; None if none."""
    widths, heights, ratios = Distribution(), Distribution(), Distribution(decimals=2)
    formats, stored, large, source, count = Counter(), Counter(), 0, None, 0
    for shard in outputs.shard_tables("download", IMAGE_COLUMNS, optional=("original_format",)):
        table = successes(shard.table)
        count += table.num_rows
        widths.add(table.column("original_width").to_numpy(zero_copy_only=False))
        heights.add(table.column("original_height").to_numpy(zero_copy_only=False))
        ratios.add(aspect_ratios(table))
        shard_formats, source = image_formats(table)
        formats.update(shard_formats)
        stored.update(f"{w}x{h}" for w, h in zip(table.column("width").to_pylist(), table.column("height").to_pylist()))
        large += table.num_rows - table.column("large_width").null_count
    if count == 0:
        return None
    return {"images": count, "original_width": widths, "original_height": heights, "aspect_ratio": ratios,
            "formats": dict(formats.most_common()), "format_source": source,
            "stored_sizes": dict(stored.most_common()), "large_copies": large}
