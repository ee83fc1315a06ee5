"""The precise check of a (candidate, eval image) pair: local features, geometry, then aligned content.

1. ORB keypoints (OpenCV) of both images at the same scale, matched by
   Hamming distance with Lowe's ratio test, in both orientations of the
   candidate (ORB is not mirror-invariant).
2. RANSAC fits a similarity transform (rotation, uniform scale, shift) from
   candidate to eval image. It must be one the tolerated edits can produce:
   scale within SCALE_RANGE (a crop of up to 20% zooms in by up to 1.25x),
   rotation within MAX_ANGLE, and enough inliers spread over the candidate.
3. The eval image's thumbnail is warped onto the candidate with that transform
   and compared cell by cell in CIELAB, after fitting one global brightness /
   contrast change and one chroma scale and hue turn (colour jitter). Cells
   that still disagree are where the two pictures differ: a caption banner
   covers a band of them; another edit of the same photo (a filter, a
   different layer mode), another language's screenshot or another dialog
   of the same application disagrees in many more. A match needs at least
   `min_agreement` of the cells to agree, and the global colour change must
   stay within the jitter envelope (a grey copy of a colour photo is another
   edit, not a jittered copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ORB_FEATURES_QUERY = 500
ORB_FEATURES_EVAL = 300
RATIO = 0.85
RANSAC_THRESHOLD = 4.0  # pixels at the normalised scale (longest side 256)
SCALE_RANGE = (0.6, 1.5)  # candidate -> eval scale
MAX_ANGLE = 15.0  # degrees
COVERAGE_GRID = 4  # inliers must fall in at least MIN_COVERED of these 4x4 cells of the candidate
MIN_COVERED = 4
THUMB = 32  # eval thumbnails: stretched to THUMB x THUMB RGB
CELLS = 8  # the aligned comparison uses CELLS x CELLS cells over the candidate
CELL_TOLERANCE = 14.0  # mean absolute CIELAB difference (after the colour fit) for a cell to agree
CHROMA_GAIN = (0.45, 2.2)  # allowed chroma scale (saturation jitter)
MAX_HUE_TURN = 35.0  # degrees of hue rotation allowed
MIN_CHROMA = 6.0  # mean chroma below which an image counts as grey


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoint positions (N x 2, normalised scale) and descriptors (N x 32 uint8)."""

    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one pair."""

    accepted: bool
    inliers: int
    agreement: float  # share of aligned cells that agree (0 when no transform was found)
    reason: str  # "match" or why not (few_matches, geometry, coverage, colour, content)


NO_MATCH = Verification(False, 0, 0.0, "few_matches")


def orb_features(grey: np.ndarray, count: int) -> LocalFeatures:
    """Up to `count` ORB keypoints of a grey uint8 image (small patches: the images are small)."""
    orb = cv2.ORB_create(nfeatures=count, edgeThreshold=15, patchSize=15, fastThreshold=7)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return LocalFeatures(np.array([k.pt for k in keypoints], np.float32), descriptors)


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The eval image stretched to THUMB x THUMB (what the aligned comparison samples)."""
    return cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB as float32 (L 0-100, a/b around 0)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def similarity_transform(query: LocalFeatures, target: LocalFeatures) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC similarity transform from query to target points, and the inlier query points."""
    if len(query) < 5 or len(target) < 5:
        return None, np.zeros((0, 2), np.float32)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = [p for p in matcher.knnMatch(query.descriptors, target.descriptors, k=2) if len(p) == 2]
    good = [a for a, b in pairs if a.distance < RATIO * b.distance]
    if len(good) < 5:
        return None, np.zeros((0, 2), np.float32)
    source = query.points[[m.queryIdx for m in good]]
    destination = target.points[[m.trainIdx for m in good]]
    matrix, inliers = cv2.estimateAffinePartial2D(source, destination, method=cv2.RANSAC,
                                                  ransacReprojThreshold=RANSAC_THRESHOLD, maxIters=1000,
                                                  confidence=0.99, refineIters=10)
    if matrix is None:
        return None, np.zeros((0, 2), np.float32)
    return matrix, source[inliers.ravel().astype(bool)]


def plausible_geometry(matrix: np.ndarray) -> bool:
    """Whether a candidate -> eval transform is one the tolerated edits produce."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    angle = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] and abs(angle) <= MAX_ANGLE


def covered_cells(points: np.ndarray, shape: tuple[int, ...]) -> int:
    """In how many of the COVERAGE_GRID x COVERAGE_GRID cells of the image the points fall."""
    height, width = shape[:2]
    cells = np.floor(points / [width / COVERAGE_GRID, height / COVERAGE_GRID]).astype(int)
    return len({(int(x), int(y)) for x, y in cells})


def aligned_eval(matrix: np.ndarray, candidate_shape: tuple[int, ...], eval_thumb: np.ndarray,
                 eval_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The eval thumbnail resampled on a THUMB x THUMB grid over the candidate, and where it is valid."""
    height, width = candidate_shape[:2]
    xs = (np.arange(THUMB) + 0.5) * width / THUMB
    ys = (np.arange(THUMB) + 0.5) * height / THUMB
    grid_x, grid_y = np.meshgrid(xs, ys)
    eval_x = matrix[0, 0] * grid_x + matrix[0, 1] * grid_y + matrix[0, 2]
    eval_y = matrix[1, 0] * grid_x + matrix[1, 1] * grid_y + matrix[1, 2]
    eval_width, eval_height = eval_size
    map_x = (eval_x * THUMB / eval_width - 0.5).astype(np.float32)
    map_y = (eval_y * THUMB / eval_height - 0.5).astype(np.float32)
    valid = (eval_x >= 0) & (eval_x < eval_width) & (eval_y >= 0) & (eval_y < eval_height)
    warped = cv2.remap(eval_thumb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, valid


def robust_colour_fit(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, bool]:
    """`colour_fit` twice: the second time without the worst-fitting 30% of pixels (a banner, say)."""
    weights = valid.astype(np.float32)
    fitted, _ = colour_fit(candidate, reference, weights)
    residual = np.abs(candidate - fitted).sum(2)
    if valid.sum() >= 16:
        weights = weights * (residual <= np.quantile(residual[valid], 0.7))
    return colour_fit(candidate, reference, weights)


def colour_fit(candidate: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, bool]:
    """Fit the candidate's CIELAB from the reference's by one global jitter; (fitted reference, plausible?).

    L: least-squares gain and offset (brightness, contrast). a/b: one complex
    factor (saturation scale and hue turn), allowed within the jitter envelope.
    A colour image turned grey (or a grey one coloured) is not plausible.
    """
    w = weights.ravel()
    lum_c, lum_r = candidate[..., 0].ravel(), reference[..., 0].ravel()
    design = np.stack([lum_r, np.ones_like(lum_r)], 1) * w[:, None]
    gain, offset = np.linalg.lstsq(design, lum_c * w, rcond=None)[0]
    chroma_c = (candidate[..., 1] + 1j * candidate[..., 2]).ravel()
    chroma_r = (reference[..., 1] + 1j * reference[..., 2]).ravel()
    strength_c = np.sqrt(np.average(np.abs(chroma_c) ** 2, weights=w))
    strength_r = np.sqrt(np.average(np.abs(chroma_r) ** 2, weights=w))
    fitted = reference.copy()
    fitted[..., 0] = gain * reference[..., 0] + offset
    if strength_r < MIN_CHROMA or strength_c < MIN_CHROMA:
        plausible = (strength_r < MIN_CHROMA) == (strength_c < MIN_CHROMA)
        return fitted, plausible and gain > 0
    factor = np.sum(w * chroma_c * np.conj(chroma_r)) / np.sum(w * np.abs(chroma_r) ** 2)
    turned = factor * (reference[..., 1] + 1j * reference[..., 2])
    fitted[..., 1], fitted[..., 2] = turned.real, turned.imag
    plausible = (gain > 0 and CHROMA_GAIN[0] <= abs(factor) <= CHROMA_GAIN[1]
                 and abs(np.degrees(np.angle(factor))) <= MAX_HUE_TURN)
    return fitted, bool(plausible)


def cell_agreement(candidate: np.ndarray, fitted: np.ndarray, valid: np.ndarray) -> float:
    """Share of (mostly valid) cells whose median pixel difference (CIELAB, summed over channels) is within
    tolerance. The median lets a cell agree when less than half of it is covered (a rotated corner's fill)."""
    size = THUMB // CELLS
    difference = np.where(valid, np.abs(candidate - fitted).sum(2), np.nan)
    cells = difference.reshape(CELLS, size, CELLS, size).transpose(0, 2, 1, 3).reshape(CELLS * CELLS, -1)
    usable = np.sum(~np.isnan(cells), axis=1) >= size * size / 2
    if not usable.any():
        return 0.0
    return float(np.mean(np.nanmedian(cells[usable], axis=1) <= CELL_TOLERANCE))


def verify_pair(query: LocalFeatures, query_rgb: np.ndarray, target: LocalFeatures, eval_thumb: np.ndarray,
                eval_size: tuple[int, int], min_inliers: int, min_agreement: float) -> Verification:
    """Check one orientation of a candidate against one eval image (see the module docstring)."""
    matrix, inlier_points = similarity_transform(query, target)
    inliers = len(inlier_points)
    if matrix is None or inliers < min_inliers:
        return Verification(False, inliers, 0.0, "few_matches")
    if not plausible_geometry(matrix):
        return Verification(False, inliers, 0.0, "geometry")
    if covered_cells(inlier_points, query_rgb.shape) < MIN_COVERED:
        return Verification(False, inliers, 0.0, "coverage")
    warped, valid = aligned_eval(matrix, query_rgb.shape, eval_thumb, eval_size)
    candidate = lab(cv2.resize(query_rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA))
    fitted, plausible = robust_colour_fit(candidate, lab(warped), valid)
    agreement = cell_agreement(candidate, fitted, valid)
    if not plausible:
        return Verification(False, inliers, agreement, "colour")
    if agreement < min_agreement:
        return Verification(False, inliers, agreement, "content")
    return Verification(True, inliers, agreement, "match")
