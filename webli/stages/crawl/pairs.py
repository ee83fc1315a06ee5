"""From a parsed page to (image URL, alt text) pairs, every drop counted by reason."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

from webli.pipeline.config import AltFilterConfig
from webli.stages.crawl.extract import ImageCandidate, ParsedPage
from webli.stages.netguard import scheme_drop_reason

IMAGE_FILE_NAME = re.compile(
    r"^[\w\-. ()\[\]~+%]*\.(jpe?g|png|gif|webp|svg|bmp|tiff?|ico|avif|heic)$", re.IGNORECASE)
URL_LIKE = re.compile(r"^(https?://|www\.|ftp://|file:|/\S*/)\S*$", re.IGNORECASE)
DECLARED_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(px)?\s*$", re.IGNORECASE)


def normalize_alt(alt: str) -> str:
    """Unicode NFC with every run of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFC", alt).split())


def pair_uid(url: str, alt: str) -> str:
    """Stable id of a pair: blake2b-128 of image URL and alt text, hex (DataComp-style)."""
    return hashlib.blake2b(f"{url}\x00{alt}".encode(), digest_size=16).hexdigest()


def is_tracking_pixel(width: str | None, height: str | None) -> bool:
    """Declared width or height of at most 1 pixel."""
    for value in (width, height):
        match = DECLARED_SIZE.match(value or "")
        if match and float(match.group(1)) <= 1:
            return True
    return False


def alt_drop_reason(alt: str, rules: AltFilterConfig, boilerplate: frozenset[str]) -> str | None:
    """Why a normalised alt text is not kept, or None if it is."""
    if not alt:
        return "alt_empty"
    if "\ufffd" in alt:
        return "alt_bad_encoding"
    if IMAGE_FILE_NAME.match(alt):
        return "alt_file_name"
    if URL_LIKE.match(alt):
        return "alt_url"
    if len(alt) < rules.min_chars:
        return "alt_too_short"
    if len(alt) > rules.max_chars:
        return "alt_too_long"
    if alt.casefold().strip(" .:!-_*|") in boilerplate:
        return "alt_boilerplate"
    return None


def image_drop_reason(image: ImageCandidate) -> str | None:
    """Why an image candidate is not kept, judging its URL and declared size."""
    url_reason = scheme_drop_reason(image.url)
    if url_reason:
        return {"data_uri": "data_uri", "scheme": "non_http_scheme"}.get(url_reason, "bad_url")
    if is_tracking_pixel(image.width, image.height):
        return "tracking_pixel"
    return None


def boilerplate_set(rules: AltFilterConfig) -> frozenset[str]:
    """The configured boilerplate alt texts, case-folded, for fast membership tests."""
    return frozenset(b.casefold() for b in rules.boilerplate)


def page_pairs(page: ParsedPage, page_url: str, rules: AltFilterConfig, boilerplate: frozenset[str],
               seen_uids: set[str], drops: Counter) -> list[tuple[str, str, str]]:
    """Kept (uid, image url, alt) of one page; counts every drop in `drops`.

    `seen_uids` carries the pairs kept so far in the shard, so a pair repeated
    on many pages is kept once.
    """
    if page.images_forbidden:
        drops["page_robots_noimageindex"] += len(page.images)
        return []
    kept = []
    for image in page.images:
        reason = image_drop_reason(image)
        alt = normalize_alt(image.alt or "")
        reason = reason or alt_drop_reason(alt, rules, boilerplate)
        uid = pair_uid(image.url, alt) if reason is None else ""
        if reason is None and uid in seen_uids:
            reason = "duplicate_pair"
        if reason:
            drops[reason] += 1
            continue
        seen_uids.add(uid)
        kept.append((uid, image.url, alt))
    return kept
