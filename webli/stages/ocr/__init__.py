"""OCR stage: tesseract on every downloaded image -> a sidecar of text, words, boxes and confidences.

- `languages`: which tesseract packs read an image (alt-text language + OSD script);
- `textcheck`: the cheap text-presence check that skips images without text;
- `tesseract`: the pytesseract calls (OSD, TSV words) with time limits and counted failures;
- `shard`: one download shard in, the sidecar table and stats out.
"""

from webli.stages.ocr.shard import ocr_shard

__all__ = ["ocr_shard"]
