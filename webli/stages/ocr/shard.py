"""OCR of one download shard: its tar and Parquet in, the sidecar table and stats out.

Every successful download row gets exactly one OCR row (sorted by key), also
when its image is missing from the tar, cannot be decoded, is skipped by the
text check, or tesseract times out or fails: `ocr_status` says which, and the
stats count each problem. Nothing is dropped.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander

from webli import schemas
from webli.pipeline.config import OcrConfig
from webli.schemas import ocr as schema
from webli.stages.ocr.languages import PackPolicy, choose_packs, resolve_pack
from webli.stages.ocr.tesseract import (
    ScriptGuess,
    TesseractFailure,
    TesseractMissing,
    Word,
    detect_script,
    read_words,
    words_to_text,
)
from webli.stages.ocr.textcheck import TextCheckParams, text_score

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LARGE_PREFIX = "large."


@dataclass(frozen=True)
class Sample:
    """One downloaded image to read: its ids, the alt text's language and the chosen image bytes."""

    key: str
    uid: str
    language: str | None
    image: bytes | None = None
    source: str | None = None  # "large" or "thumbnail"
    extension: str = "jpg"
    missing_detail: str | None = None  # why `image` is None


@dataclass(frozen=True)
class Reader:
    """Everything needed to read images, fixed for a shard: config, installed packs, scratch folder."""

    config: OcrConfig
    installed: frozenset[str]
    work_dir: Path
    check: TextCheckParams = field(default_factory=TextCheckParams)

    @cached_property
    def explicit(self) -> tuple[str, ...] | None:
        """The configured packs in installed spelling; None for auto."""
        packs = explicit_packs(self.config, self.installed)
        return tuple(packs) if packs is not None else None

    @property
    def policy(self) -> PackPolicy:
        return PackPolicy(fallback=tuple(self.config.fallback_languages),
                          secondary=self.config.secondary_language, max_packs=self.config.max_languages)


def explicit_packs(config: OcrConfig, installed: Iterable[str]) -> list[str] | None:
    """The configured pack list in installed spelling, None for 'auto'; raises if one is missing."""
    if config.languages == "auto":
        return None
    installed = set(installed)
    resolved = [resolve_pack(name, installed) for name in config.languages]
    missing = [name for name, found in zip(config.languages, resolved) if found is None]
    if missing:
        raise TesseractMissing(f"ocr.languages names packs that are not installed: {missing}; "
                               f"installed: {sorted(installed)}")
    return resolved


def choose_image(files: dict[str, bytes], use_large_copy: bool) -> tuple[bytes, str, str] | None:
    """(bytes, source, extension) of the image to read from one tar sample's files, or None."""
    large = [ext for ext in IMAGE_EXTENSIONS if f"{LARGE_PREFIX}{ext}" in files]
    small = [ext for ext in IMAGE_EXTENSIONS if ext in files]
    if use_large_copy and large:
        return files[f"{LARGE_PREFIX}{large[0]}"], "large", large[0]
    if small:
        return files[small[0]], "thumbnail", small[0]
    if large:
        return files[f"{LARGE_PREFIX}{large[0]}"], "large", large[0]
    return None


def tar_samples(stream: BinaryIO, name: str, errors: list[str]) -> Iterator[dict]:
    """WebDataset samples ({'__key__', ext: bytes}) of a tar stream; a read error stops it and is kept."""
    def stop(error: Exception) -> bool:
        errors.append(f"{type(error).__name__}: {error}"[:300])
        return False

    files = tar_file_expander([{"url": name, "stream": stream}], handler=stop)
    yield from group_by_keys(files, handler=stop)


@dataclass
class JoinTally:
    """What joining the tar to the download rows found beside the samples."""

    extra_samples: int = 0  # tar samples without a successful download row (or seen twice)
    tar_errors: list[str] = field(default_factory=list)


def join_samples(rows: list[dict], samples: Iterable[dict], use_large_copy: bool,
                 tally: JoinTally) -> Iterator[Sample]:
    """Pair each successful download row with its tar sample by key, streaming the tar.

    Yields the samples in tar order, then every row whose image was not found
    (carrying why); tar samples without a row are counted in `tally`.
    """
    by_key = {row[schemas.KEY]: row for row in rows}
    seen: set[str] = set()
    for files in samples:
        key = files["__key__"]
        if key not in by_key or key in seen:
            tally.extra_samples += 1
            continue
        seen.add(key)
        row, chosen = by_key[key], choose_image(files, use_large_copy)
        if chosen is None:
            yield Sample(key, row[schemas.UID], row.get(schemas.LANGUAGE),
                         missing_detail="no image file in the tar sample")
        else:
            yield Sample(key, row[schemas.UID], row.get(schemas.LANGUAGE), *chosen)
    unreadable = f" (tar unreadable: {tally.tar_errors[0]})" if tally.tar_errors else ""
    for key in sorted(set(by_key) - seen):
        yield Sample(key, by_key[key][schemas.UID], by_key[key].get(schemas.LANGUAGE),
                     missing_detail=f"sample not in the tar{unreadable}")


def decode_gray(data: bytes) -> np.ndarray:
    """Decode image bytes fully (so truncated files fail here) to a grayscale array."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", image.size)  # JPEG: decode straight to grayscale
        return np.asarray(image.convert("L"))


def with_margin(gray: np.ndarray, margin: int) -> np.ndarray:
    """`gray` inside a margin of its own background (the median of its outermost pixels)."""
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                              value=int(np.median(ring)))


def write_image(sample: Sample, reader: Reader) -> Path:
    """The image's own bytes in the scratch folder, for tesseract."""
    path = reader.work_dir / f"{sample.key}.{sample.extension}"
    path.write_bytes(sample.image)
    return path


def write_with_margin(sample: Sample, gray: np.ndarray, reader: Reader) -> Path:
    """The decoded image inside a margin of `ocr.margin` pixels, as PGM (no encoding cost; tesseract reads
    luminance anyway)."""
    path = reader.work_dir / f"{sample.key}.margin.pgm"
    if not cv2.imwrite(str(path), with_margin(gray, reader.config.margin)):
        raise OSError(f"could not write {path}")
    return path


def read_with_retry(sample: Sample, gray: np.ndarray, path: Path, packs: list[str], reader: Reader,
                    deadline: float) -> tuple[list[Word], int]:
    """Words of the image, and the margin of the read that gave them (0: the original file).

    Tesseract misses text that touches a frame or the image edge (signs,
    buttons): when the original finds no word and `ocr.margin` is set, the
    image is read again inside a margin of its own background, as one block
    of text (`ocr.retry_psm`). Boxes are given back in the original image's
    coordinates.
    """
    words = read_words(str(path), packs, deadline - time.perf_counter(), reader.config.psm)
    margin = reader.config.margin
    if words or not margin:
        return words, 0
    padded = write_with_margin(sample, gray, reader)
    try:
        words = read_words(str(padded), packs, deadline - time.perf_counter(), reader.config.retry_psm)
    finally:
        padded.unlink(missing_ok=True)
    return shift_words(words, margin, gray.shape), margin


def shift_words(words: list[Word], margin: int, shape: tuple[int, ...]) -> list[Word]:
    """Word boxes back in the coordinates of the image without margin (clipped to it)."""
    if margin == 0:
        return words
    height, width = shape[:2]
    shifted = []
    for word in words:
        left, top = min(max(word.left - margin, 0), width), min(max(word.top - margin, 0), height)
        right = min(max(word.left + word.width - margin, left), width)
        bottom = min(max(word.top + word.height - margin, top), height)
        shifted.append(replace(word, left=left, top=top, width=right - left, height=bottom - top))
    return shifted


def result_row(sample: Sample, status: str, started: float, **values) -> dict:
    """One sidecar row; columns not given are empty."""
    words: list[Word] = values.pop("words", [])
    confs = [w.conf for w in words]
    guess: ScriptGuess | None = values.pop("guess", None)
    return {
        schemas.KEY: sample.key, schemas.UID: sample.uid, "ocr_status": status,
        "ocr_error": values.get("error"), "ocr_text": words_to_text(words),
        "ocr_words": [w.as_row() for w in words], "ocr_word_count": len(words),
        "ocr_mean_conf": round(float(np.mean(confs)), 2) if confs else None,
        "ocr_languages": values.get("packs", []),
        "ocr_script": guess.script if guess else None, "ocr_script_conf": guess.confidence if guess else None,
        "ocr_text_score": values.get("text_score"), "ocr_source": sample.source if sample.image else None,
        "ocr_width": values.get("width"), "ocr_height": values.get("height"), "ocr_margin": values.get("margin"),
        "ocr_seconds": round(time.perf_counter() - started, 4),
    }


def packs_for(sample: Sample, path: str, reader: Reader, deadline: float) -> tuple[list[str], ScriptGuess | None]:
    """The packs to read `sample` with: the configured list, or auto (alt language + OSD script)."""
    if reader.explicit is not None:
        return list(reader.explicit), None
    guess = detect_script(path, deadline - time.perf_counter())
    confident = guess.confidence is not None and guess.confidence >= reader.config.min_script_confidence
    packs = choose_packs(sample.language, guess.script if confident else None, reader.installed, reader.policy)
    if not packs:
        raise TesseractFailure(schema.STATUS_TESSERACT_ERROR, "no installed language pack to read with")
    return packs, guess


def ocr_sample(sample: Sample, reader: Reader) -> dict:
    """Read one image: decode, text check, script detection, OCR. Never raises for a bad image."""
    started = time.perf_counter()
    deadline = started + reader.config.time_limit
    if sample.image is None:
        return result_row(sample, schema.STATUS_MISSING_IMAGE, started, error=sample.missing_detail)
    try:
        gray = decode_gray(sample.image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return result_row(sample, schema.STATUS_DECODE_ERROR, started, error=f"{type(err).__name__}: {err}"[:300])
    size = {"height": gray.shape[0], "width": gray.shape[1]}
    score = text_score(gray, reader.check) if reader.config.text_check else None
    if score is not None and score < reader.config.text_threshold:
        return result_row(sample, schema.STATUS_NO_TEXT, started, text_score=score, **size)
    path = write_image(sample, reader)
    packs, guess = [], None
    try:
        packs, guess = packs_for(sample, str(path), reader, deadline)
        words, margin = read_with_retry(sample, gray, path, packs, reader, deadline)
    except TesseractFailure as failure:
        return result_row(sample, failure.reason, started, error=failure.detail, packs=packs, guess=guess,
                          text_score=score, **size)
    finally:
        path.unlink(missing_ok=True)
    return result_row(sample, schema.STATUS_READ, started, words=words, packs=packs, guess=guess,
                      text_score=score, margin=margin, **size)


def ocr_samples(samples: Iterable[Sample], reader: Reader,
                progress: Callable[[int], None] | None = None) -> list[dict]:
    """Read every sample in turn (one tesseract process at a time); rows sorted by key."""
    rows = []
    for i, sample in enumerate(samples):
        rows.append(ocr_sample(sample, reader))
        if progress:
            progress(i + 1)
    return sorted(rows, key=lambda row: row[schemas.KEY])


def ocr_stats(table: pa.Table, tally: JoinTally, started: float) -> dict:
    """The stage's stats: nothing dropped; problems, statuses, packs, scripts and time counted."""
    statuses = Counter(table.column("ocr_status").to_pylist())
    problems = {status: statuses[status] for status in schema.PROBLEM_STATUSES if statuses[status]}
    if tally.extra_samples:
        problems["sample_not_in_download_table"] = tally.extra_samples
    if tally.tar_errors:
        problems["tar_read_error"] = len(tally.tar_errors)
    read = table.filter(pc.equal(table.column("ocr_status"), schema.STATUS_READ))
    packs = Counter("+".join(p) for p in read.column("ocr_languages").to_pylist())
    scripts = Counter(s for s in read.column("ocr_script").to_pylist() if s)
    word_counts = table.column("ocr_word_count").to_pylist()
    return {
        "stage": "ocr",
        "total": table.num_rows,
        "forwarded": table.num_rows,
        "dropped_by_reason": {},
        "problems_by_reason": dict(sorted(problems.items())),
        "status_counts": dict(sorted(statuses.items())),
        "images_with_words": sum(1 for n in word_counts if n),
        "read_again_with_margin": sum(1 for m in table.column("ocr_margin").to_pylist() if m),
        "words": sum(word_counts),
        "packs": dict(sorted(packs.items(), key=lambda kv: (-kv[1], kv[0]))),
        "scripts": dict(sorted(scripts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "ocr_seconds": round(sum(table.column("ocr_seconds").to_pylist()), 3),
        "duration_s": round(time.time() - started, 3),
    }


def ocr_shard(download: pa.Table, tar_stream: BinaryIO, tar_name: str, config: OcrConfig,
              installed: Iterable[str], progress: Callable[[int], None] | None = None) -> tuple[pa.Table, dict]:
    """OCR every successfully downloaded image of one shard, streaming its tar.

    `download` is the shard's download table (schema DOWNLOAD), `tar_stream`
    its WebDataset tar. Returns the sidecar (schema OCR, one row per
    successful row, sorted by key) and the shard's stats. Raises
    TesseractMissing if a configured pack is not installed.
    """
    started = time.time()
    installed = frozenset(installed)
    explicit_packs(config, installed)  # a configured pack that is not installed fails the shard here, up front
    ok = download.filter(pc.equal(download.column(schemas.STATUS), "success"))
    rows = ok.select([schemas.KEY, schemas.UID, schemas.LANGUAGE]).to_pylist()
    tally = JoinTally()
    samples = join_samples(rows, tar_samples(tar_stream, tar_name, tally.tar_errors), config.use_large_copy, tally)
    with tempfile.TemporaryDirectory(prefix="webli-ocr-") as work:
        results = ocr_samples(samples, Reader(config, installed, Path(work)), progress)
    if tally.tar_errors:
        log.warning("%s: tar read stopped early: %s", tar_name, tally.tar_errors[0])
    table = schemas.conform(pa.Table.from_pylist(results, schema=schema.OCR), schema.OCR)
    return table, ocr_stats(table, tally, started)
