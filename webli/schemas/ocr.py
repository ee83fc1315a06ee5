"""The OCR stage's sidecar: one row per downloaded image, keyed by `key`.

OCR is metadata: every image of a download shard gets a row, also when it
was skipped (no text found by the cheap check) or could not be read (the
`ocr_status` says why). Word boxes are in pixels of the image that was read
(`ocr_source`, `ocr_width` x `ocr_height`), as tesseract's `image_to_data`
gives them.
"""

from __future__ import annotations

import pyarrow as pa

from webli.schemas import KEY, UID

# Values of `ocr_status`.
STATUS_READ = "read"  # tesseract ran to the end (it may have found no word)
STATUS_NO_TEXT = "skipped_no_text"  # the text-presence check found nothing worth reading
STATUS_MISSING_IMAGE = "missing_image"  # a successful download row without its image in the tar
STATUS_DECODE_ERROR = "decode_error"  # the image bytes could not be decoded
STATUS_TIMEOUT = "ocr_timeout"  # the per-image time limit was hit; tesseract was stopped
STATUS_TESSERACT_ERROR = "tesseract_error"  # tesseract exited with an error or was killed

PROBLEM_STATUSES = (STATUS_MISSING_IMAGE, STATUS_DECODE_ERROR, STATUS_TIMEOUT, STATUS_TESSERACT_ERROR)

OCR_WORD = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("left", pa.int32(), nullable=False),
        pa.field("top", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("conf", pa.float32(), nullable=False),  # tesseract's word confidence, 0-100
        pa.field("block", pa.int16(), nullable=False),  # tesseract's block / paragraph / line numbers
        pa.field("paragraph", pa.int16(), nullable=False),
        pa.field("line", pa.int16(), nullable=False),
    ]
)

OCR = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field("ocr_status", pa.string(), nullable=False),  # one of the STATUS_* values above
        pa.field("ocr_error", pa.string()),  # detail of a problem status, else null
        pa.field("ocr_text", pa.string(), nullable=False),  # words joined by spaces, lines by newlines
        pa.field("ocr_words", pa.list_(OCR_WORD), nullable=False),
        pa.field("ocr_word_count", pa.int32(), nullable=False),
        pa.field("ocr_mean_conf", pa.float32()),  # mean word confidence; null without words
        pa.field("ocr_languages", pa.list_(pa.string()), nullable=False),  # tesseract packs used, in order
        pa.field("ocr_script", pa.string()),  # tesseract OSD's script, when it was run and found one
        pa.field("ocr_script_conf", pa.float32()),
        pa.field("ocr_text_score", pa.float32()),  # the text-presence check's score; null when off
        pa.field("ocr_source", pa.string()),  # "large" (the larger copy) or "thumbnail"; null if none read
        pa.field("ocr_width", pa.int32()),  # size of the image read
        pa.field("ocr_height", pa.int32()),
        pa.field("ocr_margin", pa.int16()),  # margin added for the read that gave the words (0: none); see OcrConfig
        pa.field("ocr_seconds", pa.float32(), nullable=False),  # wall time spent on the image, all steps
    ]
)
