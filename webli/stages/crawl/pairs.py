"""From a parsed page to (image URL, alt text) pairs, every drop counted by reason."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

from webli.pipeline.config import AltFilterConfig
from webli.stages.crawl.extract import ParsedPage, absolute_url
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


def url_drop_reason(url: str | None) -> str | None:
    """Why a resolved image URL is not kept: data: URI, non-http(s) scheme, unparsable."""
    if url is None:
        return "bad_url"
    reason = scheme_drop_reason(url)
    return {"scheme": "non_http_scheme"}.get(reason, reason)


def boilerplate_set(rules: AltFilterConfig) -> frozenset[str]:
    """The configured boilerplate alt texts, case-folded, for fast membership tests."""
    return frozenset(b.casefold() for b in rules.boilerplate)


def page_pairs(page: ParsedPage, rules: AltFilterConfig, boilerplate: frozenset[str],
               seen_uids: set[str], drops: Counter) -> list[tuple[str, str, str]]:
    """Kept (uid, image url, alt) of one page; counts every drop in `drops`.

    Checks run cheapest first (alt text, declared size, then the URL, which is
    only resolved for images that passed); the first failing check names the
    drop. `seen_uids` carries the pairs kept so far in the shard, so a pair
    repeated on many pages is kept once.
    """
    if page.images_forbidden:
        drops["page_robots_noimageindex"] += len(page.images)
        return []
    kept, resolved = [], {}
    for image in page.images:
        alt = normalize_alt(image.alt or "")
        reason = alt_drop_reason(alt, rules, boilerplate)
        if reason is None and is_tracking_pixel(image.width, image.height):
            reason = "tracking_pixel"
        if reason is None:
            if image.src not in resolved:
                resolved[image.src] = absolute_url(image.src, page.base_url)
            url = resolved[image.src]
            reason = url_drop_reason(url)
        if reason is None:
            uid = pair_uid(url, alt)
            reason = "duplicate_pair" if uid in seen_uids else None
        if reason:
            drops[reason] += 1
            continue
        seen_uids.add(uid)
        kept.append((uid, url, alt))
    return kept
