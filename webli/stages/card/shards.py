"""The shards the card describes, every field they hold, and how to load them.

Once select has run these are the final shards (`select/shards/`); before,
the download shards, which have the same WebDataset layout. Fields are read
from the files themselves (the Parquet index's schema, the members and JSON
keys of the first sample), with descriptions from the schema's field
metadata when it carries one, else from the table below.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass

from webli.stages.card.outputs import RunOutputs

# Descriptions of the columns the stages write (used when a schema field carries no "description" metadata).
FIELD_DESCRIPTIONS = {
    "shard": "number of the shard (tar) the sample is in",
    "key": "sample key: the file name stem in the tar (no dots)",
    "uid": "stable id of the pair: hash of image URL and alt text",
    "url": "image URL",
    "caption": "alt text (NFC, whitespace collapsed)",
    "page_url": "URL of the page the image was found on",
    "language": "language of the alt text (ISO 639 code; 'und' when unknown)",
    "language_score": "confidence of the language identification, 0-1",
    "status": "download outcome: 'success' or the failure kind",
    "error_message": "download error message, when it failed",
    "drop_reason": "normalised reason the row was dropped, null when kept",
    "width": "width of the stored image, pixels",
    "height": "height of the stored image, pixels",
    "original_width": "width of the image as downloaded, pixels",
    "original_height": "height of the image as downloaded, pixels",
    "original_format": "format of the image as downloaded",
    "sha256": "SHA-256 of the downloaded bytes",
    "large_width": "width of the larger copy kept for OCR, pixels",
    "large_height": "height of the larger copy kept for OCR, pixels",
    "score": "CLIP cosine similarity of image and alt text",
    "score_model_id": "model that computed the score",
    "score_problem": "why the sample could not be scored",
    "ocr_status": "OCR outcome: read, skipped_no_text, or the problem (decode_error, ocr_timeout, ...)",
    "ocr_error": "detail of an OCR problem",
    "ocr_text": "text read in the image by OCR (words joined by spaces, lines by newlines)",
    "ocr_words": "OCR words with their boxes (pixels of the image read), confidence and layout numbers",
    "ocr_word_count": "number of words OCR read",
    "ocr_mean_conf": "mean OCR word confidence, 0-100 (null without words)",
    "ocr_languages": "tesseract language packs used",
    "ocr_script": "script found by tesseract's script detection",
    "ocr_script_conf": "confidence of the script detection",
    "ocr_text_score": "score of the cheap text-presence check",
    "ocr_source": "image OCR read: 'large' (the larger copy) or 'thumbnail'",
    "ocr_width": "width of the image OCR read, pixels",
    "ocr_height": "height of the image OCR read, pixels",
    "ocr_seconds": "seconds spent on OCR for the image",
    "dedup_is_duplicate": "near-duplicate of an evaluation-set item (image or text)",
    "dedup_image_duplicate": "image is a near-duplicate of an evaluation-set image",
    "dedup_text_duplicate": "alt text is a near-duplicate of an evaluation-set caption",
    "dedup_matched_set": "evaluation set of the matched item",
    "dedup_matched_item": "id of the matched evaluation-set item",
    "ocr_margin": "pixels of background margin added for the OCR read that found the words (0: none)",
    "dedup_image_eval_set": "evaluation set of the closest image match",
    "dedup_image_eval_item": "id of the closest evaluation-set image",
    "dedup_image_similarity": "learned-embedding cosine similarity to the matched evaluation-set image",
    "dedup_image_inliers": "geometrically consistent local-feature matches with that image",
    "dedup_image_fit": "correlation of the aligned grey images (candidate and matched evaluation-set image)",
    "dedup_image_verifier_score": "the learned pair verifier's probability that the image is a copy of that image",
    "dedup_text_eval_set": "evaluation set of the closest caption match",
    "dedup_text_eval_item": "id of the closest evaluation-set caption",
    "dedup_text_similarity": "Jaccard similarity of character shingles with that caption",
    "dedup_image_problem": "why the image could not be checked against the eval sets, else null",
}
MEMBER_DESCRIPTIONS = {
    "jpg": "the image, resized", "png": "the image, resized", "webp": "the image, resized",
    "txt": "the alt text (UTF-8)", "json": "the sample's metadata (the fields below)",
    "large.jpg": "a larger copy of the image, for OCR", "large.png": "a larger copy of the image, for OCR",
    "large.webp": "a larger copy of the image, for OCR",
}


@dataclass(frozen=True)
class ShardSet:
    """Where the described shards are: stage, folder under the stage, tar and index file names."""

    stage: str
    folder: str
    tars: tuple[str, ...]
    indexes: tuple[str, ...]

    def relative(self, name: str) -> str:
        """Path of a shard file relative to the card folder (`<output>/card/`)."""
        return "/".join(part for part in ("..", self.stage, self.folder, name) if part)


def described_shards(outputs: RunOutputs) -> ShardSet | None:
    """The final shards if select has run, else the download shards; None if there are none."""
    final = ShardSet("select", "shards", tuple(outputs.list_files("select", "shards", ".tar")),
                     tuple(outputs.list_files("select", "shards", ".parquet")))
    if final.tars and outputs.exists("select", "selection.json"):
        return final
    done = sorted(outputs.store("download").done_shards())
    tars = tuple(f"{i:05d}.tar" for i in done)
    return ShardSet("download", "", tars, tuple(f"{i:05d}.parquet" for i in done)) if tars else None


def parquet_fields(outputs: RunOutputs, shards: ShardSet) -> list[dict]:
    """Name, Arrow type, nullability and description of every column of the shards' Parquet index."""
    if not shards.indexes:
        return []
    schema = outputs.table_columns(shards.stage, "/".join(p for p in (shards.folder, shards.indexes[0]) if p))
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable, "description": describe(f)}
            for f in schema]


def describe(field) -> str:
    metadata = field.metadata or {}
    return metadata.get(b"description", b"").decode() or FIELD_DESCRIPTIONS.get(field.name, "")


def first_sample(outputs: RunOutputs, shards: ShardSet) -> tuple[list[str], dict]:
    """Member extensions and parsed JSON of the first sample of the first tar."""
    members, metadata, first_key = [], {}, None
    with outputs.open_file(shards.stage, "/".join(p for p in (shards.folder, shards.tars[0]) if p)) as f, \
            tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            key, _, extension = member.name.rpartition("/")[2].partition(".")
            if first_key is None:
                first_key = key
            if key != first_key:
                break
            members.append(extension)
            if extension == "json":
                metadata = json.loads(tar.extractfile(member).read())
    return sorted(members), metadata


def collect_shards(outputs: RunOutputs) -> dict | None:
    """The shard set, its tar members, JSON fields and Parquet columns."""
    shards = described_shards(outputs)
    if shards is None:
        return None
    members, metadata = first_sample(outputs, shards)
    return {"stage": shards.stage, "tars": [shards.relative(t) for t in shards.tars],
            "indexes": [shards.relative(i) for i in shards.indexes],
            "members": [{"extension": m, "description": MEMBER_DESCRIPTIONS.get(m, "")} for m in members],
            "json_fields": [{"name": k, "description": FIELD_DESCRIPTIONS.get(k, "")} for k in sorted(metadata)],
            "fields": parquet_fields(outputs, shards), "shard_set": shards}
