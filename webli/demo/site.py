"""Deterministic generator of a small multilingual demo web site.

`build_demo_site(root)` writes HTML pages, images, robots.txt and a
manifest.json into `root`. The site is meant to be served on loopback by
`webli.demo.server.SiteServer` and crawled end to end: it mixes clean,
well-described photos in 8 languages with the junk and HTML quirks real
crawls meet (lazy loading, srcset, <base>, entities, legacy charsets, icons,
tracking pixels, 404s, robots-disallowed paths...).

Every URL on the site is relative or host-less absolute ("/img/..."), so
the site works on whatever loopback port it is served from.

The seed only changes cosmetic details (sign colours, icon patterns,
gallery order); page paths, texts and the set of images do not depend on it.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import random
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

from webli.demo import content, images
from webli.demo.content import LANGUAGES, PHOTO_ALTS, UI, SignText
from webli.demo.images import ImageAsset, photo_path

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
# Per-path extra HTTP headers, read by webli.demo.server (never served itself).
HEADERS_FILE_NAME = "_headers.json"
ROBOTS_TXT = "# Demo site robots rules\nUser-agent: *\nDisallow: /private/\n"
ROBOTS_DISALLOWED_PREFIXES = ["/private/"]

HUB_PATH = "/index.html"
BAD_INDEX_PATH = "/bad/index.html"  # served by SiteServer, not written to disk

# Pages that leave out <html lang> (real sites often do).
PAGES_WITHOUT_HTML_LANG = {
    "/de/more/archive.html",
    "/el/signs.html",
    "/ar/signs.html",
    "/hi/more/archive.html",
    "/ja/signs.html",
    "/legacy/latin1.html",
}

# The same image with the same alt text on several pages.
DUPLICATE_SRC = "/img/photos/chelsea-320.jpg"
DUPLICATE_ALT = "Chelsea the cat"

# URLs the site links to or embeds on purpose although they do not exist.
MISSING_PAGE = "/en/old-page.html"
MISSING_IMAGE = "/img/photos/deleted-640.jpg"


# --------------------------------------------------------------------------
# Page model


@dataclass
class Placement:
    """One <img> occurrence on a page, as a browser's DOM would see it."""

    page: str
    src: str | None  # raw src attribute (None when absent)
    url: str | None  # src resolved against the page (or <base>); None for data: URIs
    alt: str | None  # DOM value of alt (entities decoded); None when the attribute is absent
    alt_lang: str | None  # language of the alt text (None for junk/filenames/empty)
    tags: list[str]
    candidates: list[dict] = field(default_factory=list)  # srcset/data-src alternatives

    def manifest_entry(self) -> dict:
        """Describe the placement for manifest.json."""
        entry = {
            "page": self.page,
            "src": self.src,
            "url": self.url,
            "alt": self.alt,
            "alt_lang": self.alt_lang,
            "alt_script": dominant_script(self.alt or ""),
            "tags": self.tags,
        }
        if self.candidates:
            entry["candidates"] = self.candidates
        return entry


def escape_attribute(value: str) -> str:
    """Escape for a double-quoted attribute; leaves apostrophes alone."""
    return html.escape(value, quote=False).replace('"', "&quot;")


def dominant_script(text: str) -> str | None:
    """Most frequent script among the letters of `text` (ISO 15924 code)."""
    prefixes = {"LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARABIC": "Arab",
                "DEVANAGARI": "Deva", "CJK": "Jpan", "HIRAGANA": "Jpan", "KATAKANA": "Jpan"}
    counts: dict[str, int] = {}
    for char in text:
        if not char.isalpha():
            continue
        first_word = unicodedata.name(char, "UNKNOWN").split()[0]
        script = prefixes.get(first_word)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else None


class PageBuilder:
    """Accumulates the HTML of one page and records its links and images."""

    def __init__(self, path: str, lang: str, title: str, *, html_lang: str | None = "",
                 charset: str = "utf-8", charset_declared_by: str = "meta",
                 base_href: str | None = None):
        """`html_lang=""` means the language's default tag, None means omit it."""
        self.path = path
        self.lang = lang
        self.title = title
        self.html_lang = LANGUAGES[lang].html_lang if html_lang == "" else html_lang
        self.direction = LANGUAGES[lang].direction
        self.charset = charset
        self.charset_declared_by = charset_declared_by  # meta, http-equiv or http-header
        self.base_href = base_href
        self.body: list[str] = []
        self.links: list[str] = []
        self.placements: list[Placement] = []
        self.tags: set[str] = set()
        self.header = (
            self.img("/img/icons/logo.png", "logo", tags=("icon", "site-chrome"),
                     attrs={"width": "16", "height": "16"})
            + " " + self.link("/", "Home")
        )

    # -- URL bookkeeping

    def resolve(self, url: str) -> str | None:
        """Resolve a link/src as a browser would; None for data: URIs."""
        if url.startswith("data:"):
            return None
        if url.startswith(("javascript:", "mailto:")):
            return url
        return urldefrag(urljoin(self.base_href or self.path, url))[0]

    def srcset_candidates(self, srcset: str, attribute: str) -> list[dict]:
        """Split a srcset value into resolved {url, descriptor, attr} entries."""
        candidates = []
        for item in srcset.split(","):
            parts = item.split()
            if parts:
                descriptor = parts[1] if len(parts) > 1 else None
                candidates.append({"url": self.resolve(parts[0]), "descriptor": descriptor,
                                   "attr": attribute})
        return candidates

    # -- content

    def heading(self, text: str) -> None:
        """Append an <h1>."""
        self.body.append(f"<h1>{html.escape(text)}</h1>")

    def paragraph(self, text: str, lang: str | None = None) -> None:
        """Append a paragraph, optionally tagged with its own language."""
        lang_attr = f' lang="{lang}"' if lang else ""
        self.body.append(f"<p{lang_attr}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        """Append markup verbatim."""
        self.body.append(markup)

    def link(self, href: str, text: str, *, hreflang: str | None = None) -> str:
        """Return an <a> element and record the link."""
        self.links.append(self.resolve(href))
        hreflang_attr = f' hreflang="{hreflang}"' if hreflang else ""
        return f'<a href="{escape_attribute(href)}"{hreflang_attr}>{html.escape(text)}</a>'

    def link_list(self, items: list[tuple[str, str]]) -> None:
        """Append a <ul> of links given as (href, text) pairs."""
        entries = "\n".join(f"  <li>{self.link(href, text)}</li>" for href, text in items)
        self.body.append(f"<ul>\n{entries}\n</ul>")

    def img(self, src: str | None, alt: str | None, *, alt_lang: str | None = None,
            tags: tuple[str, ...] = (), alt_html: str | None = None,
            attrs: dict[str, str] | None = None) -> str:
        """Return an <img> element and record its placement.

        `alt_html` is the alt attribute exactly as written in the source
        (entities and all); otherwise `alt` is escaped. `alt=None` omits
        the attribute altogether.
        """
        attrs = dict(attrs or {})
        pieces = []
        if src is not None:
            pieces.append(f'src="{escape_attribute(src)}"')
        for name, value in attrs.items():
            pieces.append(f'{name}="{escape_attribute(value)}"')
        if alt_html is not None:
            pieces.append(f'alt="{alt_html}"')
            alt = html.unescape(alt_html)
        elif alt is not None:
            pieces.append(f'alt="{escape_attribute(alt)}"')
        candidates = []
        for attribute in ("srcset", "data-srcset"):
            if attribute in attrs:
                candidates += self.srcset_candidates(attrs[attribute], attribute)
        for attribute in ("data-src", "data-lazy-src"):
            if attribute in attrs:
                candidates.append({"url": self.resolve(attrs[attribute]), "descriptor": None,
                                   "attr": attribute})
        self.placements.append(Placement(
            self.path, src, self.resolve(src) if src else None, alt,
            alt_lang if alt else None, list(tags), candidates))
        return f"<img {' '.join(pieces)}>"

    def figure(self, src: str, alt: str | None, **options) -> None:
        """Append an image inside a <figure>."""
        self.body.append(f"<figure>{self.img(src, alt, **options)}</figure>")

    def picture(self, sources: list[dict[str, str]], src: str, alt: str, *,
                alt_lang: str, tags: tuple[str, ...] = ()) -> None:
        """Append <picture> with <source> elements; they become candidates of the <img>."""
        source_tags = []
        candidates = []
        for source in sources:
            attributes = " ".join(f'{k}="{escape_attribute(v)}"' for k, v in source.items())
            source_tags.append(f"  <source {attributes}>")
            candidates += self.srcset_candidates(source["srcset"], "picture>source")
        img = self.img(src, alt, alt_lang=alt_lang, tags=tags)
        self.placements[-1].candidates = candidates + self.placements[-1].candidates
        self.body.append("<picture>\n" + "\n".join(source_tags) + f"\n  {img}\n</picture>")

    # -- output

    def head_charset(self) -> str:
        """The in-document charset declaration, if this page has one."""
        if self.charset_declared_by == "meta":
            return f'<meta charset="{self.charset}">\n'
        if self.charset_declared_by == "http-equiv":
            return ('<meta http-equiv="Content-Type" '
                    f'content="text/html; charset={self.charset}">\n')
        return ""

    def render(self) -> bytes:
        """The full document, encoded in the page's charset."""
        attributes = ""
        if self.html_lang:
            attributes += f' lang="{self.html_lang}"'
        if self.direction == "rtl":
            attributes += ' dir="rtl"'
        base = f'<base href="{self.base_href}">\n' if self.base_href else ""
        document = (
            "<!DOCTYPE html>\n"
            f"<html{attributes}>\n<head>\n{self.head_charset()}"
            f"<title>{html.escape(self.title)}</title>\n{base}"
            '<link rel="icon" href="/img/icons/logo.png">\n'
            "</head>\n<body>\n"
            f"<header>{self.header}</header>\n<main>\n"
            + "\n".join(self.body)
            + "\n</main>\n</body>\n</html>\n"
        )
        return document.encode(self.charset)

    def manifest_entry(self, depth: int | None) -> dict:
        """Describe the page for manifest.json."""
        return {
            "path": self.path,
            "lang": self.lang,
            "script": LANGUAGES[self.lang].script,
            "html_lang": self.html_lang,
            "dir": self.direction,
            "charset": self.charset,
            "charset_declared_by": self.charset_declared_by,
            "title": self.title,
            "depth": depth,
            "robots_disallowed": is_robots_disallowed(self.path),
            "tags": sorted(self.tags),
            "links": self.links,
        }


def is_robots_disallowed(path: str) -> bool:
    """Whether robots.txt of the demo site forbids `path`."""
    return any(path.startswith(prefix) for prefix in ROBOTS_DISALLOWED_PREFIXES)


# --------------------------------------------------------------------------
# Build context: the images available to pages


class SiteAssets:
    """Every image file of the site, by URL path."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.by_path: dict[str, ImageAsset] = {}
        self.text_images: dict[tuple[str, str, str], ImageAsset] = {}
        self.cjk_font = images.find_cjk_font()

    def add(self, asset: ImageAsset) -> ImageAsset:
        """Register an asset; paths must be unique."""
        if asset.path in self.by_path:
            raise ValueError(f"duplicate image path {asset.path}")
        self.by_path[asset.path] = asset
        return asset

    def add_text_image(self, sign: SignText, folder: str = "/img/signs") -> ImageAsset | None:
        """Render and register a text image, or None if this machine cannot draw it."""
        if not images.can_draw(sign):
            return None
        asset = self.add(images.text_image_asset(sign, self.rng, folder))
        self.text_images[(sign.lang, sign.slug, sign.style)] = asset
        return asset

    def signs_for(self, lang: str) -> list[tuple[SignText, ImageAsset]]:
        """Text images in `lang` that were rendered, with their descriptions."""
        found = []
        for sign in content.SIGN_TEXTS:
            asset = self.text_images.get((sign.lang, sign.slug, sign.style))
            if sign.lang == lang and asset is not None:
                found.append((sign, asset))
        return found


def generate_assets(seed: int) -> SiteAssets:
    """Create every image of the site in memory."""
    assets = SiteAssets(seed)
    for asset in images.photo_assets():
        assets.add(asset)
    for sign in content.SIGN_TEXTS:
        assets.add_text_image(sign)
    assets.add_text_image(content.CONFIDENTIAL_SIGN, folder="/private/img")
    for asset in images.icon_assets(assets.rng):
        assets.add(asset)
    for asset in images.tiny_gif_assets():
        assets.add(asset)
    assets.add(images.svg_asset())
    assets.add(images.texture_asset())
    assets.add(images.scanned_page_asset())
    by_path = assets.by_path
    for original, copy in [
        (DUPLICATE_SRC, "/img/photos/cat-320.jpg"),
        (photo_path("astronaut", "l"), "/img/uploads/IMG_1234.JPG"),
        (photo_path("camera", "m"), "/img/uploads/photo.png"),
        (photo_path("chelsea", "l"), "/img/uploads/DSC_0042.jpg"),
        (photo_path("moon", "m"), "/sub/photos/moon-320.jpg"),
    ]:
        assets.add(images.copy_asset(by_path[original], copy))
    return assets


# --------------------------------------------------------------------------
# Pages


def ordered_photo_names(rng: random.Random) -> list[str]:
    """Photos that appear in galleries, in a seed-dependent order."""
    names = [name for name in PHOTO_ALTS]
    rng.shuffle(names)
    return names


def declared_lang(path: str) -> str | None:
    """PageBuilder html_lang argument: "" for the default tag, None to omit it."""
    return None if path in PAGES_WITHOUT_HTML_LANG else ""


def photo_figure(page: PageBuilder, name: str, size: str) -> None:
    """Append photo `name` with the alt text in the page's language."""
    page.figure(photo_path(name, size), PHOTO_ALTS[name][page.lang], alt_lang=page.lang,
                tags=("photo",),
                attrs={"width": str(images.photo_width(name, size))})


def language_pages(lang: str, lang_index: int, photo_order: list[str],
                   assets: SiteAssets) -> list[PageBuilder]:
    """Gallery (depth 1) -> signs (depth 2) -> archive (depth 3) for one language."""
    ui = UI[lang]
    rotated = photo_order[lang_index:] + photo_order[:lang_index]

    gallery = PageBuilder(f"/{lang}/index.html", lang, ui["gallery"],
                          html_lang=declared_lang(f"/{lang}/index.html"),
                          charset_declared_by="http-equiv" if lang == "hi" else "meta")
    gallery.heading(ui["gallery"])
    gallery.paragraph(ui["intro"])
    gallery.link_list([(f"/{other}/index.html", LANGUAGES[other].name)
                       for other in LANGUAGES if other != lang])
    for position, name in enumerate(rotated[:6]):
        # Alternate sizes so one photo shows up at different sizes across languages.
        photo_figure(gallery, name, "l" if (position + lang_index) % 2 else "m")
    gallery.raw(f"<p>{gallery.link('signs.html', ui['more'])}</p>")

    signs = PageBuilder(f"/{lang}/signs.html", lang, ui["signs"],
                        html_lang=declared_lang(f"/{lang}/signs.html"))
    signs.heading(ui["signs"])
    for sign, asset in assets.signs_for(lang):
        tags = ("text-image",) if sign.alt else ("text-image", "empty-alt")
        signs.figure(asset.path, sign.alt, alt_lang=lang if sign.alt else None, tags=tags,
                     attrs={"width": str(asset.width), "height": str(asset.height)})
    photo_figure(signs, rotated[0], "s")
    signs.raw(f"<p>{signs.link('more/archive.html', ui['archive'])} · "
              f"{signs.link('index.html', ui['back'])}</p>")

    archive = PageBuilder(f"/{lang}/more/archive.html", lang, ui["archive"],
                          html_lang=declared_lang(f"/{lang}/more/archive.html"))
    archive.heading(ui["archive"])
    for name in rotated[6:] + rotated[:2]:
        # Thumbnail linking to the full-size file, with relative URLs.
        thumb = archive.img("../../" + photo_path(name, "s").lstrip("/"), PHOTO_ALTS[name][lang],
                            alt_lang=lang, tags=("photo", "thumbnail", "relative-url"))
        archive.raw(f"<p>{archive.link('../../' + photo_path(name, 'xl').lstrip('/'), '⤢')}"
                    f" {thumb}</p>")
    if lang == "en":
        archive.figure(photo_path("hubble", "l"), content.LONG_DESCRIPTIVE_ALT, alt_lang="en",
                       tags=("photo", "long-alt"))
        archive.figure(DUPLICATE_SRC, DUPLICATE_ALT, alt_lang="en", tags=("photo", "duplicate"))
    archive.raw(f"<p>{archive.link('../signs.html', ui['back'])}</p>")
    return [gallery, signs, archive]


def hub_page(link_bad_routes: bool) -> PageBuilder:
    """The entry page: links to every section entry point."""
    hub = PageBuilder(HUB_PATH, "en", "WebLI demo site")
    hub.heading("WebLI demo site")
    hub.paragraph("A small multilingual site for testing the crawler and the extractors.")
    hub.figure(photo_path("astronaut", "m"), PHOTO_ALTS["astronaut"]["en"], alt_lang="en",
               tags=("photo",))
    hub.figure(DUPLICATE_SRC, DUPLICATE_ALT, alt_lang="en", tags=("photo", "duplicate"))
    hub.link_list([(f"/{lang}/index.html", LANGUAGES[lang].name) for lang in LANGUAGES])
    special = [
        ("/features/srcset.html", "srcset and picture"),
        ("/features/lazy.html", "Lazy-loaded images"),
        ("/features/base.html", "Page with a base element"),
        ("/features/entities.html", "Entities and odd whitespace"),
        ("/features/mixed.html", "Mixed languages"),
        ("/features/junk.html", "Junk images"),
        ("/legacy/ru-cp1251.html", "Windows-1251 page"),
        ("/legacy/latin1.html", "ISO-8859-1 page"),
        ("/private/index.html", "Staff only"),
        ("/de/index.html?from=hub", "Deutsch (tracking parameter)"),
        (MISSING_PAGE, "Old page (gone)"),
        ("#top", "Top of this page"),
        ("javascript:void(0)", "Open chat"),
        ("mailto:webmaster@localhost", "Contact"),
    ]
    if link_bad_routes:
        special.append((BAD_INDEX_PATH, "Misbehaving routes"))
    hub.link_list(special)
    return hub


def srcset_page() -> PageBuilder:
    """srcset with width and density descriptors, <picture>, srcset-only images."""
    page = PageBuilder("/features/srcset.html", "en", "Responsive images")
    page.heading("Responsive images")
    rocket = f"{photo_path('rocket', 'm')} 320w, {photo_path('rocket', 'l')} 640w"
    page.figure(photo_path("rocket", "m"), PHOTO_ALTS["rocket"]["en"], alt_lang="en",
                tags=("photo", "srcset-w"),
                attrs={"srcset": rocket, "sizes": "(max-width: 640px) 100vw, 640px"})
    chelsea_small = "../" + photo_path("chelsea", "s").lstrip("/")
    chelsea_big = "../" + photo_path("chelsea", "m").lstrip("/")
    page.figure(chelsea_small, PHOTO_ALTS["chelsea"]["en"], alt_lang="en",
                tags=("photo", "srcset-x", "relative-url"),
                attrs={"srcset": f"{chelsea_small} 1x, {chelsea_big} 2x"})
    page.picture(
        [{"type": "image/webp", "srcset": photo_path("coffee", "l", "WEBP")},
         {"media": "(max-width: 400px)",
          "srcset": f"{photo_path('coffee', 's')} 160w, {photo_path('coffee', 'm')} 320w"}],
        photo_path("coffee", "l"), PHOTO_ALTS["coffee"]["en"], alt_lang="en",
        tags=("photo", "picture", "webp"))
    page.figure(None, PHOTO_ALTS["hubble"]["en"], alt_lang="en", tags=("photo", "srcset-only"),
                attrs={"srcset": f"{photo_path('hubble', 'm')} 320w, "
                                 f"{photo_path('hubble', 'l')} 640w", "sizes": "50vw"})
    page.figure(photo_path("moon", "s"), PHOTO_ALTS["moon"]["en"], alt_lang="en",
                tags=("photo", "srcset-w", "srcset-whitespace"),
                attrs={"srcset": f"\n   {photo_path('moon', 's')}   160w,\n"
                                 f"   {photo_path('moon', 'm')} 320w\n"})
    return page


def lazy_page() -> PageBuilder:
    """Lazy-loading patterns: data-src, data-srcset, data-lazy-src, loading=lazy, noscript."""
    page = PageBuilder("/features/lazy.html", "en", "Lazy loading")
    page.heading("Lazy loading")
    placeholder = "/img/placeholder.gif"
    motorcycle = photo_path("motorcycle", "l")
    alt = PHOTO_ALTS["motorcycle"]["en"]
    page.figure(placeholder, alt, alt_lang="en", tags=("photo", "lazy-data-src"),
                attrs={"class": "lazyload", "data-src": motorcycle})
    page.raw(f"<noscript>{page.img(motorcycle, alt, alt_lang='en', tags=('photo', 'noscript'))}"
             "</noscript>")
    retina = f"{photo_path('retina', 'm')} 320w, {photo_path('retina', 'l')} 640w"
    page.figure(placeholder, PHOTO_ALTS["retina"]["en"], alt_lang="en",
                tags=("photo", "lazy-data-srcset"),
                attrs={"data-srcset": retina, "data-src": photo_path("retina", "l")})
    page.figure(placeholder, PHOTO_ALTS["immunohistochemistry"]["en"], alt_lang="en",
                tags=("photo", "lazy-data-lazy-src"),
                attrs={"data-lazy-src": photo_path("immunohistochemistry", "m")})
    page.figure(photo_path("camera", "m"), PHOTO_ALTS["camera"]["en"], alt_lang="en",
                tags=("photo", "loading-lazy"), attrs={"loading": "lazy"})
    return page


def base_href_pages() -> list[PageBuilder]:
    """A page whose relative URLs resolve against <base href="/sub/">, and its target."""
    page = PageBuilder("/features/base.html", "en", "Base element", base_href="/sub/")
    page.tags.add("base-href")
    page.heading("Base element")
    page.paragraph("Relative URLs on this page resolve against /sub/, not /features/.")
    page.figure("photos/moon-320.jpg", PHOTO_ALTS["moon"]["en"], alt_lang="en",
                tags=("photo", "base-href"))
    page.figure("../" + photo_path("coins", "m").lstrip("/"), PHOTO_ALTS["coins"]["en"],
                alt_lang="en", tags=("photo", "base-href", "relative-url"))
    page.raw(f"<p>{page.link('page.html', 'Next page')}</p>")

    target = PageBuilder("/sub/page.html", "en", "Sub page")
    target.heading("Sub page")
    target.figure("photos/moon-320.jpg", PHOTO_ALTS["moon"]["en"], alt_lang="en",
                  tags=("photo", "relative-url"))
    target.figure(DUPLICATE_SRC, DUPLICATE_ALT, alt_lang="en", tags=("photo", "duplicate"))
    return [page, target]


def entities_page(assets: SiteAssets) -> PageBuilder:
    """French alt texts written with entities, stray whitespace and decomposed Unicode."""
    page = PageBuilder("/features/entities.html", "fr", "Entités et espaces")
    page.heading("Entités et espaces")
    page.figure(photo_path("coffee", "m"), None, alt_lang="fr", tags=("photo", "entity-named"),
                alt_html="Un caf&eacute; &amp; sa cuill&egrave;re sur une soucoupe rouge")
    page.figure(photo_path("coffee", "s"), None, alt_lang="fr",
                tags=("photo", "entity-numeric"),
                alt_html="Caf&#233; serr&#xE9; dans une tasse &#8212; vue de dessus")
    page.figure(photo_path("astronaut", "m"),
                "\n\t  Un astronaute\n      devant le   drapeau américain  \n   ",
                alt_lang="fr", tags=("photo", "whitespace"))
    page.figure(photo_path("rocket", "m"),
                unicodedata.normalize("NFD", "Une fusée sur le pas de tir au crépuscule"),
                alt_lang="fr", tags=("photo", "nfd"))
    page.figure(photo_path("chelsea", "m"), None, alt_lang="fr",
                tags=("photo", "entity-named", "nbsp"),
                alt_html="Chelsea,&nbsp;la chatte &laquo;&nbsp;tigr&eacute;e&nbsp;&raquo;")
    closed = assets.text_images.get(("fr", "closed", "sign"))
    if closed:
        page.figure(closed.path, None, alt_lang="fr", tags=("text-image", "entity-named"),
                    alt_html="Panneau &quot;Ferm&eacute; le dimanche&quot;")
    return page


def mixed_language_page() -> PageBuilder:
    """An English page whose alt texts are in other languages, marked with lang attributes."""
    page = PageBuilder("/features/mixed.html", "en", "Around the world")
    page.heading("Around the world")
    page.paragraph("Descriptions below come from our partner sites.")
    page.figure(photo_path("motorcycle-right", "m"), PHOTO_ALTS["motorcycle"]["de"],
                alt_lang="de", tags=("photo", "lang-attribute"), attrs={"lang": "de"})
    page.raw('<figure lang="ru">' + page.img(
        photo_path("coins", "s"), PHOTO_ALTS["coins"]["ru"], alt_lang="ru",
        tags=("photo", "lang-inherited")) + "</figure>")
    page.raw('<div lang="ar" dir="rtl">' + page.img(
        photo_path("retina", "s"), PHOTO_ALTS["retina"]["ar"], alt_lang="ar",
        tags=("photo", "lang-inherited")) + "</div>")
    page.figure(photo_path("hubble", "s"), PHOTO_ALTS["hubble"]["el"], alt_lang="el",
                tags=("photo", "lang-attribute"), attrs={"lang": "el"})
    return page


def junk_page(assets: SiteAssets) -> PageBuilder:
    """Everything an alt-text filter should reject, plus broken and odd URLs."""
    page = PageBuilder("/features/junk.html", "en", "Miscellaneous")
    page.heading("Miscellaneous")
    for name in images.ICON_NAMES:
        page.raw(page.img(f"/img/icons/{name}.png", name, tags=("icon",),
                          attrs={"width": "16", "height": "16"}))
    page.figure("/img/uploads/IMG_1234.JPG", "IMG_1234.JPG", tags=("photo", "filename-alt"))
    page.figure("/img/uploads/photo.png", "photo.png", tags=("photo", "filename-alt"))
    page.figure("/img/uploads/DSC_0042.jpg", "http://127.0.0.1/uploads/2019/05/DSC_0042.jpg",
                tags=("photo", "url-alt"))
    page.figure(photo_path("moon", "m"), "", tags=("photo", "empty-alt"))
    page.figure(photo_path("rocket", "s"), None, tags=("photo", "no-alt"))
    page.figure(photo_path("hubble", "l"), content.KEYWORD_STUFFED_ALT, alt_lang="en",
                tags=("photo", "long-alt", "keyword-stuffing"))
    page.figure("/img/textures/brick-256.jpg", "image", tags=("texture", "generic-alt"))
    page.figure("/img/scans/page.png", "scan0001", tags=("document", "filename-alt"))
    page.figure(DUPLICATE_SRC, DUPLICATE_ALT, alt_lang="en", tags=("photo", "duplicate"))
    page.figure("/img/photos/cat-320.jpg", PHOTO_ALTS["chelsea"]["en"], alt_lang="en",
                tags=("photo", "duplicate-bytes"))
    page.raw(page.img("/img/px.gif?u=42&p=junk", "", tags=("pixel",),
                      attrs={"width": "1", "height": "1"}))
    page.figure(images.red_dot_data_uri(), "Red dot", alt_lang="en", tags=("data-uri",))
    page.figure("/img/diagram.svg", "Diagram of the crawl pipeline", alt_lang="en",
                tags=("svg",))
    page.figure(MISSING_IMAGE, "A photo that was deleted", alt_lang="en", tags=("photo", "404"))
    confidential = assets.text_images.get(("en", "confidential", "sign"))
    if confidential:
        page.figure(confidential.path, content.CONFIDENTIAL_SIGN.alt, alt_lang="en",
                    tags=("text-image", "robots-disallowed"))
    page.link_list([
        (MISSING_PAGE, "An old page"),
        ("javascript:history.back()", "Back"),
        ("/features/junk.html#top", "Top"),
    ])
    return page


def legacy_pages(assets: SiteAssets) -> list[PageBuilder]:
    """One Windows-1251 page (meta only) and one ISO-8859-1 page (HTTP header only)."""
    russian = PageBuilder("/legacy/ru-cp1251.html", "ru", "Старая страница",
                          charset="windows-1251")
    russian.tags.add("legacy-charset")
    russian.heading("Старая страница")
    russian.paragraph("Эта страница сохранена в кодировке Windows-1251 — как в старые времена.")
    photo_figure(russian, "astronaut", "l")
    photo_figure(russian, "coins", "m")
    photo_figure(russian, "retina", "s")
    paint = assets.text_images.get(("ru", "paint", "sign"))
    if paint:
        russian.figure(paint.path, "Табличка «Осторожно, окрашено»", alt_lang="ru",
                       tags=("text-image",))

    german = PageBuilder("/legacy/latin1.html", "de", "Alte Seite", html_lang=None,
                         charset="iso-8859-1", charset_declared_by="http-header")
    german.tags.add("legacy-charset")
    german.heading("Alte Seite")
    german.paragraph("Diese Seite ist in ISO-8859-1 kodiert; der Zeichensatz steht nur im "
                     "HTTP-Header. Grüße aus Köln!")
    photo_figure(german, "coffee", "m")
    photo_figure(german, "camera", "m")
    german.figure(photo_path("chelsea", "s"), PHOTO_ALTS["chelsea"]["fr"], alt_lang="fr",
                  tags=("photo", "lang-attribute"), attrs={"lang": "fr"})
    return [russian, german]


def private_pages(assets: SiteAssets) -> list[PageBuilder]:
    """Pages under /private/, which robots.txt disallows."""
    index = PageBuilder("/private/index.html", "en", "Staff only")
    index.heading("Staff only")
    confidential = assets.text_images.get(("en", "confidential", "sign"))
    if confidential:
        index.figure(confidential.path, content.CONFIDENTIAL_SIGN.alt, alt_lang="en",
                     tags=("text-image", "robots-disallowed"))
    index.raw(f"<p>{index.link('secret.html', 'Secret prototype')}</p>")
    secret = PageBuilder("/private/secret.html", "en", "Secret prototype")
    secret.heading("Secret prototype")
    secret.figure(photo_path("motorcycle-right", "l"), "Unreleased motorcycle prototype",
                  alt_lang="en", tags=("photo",))
    return [index, secret]


def build_pages(assets: SiteAssets, link_bad_routes: bool) -> list[PageBuilder]:
    """All pages of the site, hub first."""
    photo_order = ordered_photo_names(assets.rng)
    pages = [hub_page(link_bad_routes)]
    for lang_index, lang in enumerate(LANGUAGES):
        pages += language_pages(lang, lang_index, photo_order, assets)
    pages += [srcset_page(), lazy_page()]
    pages += base_href_pages()
    pages += [entities_page(assets), mixed_language_page(), junk_page(assets)]
    pages += legacy_pages(assets)
    pages += private_pages(assets)
    return pages


# --------------------------------------------------------------------------
# Checks and manifest


def link_depths(pages: list[PageBuilder]) -> dict[str, int]:
    """Breadth-first click distance of every page from the hub."""
    page_paths = {page.path for page in pages}
    links = {page.path: page.links for page in pages}
    depths = {HUB_PATH: 0}
    queue = deque([HUB_PATH])
    while queue:
        current = queue.popleft()
        for url in links[current]:
            target = urlsplit(url).path
            if target.endswith("/"):
                target += "index.html"
            if target in page_paths and target not in depths:
                depths[target] = depths[current] + 1
                queue.append(target)
    return depths


def check_references(pages: list[PageBuilder], assets: SiteAssets) -> None:
    """Fail the build if a page embeds an image that is not generated by mistake."""
    for page in pages:
        for placement in page.placements:
            urls = [placement.url] + [candidate["url"] for candidate in placement.candidates]
            for url in filter(None, urls):
                path = urlsplit(url).path
                if path not in assets.by_path and "404" not in placement.tags:
                    raise RuntimeError(f"{page.path} references missing image {url}")


def build_manifest(seed: int, pages: list[PageBuilder], assets: SiteAssets,
                   rendered_paths: list[str]) -> dict:
    """The manifest describing everything written."""
    depths = link_depths(pages)
    placements = [placement for page in pages for placement in page.placements]
    described = [p for p in placements if p.alt and p.alt_lang]
    return {
        "format": "webli-demo-site/1",
        "seed": seed,
        "hub": HUB_PATH,
        "languages": sorted({p.alt_lang for p in described}),
        "scripts": sorted({dominant_script(p.alt) for p in described} - {None}),
        "cjk_font": assets.cjk_font,
        "robots_txt": ROBOTS_TXT,
        "robots_disallowed_prefixes": ROBOTS_DISALLOWED_PREFIXES,
        "http_headers": http_headers(pages),
        "missing": [MISSING_PAGE, MISSING_IMAGE],
        "pages": [page.manifest_entry(depths.get(page.path)) for page in pages],
        "images": [assets.by_path[path].manifest_entry() for path in sorted(assets.by_path)],
        "placements": [placement.manifest_entry() for placement in placements],
        "files": rendered_paths,
    }


def http_headers(pages: list[PageBuilder]) -> dict[str, dict[str, str]]:
    """Extra response headers per path, for pages whose charset only the server declares."""
    return {
        page.path: {"Content-Type": f"text/html; charset={page.charset}"}
        for page in pages if page.charset_declared_by == "http-header"
    }


def write_file(root: Path, url_path: str, data: bytes) -> None:
    """Write `data` to the file serving `url_path`, only if it changed."""
    target = root / url_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)


def json_bytes(value) -> bytes:
    """Stable, human-readable JSON encoding."""
    return (json.dumps(value, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def build_demo_site(root: Path, seed: int = 0, *, link_bad_routes: bool = True) -> dict:
    """Generate the demo site into `root` and return its manifest.

    The output is byte-for-byte identical for the same seed (on the same
    machine: fonts and codec versions shape the bytes). With
    `link_bad_routes`, the hub links /bad/index.html, which only
    `webli.demo.server.SiteServer` serves.
    """
    root = Path(root)
    assets = generate_assets(seed)
    pages = build_pages(assets, link_bad_routes)
    check_references(pages, assets)
    files: dict[str, bytes] = {page.path: page.render() for page in pages}
    files.update({path: asset.data for path, asset in assets.by_path.items()})
    files["/robots.txt"] = ROBOTS_TXT.encode("ascii")
    manifest = build_manifest(seed, pages, assets, sorted(files))
    files["/" + HEADERS_FILE_NAME] = json_bytes(manifest["http_headers"])
    for url_path, data in sorted(files.items()):
        write_file(root, url_path, data)
    write_file(root, "/" + MANIFEST_NAME, json_bytes(manifest))
    log.info("demo site: %d pages, %d images, %.1f MB in %s", len(pages), len(assets.by_path),
             sum(map(len, files.values())) / 1e6, root)
    return manifest


def main() -> None:
    """`python -m webli.demo.site OUT_DIR [--seed N]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bad-links", action="store_true",
                        help="do not link /bad/index.html from the hub")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = build_demo_site(arguments.out_dir, arguments.seed,
                               link_bad_routes=not arguments.no_bad_links)
    print(f"{len(manifest['pages'])} pages, {len(manifest['images'])} images, "
          f"languages {', '.join(manifest['languages'])} -> {arguments.out_dir}")


if __name__ == "__main__":
    main()
