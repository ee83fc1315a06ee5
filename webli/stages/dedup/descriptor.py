"""The cheap global descriptor that finds candidate eval images: low-frequency DCT of many views.

One view = a region of the image, shrunk to a 16x16 grey thumbnail, whose
2-D DCT keeps the 64 lowest non-constant frequencies (zig-zag order), as a
unit vector: a real-valued pHash, compared by cosine instead of Hamming
distance, which keeps the brightness/contrast/JPEG/resize tolerance of pHash
and ranks much better. A single global view is defeated by crops, rotations
and banners (measured: benchmarks/results/dedup.md), so each side describes
several views, chosen so that every tolerated edit lines some eval view up
with some candidate view:

- eval side (indexed): the whole image, its top 80% and bottom 80% (a banner
  covers the other part), and nine 85% windows on a 3x3 grid (crops);
- candidate side (per query): the image and its mirror image, each whole,
  turned by -7 and +7 degrees (rotations up to 10 degrees), and cut to its top
  and bottom 80%, also when turned.

A candidate's similarity to an eval image is the best cosine over all view
pairs. Everything is numpy/OpenCV, about a millisecond per candidate.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

THUMB = 16
DIM = 64
BAND = 0.2  # share of the height a banner may cover
WINDOW = 0.85  # side of the crop windows, as a share of the image
TURNS = (-7.0, 7.0)  # degrees; with the untouched view, rotations up to ~10 degrees line up within ~3.5

Box = tuple[float, float, float, float]  # left, top, right, bottom as shares of the image
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)
BAND_BOXES: tuple[Box, ...] = ((0.0, BAND, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0 - BAND))
CROP_BOXES: tuple[Box, ...] = tuple((x, y, x + WINDOW, y + WINDOW) for x in (0.0, (1 - WINDOW) / 2, 1 - WINDOW)
                                    for y in (0.0, (1 - WINDOW) / 2, 1 - WINDOW))
EVAL_BOXES: tuple[Box, ...] = (WHOLE, *BAND_BOXES, *CROP_BOXES)
EVAL_VIEWS = len(EVAL_BOXES)
QUERY_VIEWS = 2 * (1 + len(BAND_BOXES)) * (1 + len(TURNS))


@cache
def zigzag(size: int = THUMB, count: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the `count` lowest 2-D frequencies after the constant one."""
    order = sorted(((r, c) for r in range(size) for c in range(size)), key=lambda rc: (rc[0] + rc[1], rc[0]))
    chosen = order[1:count + 1]
    return np.array([r for r, _ in chosen]), np.array([c for _, c in chosen])


def grey_float(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def region(image: np.ndarray, box: Box) -> np.ndarray:
    """The part of `image` inside `box` (at least one pixel)."""
    height, width = image.shape[:2]
    left, top = int(round(box[0] * width)), int(round(box[1] * height))
    right = max(left + 1, int(round(box[2] * width)))
    bottom = max(top + 1, int(round(box[3] * height)))
    return image[top:bottom, left:right]


def view_vector(grey: np.ndarray, box: Box = WHOLE) -> np.ndarray:
    """The DCT descriptor (unit vector, or zeros for a flat view) of one view of a grey float image."""
    part = region(grey, box)
    interpolation = cv2.INTER_AREA if min(part.shape) >= THUMB else cv2.INTER_LINEAR
    small = cv2.resize(part, (THUMB, THUMB), interpolation=interpolation)
    rows, columns = zigzag()
    coefficients = cv2.dct(small)[rows, columns]
    norm = float(np.linalg.norm(coefficients))
    return coefficients / norm if norm > 1e-6 else np.zeros(DIM, np.float32)


def turned(grey: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned about its centre on the same canvas (edges mirrored, not black)."""
    height, width = grey.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def eval_views(rgb: np.ndarray) -> np.ndarray:
    """EVAL_VIEWS x DIM float32 descriptors of an eval image (normalised scale)."""
    grey = grey_float(rgb)
    return np.stack([view_vector(grey, box) for box in EVAL_BOXES])


def query_views(rgb: np.ndarray) -> np.ndarray:
    """QUERY_VIEWS x DIM float32 descriptors of a candidate image (normalised scale)."""
    grey = grey_float(rgb)
    vectors = []
    for oriented in (grey, np.ascontiguousarray(grey[:, ::-1])):
        for view in (oriented, *(turned(oriented, d) for d in TURNS)):
            vectors += [view_vector(view, box) for box in (WHOLE, *BAND_BOXES)]
    return np.stack(vectors)
