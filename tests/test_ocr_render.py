"""Images with known text in many scripts, rendered at test time with Debian's Noto fonts.

Used by the OCR tests and by benchmarks/bench_ocr.py (character error rate).
A script whose font is not installed is reported by `missing_fonts`, so a
caller outside `make` can skip it with a clear reason (fonts-noto-core covers
every script here but Chinese, Japanese and Korean, which need
fonts-noto-cjk; `make` installs both).
"""

from __future__ import annotations

import glob
import io
import unicodedata
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, features

FONT_DIR = "/usr/share/fonts"
CJK_FILE = "NotoSansCJK-Regular.ttc"
CJK_FACES = {"ja": 0, "ko": 1, "zh": 2, "zh-Hant": 3}  # face index in the .ttc collection


@dataclass(frozen=True)
class KnownText:
    """A line (or lines) of text in one language, the script it is written in and its font."""

    language: str  # alt-text language code, as the crawl stage writes it
    script: str  # tesseract OSD's script name
    text: str
    font: str  # font file name (searched under /usr/share/fonts)
    rtl: bool = False


KNOWN_TEXTS = [
    KnownText("en", "Latin", "The quick brown fox jumps over the lazy dog", "NotoSans-Regular.ttf"),
    KnownText("de", "Latin", "Öffnungszeiten: Montag bis Freitag", "NotoSans-Regular.ttf"),
    KnownText("fr", "Latin", "Bienvenue à la bibliothèque municipale", "NotoSans-Regular.ttf"),
    KnownText("ru", "Cyrillic", "Добро пожаловать в библиотеку", "NotoSans-Regular.ttf"),
    KnownText("el", "Greek", "Καλώς ήρθατε στο μουσείο", "NotoSans-Regular.ttf"),
    KnownText("ar", "Arabic", "مرحبا بكم في المكتبة", "NotoSansArabic-Regular.ttf", rtl=True),
    KnownText("he", "Hebrew", "ברוכים הבאים לספרייה", "NotoSansHebrew-Regular.ttf", rtl=True),
    KnownText("hi", "Devanagari", "पुस्तकालय में आपका स्वागत है", "NotoSansDevanagari-Regular.ttf"),
    KnownText("th", "Thai", "ยินดีต้อนรับสู่ห้องสมุด", "NotoSansThai-Regular.ttf"),
    KnownText("bn", "Bengali", "গ্রন্থাগারে আপনাকে স্বাগতম", "NotoSansBengali-Regular.ttf"),
    KnownText("ta", "Tamil", "நூலகத்திற்கு வரவேற்கிறோம்", "NotoSansTamil-Regular.ttf"),
    KnownText("ja", "Japanese", "図書館へようこそ", CJK_FILE),
    KnownText("zh", "Han", "欢迎来到图书馆", CJK_FILE),
    KnownText("zh-Hant", "Han", "歡迎來到圖書館", CJK_FILE),
    KnownText("ko", "Korean", "도서관에 오신 것을 환영합니다", CJK_FILE),
]
BY_LANGUAGE = {known.language: known for known in KNOWN_TEXTS}


def font_path(name: str) -> str | None:
    """The installed file of a font, or None."""
    found = sorted(glob.glob(f"{FONT_DIR}/**/{name}", recursive=True))
    return found[0] if found else None


def missing_fonts(known: KnownText) -> str | None:
    """Why `known` cannot be rendered here (a skip reason), or None."""
    if font_path(known.font) is None:
        package = "fonts-noto-cjk" if known.font == CJK_FILE else "fonts-noto-core"
        return f"font {known.font} not installed (Debian package {package})"
    if known.rtl and not features.check("raqm"):
        return "Pillow lacks libraqm, needed to shape right-to-left text"
    return None


def load_font(known: KnownText, size: int) -> ImageFont.FreeTypeFont:
    index = CJK_FACES.get(known.language, 0) if known.font == CJK_FILE else 0
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(font_path(known.font), size, index=index, layout_engine=engine)


def render(known: KnownText, size: int = 40, colors: tuple = ((20, 20, 20), (250, 250, 250)),
           padding: int = 24) -> Image.Image:
    """`known.text` drawn on a plain background: an RGB image sized to fit the text."""
    font = load_font(known, size)
    options = {"direction": "rtl", "language": known.language} if known.rtl else {}
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
        (0, 0), known.text, font=font, spacing=size // 3, **options)
    image = Image.new("RGB", (right - left + 2 * padding, bottom - top + 2 * padding), colors[1])
    ImageDraw.Draw(image).multiline_text((padding - left, padding - top), known.text, font=font, fill=colors[0],
                                         spacing=size // 3, **options)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def comparable(text: str) -> str:
    """NFC, whitespace removed: tesseract spaces CJK characters and wraps lines its own way."""
    return "".join(unicodedata.normalize("NFC", text).split())


@pytest.mark.parametrize("known", KNOWN_TEXTS, ids=lambda k: k.language)
def test_every_known_text_renders_dark_ink_on_light_paper(known):
    reason = missing_fonts(known)
    if reason:
        pytest.skip(reason)
    pixels = np.asarray(render(known).convert("L"))
    ink = (pixels < 128).mean()
    assert 0.01 < ink < 0.5, f"{known.language}: {ink:.3f} of the pixels are ink"
