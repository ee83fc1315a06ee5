"""Matching candidate images against one eval set's image index: cheap search, then the precise check.

Per candidate: its view descriptors (descriptor.py), the nearest eval images
from the inverted file, and only when some neighbour is close
enough, ORB features of the candidate (both orientations, computed once) and
the pair check of verify.py against each neighbour, best descriptor
similarity first (with local features; for a neighbour they do not align,
without them when the aspect ratios match). The accepted neighbour with the
most inliers wins (a match made without local features counts 0 inliers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webli.stages.dedup import descriptor
from webli.stages.dedup.index import ImageIndex, VerificationStore
from webli.stages.dedup.verify import (
    ORB_FEATURES_QUERY,
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

    neighbours: int = 8
    min_similarity: float = 0.5
    min_inliers: int = 12
    min_agreement: float = 0.9
    probe: int = 4


@dataclass(frozen=True)
class ImageMatch:
    """A verified near-duplicate: the eval item, the descriptor similarity and the check's numbers."""

    item: str
    row: int
    similarity: float
    inliers: int
    agreement: float


@dataclass
class Candidate:
    """A normalised candidate image; per orientation (as is, mirrored) the image, its local features and its
    grey image at the structure test's scale (made on first use)."""

    image: np.ndarray
    _orientations: list | None = None

    def orientations(self) -> list:
        if self._orientations is None:
            flipped = np.ascontiguousarray(self.image[:, ::-1])
            self._orientations = [(image, orb_features(grey(image), ORB_FEATURES_QUERY), working_grey(image))
                                  for image in (self.image, flipped)]
        return self._orientations


def check_neighbour(candidate: Candidate, store: VerificationStore, row: int, settings: MatchSettings) -> Verification:
    """The better of the two orientations of the candidate against one eval image; when neither is
    accepted with local features, the better of the two compared without them (`verify_unaligned`)."""
    target = store.entry(row)
    results = [verify_pair(features, image, target, settings.min_inliers, settings.min_agreement, work)
               for image, features, work in candidate.orientations()]
    best = max(results, key=lambda v: (v.accepted, v.inliers))
    if best.accepted:
        return best
    unaligned = check_unaligned(candidate, store, row)
    return unaligned if unaligned.accepted else best


def check_unaligned(candidate: Candidate, store: VerificationStore, row: int) -> Verification:
    """The better of the two orientations of the candidate against one eval image, without local features."""
    target = store.entry(row)
    results = [verify_unaligned(image, target, work) for image, _, work in candidate.orientations()]
    return max(results, key=lambda v: (v.accepted, v.agreement))


def best_match(candidate: Candidate, neighbours: list[tuple[int, float]], index: ImageIndex,
               store: VerificationStore, settings: MatchSettings) -> ImageMatch | None:
    """The accepted neighbour with the most inliers (ties: higher similarity, then lower row), or None."""
    accepted = []
    for row, similarity in neighbours:
        verification = check_neighbour(candidate, store, row, settings)
        if verification.accepted:
            accepted.append(ImageMatch(index.items[row].as_py(), row, similarity, verification.inliers,
                                       verification.agreement))
    return min(accepted, key=lambda m: (-m.inliers, -m.similarity, m.row), default=None)


def match_images(images: list[np.ndarray], index: ImageIndex, store: VerificationStore, settings: MatchSettings,
                 views: list[np.ndarray] | None = None) -> list[ImageMatch | None]:
    """The verified eval match (or None) of each normalised candidate image (`views`: their query views)."""
    if not images or len(index) == 0:
        return [None] * len(images)
    views = [descriptor.query_views(image) for image in images] if views is None else views
    neighbours = index.search(views, settings.neighbours, settings.probe, settings.min_similarity)
    return [best_match(Candidate(image), found, index, store, settings) if found else None
            for image, found in zip(images, neighbours)]
