"""The learned pair verifier: the last step of the precise check, a small CNN on the aligned pair.

The structure test (verify.py, step 4) counts disagreeing 8x8 cells; what it
cannot tell apart is *how* they disagree. A localised screenshot disagrees
along its text lines in a way JPEG, resizing and colour jitter never do, yet
often in fewer cells than a heavily edited copy. This network looks at the
pair the structure test compared: the candidate in grey at the working scale
(longest side verify.DETAIL), the eval image's detail image warped onto it by
the check's transform, and where that comparison is valid, each normalised by
its own mean and spread (brightness and contrast jitter do not matter).

It was trained by `benchmarks/train_dedup_verifier.py` on the training
families of the realweb corpus only (the benchmark's families were never
seen): pairs the check aligns, copies under the tolerated edits against other
images of the same family (the same dialog in another language, another
screenshot of the program) and other edits of the eval image itself
(other_edits.py: blur, sharpen, noise, oil paint, glow: the same photo,
another edit), faint ones included (GIMP's NL filter and slur change a
picture by a few grey levels). A copy made from a small source was enlarged
to the working scale, so the network sees the eval image as that source
shows it, as the structure test does (`verify.seen_at_source`): a small
copy then looks like a copy, not a blur. And it sees the eval image under the
colour jitter that maps its thumbnail best onto the candidate's
(colour_jitter.py): a brightened copy's clipped background and a hue turn's
uneven change of grey are then in both images, not a difference between them.
Its threshold (`dedup.image_min_verifier_score`) was chosen on families held
out of that training. It only runs on pairs that passed every other test:
about 4 ms per pair on one core, and 3 ms for the jitter fit.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from webli.stages.dedup.shipped import load_shipped, shipped_digest

SIDE = 128  # = verify.DETAIL: pairs are padded to SIDE x SIDE
WIDTH = 16
WEIGHTS = "dedup-verifier-v4.pt"  # in webli.models
THRESHOLD = 0.02  # the default dedup.image_min_verifier_score: chosen on held-out families (train_dedup_verifier.py)
BATCH = 256


def pair_input(candidate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One aligned pair (the candidate's working grey, the warped eval detail under the fitted colour jitter
    as the candidate's source shows it (`verify.verifier_pair`), where it is valid; all the same shape, at most
    SIDE x SIDE) packed as the network reads it: 3 x SIDE x SIDE uint8, zero-padded."""
    packed = np.zeros((3, SIDE, SIDE), np.uint8)
    height, width = candidate.shape
    packed[0, :height, :width] = np.clip(candidate, 0, 255)
    packed[1, :height, :width] = np.clip(reference, 0, 255)
    packed[2, :height, :width] = valid.astype(np.uint8) * 255
    return packed


def model_input(pairs: np.ndarray):
    """N x 3 x SIDE x SIDE uint8 packed pairs as the network's input: both sides normalised to zero mean and unit
    spread over the valid pixels, their difference, and the valid mask."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pairs)).float() / 255.0
    valid = x[:, 2:3]
    count = valid.sum((2, 3), keepdim=True).clamp(min=1)

    def standardised(channel):
        mean = (channel * valid).sum((2, 3), keepdim=True) / count
        spread = ((((channel - mean) * valid) ** 2).sum((2, 3), keepdim=True) / count).sqrt().clamp(min=0.02)
        return (channel - mean) / spread * valid

    candidate, reference = standardised(x[:, 0:1]), standardised(x[:, 1:2])
    return torch.cat([candidate, reference, candidate - reference, valid], 1)


def network(width: int = WIDTH):
    """The verifier (untrained): four conv-pool blocks, mean and max pooled over the valid area, a small head;
    one logit per pair (copy vs not)."""
    import torch
    from torch import nn

    def block(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(),
                             nn.MaxPool2d(2))

    class PairNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(block(4, width), block(width, 2 * width), block(2 * width, 4 * width),
                                      block(4 * width, 4 * width))
            self.head = nn.Sequential(nn.Linear(8 * width, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.body(x)
            mask = nn.functional.adaptive_max_pool2d(x[:, 3:4], features.shape[2:])
            mean = (features * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1)
            peak = (features * mask - (1 - mask) * 1e4).amax((2, 3))
            return self.head(torch.cat([mean, peak], 1)).squeeze(1)

    return PairNet()


def weights_digest() -> str:
    """sha256 of the shipped weights (part of the dedup stage's check fingerprint: new weights, shards re-checked)."""
    return shipped_digest(WEIGHTS)


@cache
def load_verifier():
    """The shipped, trained network in eval mode (loaded once per process)."""
    return load_shipped(network(), WEIGHTS, "reinstall webli-builder, train them with "
                                            "benchmarks/train_dedup_verifier.py, or set "
                                            "dedup.image_min_verifier_score to null")


def scores(pairs: np.ndarray, model=None) -> np.ndarray:
    """Probability that each packed pair (N x 3 x SIDE x SIDE uint8, see `pair_input`) is a copy."""
    import torch

    model = load_verifier() if model is None else model
    if len(pairs) == 0:
        return np.zeros(0, np.float32)
    with torch.inference_mode():
        return np.concatenate([torch.sigmoid(model(model_input(pairs[start:start + BATCH]))).numpy()
                               for start in range(0, len(pairs), BATCH)])
