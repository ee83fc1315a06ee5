"""Edits outside the matcher's envelope: the same photo, another edit (a negative, not a copy).

The issue's hard negatives are other edits of an eval image itself: an image
editor's filters (blur, sharpen, noise, oil paint, glow, pixelate, ripple).
These functions make such edits of any image, for training the pair verifier
(benchmarks/train_dedup_verifier.py) on families the benchmark never scores,
and for tests. Each takes an RGB Pillow image and a `random.Random` and
returns an image of the same size. Strengths are in pixels of a
`verifier.SIDE` view of the image (`unit`), so every edit is visible at the
scale the verifier compares, whatever the image's size; none of them is one
of `edits.EDITS` (resizing, JPEG, crop, flip, turn, colour jitter, banner).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageFilter

from webli.stages.dedup.verifier import SIDE

OtherEdit = Callable[[Image.Image, random.Random], Image.Image]


def unit(image: Image.Image) -> float:
    """Pixels of the image per pixel of its SIDE view (at least 1)."""
    return max(1.0, max(image.size) / SIDE)


def view_size(image: Image.Image, least: int = 1) -> tuple[int, int]:
    """(width, height) of the image's SIDE view, each at least `least`."""
    return (max(least, round(image.width / unit(image))), max(least, round(image.height / unit(image))))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), np.float32)


def from_pixels(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))


def gaussian_blur(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blurred with a Gaussian of 0.7-3 view pixels."""
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.7, 3.0) * unit(image)))


def motion_blur(image: Image.Image, rng: random.Random) -> Image.Image:
    """Smeared along a random direction over 4-10 view pixels."""
    length = max(3, round(rng.uniform(4, 10) * unit(image)))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    return from_pixels(cv2.filter2D(pixels(image), -1, kernel / max(kernel.sum(), 1e-6)))


def sharpen(image: Image.Image, rng: random.Random) -> Image.Image:
    """An unsharp mask of radius 1-3 view pixels at 100-400%."""
    return image.filter(ImageFilter.UnsharpMask(rng.uniform(1.0, 3.0) * unit(image), rng.randint(100, 400), 0))


def noise(image: Image.Image, rng: random.Random) -> Image.Image:
    """Gaussian noise of 12-45 grey levels in view pixels, per channel or the same on all three."""
    generator = np.random.default_rng(rng.randrange(1 << 30))
    values = pixels(image)
    width, height = view_size(image)
    channels = 3 if rng.random() < 0.5 else 1
    grain = generator.normal(0, rng.uniform(12, 45), (height, width, channels)).astype(np.float32)
    grain = cv2.resize(grain, (values.shape[1], values.shape[0]), interpolation=cv2.INTER_NEAREST)
    return from_pixels(values + (grain if grain.ndim == 3 else grain[..., None]))


def scatter(image: Image.Image, rng: random.Random) -> Image.Image:
    """Pixels moved by up to 1-4 view pixels at random (GIMP's spread, slur and pick)."""
    values = pixels(image)
    height, width = values.shape[:2]
    generator = np.random.default_rng(rng.randrange(1 << 30))
    reach = rng.uniform(1.0, 4.0) * unit(image)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    moved = rng.uniform(0.3, 1.0)  # share of the pixels that move
    shift = generator.uniform(-reach, reach, (2, height, width)).astype(np.float32)
    shift *= generator.random((height, width)) < moved
    return from_pixels(cv2.remap(values, xs + shift[0], ys + shift[1], cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_REFLECT))


def oil_paint(image: Image.Image, rng: random.Random) -> Image.Image:
    """A median filter of 3-7 view pixels: flat patches with the detail gone."""
    size = 2 * round(rng.uniform(1.0, 3.0) * unit(image)) + 1
    return from_pixels(cv2.medianBlur(np.asarray(image.convert("RGB")), min(size, 255)))


def smooth(image: Image.Image, rng: random.Random) -> Image.Image:
    """Edge-preserving smoothing, 2-4 passes of a bilateral filter (GIMP's selective blur, NL filter)."""
    values = pixels(image)
    for _ in range(rng.randint(2, 4)):
        values = cv2.bilateralFilter(values, -1, rng.uniform(40, 120), rng.uniform(3.0, 6.0) * unit(image))
    return from_pixels(values)


def posterise(image: Image.Image, rng: random.Random) -> Image.Image:
    """Each channel cut to 3-5 levels."""
    levels = rng.randint(3, 5)
    step = 255 / (levels - 1)
    return from_pixels(np.round(pixels(image) / step) * step)


def glow(image: Image.Image, rng: random.Random) -> Image.Image:
    """A blurred copy (4-10 view pixels) screened over the image at 50-100%: soft glow, bloom."""
    values = pixels(image) / 255
    halo = pixels(image.filter(ImageFilter.GaussianBlur(rng.uniform(4, 10) * unit(image)))) / 255
    halo *= rng.uniform(0.5, 1.0)
    return from_pixels((1 - (1 - values) * (1 - halo)) * 255)


def pixelate(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blocks of 3-8 view pixels."""
    block = rng.uniform(3, 8) * unit(image)
    small = (max(1, round(image.width / block)), max(1, round(image.height / block)))
    return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.NEAREST)


def ripple(image: Image.Image, rng: random.Random) -> Image.Image:
    """Rows or columns shifted along a sine wave of 1-4 view pixels (GIMP's ripple, waves, video)."""
    values = pixels(image)
    height, width = values.shape[:2]
    scale = unit(image)
    amplitude, wavelength = rng.uniform(1.0, 4.0) * scale, rng.uniform(6, 24) * scale
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:
        xs += amplitude * np.sin(2 * np.pi * ys / wavelength)
    else:
        ys += amplitude * np.sin(2 * np.pi * xs / wavelength)
    return from_pixels(cv2.remap(values, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def canvas(image: Image.Image, rng: random.Random) -> Image.Image:
    """A relief texture of 2-5 view pixels pressed into the image at 8-35% (apply canvas, cloth, weave)."""
    values = pixels(image)
    height, width = values.shape[:2]
    generator = np.random.default_rng(rng.randrange(1 << 30))
    texture = cv2.GaussianBlur(generator.normal(0, 1, (height, width)).astype(np.float32), (0, 0),
                               rng.uniform(0.5, 1.5) * unit(image))
    relief = cv2.Sobel(texture, cv2.CV_32F, 1, 1)
    relief /= max(float(relief.std()), 1e-6)
    return from_pixels(values * (1 + rng.uniform(0.08, 0.35) * np.clip(relief, -2, 2)[..., None]))


def edge_enhance(image: Image.Image, rng: random.Random) -> Image.Image:
    """Pillow's strong edge enhancement, on the SIDE view enlarged back: the outlines drawn in."""
    small = image.resize(view_size(image, least=8), Image.Resampling.BOX)
    return small.filter(ImageFilter.EDGE_ENHANCE_MORE).resize(image.size, Image.Resampling.BILINEAR)


OTHER_EDITS: dict[str, OtherEdit] = {
    "gaussian_blur": gaussian_blur, "motion_blur": motion_blur, "sharpen": sharpen, "noise": noise,
    "scatter": scatter, "oil_paint": oil_paint, "smooth": smooth, "posterise": posterise, "glow": glow,
    "pixelate": pixelate, "ripple": ripple, "canvas": canvas, "edge_enhance": edge_enhance,
}


def visible_change(original: Image.Image, edited: Image.Image) -> float:
    """How much an edit changes the picture at the verifier's scale: the RMS grey-level difference of the two
    SIDE views after the best gain and offset (which colour jitter may change freely)."""
    size = view_size(original)
    before, after = (np.asarray(image.convert("L").resize(size, Image.Resampling.BOX), np.float64).ravel()
                     for image in (original, edited))
    design = np.stack([before, np.ones_like(before)], 1)
    fitted = design @ np.linalg.lstsq(design, after, rcond=None)[0]
    return float(np.sqrt(np.mean((after - fitted) ** 2)))


def apply_other_edit(image: Image.Image, name: str, seed: int) -> Image.Image:
    """One named edit outside the envelope, seeded: same image, name and seed, same result."""
    return OTHER_EDITS[name](image.convert("RGB"), random.Random(seed))


def other_edit_names(rng: random.Random, count: int) -> Sequence[str]:
    """`count` different edits outside the envelope, drawn with `rng`."""
    return rng.sample(sorted(OTHER_EDITS), count)
