"""The realweb images the dedup benchmark and the descriptor's training draw from, split by family.

Every raster image of the realweb corpus (/tmp/realweb/www), once per
content (sha256), at least 64 px on its short side and at most 4:1. Images
are grouped in *families*: one picture and its variants, so that no variant
of a benchmark image is ever trained on, and no two variants are taken as
unrelated:

- the same file in the GIMP / KiCad / Debian handbook / LibreOffice language
  folders (localised screenshots of one dialog) is one family;
- the GIMP manual's Taj Mahal photo and its ~100 filter outputs are one family;
- a KDE wallpaper's folder (sizes, portrait and dark versions, screenshot) is one
  family, and so is a GNOME wallpaper's light/dark pair.

Families are split by a hash of their name: 40% (plus every wallpaper and the
Taj Mahal family, the natural hard cases) for the benchmark, 60% for training.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REALWEB_WWW, log  # noqa: E402

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
LANGUAGE_SEGMENT = re.compile(r"^[a-z]{2,3}([-_@][A-Za-z]{2,})?$")
MIN_SIDE, MAX_ASPECT = 64, 4.0
BENCH_SHARE = 0.4
CACHE = Path("/tmp/webli-dedup-bench/corpus.json")


@dataclass(frozen=True)
class CorpusImage:
    """One distinct image file of the corpus."""

    path: str  # relative to the corpus root
    sha256: str
    width: int
    height: int
    family: str


def family_of(path: str) -> str:
    """The family name of a corpus path (see the module docstring)."""
    parts = path.split("/")
    if parts[0] == "wallpapers":
        if parts[1] == "plasma":
            return "wallpaper/" + parts[2]
        return "wallpaper/gnome/" + re.sub(r"-[ld]\.\w+$", "", parts[-1])
    if parts[0] == "gimp" and "taj" in parts[-1].lower():
        return "gimp/taj"
    kept = [p for p in parts[1:-1] if not LANGUAGE_SEGMENT.match(p)]
    return "/".join([parts[0], *kept, parts[-1]])


def is_bench_family(family: str) -> bool:
    """Whether a family belongs to the benchmark side of the split (else to training)."""
    if family.startswith("wallpaper/") or family == "gimp/taj":
        return True
    digest = int.from_bytes(hashlib.blake2b(family.encode(), digest_size=8).digest(), "big")
    return digest % 1000 < BENCH_SHARE * 1000


def scan_corpus(root: Path = REALWEB_WWW) -> list[CorpusImage]:
    """Every usable distinct image under `root`, sorted by path (cached as JSON)."""
    if CACHE.is_file():
        return [CorpusImage(**row) for row in json.loads(CACHE.read_text())]
    Image.MAX_IMAGE_PIXELS = None
    seen: set[str] = set()
    images = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception:  # noqa: BLE001 - the corpus has a few files Pillow refuses; they are skipped
            continue
        if min(width, height) >= MIN_SIDE and max(width, height) / min(width, height) <= MAX_ASPECT:
            relative = str(path.relative_to(root))
            images.append(CorpusImage(relative, digest, width, height, family_of(relative)))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps([asdict(i) for i in images]))
    log(f"corpus: {len(images)} distinct images under {root}")
    return images


def load_rgb(path: str, root: Path = REALWEB_WWW, max_side: int | None = None) -> np.ndarray:
    """Decode a corpus image to RGB (transparency over white), optionally shrunk to `max_side`."""
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(root / path) as image:
        image.draft("RGB", (max_side, max_side)) if max_side else None
        if image.mode in ("RGBA", "LA", "P", "PA"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(image)
