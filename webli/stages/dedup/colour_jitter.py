"""Colour jitter as a model: fitted between an aligned pair, applied to the eval image the pair verifier sees.

Colour jitter (edits.jitter, as PIL's ImageEnhance and torchvision's
ColorJitter do it) scales brightness, then contrast about the mean grey, then
saturation about each pixel's grey, clipping to 0-255 after each step, and
turns the HSV hue. In grey that is not one gain and offset: brightening clips
a light background to white, so a light grey field and a white one become one
and the edge between them is gone, and a hue turn lightens some colours and
darkens others. The structure test correlates cell by cell and tolerates it;
the pair verifier sees the whole aligned pair and doubted such copies. So the
verifier's eval image is the eval image jittered by the factors that map its
aligned thumbnail best onto the candidate's (`fit_jitter`, `jittered`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # PIL's and OpenCV's RGB -> grey weights
FACTOR_RANGE = (0.5, 1.6)  # brightness and contrast factors the fit may choose
SATURATION_RANGE = (0.0, 2.0)
FIT_SCALE = 8.0  # grey levels: residuals beyond this count less (a banner, JPEG noise; soft L1 loss)
MAX_FIT_STEPS = 30  # function evaluations of the fit
MAX_FIT_PIXELS = 256  # thumbnail pixels the fit uses at most (evenly spaced)
FIT_TOLERANCE = 1e-4  # relative change of the cost or the factors at which the fit stops


@dataclass(frozen=True)
class Jitter:
    """One colour jitter: brightness, contrast (about `mean`, a grey level) and saturation factors, then an HSV
    hue shift in degrees."""

    brightness: float = 1.0
    contrast: float = 1.0
    mean: float = 128.0
    saturation: float = 1.0
    hue: float = 0.0


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """Grey (PIL's luma) of an RGB float image."""
    return rgb @ LUMA


def with_hue_shifted(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """An RGB image (uint8 scale) with its HSV hue shifted by `degrees` (the colour test's, too): float32, or
    the image itself when `degrees` is 0."""
    if not degrees:
        return rgb
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + degrees) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def jittered(rgb: np.ndarray, jitter: Jitter) -> np.ndarray:
    """An RGB float image (0-255, any shape ... x 3) under the jitter, clipped after each step as PIL does."""
    x = np.clip(rgb * jitter.brightness, 0, 255)
    x = np.clip(jitter.mean + jitter.contrast * (x - jitter.mean), 0, 255)
    grey = grey_of(x)[..., None]
    x = np.clip(grey + jitter.saturation * (x - grey), 0, 255)
    return with_hue_shifted(x, jitter.hue)


def fit_jitter(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray, hue: float) -> Jitter:
    """The jitter (with this HSV hue shift, `verify.hue_shift`'s) that maps the reference's valid pixels best
    onto the candidate's (aligned RGB images, 0-255), by robust least squares. As in PIL, contrast scales about
    the mean grey after brightness; the search starts from the gain and offset that fit the grey images."""
    target = np.asarray(candidate, np.float32)[valid]
    source = np.asarray(reference, np.float32)[valid]
    if len(source) < 4:
        return Jitter(hue=hue)
    step = max(1, len(source) // MAX_FIT_PIXELS)
    target, source = target[::step], source[::step]
    source_mean = max(1.0, float(grey_of(source).mean()))

    def jitter_of(factors: np.ndarray, turn: float) -> Jitter:
        brightness, contrast, saturation = (float(v) for v in factors)
        return Jitter(brightness, contrast, brightness * source_mean, saturation, turn)

    unturned = with_hue_shifted(target[None], -hue)[0]  # the hue turn is last and invertible: fit before it

    def residuals(factors: np.ndarray) -> np.ndarray:
        return (jittered(source[None], jitter_of(factors, 0.0))[0] - unturned).ravel()

    design = np.stack([grey_of(source), np.ones(len(source), np.float32)], 1)
    gain, offset = np.linalg.lstsq(design, grey_of(target), rcond=None)[0]
    brightness = gain + offset / source_mean  # out = contrast * brightness * x + (1 - contrast) * brightness * mean
    lower = [FACTOR_RANGE[0], FACTOR_RANGE[0], SATURATION_RANGE[0]]
    upper = [FACTOR_RANGE[1], FACTOR_RANGE[1], SATURATION_RANGE[1]]
    start = np.clip([brightness, gain / brightness if brightness > 0 else 1.0, 1.0], lower, upper)
    solution = least_squares(residuals, start, bounds=(lower, upper), loss="soft_l1", f_scale=FIT_SCALE,
                             x_scale=0.1, ftol=FIT_TOLERANCE, xtol=FIT_TOLERANCE, max_nfev=MAX_FIT_STEPS)
    return jitter_of(solution.x, hue)


def eval_in_colour(detail: np.ndarray, thumb: np.ndarray) -> np.ndarray:
    """The eval image in colour on the detail image's grid: the grey of the (aligned) detail image, the colour
    of the (aligned, upsampled) thumbnail, as JPEG keeps colour at a lower resolution than grey."""
    return np.clip(thumb + (detail - grey_of(thumb))[..., None], 0, 255)
