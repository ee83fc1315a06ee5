"""The precise check of a (candidate, eval image) pair: local features, geometry, then aligned content.

1. ORB keypoints (OpenCV) of both images at the same scale, matched by
   Hamming distance with Lowe's ratio test, in both orientations of the
   candidate (ORB is not mirror-invariant).
2. RANSAC fits a similarity transform (rotation, uniform scale, shift) from
   candidate to eval image. It must be one the tolerated edits can produce:
   scale within SCALE_RANGE (a crop of up to 20% zooms in by up to 1.25x),
   rotation within MAX_ANGLE, and enough inliers spread over the candidate.
   And each image must span at least MIN_SPAN of the other's width and
   height (any transform, steps 5 and 6 too, `pair_span`): a copy shows at
   least what a crop keeps of the eval image and nothing beside it, and the
   original a cropped eval image was cut from at most a crop's share more.
   And one of the two must lie within the other, but for MAX_OUTSIDE of its
   picture (`pair_outside`): two views that overlap, each showing picture
   the other does not (a screenshot scrolled, a menu opened at another item,
   a picture displaced), are not a copy and its eval image.
3. Colour: the eval image's 32x32 thumbnail is warped onto the candidate with
   that transform, its HSV hue shifted by the one shift that fits the coloured
   pixels best (jitter shifts every HSV hue alike, within MAX_HUE_SHIFT), and
   compared in CIELAB after fitting one global brightness / contrast change and
   one chroma scale and hue turn (colour jitter). The
   change must stay within the jitter envelope (a grey copy of a colour photo
   is another edit, not a jittered copy) and at least MIN_COLOUR_AGREEMENT of
   the cells outside the banner band must agree, and at most MAX_HUE_WRONG of
   the coloured pixels may have another hue (another part painted over in other
   colours fails).
4. Structure, the decisive test: the eval image's 128x128 grey detail image
   is warped onto the candidate at DETAIL scale (longest side 128 px), both
   are blurred a little (JPEG and downscale blur), the corners a turned copy
   fills (outside its own frame turned back by the transform's angle) and
   those of an eval image turned on its canvas are left out, with a margin of
   FILL_MARGIN pixels (the blur spreads the fill), and every 8x8-pixel cell
   where either side has texture is compared by normalised cross-correlation,
   which ignores brightness and contrast (colour jitter). A caption banner is
   a full-width band at the top or bottom: of the top and bottom BANNER_SHARE
   of the rows, the one that disagrees more is left out. At least
   `min_agreement` of the remaining textured cells must correlate. This is
   what tells two dialogs of the same program apart (their text lines and
   widgets differ cell by cell although ORB finds many shared corners) and
   rejects another edit of the same photo that changes its texture. And the
   cells that disagree must not form a group (8-connected) of
   `max_local_change` cells or more: JPEG, resizing and jitter make scattered
   cells disagree, a changed part of the picture (another tool highlighted,
   a translated label) makes neighbouring cells disagree together. Only cells
   with STRONG_TEXTURE count towards a group: faint texture (a sky, JPEG noise
   over a flat background) decorrelates in patches under jitter and JPEG,
   while a changed label or widget has strong edges. A candidate whose source
   held fewer pixels than this scale (a small copy, enlarged by the download)
   is compared with the eval image as that source shows it (`seen_at_source`):
   the detail it never had does not count as a change.
5. Pairs ORB cannot align (too few inliers: a blurred small copy, a flat
   screenshot), or aligns with a transform refused by step 2 or 3 (a
   periodic pattern one period off), are aligned by template matching: the
   candidate in grey, shrunk to TEMPLATE_COVERS of the eval image's width (a
   crop) and turned by each of TEMPLATE_TURNS, is slid over the eval image's
   TEMPLATE_SIDE px grey copy (OpenCV matchTemplate, normalised
   cross-correlation); the best placement gives the transform, and steps 3
   and 4 decide as for an ORB match ("match_template").
6. Pairs neither aligns are still compared when the candidate has the eval
   image's aspect ratio, as the whole eval image (or its mirror) rescaled, by
   steps 3 and 4 with the stricter UNALIGNED_MIN_AGREEMENT (`verify_unaligned`).
7. A pair that passed steps 3 and 4 goes to the learned pair verifier
   (verifier.py), a small CNN on the same aligned grey images, which refuses
   it below `min_verifier_score` (None: not run). It tells how the cells
   disagree: along changed text lines (a localised screenshot) or as the
   tolerated edits make them. Its eval image is first put under the colour
   jitter that fits the thumbnails of step 3 (colour_jitter.py), so the
   clipping and uneven grey changes of jitter are on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from webli.stages.dedup import colour_jitter, verifier
from webli.stages.dedup.colour_jitter import with_hue_shifted
from webli.stages.dedup.images import NORMALISED_SIZE, normalise

CHECK_VERSION = 6  # raised when a change here changes verdicts, so checked shards are checked again (2: seen_at_source,
# hue_shift, the fit without the banner band; 3: pair_span, template matching after a refused ORB transform;
# 4: pair_outside; 5: the eval image's turned corners by the eval -> candidate rotation, FILL_MARGIN, the
# template's cover counted over the candidate's picture, the verifier's eval image under the fitted colour jitter;
# 6: the search of large indexes (index.coarse_cells, the DCT views' VIEW_HAMMING_MAX) finds other neighbours)
ORB_FEATURES_QUERY = 500
ORB_FEATURES_EVAL = 300
RATIO = 0.85
RANSAC_THRESHOLD = 4.0  # pixels at the normalised scale (longest side NORMALISED_SIZE, 256)
SCALE_RANGE = (0.6, 1.5)  # candidate -> eval scale
MAX_ANGLE = 15.0  # degrees
COVERAGE_GRID = 4  # inliers must fall in at least MIN_COVERED of these 4x4 cells of the candidate
MIN_COVERED = 4
THUMB = 32  # eval thumbnails: stretched to THUMB x THUMB RGB
CELLS = 8  # the aligned comparison uses CELLS x CELLS cells over the candidate
CELL_TOLERANCE = 14.0  # mean absolute CIELAB difference (after the colour fit) for a cell to agree
CHROMA_GAIN = (0.3, 2.5)  # allowed chroma scale (saturation, contrast and brightness jitter: 0.7-1.3 each)
MAX_HUE_TURN = 35.0  # degrees of hue rotation allowed
MIN_CHROMA = 6.0  # mean chroma below which an image counts as grey
MIN_COLOUR_AGREEMENT = 0.5  # share of colour cells that must agree after the global colour fit
HUE_LEVEL = 10.0  # CIELAB chroma above which a colour cell's hue is compared
MAX_HUE_SHIFT = 30.0  # degrees of HSV hue shift allowed (jitter shifts it by up to 21.6)
HUE_TURN = 45.0  # degrees: a coloured pixel whose hue differs more (after the global fit) has the wrong colour
MAX_HUE_WRONG = 0.3  # share of coloured pixels allowed the wrong hue (a region recoloured is another edit)
DETAIL = 128  # eval detail images: grey, stretched to DETAIL x DETAIL; candidates compared at longest side DETAIL
DETAIL_CELL = 8  # pixels per side of a structure cell at DETAIL scale
DETAIL_BLUR = 1.0  # Gaussian sigma (pixels at DETAIL scale) applied to both sides before comparing
FILL_MARGIN = 2  # pixels at DETAIL scale (2 x DETAIL_BLUR) left out along the edge of the compared area
FLAT = 3.0  # grey-level standard deviation (after the blur) under which a cell has no texture
CELL_CORRELATION = 0.75  # a textured cell agrees when the two sides correlate at least this much
STRONG_TEXTURE = 12.0  # texture a disagreeing cell needs to count towards a local change (see step 4)
BANNER_SHARE = 0.22  # share of the height a caption banner may cover (top or bottom)
UNALIGNED_MIN_AGREEMENT = 0.97  # structure agreement a pair needs when it is compared without a transform
ASPECT_TOLERANCE = 0.03  # |log| of the aspect-ratio quotient under which a pair is compared without one
MIN_TEXTURED = 8  # fewer textured cells than this: nothing to compare, not accepted
TEMPLATE_SIDE = 64  # longest side of the eval image's grey copy the template slides over
TEMPLATE_COVERS = (0.8, 0.85, 0.9, 0.95, 1.0)  # candidate width as a share of the eval image's (crops up to 20%)
TEMPLATE_TURNS = (-7.0, 0.0, 7.0)  # degrees; rotations up to 10 degrees land within ~3.5 of one
MIN_TEMPLATE_INSIDE = 0.6  # share of the candidate the placed eval image must cover
# An ORB transform refused for its geometry, its inliers' coverage or these reasons is not taken for the copy's
# transform (a periodic pattern aligned one period off, say): template matching's placement is tried too.
TEMPLATE_AFTER = ("span", "overlap", "colour")
MAX_CROP = 0.2  # edits.crop cuts at most this share of the width and of the height
# Each image of a pair spans at least this share of the other's width and of its height: a crop keeps
# 1 - MAX_CROP of the eval image, and the original a cropped eval image was cut from shows at most that much more;
# less a transform off by twice RANSAC_THRESHOLD at both ends (small copies are cropped to whole pixels).
MIN_SPAN = 1 - MAX_CROP - 4 * RANSAC_THRESHOLD / NORMALISED_SIZE
# One image of a pair lies within the other, but for this share of its picture: a transform off by
# RANSAC_THRESHOLD at each of its four edges.
MAX_OUTSIDE = 4 * RANSAC_THRESHOLD / NORMALISED_SIZE
OUTSIDE_GRID = 32  # points across and down each image where `pair_outside` samples it


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
    agreement: float  # share of textured aligned cells whose structure agrees (0 before that test)
    reason: str  # "match", "match_template", "match_unaligned" or why not (few_matches, geometry, coverage, aspect,
    # span, overlap, colour, content, local_change, verifier)
    local_change: int = 0  # cells in the largest connected group of disagreeing cells (0 before that test)
    fit: float = 0.0  # correlation of the aligned grey images: which of several accepted eval images fits best
    verifier_score: float | None = None  # the pair verifier's copy probability (None: not run)
    pair: np.ndarray | None = field(default=None, repr=False, compare=False)  # verifier input, past step 4


@dataclass(frozen=True)
class EvalEntry:
    """What the check needs of one eval image: local features, colour thumbnail, grey detail, normalised size."""

    features: LocalFeatures
    thumb: np.ndarray  # THUMB x THUMB x 3 uint8
    detail: np.ndarray  # DETAIL x DETAIL uint8
    size: tuple[int, int]  # width, height at the normalised scale


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


def detail_image(rgb: np.ndarray) -> np.ndarray:
    """The eval image's grey detail image, stretched to DETAIL x DETAIL (what the structure test samples)."""
    return cv2.resize(grey(rgb), (DETAIL, DETAIL), interpolation=cv2.INTER_AREA)


def working_grey(rgb: np.ndarray) -> np.ndarray:
    """A candidate in grey at the structure test's scale (longest side DETAIL), as float32."""
    height, width = rgb.shape[:2]
    scale = DETAIL / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(grey(rgb), size, interpolation=cv2.INTER_AREA).astype(np.float32)


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


def mapped(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) through a 2 x 3 affine transform."""
    return (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2],
            matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2])


def grid_in_eval(matrix: np.ndarray, candidate_shape: tuple[int, ...], columns: int,
                 rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the centres of a columns x rows grid over the candidate (of shape `candidate_shape`) land in the
    eval image (normalised scale)."""
    height, width = candidate_shape[:2]
    grid_x, grid_y = np.meshgrid((np.arange(columns) + 0.5) * width / columns, (np.arange(rows) + 0.5) * height / rows)
    return mapped(matrix, grid_x, grid_y)


def resampled(stretched: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
              eval_size: tuple[int, int]) -> np.ndarray:
    """An eval image kept stretched to a fixed grid (its thumbnail or detail image) sampled at eval
    coordinates (normalised scale), bilinearly."""
    eval_width, eval_height = eval_size
    map_x = (eval_x * stretched.shape[1] / eval_width - 0.5).astype(np.float32)
    map_y = (eval_y * stretched.shape[0] / eval_height - 0.5).astype(np.float32)
    return cv2.remap(stretched, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def aligned_eval(matrix: np.ndarray, candidate_shape: tuple[int, ...], eval_thumb: np.ndarray,
                 eval_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The eval thumbnail resampled on a THUMB x THUMB grid over the candidate, and where it is valid."""
    eval_x, eval_y = grid_in_eval(matrix, candidate_shape, THUMB, THUMB)
    eval_width, eval_height = eval_size
    valid = (eval_x >= 0) & (eval_x < eval_width) & (eval_y >= 0) & (eval_y < eval_height)
    return resampled(eval_thumb, eval_x, eval_y, eval_size), valid


def aligned_detail(matrix: np.ndarray, candidate_shape: tuple[int, ...], work_shape: tuple[int, ...],
                   eval_detail: np.ndarray, eval_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The eval detail image resampled on the candidate's working grid (`work_shape`, the candidate shrunk to
    DETAIL scale), and where the grid falls inside the eval image's own picture (not outside it, nor in the
    corners an eval image turned on its canvas fills: its frame turned by the eval -> candidate rotation)."""
    eval_x, eval_y = grid_in_eval(matrix, candidate_shape, work_shape[1], work_shape[0])
    eval_width, eval_height = eval_size
    valid = (eval_x >= 1) & (eval_x < eval_width - 1) & (eval_y >= 1) & (eval_y < eval_height - 1)
    valid &= inside_turned(eval_x - eval_width / 2, eval_y - eval_height / 2, cv2.invertAffineTransform(matrix),
                           eval_width, eval_height)
    return resampled(eval_detail, eval_x, eval_y, eval_size).astype(np.float32), valid


def inside_turned(x: np.ndarray, y: np.ndarray, matrix: np.ndarray, width: float, height: float) -> np.ndarray:
    """Whether points (relative to a frame's centre) lie inside that width x height frame turned by the
    transform's rotation: what a copy turned on its canvas still shows (outside it: the corner fill)."""
    angle = float(np.arctan2(matrix[1, 0], matrix[0, 0]))
    turned_x = np.cos(angle) * x - np.sin(angle) * y
    turned_y = np.sin(angle) * x + np.cos(angle) * y
    return (np.abs(turned_x) <= width / 2) & (np.abs(turned_y) <= height / 2)


def turned_frame(matrix: np.ndarray, work_shape: tuple[int, ...]) -> np.ndarray:
    """Where the candidate's own frame, turned by the transform's rotation about its centre, covers the
    working grid: a copy turned on its canvas has fill (not picture) in the corners outside it."""
    height, width = work_shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width) + 0.5 - width / 2, np.arange(height) + 0.5 - height / 2)
    return inside_turned(grid_x, grid_y, matrix, width, height)


def without_fill_edge(inside: np.ndarray) -> np.ndarray:
    """A working-grid mask of compared pixels less FILL_MARGIN pixels along its edges inside the grid (where
    the eval image ends, or a turn filled a corner): the structure test's blur and a turned copy's resampling
    spread the fill that far into the picture. The grid's own edges are kept."""
    if inside.all():
        return inside
    kernel = np.ones((2 * FILL_MARGIN + 1, 2 * FILL_MARGIN + 1), np.uint8)
    return cv2.erode(inside.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)


def frame_span(matrix: np.ndarray, frame_size: tuple[int, int], onto_size: tuple[int, int]) -> float:
    """The smaller of the shares of a width x height frame (`onto_size`) that another frame (`frame_size`),
    mapped onto it by the transform, spans across and down (a turned frame spans its bounding box)."""
    width, height = frame_size
    ends = matrix @ np.array([[0, width, 0, width], [0, 0, height, height], [1, 1, 1, 1]], dtype=np.float64)
    return max(0.0, min((min(side, float(points.max())) - max(0.0, float(points.min()))) / side
                        for points, side in zip(ends, onto_size)))


def pair_span(matrix: np.ndarray, candidate_shape: tuple[int, ...], eval_size: tuple[int, int]) -> float:
    """How little of each other the two images of a pair may show: the smaller of the candidate's span of the
    eval image and the eval image's span of the candidate (`frame_span`). A copy shows at least what a crop
    keeps of the eval image and nothing beside it; the original a cropped eval image was cut from shows all of
    it and at most a crop's share more. A piece of the eval image, a toolbar matched inside a photo, a wider
    screenshot or a film strip around the picture shows less of one or more of the other."""
    candidate_size = (candidate_shape[1], candidate_shape[0])
    return min(frame_span(matrix, candidate_size, eval_size),
               frame_span(cv2.invertAffineTransform(matrix), eval_size, candidate_size))


def outside_share(matrix: np.ndarray, frame_size: tuple[int, int], onto_size: tuple[int, int]) -> float:
    """The share of a width x height frame's picture (`frame_size`) that the transform maps outside another
    frame (`onto_size`). Its picture is the frame turned by the transform's rotation: a copy turned on its
    canvas has fill in the corners outside it."""
    width, height = frame_size
    steps = (np.arange(OUTSIDE_GRID) + 0.5) / OUTSIDE_GRID
    x, y = np.meshgrid(steps * width, steps * height)
    picture = inside_turned(x - width / 2, y - height / 2, matrix, width, height)
    onto_x, onto_y = mapped(matrix, x, y)
    outside = (onto_x < 0) | (onto_x >= onto_size[0]) | (onto_y < 0) | (onto_y >= onto_size[1])
    return float((outside & picture).sum() / max(1, int(picture.sum())))


def pair_outside(matrix: np.ndarray, candidate_shape: tuple[int, ...], eval_size: tuple[int, int]) -> float:
    """How far neither image of a pair lies within the other: the smaller of the share of the candidate's
    picture outside the eval image and the share of the eval image's outside the candidate (`outside_share`).
    A copy lies within its eval image (a crop at most), and the original of a cropped eval image around it;
    two views that overlap (a screenshot scrolled, a menu opened at another item, a picture displaced) each
    show picture the other does not."""
    candidate_size = (candidate_shape[1], candidate_shape[0])
    return min(outside_share(matrix, candidate_size, eval_size),
               outside_share(cv2.invertAffineTransform(matrix), eval_size, candidate_size))


def cells(image: np.ndarray, size: int) -> np.ndarray:
    """The whole size x size cells of a 2-D array, as rows x columns x size*size."""
    rows, columns = image.shape[0] // size, image.shape[1] // size
    cut = image[:rows * size, :columns * size]
    return cut.reshape(rows, size, columns, size).transpose(0, 2, 1, 3).reshape(rows, columns, -1)


def cell_correlation(candidate: np.ndarray, reference: np.ndarray,
                     valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per DETAIL_CELL cell of two aligned grey images (blurred by DETAIL_BLUR): normalised
    cross-correlation, the texture (grey-level standard deviation) of the more textured side, and whether
    the cell lies inside the eval image."""
    a = cells(cv2.GaussianBlur(candidate, (0, 0), DETAIL_BLUR), DETAIL_CELL)
    b = cells(cv2.GaussianBlur(reference, (0, 0), DETAIL_BLUR), DETAIL_CELL)
    inside = cells(valid.astype(np.float32), DETAIL_CELL).mean(2) >= 0.9
    a = a - a.mean(2, keepdims=True)
    b = b - b.mean(2, keepdims=True)
    spread_a, spread_b = np.sqrt((a * a).mean(2)), np.sqrt((b * b).mean(2))
    correlation = (a * b).mean(2) / np.maximum(spread_a * spread_b, 1e-6)
    return correlation, np.maximum(spread_a, spread_b), inside


def without_banner(disagreement: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """`usable` with the top or bottom BANNER_SHARE of the rows left out, whichever disagrees more
    (`disagreement`: per row and column, a flag or an amount)."""
    rows = usable.shape[0]
    band = int(np.ceil(BANNER_SHARE * rows))
    per_row = np.where(usable, disagreement, 0).sum(1)
    kept = usable.copy()
    if per_row[:band].sum() >= per_row[rows - band:].sum():
        kept[:band] = False
    else:
        kept[rows - band:] = False
    return kept


def seen_at_source(reference: np.ndarray, source_side: int | None) -> np.ndarray:
    """A warped eval detail (grey, on the candidate's working grid) as a candidate whose source held only
    `source_side` pixels across shows it: shrunk to that, enlarged as the download enlarges (Lanczos, to twice
    the grid: the normalised scale) and shrunk back to the grid. Unchanged when the source is unknown or larger."""
    height, width = reference.shape
    if source_side is None or source_side >= max(height, width):
        return reference
    enlarged = cv2.resize(normalise(reference, source_side), (2 * width, 2 * height), interpolation=cv2.INTER_LANCZOS4)
    return cv2.resize(enlarged, (width, height), interpolation=cv2.INTER_AREA)


def structure_comparison(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> tuple[float, int]:
    """(share of the textured cells, outside the banner band, where the aligned images correlate; cells in the
    largest 8-connected group of those that do not and have STRONG_TEXTURE)."""
    correlation, texture, inside = cell_correlation(candidate, reference, valid)
    agree, textured = correlation >= CELL_CORRELATION, texture > FLAT
    compared = without_banner(textured & ~agree, inside) & textured
    if compared.sum() < MIN_TEXTURED:
        return 0.0, 0
    changed = compared & ~agree & (texture >= STRONG_TEXTURE)
    groups, _, sizes, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    largest = int(sizes[1:, cv2.CC_STAT_AREA].max()) if groups > 1 else 0
    return float(agree[compared].mean()), largest


def fit_correlation(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    """Pearson correlation of two aligned grey images over the valid pixels (0 when either is flat there), the
    banner band left out: the top or bottom BANNER_SHARE of the rows the reference, fitted by one gain and
    offset, fits worse. Of two eval images both accepted, a banner would otherwise outweigh what tells them
    apart."""
    if valid.sum() < 2:
        return 0.0
    design = np.stack([reference[valid], np.ones(int(valid.sum()), np.float32)], 1)
    gain, offset = np.linalg.lstsq(design, candidate[valid], rcond=None)[0]
    kept = without_banner(np.abs(candidate - (gain * reference + offset)), valid)
    a, b = candidate[kept], reference[kept]
    if a.size < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    spread = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / spread) if spread > 0 else 0.0


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
    A colour image turned grey (or a grey one coloured) is not plausible: when either side is nearly grey,
    no hue is fitted, but the chroma ratio must still be one saturation jitter gives (a pale image jittered
    less saturated is plausible, a grey copy of a colour photo is not).
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
        ratio = (strength_c + 1.0) / (strength_r + 1.0)  # +1: pale images have noisy chroma
        return fitted, bool(gain > 0 and CHROMA_GAIN[0] <= ratio <= CHROMA_GAIN[1])
    factor = np.sum(w * chroma_c * np.conj(chroma_r)) / np.sum(w * np.abs(chroma_r) ** 2)
    turned = factor * (reference[..., 1] + 1j * reference[..., 2])
    fitted[..., 1], fitted[..., 2] = turned.real, turned.imag
    plausible = (gain > 0 and CHROMA_GAIN[0] <= abs(factor) <= CHROMA_GAIN[1]
                 and abs(np.degrees(np.angle(factor))) <= MAX_HUE_TURN)
    return fitted, bool(plausible)


def hsv_hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees (0-360) of an RGB image (uint8 scale)."""
    return cv2.cvtColor(np.asarray(rgb, np.float32) / 255.0, cv2.COLOR_RGB2HSV)[..., 0]


def hue_shift(candidate_rgb: np.ndarray, reference_rgb: np.ndarray, coloured: np.ndarray) -> float:
    """The one HSV hue shift (degrees, -180 to 180) that best maps the reference's coloured pixels onto the
    candidate's (0 with too few of them). Jitter shifts every HSV hue alike: its brightness, contrast and
    saturation steps keep HSV hue. A CIELAB hue turn under it is uneven (2 to 70 degrees for a 21 degree HSV
    shift, by colour), so one CIELAB turn cannot fit it."""
    if coloured.sum() < MIN_TEXTURED:
        return 0.0
    turns = np.exp(1j * np.radians(hsv_hue(candidate_rgb) - hsv_hue(reference_rgb)))[coloured]
    return float(np.degrees(np.angle(turns.mean())))


def coloured_pixels(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Where both CIELAB images are coloured (chroma above HUE_LEVEL) and the reference is valid."""
    return (np.hypot(candidate[..., 1], candidate[..., 2]) > HUE_LEVEL) & (
        np.hypot(reference[..., 1], reference[..., 2]) > HUE_LEVEL) & valid


def cell_agreement(candidate: np.ndarray, fitted: np.ndarray, valid: np.ndarray) -> float:
    """Share of (mostly valid) colour cells whose median pixel difference (CIELAB, summed over channels) is
    within tolerance, the banner band (the worse of top and bottom) left out. The median lets a cell agree
    when less than half of it is covered (a rotated corner's fill)."""
    size = THUMB // CELLS
    difference = np.where(valid, np.abs(candidate - fitted).sum(2), np.nan)
    grid = cells(difference, size)
    usable = np.sum(~np.isnan(grid), axis=2) >= size * size / 2
    if not usable.any():
        return 0.0
    with np.errstate(all="ignore"):
        agree = np.where(usable, np.nanmedian(np.where(usable[..., None], grid, 0.0), axis=2), np.inf) <= CELL_TOLERANCE
    kept = without_banner(~agree, usable)
    return float(agree[kept].mean()) if kept.any() else 0.0


def hue_disagreement(candidate: np.ndarray, fitted: np.ndarray, valid: np.ndarray) -> float:
    """Share of the pixels coloured on both sides (CIELAB thumbnails, after the global colour fit) whose hue
    differs by more than HUE_TURN: colour jitter turns every hue alike, a recoloured region does not."""
    coloured = coloured_pixels(candidate, fitted, valid)
    if coloured.sum() < MIN_TEXTURED:
        return 0.0
    turn = np.degrees(np.abs(np.angle((candidate[..., 1] + 1j * candidate[..., 2])
                                      * np.conj(fitted[..., 1] + 1j * fitted[..., 2]))))
    return float(np.mean(turn[coloured] > HUE_TURN))


@dataclass(frozen=True)
class AlignedThumbs:
    """The candidate's and the aligned eval image's THUMB x THUMB colour thumbnails, where the eval one is
    valid, and the HSV hue shift between them (`hue_shift`): what the colour test compared."""

    candidate: np.ndarray
    eval: np.ndarray
    valid: np.ndarray
    hue_shift: float


def content_check(matrix: np.ndarray, query_rgb: np.ndarray, target: EvalEntry, query_grey: np.ndarray | None = None,
                  source_side: int | None = None) -> tuple[bool, float, int, float, Callable[[], np.ndarray] | None]:
    """Steps 3 and 4 for a candidate -> eval transform: (colour plausible, structure agreement, largest group
    of disagreeing cells, `fit_correlation` of the aligned grey images, what packs the aligned pair for the
    verifier when called: `verifier_pair`).

    `query_grey` is the candidate's `working_grey` (computed here when not given); `source_side` the pixels of
    the candidate's source image across its longest side (None: unknown), see `verifier.pair_input`.
    """
    warped, valid = aligned_eval(matrix, query_rgb.shape, target.thumb, target.size)
    small = cv2.resize(query_rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    candidate = lab(small)
    shift = hue_shift(small, warped, coloured_pixels(candidate, lab(warped), valid))
    fitted, plausible = robust_colour_fit(candidate, lab(with_hue_shifted(warped, shift)), valid)
    if (not plausible or abs(shift) > MAX_HUE_SHIFT or cell_agreement(candidate, fitted, valid) < MIN_COLOUR_AGREEMENT
            or hue_disagreement(candidate, fitted, valid) > MAX_HUE_WRONG):
        return False, 0.0, 0, 0.0, None
    query_grey = working_grey(query_rgb) if query_grey is None else query_grey
    reference, inside = aligned_detail(matrix, query_rgb.shape, query_grey.shape, target.detail, target.size)
    inside = without_fill_edge(inside & turned_frame(matrix, query_grey.shape))
    seen = seen_at_source(reference, source_side)
    thumbs = AlignedThumbs(small, warped, valid, shift)
    return (True, *structure_comparison(query_grey, seen, inside), fit_correlation(query_grey, seen, inside),
            partial(verifier_pair, matrix, query_rgb.shape, query_grey, target, reference, inside, source_side,
                    thumbs))


def verifier_pair(matrix: np.ndarray, candidate_shape: tuple[int, ...], query_grey: np.ndarray, target: EvalEntry,
                  reference: np.ndarray, inside: np.ndarray, source_side: int | None,
                  thumbs: AlignedThumbs) -> np.ndarray:
    """The aligned pair packed for the verifier (`verifier.pair_input`): the candidate's working grey, and the
    eval image on that grid (`reference`, from `aligned_detail`) in colour (`colour_jitter.eval_in_colour`),
    under the colour jitter that fits the thumbnails, in grey, as the candidate's source shows it."""
    eval_x, eval_y = grid_in_eval(matrix, candidate_shape, query_grey.shape[1], query_grey.shape[0])
    colour = resampled(target.thumb, eval_x, eval_y, target.size).astype(np.float32)
    eval_colour = colour_jitter.eval_in_colour(reference, colour)
    jitter = colour_jitter.fit_jitter(thumbs.candidate, thumbs.eval, thumbs.valid, thumbs.hue_shift)
    eval_grey = colour_jitter.grey_of(colour_jitter.jittered(eval_colour, jitter))
    return verifier.pair_input(query_grey, seen_at_source(eval_grey, source_side), inside)


def content_verdict(matrix: np.ndarray, query_rgb: np.ndarray, target: EvalEntry, inliers: int,
                    min_agreement: float, max_local_change: int, query_grey: np.ndarray | None,
                    accepted_as: str, min_verifier_score: float | None = None,
                    source_side: int | None = None) -> Verification:
    """The span and overlap tests of step 2, then steps 3, 4 and 7, as a verification (`max_local_change` 0: no limit on
    groups of disagreeing cells; `min_verifier_score` None: the verifier is not run, 0: it is run and refuses
    nothing)."""
    if pair_span(matrix, query_rgb.shape, target.size) < MIN_SPAN:
        return Verification(False, inliers, 0.0, "span")
    if pair_outside(matrix, query_rgb.shape, target.size) > MAX_OUTSIDE:
        return Verification(False, inliers, 0.0, "overlap")
    colour, agreement, local_change, fit, make_pair = content_check(matrix, query_rgb, target, query_grey, source_side)
    if not colour:
        return Verification(False, inliers, 0.0, "colour")
    if agreement < min_agreement:
        return Verification(False, inliers, agreement, "content", local_change, fit)
    if max_local_change and local_change >= max_local_change:
        return Verification(False, inliers, agreement, "local_change", local_change, fit)
    pair = make_pair()
    if min_verifier_score is None:
        return Verification(True, inliers, agreement, accepted_as, local_change, fit, pair=pair)
    score = float(verifier.scores(pair[None])[0])
    accepted = score >= min_verifier_score
    return Verification(accepted, inliers, agreement, accepted_as if accepted else "verifier", local_change, fit,
                        score, pair)


def template_transform(query_rgb: np.ndarray, target: EvalEntry) -> np.ndarray | None:
    """The candidate -> eval transform (normalised pixels) of the best template placement (step 5), or None when
    no size fits or the placed eval image covers less than MIN_TEMPLATE_INSIDE of the candidate's picture
    (`outside_share`: a turned candidate's corner fill does not count)."""
    height, width = query_rgb.shape[:2]
    eval_width, eval_height = target.size
    eval_scale = TEMPLATE_SIDE / max(eval_width, eval_height)
    canvas_size = (max(8, round(eval_width * eval_scale)), max(8, round(eval_height * eval_scale)))
    canvas = cv2.resize(target.detail, canvas_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    query = grey(query_rgb).astype(np.float32)
    best = None
    for cover in TEMPLATE_COVERS:
        template_width = round(cover * canvas.shape[1])
        template_height = round(template_width * height / width)
        if template_height > canvas.shape[0]:
            template_height = round(cover * canvas.shape[0])
            template_width = round(template_height * width / height)
        if min(template_width, template_height) < 8 or template_width > canvas.shape[1]:
            continue
        shrunk = cv2.resize(query, (template_width, template_height), interpolation=cv2.INTER_AREA)
        centre = (template_width / 2, template_height / 2)
        for degrees in TEMPLATE_TURNS:
            turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
            template = cv2.warpAffine(shrunk, turn, (template_width, template_height),
                                      borderMode=cv2.BORDER_REPLICATE) if degrees else shrunk
            _, score, _, (left, top) = cv2.minMaxLoc(cv2.matchTemplate(canvas, template, cv2.TM_CCOEFF_NORMED))
            if best is None or score > best[0]:
                best = (score, template_width / width, turn, left, top)
    if best is None:
        return None
    _, shrink, turn, left, top = best
    placed = np.vstack([turn, [0, 0, 1]]) @ np.diag([shrink, shrink, 1.0])
    placed[0, 2] += left
    placed[1, 2] += top
    matrix = (np.diag([1 / eval_scale, 1 / eval_scale, 1.0]) @ placed)[:2]
    outside = outside_share(matrix, (width, height), target.size)
    return matrix if outside <= 1 - MIN_TEMPLATE_INSIDE else None


def verify_pair(query: LocalFeatures, query_rgb: np.ndarray, target: EvalEntry, min_inliers: int,
                min_agreement: float, query_grey: np.ndarray | None = None, max_local_change: int = 0,
                min_verifier_score: float | None = None, source_side: int | None = None) -> Verification:
    """Check one orientation of a candidate against one eval image (see the module docstring; `source_side`:
    see `content_check`)."""
    matrix, inlier_points = similarity_transform(query, target.features)
    inliers = len(inlier_points)
    if matrix is None or inliers < min_inliers:
        refused = Verification(False, inliers, 0.0, "few_matches")
    elif not plausible_geometry(matrix):
        refused = Verification(False, inliers, 0.0, "geometry")
    elif covered_cells(inlier_points, query_rgb.shape) < MIN_COVERED:
        refused = Verification(False, inliers, 0.0, "coverage")
    else:
        verdict = content_verdict(matrix, query_rgb, target, inliers, min_agreement, max_local_change, query_grey,
                                  "match", min_verifier_score, source_side)
        if verdict.accepted or verdict.reason not in TEMPLATE_AFTER:
            return verdict
        refused = verdict
    placed = template_transform(query_rgb, target)
    if placed is not None:
        verdict = content_verdict(placed, query_rgb, target, 0, min_agreement, max_local_change, query_grey,
                                  "match_template", min_verifier_score, source_side)
        if verdict.accepted:
            return verdict
    return refused


def verify_unaligned(query_rgb: np.ndarray, target: EvalEntry, query_grey: np.ndarray | None = None,
                     max_local_change: int = 0, min_verifier_score: float | None = None,
                     source_side: int | None = None) -> Verification:
    """The check without local features, for pairs ORB cannot align (flat screenshots, blurred copies):
    when the candidate has the eval image's aspect ratio, compare it as the whole eval image rescaled
    (no crop, no turn) and accept only at UNALIGNED_MIN_AGREEMENT, stricter than with a RANSAC transform."""
    height, width = query_rgb.shape[:2]
    eval_width, eval_height = target.size
    if abs(np.log((width / height) / (eval_width / eval_height))) > ASPECT_TOLERANCE:
        return Verification(False, 0, 0.0, "aspect")
    matrix = np.array([[eval_width / width, 0.0, 0.0], [0.0, eval_height / height, 0.0]])
    return content_verdict(matrix, query_rgb, target, 0, UNALIGNED_MIN_AGREEMENT, max_local_change, query_grey,
                           "match_unaligned", min_verifier_score, source_side)
