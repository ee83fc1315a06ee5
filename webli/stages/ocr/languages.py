"""Which tesseract packs read an image: from the alt text's language and OSD's script.

Language codes are the crawl stage's (fastText lid.176 and CLD2: ISO 639-1
where one exists, else ISO 639-3, plus `zh-Hant`). Tesseract names its
language packs mostly by ISO 639-2/T and its script packs by script name
(`Latin`, `HanS`, ... at the top of tessdata in Debian, `script/Latin`
upstream); both spellings are resolved against the packs actually installed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

# Alt-text language code -> tesseract language packs, best first.
LANGUAGE_PACKS: dict[str, tuple[str, ...]] = {
    "af": ("afr",), "am": ("amh",), "ar": ("ara",), "arz": ("ara",), "as": ("asm",), "az": ("aze",),
    "be": ("bel",), "bg": ("bul",), "bn": ("ben",), "bo": ("bod",), "br": ("bre",), "bs": ("bos",),
    "ca": ("cat",), "ceb": ("ceb",), "chr": ("chr",), "co": ("cos",), "cs": ("ces",), "cy": ("cym",),
    "da": ("dan",), "de": ("deu",), "als": ("deu",), "bar": ("deu",), "nds": ("deu",), "dv": ("div",),
    "dz": ("dzo",), "el": ("ell",), "en": ("eng",), "eo": ("epo",), "es": ("spa",), "et": ("est",),
    "eu": ("eus",), "fa": ("fas",), "fi": ("fin",), "fo": ("fao",), "fr": ("fra",), "fy": ("fry",),
    "ga": ("gle",), "gd": ("gla",), "gl": ("glg",), "gu": ("guj",), "he": ("heb",), "iw": ("heb",),
    "hi": ("hin",), "hr": ("hrv",), "ht": ("hat",), "hu": ("hun",), "hy": ("hye",), "id": ("ind",),
    "is": ("isl",), "it": ("ita",), "iu": ("iku",), "ja": ("jpn",), "jv": ("jav",), "ka": ("kat",),
    "kk": ("kaz",), "km": ("khm",), "kn": ("kan",), "ko": ("kor",), "ku": ("kmr",), "ky": ("kir",),
    "la": ("lat",), "lb": ("ltz",), "lo": ("lao",), "lt": ("lit",), "lv": ("lav",), "mi": ("mri",),
    "mk": ("mkd",), "ml": ("mal",), "mn": ("mon",), "mr": ("mar",), "ms": ("msa",), "mt": ("mlt",),
    "my": ("mya",), "ne": ("nep",), "nl": ("nld",), "no": ("nor",), "nb": ("nor",), "nn": ("nor",),
    "oc": ("oci",), "or": ("ori",), "pa": ("pan",), "pl": ("pol",), "ps": ("pus",), "pt": ("por",),
    "qu": ("que",), "ro": ("ron",), "ru": ("rus",), "sa": ("san",), "sd": ("snd",), "si": ("sin",),
    "sk": ("slk",), "sl": ("slv",), "sq": ("sqi",), "sr": ("srp",), "su": ("sun",), "sv": ("swe",),
    "sw": ("swa",), "syr": ("syr",), "ta": ("tam",), "te": ("tel",), "tg": ("tgk",), "th": ("tha",),
    "ti": ("tir",), "tl": ("tgl", "fil"), "to": ("ton",), "tr": ("tur",), "tt": ("tat",), "ug": ("uig",),
    "uk": ("ukr",), "ur": ("urd",), "uz": ("uzb",), "vi": ("vie",), "yi": ("yid",), "yo": ("yor",),
    "zh": ("chi_sim",), "zh-hans": ("chi_sim",), "wuu": ("chi_sim",), "zh-hant": ("chi_tra",),
    "yue": ("chi_tra",),
}

# Script (tesseract OSD's names) -> packs that read it, best first: a common
# language's pack, then the script pack (larger, slower, every language).
SCRIPT_PACKS: dict[str, tuple[str, ...]] = {
    "Latin": ("eng", "Latin"), "Fraktur": ("frk", "deu", "Fraktur"), "Cyrillic": ("rus", "Cyrillic"),
    "Greek": ("ell", "Greek"), "Arabic": ("ara", "Arabic"), "Hebrew": ("heb", "Hebrew"),
    "Devanagari": ("hin", "Devanagari"), "Bengali": ("ben", "Bengali"), "Han": ("chi_sim", "HanS"),
    "Japanese": ("jpn", "Japanese"), "Korean": ("kor", "Hangul"), "Thai": ("tha", "Thai"),
    "Tamil": ("tam", "Tamil"), "Telugu": ("tel", "Telugu"), "Kannada": ("kan", "Kannada"),
    "Malayalam": ("mal", "Malayalam"), "Gujarati": ("guj", "Gujarati"), "Gurmukhi": ("pan", "Gurmukhi"),
    "Oriya": ("ori", "Oriya"), "Sinhala": ("sin", "Sinhala"), "Myanmar": ("mya", "Myanmar"),
    "Khmer": ("khm", "Khmer"), "Lao": ("lao", "Lao"), "Tibetan": ("bod", "Tibetan"),
    "Georgian": ("kat", "Georgian"), "Armenian": ("hye", "Armenian"), "Ethiopic": ("amh", "Ethiopic"),
    "Syriac": ("syr", "Syriac"), "Thaana": ("div", "Thaana"), "Cherokee": ("chr", "Cherokee"),
    "Canadian_Aboriginal": ("iku", "Canadian_Aboriginal"),
}
TRADITIONAL_HAN_PACKS = ("chi_tra", "HanT")
TRADITIONAL_CHINESE = {"zh-hant", "yue"}

# OSD's finer script names -> the script they are read as.
SCRIPT_ALIASES = {"Hiragana": "Japanese", "Katakana": "Japanese", "Hangul": "Korean"}

# The script each pack reads (language packs; script packs read their own name).
_PACKS_BY_SCRIPT = {
    "Cyrillic": "bel bul kaz kir mkd mon rus srp tat tgk ukr uzb_cyrl aze_cyrl",
    "Greek": "ell grc", "Arabic": "ara fas pus snd uig urd", "Hebrew": "heb yid",
    "Devanagari": "hin mar nep san", "Bengali": "ben asm", "Han": "chi_sim chi_tra HanS HanT",
    "Japanese": "jpn", "Korean": "kor Hangul", "Thai": "tha", "Tamil": "tam", "Telugu": "tel",
    "Kannada": "kan", "Malayalam": "mal", "Gujarati": "guj", "Gurmukhi": "pan", "Oriya": "ori",
    "Sinhala": "sin", "Myanmar": "mya", "Khmer": "khm", "Lao": "lao", "Tibetan": "bod dzo",
    "Georgian": "kat kat_old", "Armenian": "hye", "Ethiopic": "amh tir", "Syriac": "syr", "Thaana": "div",
    "Cherokee": "chr", "Canadian_Aboriginal": "iku", "Fraktur": "frk",
}
PACK_SCRIPTS = {pack: script for script, packs in _PACKS_BY_SCRIPT.items() for pack in packs.split()}

# Scripts a pack still reads well beyond its own (Japanese and Korean text mixes in Han characters).
COMPATIBLE_SCRIPTS = {"Japanese": {"Japanese", "Han"}, "Korean": {"Korean", "Han"}}

NON_LANGUAGE_PACKS = {"osd", "equ"}


def pack_script(pack: str) -> str:
    """The script a pack reads: its own name for script packs, Latin for unlisted languages."""
    name = pack.removeprefix("script/")
    if name in PACK_SCRIPTS:
        return PACK_SCRIPTS[name]
    return name if name in SCRIPT_PACKS else "Latin"


def normalize_script(script: str | None) -> str | None:
    """OSD's script name as one of SCRIPT_PACKS' keys (Katakana -> Japanese, ...), or None."""
    if not script:
        return None
    return SCRIPT_ALIASES.get(script, script)


def resolve_pack(name: str, installed: Collection[str]) -> str | None:
    """The installed spelling of a pack (`Latin` or `script/Latin`), or None if it is not installed."""
    for candidate in (name, f"script/{name}", name.removeprefix("script/")):
        if candidate in installed:
            return candidate
    return None


def first_installed(candidates: Sequence[str], installed: Collection[str]) -> str | None:
    """The first of `candidates` that is installed (in its installed spelling)."""
    for name in candidates:
        resolved = resolve_pack(name, installed)
        if resolved:
            return resolved
    return None


def language_pack(language: str | None, installed: Collection[str]) -> str | None:
    """The installed pack for an alt-text language code (`de`, `zh-Hant`, `deu`...), or None."""
    if not language:
        return None
    code = language.strip().lower().replace("_", "-")
    candidates = LANGUAGE_PACKS.get(code) or LANGUAGE_PACKS.get(code.split("-")[0]) or ()
    found = first_installed(candidates, installed)
    if found is None and code in installed and code not in NON_LANGUAGE_PACKS:
        return code  # already a tesseract name
    return found


def script_pack(script: str, installed: Collection[str], traditional: bool = False) -> str | None:
    """The installed pack that best reads `script` (traditional Han when the alt text says so)."""
    candidates = TRADITIONAL_HAN_PACKS if script == "Han" and traditional else SCRIPT_PACKS.get(script, ())
    return first_installed(candidates, installed)


def reads_script(pack: str, script: str) -> bool:
    """Whether `pack` reads text in `script`."""
    own = pack_script(pack)
    return script in COMPATIBLE_SCRIPTS.get(own, {own})


@dataclass(frozen=True)
class PackPolicy:
    """How `choose_packs` completes its choice (from the `ocr` config section)."""

    fallback: tuple[str, ...] = ("eng",)  # when neither the alt text nor OSD names a usable pack
    secondary: str | None = "eng"  # added after a non-Latin first pack: Latin text is everywhere
    max_packs: int = 3


def choose_packs(language: str | None, script: str | None, installed: Collection[str],
                 policy: PackPolicy = PackPolicy()) -> list[str]:
    """Packs to read one image with, best first.

    The alt text's language gives the first pack; a script that OSD found and
    that pack cannot read adds that script's pack; a non-Latin choice is
    followed by the secondary (Latin) pack. With neither, the fallback.
    """
    packs: list[str] = []
    lang_pack = language_pack(language, installed)
    if lang_pack:
        packs.append(lang_pack)
    script = normalize_script(script)
    if script and not any(reads_script(pack, script) for pack in packs):
        traditional = (language or "").lower().replace("_", "-") in TRADITIONAL_CHINESE
        found = script_pack(script, installed, traditional)
        if found:
            packs.append(found)
    if not packs:
        packs = [p for p in (resolve_pack(name, installed) for name in policy.fallback) if p]
    secondary = resolve_pack(policy.secondary, installed) if policy.secondary else None
    if secondary and packs and not any(pack_script(p) == "Latin" for p in packs):
        packs.append(secondary)
    return list(dict.fromkeys(packs))[: policy.max_packs]
