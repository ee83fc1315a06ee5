"""The learned search descriptor: a small CNN trained on the tolerated edits, shipped with the package.

The DCT views (descriptor.py) are the cheap hash path; they rank the right
eval image in the top 8 for only 58% of the copies that carry every edit at
once (benchmarks/results/dedup.md). This embedding is trained for exactly
that invariance: contrastive learning (InfoNCE) between an image and copies
of it under random chains of the tolerated edits (edits.py: crop, rotation,
colour jitter, banner, 0.3x resize, JPEG 30) passed through the download
stage's resizer, with other images of the same family (the same dialog in
another language) in the batch as hard negatives. It was trained by
`benchmarks/train_dedup_embedding.py` on the training families of the realweb
corpus only; the benchmark's families were never seen.

Input: the normalised image stretched to SIDE x SIDE RGB. Output: a DIM-d
unit vector, so it fits the same inverted file as the DCT views (an eval
image has one view; a candidate two, as is and mirrored: the network is not
trained for mirror invariance, the query covers it). About 1 ms per image
per core.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from webli.stages.dedup.shipped import load_shipped, shipped_digest

SIDE = 64
DIM = 64
WIDTHS = (32, 64, 128, 256)
WEIGHTS = "dedup-embedding-v1.pt"  # in webli.models
BATCH = 256


def network(widths: tuple[int, ...] = WIDTHS, dim: int = DIM):
    """The embedding network (untrained): strided 3x3 conv blocks, generalised-mean pooling, a linear head."""
    import torch
    from torch import nn

    def stage(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, 2, 1, bias=False), nn.BatchNorm2d(outputs),
                             nn.ReLU(inplace=True), nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))

    class Embedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
            layers += [stage(a, b) for a, b in zip(widths, widths[1:])]
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(widths[-1], dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = self.features(x).clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)  # GeM, p = 3
            return nn.functional.normalize(self.head(pooled), dim=1)

    return Embedder()


def model_input(images: np.ndarray):
    """A batch of SIDE x SIDE x 3 uint8 images as the network's input tensor (values in [-1, 1])."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def square(image: np.ndarray) -> np.ndarray:
    """A normalised RGB image stretched to the network's SIDE x SIDE input."""
    return cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


@cache
def load_embedder():
    """The shipped, trained network in eval mode (loaded once per process)."""
    return load_shipped(network(), WEIGHTS, "reinstall webli-builder, or train them with "
                                            "benchmarks/train_dedup_embedding.py")


def weights_digest() -> str:
    """sha256 of the shipped weights (part of the index fingerprint: new weights, new index)."""
    return shipped_digest(WEIGHTS)


def embed(squares: np.ndarray, model=None) -> np.ndarray:
    """DIM-d float32 unit vectors of N x SIDE x SIDE x 3 uint8 images, in batches of BATCH."""
    import torch

    model = load_embedder() if model is None else model
    if len(squares) == 0:
        return np.zeros((0, DIM), np.float32)
    with torch.inference_mode():
        return np.concatenate([model(model_input(squares[start:start + BATCH])).numpy()
                               for start in range(0, len(squares), BATCH)])


def eval_vectors(images: list[np.ndarray]) -> np.ndarray:
    """N x DIM: the one view of each normalised eval image."""
    return embed(np.array([square(image) for image in images], np.uint8).reshape(-1, SIDE, SIDE, 3))


def query_vectors(images: list[np.ndarray]) -> list[np.ndarray]:
    """Per normalised candidate image, a 2 x DIM array: the image and its mirror image."""
    squares = np.array([square(image) for image in images], np.uint8).reshape(-1, SIDE, SIDE, 3)
    vectors = embed(np.concatenate([squares, squares[:, :, ::-1]]))
    count = len(images)
    return [np.stack([vectors[i], vectors[count + i]]) for i in range(count)]
