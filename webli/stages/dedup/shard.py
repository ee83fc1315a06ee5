"""One download shard against every eval set's index -> the dedup sidecar table and its stats.

Every successfully downloaded sample gets one row (the stage drops nothing):
its image checked against each eval set's images, its alt text against each
eval set's captions, and the best match of each kind kept, with the eval set
and item it names. An image that is missing from the tar, does not decode,
or is too small is not checked: its row says why (`image_problem`) and the
stats count it; its caption is still checked.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from dataclasses import dataclass
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc

from webli import schemas
from webli.schemas import dedup as dedup_schema
from webli.stages.dedup import descriptor, embedding
from webli.stages.dedup.images import DecodeError, candidate_content, decode_candidate, too_small
from webli.stages.dedup.index import ImageIndex, VerificationStore
from webli.stages.dedup.match import Candidate, ImageMatch, MatchSettings, downloaded_candidate, match_images
from webli.stages.dedup.text import CaptionIndex, TextMatch

IMAGE_EXTENSIONS = ("jpg", "png", "webp")


@dataclass
class EvalSetIndex:
    """What workers receive for one eval set: the search parts of its indexes (broadcast) and a fingerprint."""

    name: str
    fingerprint: str
    images: ImageIndex | None
    captions: CaptionIndex | None


def read_tar_images(fileobj: IO[bytes]) -> tuple[dict[str, bytes], int]:
    """{key: image bytes} of a WebDataset tar (KEY.jpg / .png / .webp; the larger copy is ignored),
    and how many members were unreadable."""
    images, unreadable = {}, 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            key, _, extension = member.name.rsplit("/", 1)[-1].partition(".")
            if not member.isfile() or extension not in IMAGE_EXTENSIONS:
                continue
            data = tar.extractfile(member)
            if data is None:
                unreadable += 1
                continue
            images[key] = data.read()
    return images, unreadable


def prepare_image(data: bytes | None, resize_mode: str, original_width: int | None,
                  original_height: int | None) -> tuple[Candidate | None, str | None]:
    """The candidate to check (`match.downloaded_candidate`) and no reason; or None and the reason it cannot be
    checked."""
    if data is None:
        return None, "image_missing"
    try:
        image = candidate_content(decode_candidate(data), resize_mode, original_width, original_height)
    except DecodeError:
        return None, "decode_error"
    if too_small(image):
        return None, "image_too_small"
    return downloaded_candidate(image, resize_mode, original_width, original_height), None


def _better_image(current: tuple[str, ImageMatch] | None, match: ImageMatch) -> bool:
    return current is None or (match.fit, match.similarity) > (current[1].fit, current[1].similarity)


def _better_text(current: tuple[str, TextMatch] | None, match: TextMatch) -> bool:
    return current is None or match.similarity > current[1].similarity


def dedup_shard(rows: pa.Table, images: dict[str, bytes], indexes: list[tuple[EvalSetIndex, VerificationStore | None]],
                settings: MatchSettings, resize_mode: str) -> tuple[pa.Table, dict]:
    """Check the successful rows of a download table against every eval set; returns (table, stats)."""
    success = rows.filter(pc.equal(rows.column(schemas.STATUS), "success")).sort_by(schemas.KEY)
    keys = success.column(schemas.KEY).to_pylist()
    widths = success.column("original_width").to_pylist()
    heights = success.column("original_height").to_pylist()
    prepared = [prepare_image(images.get(k), resize_mode, w, h) for k, w, h in zip(keys, widths, heights)]
    checkable = [i for i, (candidate, _) in enumerate(prepared) if candidate is not None]
    pictures = [prepared[i][0].image for i in checkable]
    sides = [prepared[i][0].source_side for i in checkable]
    needs_views = any(index.images is not None and len(index.images) for index, _ in indexes)
    views = [descriptor.query_views(picture) for picture in pictures] if needs_views else None
    learned = embedding.query_vectors(pictures) if needs_views else None
    captions = success.column(schemas.CAPTION).to_pylist()
    best_image: list[tuple[str, ImageMatch] | None] = [None] * len(keys)
    best_text: list[tuple[str, TextMatch] | None] = [None] * len(keys)
    per_set = {}
    for index, store in indexes:
        image_hits, text_hits = set(), set()
        if index.images is not None and store is not None and len(index.images) and pictures:
            matches = match_images(pictures, index.images, store, settings, views, learned, sides)
            for position, match in zip(checkable, matches):
                if match is not None:
                    image_hits.add(position)
                    if _better_image(best_image[position], match):
                        best_image[position] = (index.name, match)
        if index.captions is not None and len(index.captions):
            for position, match in enumerate(index.captions.match(captions)):
                if match is not None:
                    text_hits.add(position)
                    if _better_text(best_text[position], match):
                        best_text[position] = (index.name, match)
        per_set[index.name] = {"image": len(image_hits), "text": len(text_hits), "removed": len(image_hits | text_hits)}
    problems = [problem for _, problem in prepared]
    table = verdict_table(success, best_image, best_text, problems)
    extra_members = sum(1 for k in images if k not in set(keys))
    return table, shard_stats(table, problems, per_set, extra_members, {i.name: i.fingerprint for i, _ in indexes})


def verdict_table(success: pa.Table, best_image: list, best_text: list, problems: list[str | None]) -> pa.Table:
    """The sidecar rows (schema DEDUP) from the best matches of each sample."""
    image_flags = [m is not None for m in best_image]
    text_flags = [m is not None for m in best_text]
    matched = [i if i is not None else t for i, t in zip(best_image, best_text)]
    columns = {
        schemas.KEY: success.column(schemas.KEY), schemas.UID: success.column(schemas.UID),
        dedup_schema.DUPLICATE: [i or t for i, t in zip(image_flags, text_flags)],
        dedup_schema.MATCHED_SET: [m[0] if m else None for m in matched],
        dedup_schema.MATCHED_ITEM: [m[1].item if m else None for m in matched],
        dedup_schema.IMAGE_DUPLICATE: image_flags,
        "image_eval_set": [m[0] if m else None for m in best_image],
        "image_eval_item": [m[1].item if m else None for m in best_image],
        "image_similarity": [m[1].similarity if m else None for m in best_image],
        "image_inliers": [m[1].inliers if m else None for m in best_image],
        "image_fit": [m[1].fit if m else None for m in best_image],
        "image_verifier_score": [m[1].verifier_score if m else None for m in best_image],
        dedup_schema.TEXT_DUPLICATE: text_flags,
        "text_eval_set": [m[0] if m else None for m in best_text],
        "text_eval_item": [m[1].item if m else None for m in best_text],
        "text_similarity": [m[1].similarity if m else None for m in best_text],
        "image_problem": problems,
    }
    types = {field.name: field.type for field in dedup_schema.DEDUP}
    arrays = {name: values if isinstance(values, pa.ChunkedArray) else pa.array(values, types[name])
              for name, values in columns.items()}
    return schemas.conform(pa.table(arrays), dedup_schema.DEDUP)


def shard_stats(table: pa.Table, problems: list[str | None], per_set: dict, extra_members: int,
                fingerprints: dict[str, str]) -> dict:
    """The stats vocabulary (nothing dropped) plus duplicates found, per eval set, and problems by reason."""
    reasons = Counter(p for p in problems if p)
    if extra_members:
        reasons["tar_member_without_row"] = extra_members
    count = lambda column: int(pc.sum(table.column(column)).as_py() or 0)  # noqa: E731
    return {
        "stage": "dedup", "total": table.num_rows, "forwarded": table.num_rows, "dropped_by_reason": {},
        "duplicates": count(dedup_schema.DUPLICATE), "image_duplicates": count(dedup_schema.IMAGE_DUPLICATE),
        "text_duplicates": count(dedup_schema.TEXT_DUPLICATE), "by_eval_set": per_set,
        "problems_by_reason": dict(sorted(reasons.items())), "index_fingerprints": fingerprints,
    }
