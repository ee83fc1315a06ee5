"""Decoding and normalising images on both sides: downloaded candidates and eval originals.

A candidate is the download stage's `KEY.jpg`: resized so its longest side is
`download.image_size` and, in the default `border` mode, padded to a square
with white. The padding is not part of the picture (an eval original has
none), so it is cut away first, from the original's size recorded in the
download table. Both sides are then brought to the same scale (longest side
NORMALISED_SIZE) and to RGB with transparency over white, as img2dataset does.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

NORMALISED_SIZE = 256
MIN_SIDE = 16  # smaller images carry too little to compare; counted as image_too_small
MAX_DECODE_SIDE = 1024  # eval originals are decoded at a reduced size when the format allows (JPEG draft)


class DecodeError(ValueError):
    """The bytes are not an image this module can decode."""


def over_white(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (img2dataset's alpha matting)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def decode_original(data: bytes) -> np.ndarray:
    """Decode an eval image (any Pillow format) to RGB uint8, large JPEGs at a reduced size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (MAX_DECODE_SIDE, MAX_DECODE_SIDE))
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            return np.asarray(over_white(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DecodeError(f"{type(err).__name__}: {err}") from None


def decode_candidate(data: bytes) -> np.ndarray:
    """Decode a downloaded sample's image bytes (JPEG, PNG or WebP, as the download stage wrote them) to RGB."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DecodeError("not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def padded_content_box(size: int, original_width: int, original_height: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the picture inside img2dataset's `border` square of side `size`.

    img2dataset scales the longest side to `size` and pads the other
    centred; one pixel more is cut on padded sides, where JPEG blurs the edge.
    """
    scale = size / max(original_width, original_height)
    width = max(1, min(size, round(original_width * scale)))
    height = max(1, min(size, round(original_height * scale)))
    left, top = (size - width) // 2, (size - height) // 2
    if width < size - 2:
        left, width = left + 1, width - 2
    if height < size - 2:
        top, height = top + 1, height - 2
    return left, top, width, height


def candidate_content(image: np.ndarray, resize_mode: str, original_width: int | None,
                      original_height: int | None) -> np.ndarray:
    """The picture of a downloaded sample without the download stage's padding."""
    height, width = image.shape[:2]
    if resize_mode != "border" or not original_width or not original_height or width != height:
        return image
    left, top, box_width, box_height = padded_content_box(width, original_width, original_height)
    return image[top:top + box_height, left:left + box_width]


def source_side(resize_mode: str, original_width: int | None, original_height: int | None) -> int | None:
    """Pixels of a downloaded sample's source image across the longest side of its picture (None: unknown):
    `center_crop` keeps a square of the shorter side, every other mode the whole image."""
    if not original_width or not original_height:
        return None
    return min(original_width, original_height) if resize_mode == "center_crop" else max(original_width,
                                                                                          original_height)


def normalise(image: np.ndarray, size: int = NORMALISED_SIZE) -> np.ndarray:
    """Resize so the longest side is `size` (area averaging down, bilinear up)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale == 1:
        return np.ascontiguousarray(image)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, shape, interpolation=interpolation)


def too_small(image: np.ndarray) -> bool:
    """Whether an image is too small to compare (either side under MIN_SIDE pixels)."""
    return min(image.shape[:2]) < MIN_SIDE
