"""Image generation for the demo site: photos, text images, icons, oddities.

All encoders are used without timestamps or other run-dependent metadata, so
the same inputs always give the same bytes.
"""

from __future__ import annotations

import base64
import glob
import io
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features
from skimage import data as skdata

from webli.demo.content import LANGUAGES, SVG_TEXT, SignText

log = logging.getLogger(__name__)

FONT_DIR = "/usr/share/fonts"

# Target widths for each named size; a photo is never upscaled, so a size
# may resolve to the photo's native width (and two sizes to the same file).
SIZE_WIDTHS = {"s": 160, "m": 320, "l": 640, "xl": 1024}

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "SVG": "svg"}


@dataclass
class ImageAsset:
    """One image file of the site, with what the manifest says about it."""

    path: str  # URL path on the site, e.g. "/img/photos/astronaut-320.jpg"
    kind: str  # photo, text, icon, pixel, placeholder, vector, texture, document
    format: str
    width: int
    height: int
    source: str
    data: bytes = field(repr=False)
    text: str | None = None
    text_lang: str | None = None
    style: str | None = None
    duplicate_of: str | None = None
    near_duplicate_of: str | None = None

    def manifest_entry(self) -> dict:
        """Describe the image for manifest.json (everything but the bytes)."""
        entry = {
            "path": self.path,
            "kind": self.kind,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.data),
            "source": self.source,
            "text": self.text,
        }
        optional = {
            "text_lang": self.text_lang,
            "style": self.style,
            "duplicate_of": self.duplicate_of,
            "near_duplicate_of": self.near_duplicate_of,
        }
        entry.update({key: value for key, value in optional.items() if value is not None})
        return entry


@dataclass(frozen=True)
class PhotoSpec:
    """A natural photo from skimage.data and how to encode it."""

    name: str
    source: str
    load: Callable[[], np.ndarray]
    format: str = "JPEG"


PHOTOS: dict[str, PhotoSpec] = {
    spec.name: spec
    for spec in [
        PhotoSpec("astronaut", "skimage.data.astronaut", skdata.astronaut),
        PhotoSpec("coffee", "skimage.data.coffee", skdata.coffee),
        PhotoSpec("chelsea", "skimage.data.chelsea", skdata.chelsea),
        PhotoSpec("rocket", "skimage.data.rocket", skdata.rocket),
        PhotoSpec("camera", "skimage.data.camera", skdata.camera, "PNG"),
        PhotoSpec("coins", "skimage.data.coins", skdata.coins, "PNG"),
        PhotoSpec("immunohistochemistry", "skimage.data.immunohistochemistry",
                  skdata.immunohistochemistry),
        PhotoSpec("hubble", "skimage.data.hubble_deep_field", skdata.hubble_deep_field),
        PhotoSpec("retina", "skimage.data.retina", skdata.retina),
        PhotoSpec("moon", "skimage.data.moon", skdata.moon),
        PhotoSpec("motorcycle", "skimage.data.stereo_motorcycle[0]",
                  lambda: skdata.stereo_motorcycle()[0]),
        PhotoSpec("motorcycle-right", "skimage.data.stereo_motorcycle[1]",
                  lambda: skdata.stereo_motorcycle()[1]),
    ]
}


# --------------------------------------------------------------------------
# Encoding helpers


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """Encode an image to bytes with deterministic settings."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 85)
    if fmt == "WEBP":
        options.setdefault("quality", 80)
        options.setdefault("method", 4)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_asset(path: str, kind: str, image: Image.Image, fmt: str, source: str,
               **fields) -> ImageAsset:
    """Encode `image` and wrap it as an asset."""
    encode_options = fields.pop("encode_options", {})
    data = encode(image, fmt, **encode_options)
    return ImageAsset(path, kind, fmt, image.width, image.height, source, data, **fields)


def resize_to_width(image: Image.Image, width: int) -> Image.Image:
    """Downscale to `width` keeping the aspect ratio (never upscales)."""
    if width >= image.width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------
# Photos


@cache
def load_photo(name: str) -> Image.Image:
    """Load a skimage.data photo as a Pillow image (grey stays grey)."""
    array = PHOTOS[name].load()
    return Image.fromarray(array)


def photo_width(name: str, size: str) -> int:
    """Actual pixel width of photo `name` at named size s/m/l/xl."""
    return min(SIZE_WIDTHS[size], load_photo(name).width)


def photo_path(name: str, size: str, fmt: str | None = None) -> str:
    """URL path of photo `name` at named size s/m/l/xl."""
    fmt = fmt or PHOTOS[name].format
    return f"/img/photos/{name}-{photo_width(name, size)}.{EXTENSIONS[fmt]}"


def near_duplicate_path(name: str, width: int) -> str | None:
    """The left stereo frame is a near-duplicate of the right one at equal width."""
    if name != "motorcycle-right":
        return None
    return f"/img/photos/motorcycle-{width}.jpg"


def photo_assets() -> list[ImageAsset]:
    """Every photo at every distinct size, plus one WebP."""
    assets = []
    for name, spec in PHOTOS.items():
        original = load_photo(name)
        for width in sorted({photo_width(name, size) for size in SIZE_WIDTHS}):
            path = f"/img/photos/{name}-{width}.{EXTENSIONS[spec.format]}"
            # A progressive JPEG for the biggest Hubble image, for decoder variety.
            progressive = name == "hubble" and width == original.width
            options = {"progressive": True} if progressive else {}
            assets.append(make_asset(
                path, "photo", resize_to_width(original, width), spec.format, spec.source,
                encode_options=options,
                near_duplicate_of=near_duplicate_path(name, width),
            ))
    coffee = resize_to_width(load_photo("coffee"), photo_width("coffee", "l"))
    assets.append(make_asset(photo_path("coffee", "l", "WEBP"), "photo", coffee, "WEBP",
                             PHOTOS["coffee"].source))
    return assets


def copy_asset(original: ImageAsset, new_path: str) -> ImageAsset:
    """The same bytes under another URL (an exact duplicate)."""
    return ImageAsset(new_path, original.kind, original.format, original.width,
                      original.height, original.source, original.data,
                      text=original.text, text_lang=original.text_lang,
                      style=original.style, duplicate_of=original.path)


def texture_asset() -> ImageAsset:
    """A brick-wall texture, the kind of image used as decoration."""
    brick = resize_to_width(Image.fromarray(skdata.brick()), 256)
    return make_asset("/img/textures/brick-256.jpg", "texture", brick, "JPEG",
                      "skimage.data.brick")


def scanned_page_asset() -> ImageAsset:
    """A scanned text-book page: printed text that nobody transcribed."""
    page = Image.fromarray(skdata.page())
    return make_asset("/img/scans/page.png", "document", page, "PNG", "skimage.data.page")


# --------------------------------------------------------------------------
# Fonts and text images


def find_font(*file_names: str) -> str | None:
    """First installed font file whose name matches one of `file_names` (globs)."""
    for file_name in file_names:
        matches = sorted(glob.glob(f"{FONT_DIR}/**/{file_name}", recursive=True))
        if matches:
            return matches[0]
    return None


def find_cjk_font() -> str | None:
    """A font covering Japanese kana and kanji, if one is installed."""
    return find_font("NotoSansCJK*-Regular.tt[cf]", "NotoSansJP-*.[ot]tf",
                     "NotoSansCJK*.tt[cf]", "SourceHanSans*.[ot]t[cf]",
                     "wqy-*.tt[cf]", "DroidSansFallback*.ttf", "ipag*.ttf",
                     "fonts-japanese-gothic.ttf")


def font_for_script(script: str, bold: bool) -> str | None:
    """Path of a font able to draw `script` (ISO 15924), or None."""
    weight = "Bold" if bold else "Regular"
    if script in ("Latn", "Cyrl", "Grek"):
        return find_font(f"NotoSans-{weight}.ttf", "NotoSans-Regular.ttf", "DejaVuSans.ttf")
    if script == "Arab":
        return find_font(f"NotoSansArabic-{weight}.ttf", "NotoSansArabic-Regular.ttf",
                         "NotoNaskhArabic-Regular.ttf")
    if script == "Deva":
        return find_font(f"NotoSansDevanagari-{weight}.ttf",
                         "NotoSansDevanagari-Regular.ttf")
    if script == "Jpan":
        return find_cjk_font()
    return None


def can_draw(sign: SignText) -> bool:
    """Whether this machine can render `sign` correctly (font + shaping)."""
    script = LANGUAGES[sign.lang].script
    if font_for_script(script, bold=True) is None:
        log.warning("no font for script %s; skipping %s/%s sign", script, sign.lang, sign.slug)
        return False
    # Arabic and Devanagari need real shaping; without libraqm the drawn
    # glyphs would not match the recorded text.
    if script in ("Arab", "Deva") and not features.check("raqm"):
        log.warning("libraqm missing; skipping %s/%s sign", sign.lang, sign.slug)
        return False
    return True


def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """Load a font, with complex-script layout when available."""
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, layout_engine=engine)


def text_layout_options(lang: str) -> dict:
    """Keyword arguments for ImageDraw.text giving correct shaping for `lang`."""
    if not features.check("raqm"):
        return {}
    options = {"language": lang}
    if LANGUAGES[lang].direction == "rtl":
        options["direction"] = "rtl"
    return options


SIGN_PALETTE = [
    ((0, 122, 61), (255, 255, 255)),  # emergency green
    ((200, 16, 46), (255, 255, 255)),  # warning red
    ((0, 61, 165), (255, 255, 255)),  # information blue
    ((255, 205, 0), (20, 20, 20)),  # caution yellow
    ((245, 245, 240), (30, 30, 30)),  # enamel white
]


def render_sign(sign: SignText, rng: random.Random) -> Image.Image:
    """A flat-coloured sign with a border and one line of bold text."""
    background, foreground = rng.choice(SIGN_PALETTE)
    font = load_font(font_for_script(LANGUAGES[sign.lang].script, bold=True), 56)
    options = text_layout_options(sign.lang)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), sign.text, font=font, **options)
    padding = 36
    width, height = right - left + 2 * padding, bottom - top + 2 * padding
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((6, 6, width - 7, height - 7), radius=14, outline=foreground, width=4)
    draw.text((padding - left, padding - top), sign.text, font=font, fill=foreground, **options)
    return image


def render_banner(sign: SignText, rng: random.Random) -> Image.Image:
    """A wide banner: horizontal gradient with centred text and a drop shadow."""
    font = load_font(font_for_script(LANGUAGES[sign.lang].script, bold=True), 44)
    options = text_layout_options(sign.lang)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), sign.text, font=font, **options)
    width, height = max(640, right - left + 120), 160
    start = np.array([rng.randrange(0, 90) for _ in range(3)], dtype=float)
    end = np.array([rng.randrange(60, 160) for _ in range(3)], dtype=float)
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    gradient = (start + (end - start) * ramp).repeat(height, axis=0)
    image = Image.fromarray(gradient.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    x = (width - (right - left)) // 2 - left
    y = (height - (bottom - top)) // 2 - top
    draw.text((x + 3, y + 3), sign.text, font=font, fill=(0, 0, 0), **options)
    draw.text((x, y), sign.text, font=font, fill=(255, 255, 255), **options)
    return image


def render_screenshot(sign: SignText, rng: random.Random) -> Image.Image:
    """A fake application window: first line is the title, the rest the body."""
    script = LANGUAGES[sign.lang].script
    title_font = load_font(font_for_script(script, bold=True), 26)
    body_font = load_font(font_for_script(script, bold=False), 24)
    options = text_layout_options(sign.lang)
    title, *lines = sign.text.split("\n")
    width, title_height, line_height = 520, 52, 42
    height = title_height + 24 + line_height * len(lines)
    accent = rng.choice([(52, 101, 164), (78, 154, 6), (117, 80, 123)])
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, title_height), fill=(48, 48, 52))
    for index, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        centre = 22 + index * 22
        draw.ellipse((centre - 7, 19, centre + 7, 33), fill=colour)
    draw.text((96, 11), title, font=title_font, fill=(240, 240, 240), **options)
    for index, line in enumerate(lines):
        y = title_height + 12 + index * line_height
        draw.rectangle((16, y + 8, 22, y + 26), fill=accent)
        draw.text((36, y), line, font=body_font, fill=(30, 30, 30), **options)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(160, 160, 160))
    return image


def sign_path(sign: SignText, folder: str = "/img/signs") -> str:
    """URL path of a text image; banners are JPEG, the rest PNG."""
    extension = "jpg" if sign.style == "banner" else "png"
    return f"{folder}/{sign.lang}-{sign.slug}-{sign.style}.{extension}"


def text_image_asset(sign: SignText, rng: random.Random, folder: str = "/img/signs") -> ImageAsset:
    """Render `sign` in its style and record the exact text drawn."""
    renderers = {"sign": render_sign, "banner": render_banner, "screenshot": render_screenshot}
    image = renderers[sign.style](sign, rng)
    fmt = "JPEG" if sign.style == "banner" else "PNG"
    return make_asset(sign_path(sign, folder), "text", image, fmt, "generated:pillow",
                      text=sign.text, text_lang=sign.lang, style=sign.style)


# --------------------------------------------------------------------------
# Icons, pixels and other small files


def icon_image(name: str, rng: random.Random) -> Image.Image:
    """A 16x16 RGBA icon: arrows, a note, a logo disc or a random identicon."""
    colour = tuple(rng.randrange(30, 200) for _ in range(3)) + (255,)
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if name == "prev":
        draw.polygon([(11, 2), (11, 13), (3, 8)], fill=colour)
    elif name == "next":
        draw.polygon([(4, 2), (4, 13), (12, 8)], fill=colour)
    elif name == "note":
        draw.rectangle((2, 1, 13, 14), fill=(255, 250, 205, 255), outline=colour)
        for y in (4, 7, 10):
            draw.line((4, y, 11, y), fill=colour)
    elif name == "logo":
        draw.ellipse((1, 1, 14, 14), fill=colour)
        draw.ellipse((5, 5, 10, 10), fill=(255, 255, 255, 255))
    else:
        # Symmetric 5x5 identicon, 3 px per cell, like a default avatar.
        cells = [[rng.random() < 0.5 for _ in range(3)] for _ in range(5)]
        for row in range(5):
            for col in range(5):
                if cells[row][min(col, 4 - col)]:
                    x, y = col * 3, row * 3
                    draw.rectangle((x, y, x + 2, y + 2), fill=colour)
    return image


ICON_NAMES = ["icon", "logo", "prev", "next", "note"]


def icon_assets(rng: random.Random) -> list[ImageAsset]:
    """The five junk icons, 16x16 PNG each."""
    return [make_asset(f"/img/icons/{name}.png", "icon", icon_image(name, rng), "PNG",
                       "generated:pillow") for name in ICON_NAMES]


def tiny_gif_assets() -> list[ImageAsset]:
    """A 1x1 transparent tracking pixel and a 1x1 grey lazy-load placeholder."""
    pixel = Image.new("P", (1, 1), 0)
    pixel.putpalette([0, 0, 0])
    placeholder = Image.new("L", (1, 1), 204)
    return [
        make_asset("/img/px.gif", "pixel", pixel, "GIF", "generated:pillow",
                   encode_options={"transparency": 0}),
        make_asset("/img/placeholder.gif", "placeholder", placeholder, "GIF",
                   "generated:pillow"),
    ]


def svg_asset() -> ImageAsset:
    """A small vector diagram; its text lives in the markup."""
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="80" viewBox="0 0 320 80">\n'
        '  <rect x="1" y="1" width="318" height="78" rx="8" fill="#eef" stroke="#336"/>\n'
        f'  <text x="160" y="48" font-family="sans-serif" font-size="22" text-anchor="middle"'
        f' fill="#224">{SVG_TEXT}</text>\n'
        '</svg>\n'
    ).encode()
    return ImageAsset("/img/diagram.svg", "vector", "SVG", 320, 80, "generated:svg", svg,
                      text=SVG_TEXT, text_lang="en")


def red_dot_data_uri() -> str:
    """An 8x8 red PNG as a data: URI, for inline-image handling."""
    dot = Image.new("RGB", (8, 8), (220, 20, 60))
    return "data:image/png;base64," + base64.b64encode(encode(dot, "PNG")).decode("ascii")
