"""Matching candidate images against one eval set's image index: cheap search, then the precise check.

Per candidate: the nearest eval images by two searches, the DCT views
(descriptor.py, the cheap hash path) and the learned embedding (embedding.py,
which also finds copies carrying every edit at once); every neighbour either
returns is scored by the learned cosine (the better of the candidate and its
mirror image) and checked when that is at least `min_similarity`. Only then
are the candidate's ORB features computed (both orientations, once), and the
pair check of verify.py runs against each neighbour, most similar first
(aligned by local features or, when they are too few, by template matching;
for a neighbour neither aligns, without a transform when the aspect ratios
match; last, the learned pair verifier of verifier.py). Of the accepted
neighbours, the one the candidate fits best wins (the highest correlation of
the aligned grey images outside the banner band: near-identical eval images,
two desaturations of one photo say, are often both accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webli.stages.dedup import descriptor, embedding, verifier
from webli.stages.dedup.images import normalise, source_side
from webli.stages.dedup.index import ImageIndex, VerificationStore
from webli.stages.dedup.verify import (
    ORB_FEATURES_QUERY,
    EvalEntry,
    Verification,
    grey,
    orb_features,
    verify_pair,
    verify_unaligned,
    working_grey,
)


@dataclass(frozen=True)
class MatchSettings:
    """How far the search looks and what the check accepts (from DedupConfig)."""

    neighbours: int = 8  # from the DCT views
    learned_neighbours: int = 4  # from the learned embedding
    min_similarity: float = 0.5  # learned cosine
    min_inliers: int = 12
    min_agreement: float = 0.5
    max_local_change: int = 2  # cells; 0: no limit
    probe: int = 4  # inverted lists each DCT query view scans (large indexes)
    learned_probe: int = 256  # inverted lists each learned query vector scans (large indexes)
    min_verifier_score: float | None = verifier.THRESHOLD  # the pair verifier's threshold; None: not run


HASH_MIN_SIMILARITY = 0.5  # DCT view cosine under which the hash search returns no neighbour


@dataclass(frozen=True)
class ImageMatch:
    """A verified near-duplicate: the eval item, the learned cosine and the check's numbers."""

    item: str
    row: int
    similarity: float
    inliers: int
    agreement: float
    fit: float  # correlation of the aligned grey images (verify.fit_correlation)
    verifier_score: float | None = None  # the pair verifier's copy probability (None: not run)


@dataclass
class Candidate:
    """A normalised candidate image and the pixels of its source image across the longest side (None: unknown);
    per orientation (as is, mirrored) the image, its local features and its grey image at the structure test's
    scale (made on first use)."""

    image: np.ndarray
    source_side: int | None = None
    _orientations: list | None = None

    def orientations(self) -> list:
        if self._orientations is None:
            flipped = np.ascontiguousarray(self.image[:, ::-1])
            self._orientations = [(image, orb_features(grey(image), ORB_FEATURES_QUERY), working_grey(image))
                                  for image in (self.image, flipped)]
        return self._orientations


def downloaded_candidate(content: np.ndarray, resize_mode: str, original_width: int | None,
                         original_height: int | None) -> Candidate:
    """The candidate of a downloaded picture (its padding already cut, `images.candidate_content`): normalised,
    holding the pixels the download kept across its longest side, or its source's when fewer."""
    held = max(content.shape[:2])
    return Candidate(normalise(content), min(held, source_side(resize_mode, original_width, original_height) or held))


def aligned_checks(candidate: Candidate, target: EvalEntry, settings: MatchSettings) -> list[Verification]:
    """Each orientation of the candidate (as is, mirrored) against one eval image, aligned by local features or
    template matching (`verify_pair`)."""
    return [verify_pair(features, image, target, settings.min_inliers, settings.min_agreement, work,
                        settings.max_local_change, settings.min_verifier_score, candidate.source_side)
            for image, features, work in candidate.orientations()]


def unaligned_checks(candidate: Candidate, target: EvalEntry, max_local_change: int = 0,
                     min_verifier_score: float | None = None) -> list[Verification]:
    """Each orientation of the candidate against one eval image, compared without a transform
    (`verify_unaligned`)."""
    return [verify_unaligned(image, target, work, max_local_change, min_verifier_score, candidate.source_side)
            for image, _, work in candidate.orientations()]


def check_neighbour(candidate: Candidate, store: VerificationStore, row: int, settings: MatchSettings) -> Verification:
    """The better of the two orientations of the candidate against one eval image; when neither is
    accepted with local features, the better of the two compared without them (`verify_unaligned`)."""
    best = max(aligned_checks(candidate, store.entry(row), settings), key=lambda v: (v.accepted, v.fit, v.inliers))
    if best.accepted:
        return best
    unaligned = check_unaligned(candidate, store, row, settings.max_local_change, settings.min_verifier_score)
    return unaligned if unaligned.accepted else best


def check_unaligned(candidate: Candidate, store: VerificationStore, row: int, max_local_change: int = 0,
                    min_verifier_score: float | None = None) -> Verification:
    """The better of the two orientations of the candidate against one eval image, without local features."""
    return max(unaligned_checks(candidate, store.entry(row), max_local_change, min_verifier_score),
               key=lambda v: (v.accepted, v.agreement))


def best_match(candidate: Candidate, neighbours: list[tuple[int, float]], index: ImageIndex,
               store: VerificationStore, settings: MatchSettings) -> ImageMatch | None:
    """The accepted neighbour the candidate fits best (ties: higher similarity, then lower row), or None."""
    accepted = []
    for row, similarity in neighbours:
        verification = check_neighbour(candidate, store, row, settings)
        if verification.accepted:
            accepted.append(ImageMatch(index.items[row].as_py(), row, similarity, verification.inliers,
                                       verification.agreement, verification.fit, verification.verifier_score))
    return min(accepted, key=lambda m: (-m.fit, -m.similarity, m.row), default=None)


def scored_neighbours(found: list[tuple[int, float]], learned: np.ndarray, store: VerificationStore,
                      min_similarity: float) -> list[tuple[int, float]]:
    """The rows found by either search, each with its learned cosine to the candidate (`learned`: 2 x DIM, the
    candidate and its mirror image), at least `min_similarity`, most similar first (ties: lower row)."""
    rows = dict.fromkeys(row for row, _ in found)
    scored = [(row, float((learned @ store.embedding(row)).max())) for row in rows]
    return sorted([(row, s) for row, s in scored if s >= min_similarity], key=lambda pair: (-pair[1], pair[0]))


def search_neighbours(images: list[np.ndarray], index: ImageIndex, store: VerificationStore, settings: MatchSettings,
                      views: list[np.ndarray] | None = None,
                      learned: list[np.ndarray] | None = None) -> list[list[tuple[int, float]]]:
    """Per normalised candidate image, the eval rows worth checking with their learned cosine (`views`,
    `learned`: the DCT query views and learned query vectors, computed here when not given)."""
    views = [descriptor.query_views(image) for image in images] if views is None else views
    learned = embedding.query_vectors(images) if learned is None else learned
    found = index.search(views, settings.neighbours, settings.probe, HASH_MIN_SIMILARITY)
    if index.learned is not None:
        by_embedding = index.learned.search(learned, settings.learned_neighbours, settings.learned_probe,
                                            settings.min_similarity)
        found = [hashed + embedded for hashed, embedded in zip(found, by_embedding)]
    return [scored_neighbours(rows, vectors, store, settings.min_similarity) for rows, vectors in zip(found, learned)]


def match_images(images: list[np.ndarray], index: ImageIndex, store: VerificationStore, settings: MatchSettings,
                 views: list[np.ndarray] | None = None, learned: list[np.ndarray] | None = None,
                 source_sides: list[int | None] | None = None) -> list[ImageMatch | None]:
    """The verified eval match (or None) of each normalised candidate image (see `search_neighbours`;
    `source_sides`: see `Candidate`)."""
    if not images or len(index) == 0:
        return [None] * len(images)
    neighbours = search_neighbours(images, index, store, settings, views, learned)
    sides = [None] * len(images) if source_sides is None else source_sides
    return [best_match(Candidate(image, side), rows, index, store, settings) if rows else None
            for image, rows, side in zip(images, neighbours, sides)]
