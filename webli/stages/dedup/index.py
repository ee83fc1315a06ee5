"""An eval set's index: what is computed once per eval image and caption, and how it is searched.

Two parts, split by how often they are read:

- `ImageIndex`, the search part, broadcast to every worker: the 64-d view
  descriptors of every eval image (descriptor.py: 12 views, int8, 768 bytes
  per image), a 64-bit sign code of each (random rotation then signs, so
  the Hamming distance estimates the angle: 96 bytes per image) and a
  two-level inverted file over them (k-means lists of about 256 vectors;
  each query view scores sqrt(lists) coarse centroids and the fine ones of
  its `coarse_cells(probe)` nearest cells, and scans `probe` lists, so a
  query's cost grows with the square root of the index, not with its size);
  plus the item ids. A scan compares codes first (XOR + popcount) and
  computes the exact int8 cosine only for the views within
  `ImageIndex.hamming_max` bits; queries are processed in batches (one
  matrix product per coarse cell for the whole batch), so numpy's per-call
  cost is shared.
  Beside it, `ImageIndex.learned`: the same structure over one learned
  embedding per eval image (embedding.py), searched with the candidate and
  its mirror image; it finds the copies that carry every edit at once, which
  the DCT views rank too low. One vector per image makes it cheap to scan
  many more lists of it (`dedup.index_learned_probe`).
- `VerificationStore`, read only for the few neighbours a candidate is
  checked against: each eval image's ORB keypoints (up to 300, 36 bytes each),
  a 32x32 colour thumbnail, a 128x128 grey detail image (16 KiB), its
  normalised size and its learned embedding (128 bytes). Saved as .npy files that workers
  memory-map, so it costs page cache, not worker memory.

Captions go to a `CaptionIndex` (text.py). Index parts are built by
independent tasks (`build_image_part`) and joined by `assemble_image_index`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pyarrow as pa
from scipy.cluster.vq import kmeans2

from webli.stages.dedup import descriptor, embedding
from webli.stages.dedup.evalsets import ImagePart, read_images
from webli.stages.dedup.images import DecodeError, decode_original, normalise, too_small
from webli.stages.dedup.verify import (
    DETAIL,
    ORB_FEATURES_EVAL,
    THUMB,
    EvalEntry,
    LocalFeatures,
    detail_image,
    grey,
    orb_features,
    thumbnail,
)

INDEX_VERSION = 3
BRUTE_FORCE_MAX = 50_000  # up to this many view vectors (about 4,000 images), queries compare with all
LIST_SIZE = 256
KMEANS_SAMPLE_PER_LIST = 8  # k-means trains on this many sampled vectors per list (at least 65,536)
KMEANS_ITERATIONS = 12
ASSIGN_CHUNK = 8192
CODE_BITS = 64
# Code distance kept for the exact cosine. DCT views: a pair at cosine 0.95 stays with p ~ 0.99, one at 0.83
# with ~0.5. Real images' views crowd one part of the sphere: at 18 bits a third of every scanned list got the
# exact cosine and a 1M index answered 65 queries/s; at 12, 680, and the copies whose eval image either search
# finds went from 0.961 to 0.955 (bench_dedup_scale_real.py). Learned vectors: copies reach down to cosine
# ~0.63, so 18 bits (cosine 0.85: p ~ 0.99).
VIEW_HAMMING_MAX = 12
LEARNED_HAMMING_MAX = 18
QUERY_BATCH = 256  # queries searched together in the inverted file
SEARCH_ARRAYS = ("vectors", "scales", "rows", "centroids", "offsets", "codes")
LEARNED = "learned_"  # file-name prefix of the learned index's search arrays


@dataclass
class ImagePartFeatures:
    """What one index-building task computed: per usable eval image, its id and features; per item, problems."""

    items: list[str]
    views: np.ndarray  # n x EVAL_VIEWS x 64 float16
    keypoint_counts: np.ndarray  # n int32
    keypoints: np.ndarray  # m x 2 float16
    descriptors: np.ndarray  # m x 32 uint8
    thumbs: np.ndarray  # n x THUMB x THUMB x 3 uint8
    details: np.ndarray  # n x DETAIL x DETAIL uint8
    sizes: np.ndarray  # n x 2 uint16 (width, height at the normalised scale)
    embeddings: np.ndarray  # n x 64 float16, the learned embedding
    rows: list[dict] = field(default_factory=list)  # EVAL_ITEMS rows, one per image read

    def arrays(self) -> dict[str, np.ndarray]:
        return {"views": self.views, "keypoint_counts": self.keypoint_counts,
                "keypoints": self.keypoints, "descriptors": self.descriptors, "thumbs": self.thumbs,
                "details": self.details, "sizes": self.sizes, "embeddings": self.embeddings}


def image_features(images: list[np.ndarray]) -> tuple[np.ndarray, list[LocalFeatures], np.ndarray, np.ndarray,
                                                      np.ndarray, np.ndarray]:
    """View descriptors, ORB features, thumbnails, detail images, normalised sizes and learned embeddings of
    decoded RGB eval images."""
    normalised = [normalise(image) for image in images]
    views = np.array([descriptor.eval_views(image) for image in normalised], np.float16).reshape(
        -1, descriptor.EVAL_VIEWS, descriptor.DIM)
    local = [orb_features(grey(image), ORB_FEATURES_EVAL) for image in normalised]
    thumbs = np.array([thumbnail(image) for image in normalised], np.uint8).reshape(-1, THUMB, THUMB, 3)
    details = np.array([detail_image(image) for image in normalised], np.uint8).reshape(-1, DETAIL, DETAIL)
    sizes = np.array([(image.shape[1], image.shape[0]) for image in normalised], np.uint16).reshape(-1, 2)
    embeddings = embedding.eval_vectors(normalised).astype(np.float16)
    return views, local, thumbs, details, sizes, embeddings


def build_image_part(part: ImagePart) -> ImagePartFeatures:
    """Read, decode and describe one part of an eval set; unusable images become rows with a problem."""
    items, decoded, rows = [], [], []
    for image in read_images(part):
        problem = image.problem
        if problem is None:
            try:
                rgb = decode_original(image.data)
                problem = "image_too_small" if too_small(rgb) else None
            except DecodeError:
                problem = "decode_error"
        rows.append({"item": image.item, "source": image.source, "kind": "image",
                     "problem": problem.split(":", 1)[0] if problem else None})
        if problem is None:
            items.append(image.item)
            decoded.append(rgb)
    views, local, thumbs, details, sizes, embeddings = image_features(decoded)
    return ImagePartFeatures(
        items=items, views=views, embeddings=embeddings,
        keypoint_counts=np.array([len(f) for f in local], np.int32),
        keypoints=np.concatenate([f.points for f in local] or [np.zeros((0, 2))]).astype(np.float16),
        descriptors=np.concatenate([f.descriptors for f in local] or [np.zeros((0, 32), np.uint8)]),
        thumbs=thumbs, details=details, sizes=sizes, rows=rows)


@dataclass
class ImageIndex:
    """The search part of an eval set's image index (see the module docstring).

    View vectors are stored as int8 with one scale per dimension (a quarter of
    float32, and faster to scan than float16); cosines are computed against
    the query divided by those scales.
    """

    items: pa.Array  # item id per image row
    vectors: np.ndarray  # views x 64 int8 (vector * scales, rounded), grouped by inverted list
    scales: np.ndarray  # 64 float32
    rows: np.ndarray  # views int32: the image row of each grouped view
    centroids: np.ndarray  # grid x (grid + 1) x 64 float32: coarse then list centroids (empty: brute force)
    offsets: np.ndarray  # grid * grid + 1 int64: where each list starts in `vectors`
    codes: np.ndarray | None = None  # views uint64 sign codes, grouped like `vectors` (None: made on first use)
    learned: ImageIndex | None = None  # the same structure over the learned embeddings (one view per image)
    hamming_max: int = VIEW_HAMMING_MAX  # code distance under which a scanned view gets the exact cosine
    _dense: np.ndarray | None = field(default=None, repr=False, compare=False)  # float32 copy, brute force only
    _fine: np.ndarray | None = field(default=None, repr=False, compare=False)  # fine_centroids, made on first use

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dense": None, "_fine": None}  # derived copies are rebuilt where used

    def search(self, queries: list[np.ndarray], neighbours: int, probe: int,
               min_similarity: float) -> list[list[tuple[int, float]]]:
        """Per candidate (a QUERY_VIEWS x 64 array), up to `neighbours` (image row, similarity) pairs,
        best first, at or above `min_similarity`; the similarity is the best cosine over all view pairs.

        Ties are broken by image row, so results do not depend on list order.
        """
        if len(self.centroids) == 0:
            return [self._search_all(views.astype(np.float32), neighbours, min_similarity) for views in queries]
        if self.codes is None:
            self.codes = sign_codes(self.vectors.astype(np.float32) / self.scales)
        found = []
        for start in range(0, len(queries), QUERY_BATCH):
            found += self._search_batch(queries[start:start + QUERY_BATCH], neighbours, probe, min_similarity)
        return found

    def _search_batch(self, queries: list[np.ndarray], neighbours: int, probe: int,
                      min_similarity: float) -> list[list[tuple[int, float]]]:
        """The inverted-file search of several candidates at once (see the module docstring)."""
        views = np.concatenate([q.astype(np.float32) for q in queries]) if queries else np.zeros((0, self.dim))
        owner = np.repeat(np.arange(len(queries)), [len(q) for q in queries])
        if self._fine is None:
            self._fine = fine_centroids(self.centroids)
        lists = probed_lists(views, self.centroids, probe, coarse_cells(probe), fine=self._fine)
        positions, view_of = list_positions(lists, self.offsets)
        difference = self.codes[positions]
        difference ^= sign_codes(views)[view_of]
        close = np.bitwise_count(difference) <= self.hamming_max
        positions, view_of = positions[close], view_of[close]
        similarity = np.einsum("nd,nd->n", self.vectors[positions].astype(np.float32),
                               (views / self.scales)[view_of])
        keep = similarity >= min_similarity
        return best_rows(owner[view_of[keep]], self.rows[positions[keep]], similarity[keep], len(queries),
                         neighbours)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def _search_all(self, views: np.ndarray, neighbours: int, min_similarity: float) -> list[tuple[int, float]]:
        """The exact search of one candidate in a small index: every view pair compared."""
        if self._dense is None:
            self._dense = np.ascontiguousarray(self.vectors.T, dtype=np.float32)
        if len(self.rows) == 0:
            return []
        similarity = ((views / self.scales) @ self._dense).max(0)
        keep = similarity >= min_similarity
        return best_rows(np.zeros(int(keep.sum()), np.int64), self.rows[keep], similarity[keep], 1, neighbours)[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The search arrays by name; the learned index's with the prefix LEARNED."""
        codes = self.codes if self.codes is not None else sign_codes(self.vectors.astype(np.float32) / self.scales)
        arrays = {"vectors": self.vectors, "scales": self.scales, "rows": self.rows, "centroids": self.centroids,
                  "offsets": self.offsets, "codes": codes}
        if self.learned is not None:
            arrays |= {LEARNED + name: array for name, array in self.learned.arrays().items()}
        return arrays

    @classmethod
    def from_arrays(cls, items: pa.Array, arrays: dict[str, np.ndarray]) -> ImageIndex:
        """The index `arrays()` saved (with its learned index when the arrays hold one)."""
        own = {name: arrays[name] for name in SEARCH_ARRAYS}
        learned = {name: arrays[LEARNED + name] for name in SEARCH_ARRAYS if LEARNED + name in arrays}
        complete = len(learned) == len(own)
        return cls(items=items, **own,
                   learned=cls(items=items, **learned, hamming_max=LEARNED_HAMMING_MAX) if complete else None)


def best_rows(owner: np.ndarray, rows: np.ndarray, similarity: np.ndarray, queries: int,
              neighbours: int) -> list[list[tuple[int, float]]]:
    """Per query, up to `neighbours` (image row, best similarity) pairs, best first (ties: lower row),
    from the similarity of each scanned view (`owner`: its query, `rows`: its image row)."""
    order = np.lexsort((-similarity, rows, owner))  # per query, per row, best view first
    owner, rows, similarity = owner[order], rows[order], similarity[order]
    first = np.ones(len(order), bool)
    first[1:] = (owner[1:] != owner[:-1]) | (rows[1:] != rows[:-1])
    owner, rows, similarity = owner[first], rows[first], similarity[first]
    order = np.lexsort((rows, -similarity, owner))
    owner, rows, similarity = owner[order], rows[order], similarity[order]
    starts = np.searchsorted(owner, np.arange(queries + 1))
    return [[(int(rows[i]), float(similarity[i])) for i in range(starts[q], min(starts[q + 1], starts[q] + neighbours))]
            for q in range(queries)]


@cache
def code_rotation(dim: int = 64, bits: int = CODE_BITS) -> np.ndarray:
    """A fixed random orthogonal projection (dim x bits): the hyperplanes whose signs make the codes."""
    matrix = np.random.default_rng(20261124).standard_normal((dim, max(dim, bits)))
    return np.linalg.qr(matrix)[0][:, :bits].astype(np.float32)


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """64-bit sign codes (uint64) of vectors: Hamming distance / 64 estimates the angle / pi."""
    out = np.empty(len(vectors), np.uint64)
    for start in range(0, len(vectors), ASSIGN_CHUNK * 16):
        chunk = np.asarray(vectors[start:start + ASSIGN_CHUNK * 16], np.float32) @ code_rotation(vectors.shape[1])
        out[start:start + len(chunk)] = np.packbits(chunk > 0, axis=1, bitorder="little").view(np.uint64).ravel()
    return out


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 vectors and per-dimension scales (127 / the largest magnitude of each dimension)."""
    largest = np.abs(vectors).max(axis=0).astype(np.float32) if len(vectors) else np.ones(vectors.shape[1])
    scales = (127.0 / np.maximum(largest, 1e-6)).astype(np.float32)
    quantised = np.empty(vectors.shape, np.int8)
    for start in range(0, len(vectors), ASSIGN_CHUNK * 16):
        chunk = vectors[start:start + ASSIGN_CHUNK * 16].astype(np.float32) * scales
        quantised[start:start + len(chunk)] = np.clip(np.rint(chunk), -127, 127)
    return quantised, scales


def list_grid(vectors: int) -> int:
    """Side of the two-level inverted file for this many view vectors: 0 (brute force) up to
    BRUTE_FORCE_MAX, then sqrt(n / LIST_SIZE), so lists hold about LIST_SIZE vectors each."""
    return 0 if vectors <= BRUTE_FORCE_MAX else max(8, int(round(math.sqrt(vectors / LIST_SIZE))))


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (by inner product of unit vectors) of every vector, in bounded-memory chunks."""
    out = np.empty(len(vectors), np.int32)
    for start in range(0, len(vectors), ASSIGN_CHUNK):
        chunk = vectors[start:start + ASSIGN_CHUNK].astype(np.float32)
        out[start:start + len(chunk)] = np.argmax(chunk @ centroids.T, axis=1)
    return out


def spherical_kmeans(sample: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit centroids of `sample` (scipy's k-means, renormalised; fewer points: the points repeated)."""
    if len(sample) <= count:
        centroids = sample[np.arange(count) % max(1, len(sample))].astype(np.float32)
    else:
        centroids, _ = kmeans2(sample.astype(np.float32), count, iter=KMEANS_ITERATIONS, minit="points", seed=rng)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-6)


def inverted_lists(vectors: np.ndarray, seed: int = 0,
                   grid: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-level inverted file: `grid` coarse cells, each cut into `grid` lists.

    Returns centroids (grid x grid+1 x dim: each cell's coarse centroid then its
    list centroids; empty for brute force), the order that groups vectors by
    list, and the offsets of the grid * grid lists. Assigning n vectors costs
    n * 2 * grid dot products instead of n * grid ** 2.
    """
    grid = list_grid(len(vectors)) if grid is None else grid
    if grid == 0:
        return np.zeros((0, 0, vectors.shape[1]), np.float32), np.arange(len(vectors)), \
            np.array([0, len(vectors)], np.int64)
    rng = np.random.default_rng(seed)
    size = min(len(vectors), max(65536, KMEANS_SAMPLE_PER_LIST * grid * grid))
    sample = vectors[np.sort(rng.choice(len(vectors), size, replace=False))]
    coarse = spherical_kmeans(sample, grid, rng)
    sample_cells = nearest(sample, coarse)
    fine = np.stack([spherical_kmeans(sample[sample_cells == cell], grid, rng) for cell in range(grid)])
    cells = nearest(vectors, coarse)
    membership = np.empty(len(vectors), np.int64)
    for cell in range(grid):
        members = np.nonzero(cells == cell)[0]
        membership[members] = cell * grid + nearest(vectors[members], fine[cell])
    order = np.argsort(membership, kind="stable")
    offsets = np.searchsorted(membership[order], np.arange(grid * grid + 1)).astype(np.int64)
    return np.concatenate([coarse[:, None, :], fine], axis=1).astype(np.float32), order, offsets


def coarse_cells(probe: int) -> int:
    """The coarse cells whose lists a query view may probe when it scans `probe` lists: 2, and a quarter of
    `probe` beyond 8. A copy's neighbour lies beyond the query's two nearest coarse cells often enough that
    more lists from only those two cells stop helping (bench_dedup_scale_real.py)."""
    return max(2, probe // 4)


def probed_lists(views: np.ndarray, centroids: np.ndarray, probe: int, cells: int,
                 fine: np.ndarray | None = None) -> np.ndarray:
    """Per query view (rows of `views`), the `probe` nearest lists (in no particular order): within its
    `cells` nearest coarse cells.

    The views are grouped by chosen cell and each cell's fine centroids are scored with one matrix
    product for its whole group. `fine` is `fine_centroids(centroids)` when the caller keeps it.
    """
    grid = centroids.shape[0]
    cells = min(cells, grid)
    probe = min(probe, cells * grid)
    fine = fine_centroids(centroids) if fine is None else fine
    coarse_scores = views @ centroids[:, 0].T
    coarse = np.argpartition(-coarse_scores, cells - 1, axis=1)[:, :cells] if cells < grid else \
        np.broadcast_to(np.arange(grid), (len(views), grid))
    chosen = coarse.ravel()
    order = np.argsort(chosen, kind="stable")
    bounds = np.searchsorted(chosen[order], np.arange(grid + 1))
    grouped_views = views[order // cells]
    grouped = np.empty((len(order), grid), np.float32)
    for cell in np.nonzero(np.diff(bounds))[0]:
        start, end = bounds[cell], bounds[cell + 1]
        np.matmul(grouped_views[start:end], fine[cell], out=grouped[start:end])
    scores = np.empty_like(grouped)
    scores[order] = grouped
    scores = scores.reshape(len(views), cells * grid)
    best = np.argpartition(-scores, probe - 1, axis=1)[:, :probe] if probe < cells * grid else \
        np.broadcast_to(np.arange(cells * grid), scores.shape)
    return np.take_along_axis(coarse, best // grid, axis=1) * grid + best % grid


def fine_centroids(centroids: np.ndarray) -> np.ndarray:
    """Each coarse cell's list centroids transposed (grid x dim x grid, contiguous) for matrix products."""
    return np.ascontiguousarray(centroids[:, 1:].transpose(0, 2, 1), dtype=np.float32)


def list_positions(lists: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of every vector in the given lists (views x probe), and the query view of each (int32 when
    the index allows, to halve the memory traffic of a scan)."""
    starts, ends = offsets[lists.ravel()], offsets[lists.ravel() + 1]
    lengths = ends - starts
    kind = np.int32 if offsets[-1] < 2 ** 31 else np.int64
    view_of_list = np.repeat(np.arange(lists.shape[0], dtype=kind), lists.shape[1])
    first = np.cumsum(lengths) - lengths
    positions = np.arange(lengths.sum(), dtype=kind)
    positions += np.repeat((starts - first).astype(kind), lengths)
    return positions, np.repeat(view_of_list, lengths)


def search_index(items: pa.Array, views: np.ndarray, hamming_max: int = VIEW_HAMMING_MAX) -> ImageIndex:
    """An inverted-file index over images x views x dim unit vectors."""
    flat = views.reshape(-1, views.shape[2]).astype(np.float16)
    view_rows = np.repeat(np.arange(len(views), dtype=np.int32), views.shape[1])
    centroids, order, offsets = inverted_lists(flat)
    quantised, scales = quantise(flat[order])
    return ImageIndex(items=items, vectors=quantised, scales=scales, rows=view_rows[order], centroids=centroids,
                      offsets=offsets, codes=sign_codes(flat[order]), hamming_max=hamming_max)


def assemble_image_index(parts: list[ImagePartFeatures]) -> tuple[ImageIndex, dict[str, np.ndarray]]:
    """Join parts (in order) into the search index (DCT views, with the learned index) and the verification
    arrays."""
    items = pa.array([i for p in parts for i in p.items], pa.string())
    views = np.concatenate([p.views for p in parts] or [np.zeros((0, descriptor.EVAL_VIEWS, descriptor.DIM))])
    embeddings = np.concatenate([p.embeddings for p in parts] or [np.zeros((0, embedding.DIM), np.float16)])
    index = search_index(items, views)
    index.learned = search_index(items, embeddings[:, None], LEARNED_HAMMING_MAX)
    counts = np.concatenate([p.keypoint_counts for p in parts] or [np.zeros(0, np.int32)])
    verification = {
        "keypoint_offsets": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
        "keypoints": np.concatenate([p.keypoints for p in parts] or [np.zeros((0, 2), np.float16)]),
        "descriptors": np.concatenate([p.descriptors for p in parts] or [np.zeros((0, 32), np.uint8)]),
        "thumbs": np.concatenate([p.thumbs for p in parts] or [np.zeros((0, THUMB, THUMB, 3), np.uint8)]),
        "details": np.concatenate([p.details for p in parts] or [np.zeros((0, DETAIL, DETAIL), np.uint8)]),
        "sizes": np.concatenate([p.sizes for p in parts] or [np.zeros((0, 2), np.uint16)]),
        "embeddings": embeddings.astype(np.float16),
    }
    return index, verification


@dataclass
class VerificationStore:
    """Per eval image row: ORB features, thumbnail, detail image, normalised size and learned embedding (arrays may
    be memory-mapped)."""

    keypoint_offsets: np.ndarray
    keypoints: np.ndarray
    descriptors: np.ndarray
    thumbs: np.ndarray
    details: np.ndarray
    sizes: np.ndarray
    embeddings: np.ndarray

    def features(self, row: int) -> LocalFeatures:
        start, end = int(self.keypoint_offsets[row]), int(self.keypoint_offsets[row + 1])
        return LocalFeatures(np.asarray(self.keypoints[start:end], np.float32),
                             np.ascontiguousarray(self.descriptors[start:end]))

    def thumb(self, row: int) -> np.ndarray:
        return np.ascontiguousarray(self.thumbs[row])

    def embedding(self, row: int) -> np.ndarray:
        """The eval image's learned embedding (float32)."""
        return np.asarray(self.embeddings[row], np.float32)

    def size(self, row: int) -> tuple[int, int]:
        width, height = self.sizes[row]
        return int(width), int(height)

    def entry(self, row: int) -> EvalEntry:
        """Everything the check needs of one eval image."""
        return EvalEntry(self.features(row), self.thumb(row), np.ascontiguousarray(self.details[row]), self.size(row))
