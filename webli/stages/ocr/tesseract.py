"""Tesseract through pytesseract: script detection (OSD) and word-level OCR of one image file.

Each call is one tesseract subprocess with a time limit; pytesseract
terminates it when the limit is hit. Every way a call can fail (time limit,
non-zero exit, killed by a signal) becomes a `TesseractFailure` with a reason
the caller counts, so the worker process itself never goes down with it.
Tesseract must run single-threaded (`OMP_THREAD_LIMIT=1`): the pipeline runs
one worker process per core.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import pytesseract

from webli.schemas import ocr as schema

TIMEOUT_MESSAGE = "Tesseract process timeout"  # pytesseract's RuntimeError when it stops a process
OSD_TOO_FEW_CHARACTERS = "too few characters"  # OSD's answer for an image with little text: no script
MIN_TIMEOUT = 0.05  # pytesseract treats a timeout of 0 as "none"


class TesseractFailure(Exception):
    """A tesseract call that did not complete; `reason` is an ocr_status value."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TesseractMissing(RuntimeError):
    """The tesseract binary, or a configured pack, is not installed: nothing can be read."""


def require_single_thread() -> None:
    """Make tesseract single-threaded in this process and its children (one process per core)."""
    os.environ["OMP_THREAD_LIMIT"] = "1"


def installed_packs() -> list[str]:
    """Packs tesseract can load (`eng`, `Latin` or `script/Latin`, `osd`, ...), sorted."""
    try:
        pytesseract.get_tesseract_version()
        return sorted(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError as err:
        raise TesseractMissing(
            "tesseract is not installed: `make install` as root installs it (Debian package tesseract-ocr "
            "with tesseract-ocr-osd and language packs)") from err


def _call(function, *args, timeout: float, **kwargs) -> str:
    """Run one pytesseract call; failures become TesseractFailure with a countable reason."""
    try:
        return function(*args, timeout=max(timeout, MIN_TIMEOUT), **kwargs)
    except pytesseract.TesseractError as err:  # a RuntimeError too: caught first
        detail = f"exit status {err.status}: {err.message}"[:300]
        raise TesseractFailure(schema.STATUS_TESSERACT_ERROR, detail) from err
    except RuntimeError as err:
        if TIMEOUT_MESSAGE in str(err):
            raise TesseractFailure(schema.STATUS_TIMEOUT, f"stopped after {timeout:.2f} s") from err
        raise


@dataclass(frozen=True)
class ScriptGuess:
    """What OSD says about an image: the dominant script and its confidence (None when too little text)."""

    script: str | None
    confidence: float | None


def parse_osd(text: str) -> ScriptGuess:
    """Read `Script:` and `Script confidence:` from tesseract's OSD output."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    script = fields.get("Script", "").strip() or None
    try:
        confidence = float(fields.get("Script confidence", ""))
    except ValueError:
        confidence = None
    return ScriptGuess(script, confidence if script else None)


def detect_script(path: str, timeout: float) -> ScriptGuess:
    """Tesseract's OSD (`--psm 0`) on an image file; no script when it finds too few characters."""
    try:
        return parse_osd(_call(pytesseract.image_to_osd, path, timeout=timeout))
    except TesseractFailure as failure:
        if failure.reason == schema.STATUS_TESSERACT_ERROR and OSD_TOO_FEW_CHARACTERS in failure.detail.lower():
            return ScriptGuess(None, None)
        raise


@dataclass(frozen=True)
class Word:
    """One word of tesseract's TSV output (level 5)."""

    text: str
    left: int
    top: int
    width: int
    height: int
    conf: float
    block: int
    paragraph: int
    line: int

    def as_row(self) -> dict:
        return {"text": self.text, "left": self.left, "top": self.top, "width": self.width,
                "height": self.height, "conf": self.conf, "block": self.block,
                "paragraph": self.paragraph, "line": self.line}


def parse_tsv(tsv: str) -> list[Word]:
    """Words (non-blank text, confidence >= 0) from tesseract's TSV, in reading order."""
    reader = csv.DictReader(tsv.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    words = []
    for row in reader:
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        conf = float(row["conf"])
        if conf < 0:
            continue
        words.append(Word(text, int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]),
                          round(conf, 2), int(row["block_num"]), int(row["par_num"]), int(row["line_num"])))
    return words


def words_to_text(words: list[Word]) -> str:
    """Words joined by spaces within a line, lines by newlines (tesseract's own line breaks)."""
    lines: list[list[str]] = []
    previous = None
    for word in words:
        line_id = (word.block, word.paragraph, word.line)
        if line_id != previous:
            lines.append([])
            previous = line_id
        lines[-1].append(word.text)
    return "\n".join(" ".join(line) for line in lines)


def read_words(path: str, packs: list[str], timeout: float, psm: int = 11) -> list[Word]:
    """OCR an image file with `packs` (e.g. ['jpn', 'eng']); its words with boxes and confidences."""
    tsv = _call(pytesseract.image_to_data, path, lang="+".join(packs), config=f"--psm {psm}", timeout=timeout)
    return parse_tsv(tsv)
