"""The near-duplicate edits the image matcher must survive, as seeded functions.

Each edit takes an RGB Pillow image and a `random.Random` and returns a new
RGB image: the ways a benchmark image gets re-published on the web (resized,
re-compressed, cropped, mirrored, tilted, colour-graded, captioned). The
benchmark, the tests and the demo eval set all draw their positives from
here, so every one of them measures the same envelope:

- `resize`: 0.3x on each side;
- `jpeg`: re-encoded at JPEG quality 30;
- `crop`: 10-20% of the width and of the height cut away, at a random place;
- `flip`: mirrored left-right;
- `rotate`: turned 5-10 degrees either way on the same canvas (corners black);
- `jitter`: brightness, contrast and saturation scaled by 0.7-1.3, hue turned by up to 0.06;
- `banner`: a caption band (12-20% of the height, top or bottom) drawn over the image.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

Edit = Callable[[Image.Image, random.Random], Image.Image]

BANNER_WORDS = ("summer", "best", "view", "ever", "look", "this", "new", "photo", "day", "when", "you",
                "finally", "see", "it", "amazing", "free", "today", "only", "click", "here", "wow")


def resize(image: Image.Image, rng: random.Random, factor: float = 0.3) -> Image.Image:
    """Downscale each side by `factor` (at least 8 px)."""
    size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BILINEAR)


def jpeg(image: Image.Image, rng: random.Random, quality: int = 30) -> Image.Image:
    """Re-encode at a low JPEG quality."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, rng: random.Random, least: float = 0.1, most: float = 0.2) -> Image.Image:
    """Cut away `least`-`most` of the width and of the height, at a random offset."""
    width = round(image.width * (1 - rng.uniform(least, most)))
    height = round(image.height * (1 - rng.uniform(least, most)))
    left = rng.randint(0, image.width - width)
    top = rng.randint(0, image.height - height)
    return image.crop((left, top, left + width, top + height))


def flip(image: Image.Image, rng: random.Random) -> Image.Image:
    """Mirror left-right."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def rotate(image: Image.Image, rng: random.Random, least: float = 5.0, most: float = 10.0) -> Image.Image:
    """Turn by `least`-`most` degrees either way, keeping the canvas (the corners go black)."""
    angle = rng.uniform(least, most) * rng.choice((-1, 1))
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))


def jitter(image: Image.Image, rng: random.Random, strength: float = 0.3, hue: float = 0.06) -> Image.Image:
    """Scale brightness, contrast and saturation by 1 +- `strength`; turn the hue by up to `hue`."""
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(1 - strength, 1 + strength))
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(rng.uniform(-hue, hue) * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def banner(image: Image.Image, rng: random.Random) -> Image.Image:
    """Draw a caption band with a few words over the top or bottom of the image."""
    image = image.copy()
    band = max(6, round(image.height * rng.uniform(0.12, 0.2)))
    top = 0 if rng.random() < 0.5 else image.height - band
    fill, ink = ((0, 0, 0), (255, 255, 255)) if rng.random() < 0.5 else ((255, 255, 255), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, top, image.width, top + band), fill=fill)
    font = ImageFont.load_default(size=max(6, round(band * 0.6)))
    text = " ".join(rng.choice(BANNER_WORDS) for _ in range(rng.randint(2, 5))).upper()
    draw.text((image.width / 2, top + band / 2), text, fill=ink, font=font, anchor="mm")
    return image


EDITS: dict[str, Edit] = {"resize": resize, "jpeg": jpeg, "crop": crop, "flip": flip, "rotate": rotate,
                          "jitter": jitter, "banner": banner}

# Chains of edits, each applied in order; the benchmark and the demo use these.
EDIT_CHAINS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in EDITS},
    "crop+flip+jpeg": ("crop", "flip", "jpeg"),
    "rotate+jitter+banner": ("rotate", "jitter", "banner"),
    "resize+crop+jitter": ("resize", "crop", "jitter"),
    "all": ("crop", "rotate", "flip", "jitter", "banner", "resize", "jpeg"),
}


def apply_edits(image: Image.Image, names: Sequence[str], seed: int) -> Image.Image:
    """Apply the named edits in order, seeded: same image, names and seed, same result."""
    rng = random.Random(seed)
    image = image.convert("RGB")
    for name in names:
        image = EDITS[name](image, rng)
    return image
