"""A small eval set for the demo, made at run time from the demo site's own photos.

    build_demo_eval_set(folder) -> {"images": ..., "captions": ..., "expected": {...}}

The demo site publishes skimage photos at several sizes. This eval set holds
edited copies of four of them (each under another edit chain of edits.py,
made from the full-size original, as a benchmark would hold it), three
skimage pictures the site does not have, and one corrupt file; and captions
that paraphrase two of the site's alt texts plus two that match nothing. A
demo run then flags every downloaded copy of those four photos by image and
the two alt texts by caption, and counts the corrupt eval image as a problem.
Nothing is downloaded or bundled: the pictures come with scikit-image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from webli.demo.images import load_photo
from webli.stages.dedup.edits import EDIT_CHAINS, apply_edits

EDITED_PHOTOS = {"astronaut": "crop+flip+jpeg", "coffee": "rotate+jitter+banner", "rocket": "banner",
                 "hubble": "resize+crop+jitter"}
UNRELATED = {"clock": skdata.clock, "colorwheel": skdata.colorwheel, "horse": skdata.horse}
CAPTIONS = [
    ("chelsea-caption", "Chelsea the cat."),  # the site's alt text "Chelsea the cat"
    ("moon-caption", "The grey surface of the Moon, with small craters"),  # "Grey surface of the Moon with ..."
    ("dog-caption", "A dog running through fresh snow in the mountains"),
    ("bench-caption", "Two people sitting on a park bench in autumn"),
]
MATCHED_ALTS = ["Chelsea the cat", "Grey surface of the Moon with small craters"]


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def unrelated_image(name: str) -> Image.Image:
    array = UNRELATED[name]()
    if array.dtype == bool:
        array = np.where(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def build_demo_eval_set(folder: Path, seed: int = 0) -> dict:
    """Write the demo eval set under `folder` (images/ and captions.tsv); returns its paths and expectations."""
    images = Path(folder) / "images"
    images.mkdir(parents=True, exist_ok=True)
    for position, (name, chain) in enumerate(sorted(EDITED_PHOTOS.items())):
        edited = apply_edits(load_photo(name), EDIT_CHAINS[chain], seed=seed * 100 + position)
        (images / f"{name}-{chain.replace('+', '-')}.jpg").write_bytes(jpeg_bytes(edited))
    for name in sorted(UNRELATED):
        (images / f"{name}.jpg").write_bytes(jpeg_bytes(unrelated_image(name)))
    (images / "corrupt.jpg").write_bytes(jpeg_bytes(load_photo("moon"))[:300])  # a truncated JPEG
    captions = Path(folder) / "captions.tsv"
    captions.write_text("".join(f"{item}\t{text}\n" for item, text in CAPTIONS), encoding="utf-8")
    return {"images": str(images), "captions": str(captions),
            "expected": {"photos": sorted(EDITED_PHOTOS), "alts": MATCHED_ALTS, "corrupt_images": 1}}
