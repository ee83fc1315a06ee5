"""A cheap text-presence check: skip tesseract on images with nothing that looks like text.

Text is rows of small, high-contrast strokes. The check finds them the classic
way (morphological gradient, Otsu binarisation with a contrast floor, long
straight lines removed, a horizontal closing that merges the characters of a
word into one blob) and
counts the blobs shaped like words or text lines: a few pixels to a few
dozen tall, wider than tall, well filled. Photos with texture produce such
blobs too (they are then read, at a cost); images without any (flat
graphics, smooth photos, blank icons) are skipped. It costs a few
milliseconds where tesseract costs hundreds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRADIENT_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True)
class TextCheckParams:
    """Shape limits of a word-like blob (pixels of the checked image)."""

    min_contrast: int = 40  # gradient floor: edges weaker than this are not strokes
    merge_width: int = 9  # horizontal closing: joins characters closer than this
    min_height: int = 5
    max_height: int = 80
    min_width: int = 8
    min_aspect: float = 1.2  # width / height
    min_fill: float = 0.35  # stroke pixels / bounding box, after closing
    max_side: int = 1024  # larger images are checked at this size
    line_length: int = 40  # straight edges this long are frames and rules, not strokes: removed


def edge_mask(gray: np.ndarray, params: TextCheckParams) -> np.ndarray:
    """Binary mask of strong edges: morphological gradient thresholded by Otsu, never below the floor."""
    gradient = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, GRADIENT_KERNEL)
    otsu, _ = cv2.threshold(gradient, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, mask = cv2.threshold(gradient, max(otsu, params.min_contrast), 255, cv2.THRESH_BINARY)
    return mask


def remove_lines(mask: np.ndarray, length: int) -> np.ndarray:
    """The mask without horizontal and vertical runs of `length` pixels or more.

    UI screenshots put text inside boxes, tabs and tables: without this, a
    frame joins every label it touches into one blob too large to be a word.
    """
    if length <= 0:
        return mask
    horizontal = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
    vertical = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, length)))
    return cv2.subtract(mask, cv2.bitwise_or(horizontal, vertical))


def word_blobs(mask: np.ndarray, params: TextCheckParams) -> np.ndarray:
    """Bounding boxes (x, y, w, h) of word-shaped blobs in an edge mask."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (params.merge_width, 1))
    merged = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    boxes = stats[1:count]  # row 0 is the background
    x, y, w, h, area = (boxes[:, i] for i in range(5))
    shaped = ((h >= params.min_height) & (h <= params.max_height) & (w >= params.min_width)
              & (w >= params.min_aspect * h) & (area >= params.min_fill * w * h))
    return boxes[shaped, :4]


def to_gray(image: np.ndarray, max_side: int) -> np.ndarray:
    """Grayscale uint8, downscaled (area interpolation) so its longest side is at most `max_side`."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    longest = max(gray.shape[:2])
    if longest > max_side:
        scale = max_side / longest
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray, dtype=np.uint8)


def text_score(image: np.ndarray, params: TextCheckParams = TextCheckParams()) -> float:
    """How much word-shaped structure an image has: the number of word-like blobs.

    `image` is an RGB or grayscale uint8 array. 0 means nothing that looks
    like text; one line of text gives one to a few blobs.
    """
    gray = to_gray(image, params.max_side)
    if min(gray.shape) < params.min_height:
        return 0.0
    return float(len(word_blobs(remove_lines(edge_mask(gray, params), params.line_length), params)))
