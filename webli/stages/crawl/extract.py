"""Extraction of `<img>` candidates, links and page metadata from HTML (lexbor)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser
from w3lib.url import safe_url_string

# Attributes lazy-loading scripts read the real image URL from, best first.
LAZY_SRC_ATTRIBUTES = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
LAZY_SRCSET_ATTRIBUTES = ("data-srcset", "data-lazy-srcset")
ROBOTS_NO_IMAGES = {"noimageindex", "noai", "noimageai", "none"}
_DESCRIPTOR = re.compile(r"^(\d+(?:\.\d+)?)([wx])$")
# URLs made only of these characters need no percent-encoding (the common case, and a fast path).
_URL_SAFE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


@dataclass(frozen=True)
class ImageCandidate:
    """One `<img>` as found: best source reference (not yet resolved), raw alt, declared size."""

    src: str
    alt: str | None
    width: str | None
    height: str | None


@dataclass
class ParsedPage:
    """What the crawl keeps from one HTML page."""

    title: str | None
    html_lang: str | None
    base_url: str = ""
    images: list[ImageCandidate] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    robots_directives: set[str] = field(default_factory=set)

    @property
    def images_forbidden(self) -> bool:
        """The page's `<meta name=robots>` forbids using its images."""
        return bool(self.robots_directives & ROBOTS_NO_IMAGES)

    @property
    def nofollow(self) -> bool:
        return bool(self.robots_directives & {"nofollow", "none"})


def absolute_url(reference: str, base: str) -> str | None:
    """Resolve `reference` against `base`; percent-encode it; drop the fragment.

    Returns None for references that are empty or cannot be parsed.
    """
    reference = reference.strip()
    if not reference:
        return None
    try:
        joined = urljoin(base, reference)
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme == "data":
        return joined  # kept whole so the caller can count it as a data: URI
    if _URL_SAFE.match(joined):
        return joined.split("#", 1)[0]
    return safe_url_string(urlunsplit(parts._replace(fragment="")))


def parse_srcset(srcset: str) -> list[tuple[str, float, str]]:
    """Parse a srcset into (url, value, unit) where unit is 'w' or 'x' (1x if none)."""
    candidates = []
    for item in re.split(r",\s+|,(?=\S+\s+\d)", srcset.strip()):
        pieces = item.strip().split()
        if not pieces:
            continue
        url, descriptor = pieces[0].rstrip(","), (pieces[1] if len(pieces) > 1 else "1x")
        match = _DESCRIPTOR.match(descriptor)
        if url and match:
            candidates.append((url, float(match.group(1)), match.group(2)))
    return candidates


def best_srcset_url(srcsets: list[str]) -> str | None:
    """The largest candidate across srcsets: widest 'w' descriptor, else highest density."""
    candidates = [c for s in srcsets for c in parse_srcset(s)]
    if not candidates:
        return None
    widths = [c for c in candidates if c[2] == "w"]
    pool = widths or candidates
    return max(pool, key=lambda c: c[1])[0]


def _picture_srcsets(img) -> list[str]:
    parent = img.parent
    if parent is None or parent.tag != "picture":
        return []
    srcsets = []
    for source in parent.iter():
        if source.tag == "source" and (source.attributes.get("type") or "image/").startswith("image/"):
            srcsets.append(source.attributes.get("srcset") or source.attributes.get("data-srcset") or "")
    return srcsets


def image_source(img) -> str | None:
    """The URL an `<img>` shows at its best: srcset / <picture>, lazy-load attributes, then src."""
    attrs = img.attributes
    srcsets = _picture_srcsets(img) + [attrs.get(a) or "" for a in ("srcset", *LAZY_SRCSET_ATTRIBUTES)]
    best = best_srcset_url([s for s in srcsets if s])
    if best:
        return best
    for name in (*LAZY_SRC_ATTRIBUTES, "src"):
        value = (attrs.get(name) or "").strip()
        if value:
            return value
    return None


def _base_url(tree: LexborHTMLParser, page_url: str) -> str:
    base = tree.css_first("base[href]")
    href = (base.attributes.get("href") or "").strip() if base is not None else ""
    return (absolute_url(href, page_url) or page_url) if href else page_url


def _robots_directives(tree: LexborHTMLParser) -> set[str]:
    directives: set[str] = set()
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").strip().lower() in ("robots", "googlebot-image"):
            content = (meta.attributes.get("content") or "").lower()
            directives.update(d.strip() for d in content.split(",") if d.strip())
    return directives


def parse_page(html: str | bytes, page_url: str, with_links: bool = True) -> ParsedPage:
    """Parse one HTML page (text, or UTF-8 bytes): images with alt texts, title, `<html lang>`, links if asked."""
    tree = LexborHTMLParser(html)
    base = _base_url(tree, page_url)
    root = tree.css_first("html")
    title_node = tree.css_first("title")
    page = ParsedPage(
        title=title_node.text(strip=True) or None if title_node is not None else None,
        html_lang=((root.attributes.get("lang") or "").strip() or None) if root is not None else None,
        base_url=base,
        robots_directives=_robots_directives(tree),
    )
    for node in tree.css("img, a[href]" if with_links else "img"):
        if node.tag == "a":
            link = absolute_url(node.attributes.get("href") or "", base)
            if link:
                page.links.append(link)
            continue
        source = image_source(node)
        if source:  # resolved later, only for images whose alt text is kept (most are not)
            attrs = node.attributes
            page.images.append(ImageCandidate(source, attrs.get("alt"), attrs.get("width"), attrs.get("height")))
    return page
