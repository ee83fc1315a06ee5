"""The colour jitter model the pair verifier's eval image is corrected by (webli.stages.dedup.colour_jitter)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from webli.stages.dedup import colour_jitter
from webli.stages.dedup.edits import jitter
from webli.stages.dedup.verify import (
    EvalEntry,
    LocalFeatures,
    coloured_pixels,
    content_check,
    detail_image,
    grey,
    hue_shift,
    lab,
    thumbnail,
)


def fitted(original: np.ndarray, copy: np.ndarray) -> colour_jitter.Jitter:
    """The jitter fitted between two same-size RGB images' thumbnails, as the check fits it."""
    candidate, reference = thumbnail(copy), thumbnail(original)
    valid = np.ones(candidate.shape[:2], bool)
    shift = hue_shift(candidate, reference, coloured_pixels(lab(candidate), lab(reference), valid))
    return colour_jitter.fit_jitter(candidate, reference, valid, shift)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_the_fitted_jitter_turns_the_eval_image_into_the_jittered_copy_s_grey(name):
    original = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    for seed in range(3):
        copy = np.asarray(jitter(original, random.Random(seed)))
        estimate = colour_jitter.jittered(np.asarray(original, np.float32), fitted(np.asarray(original), copy))
        copy_grey, original_grey = grey(copy).astype(np.float32), grey(np.asarray(original)).astype(np.float32)
        design = np.stack([original_grey.ravel(), np.ones(original_grey.size, np.float32)], 1)
        linear = design @ np.linalg.lstsq(design, copy_grey.ravel(), rcond=None)[0]
        error = np.abs(colour_jitter.grey_of(estimate) - copy_grey).mean()
        assert error < 3.0 and error < 0.5 * np.abs(linear - copy_grey.ravel()).mean() + 0.5


def test_a_brightened_copy_s_clipped_background_is_clipped_in_the_fitted_eval_image():
    page = np.full((120, 160, 3), 228, np.uint8)
    page[30:90, 20:140] = 250  # a white field on a light grey dialog
    page[55:65, 30:130] = 30  # text in it
    copy = np.clip(page.astype(np.float32) * 1.2, 0, 255).astype(np.uint8)  # both light greys clip to 255
    estimate = colour_jitter.grey_of(colour_jitter.jittered(page.astype(np.float32), fitted(page, copy)))
    assert abs(estimate[10, 10] - estimate[40, 40]) < 3  # the field's edge is gone, as in the copy
    assert abs(estimate[60, 60] - copy[60, 60, 0]) < 8


def test_the_verifier_s_eval_image_is_jittered_like_the_copy():
    original = Image.fromarray(skdata.astronaut()).convert("RGB").resize((256, 256))
    copy = np.asarray(jitter(original, random.Random(4)))
    normalised = np.asarray(original)
    entry = EvalEntry(LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)),
                      thumbnail(normalised), detail_image(normalised), (256, 256))
    colour, *_, make_pair = content_check(np.array([[1.0, 0, 0], [0, 1.0, 0]]), copy, entry)
    pair = make_pair().astype(np.float32)
    plain = detail_image(normalised).astype(np.float32)  # the eval image the verifier saw before the fit
    assert colour
    assert np.abs(pair[1] - pair[0]).mean() < 0.5 * np.abs(plain - pair[0]).mean()
