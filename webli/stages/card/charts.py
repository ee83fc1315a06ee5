"""The card's charts, drawn with matplotlib (Agg) into PNG bytes, reproducibly.

Each function takes one section's facts and returns PNG bytes; `draw_charts`
returns {file name: bytes} for every section that has data. PNGs carry no
timestamp or software metadata, so the same run gives the same bytes.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from webli.stages.card.distributions import Distribution  # noqa: E402

WIDTH, DPI = 7.0, 100
KEPT, DROPPED, ACCENT = "#2b6cb0", "#e2e8f0", "#c05621"


def to_png(figure) -> bytes:
    """Render and close a figure; no metadata, so the bytes depend on the data only."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def funnel_chart(steps: list[dict]) -> bytes:
    """Rows in (light) and out (dark) per funnel step, top to bottom."""
    names = [s["step"] for s in steps]
    figure, axes = plt.subplots(layout="constrained", figsize=(WIDTH, 0.45 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    axes.barh(y, [s["in"] for s in steps], color=DROPPED, label="in")
    axes.barh(y, [s["out"] for s in steps], color=KEPT, height=0.5, label="out")
    for position, step in zip(y, steps):
        axes.text(step["out"], position, f" {step['out']:,}", va="center", fontsize=8)
    axes.set_yticks(y, names)
    axes.set_xlabel("rows")
    axes.set_title("Rows in and out of each step")
    axes.legend(loc="lower right", fontsize=8)
    return to_png(figure)


def languages_chart(rows: list[dict], kept_label: str, limit: int) -> bytes:
    """Pairs and kept samples of the `limit` languages with most pairs, with the keep rate."""
    shown = rows[:limit]
    figure, axes = plt.subplots(layout="constrained", figsize=(WIDTH, 0.32 * len(shown) + 1.2))
    y = np.arange(len(shown))[::-1]
    kept_key = "selected" if kept_label == "selected" else "downloaded"
    axes.barh(y, [r["pairs"] for r in shown], color=DROPPED, label="pairs")
    axes.barh(y, [r[kept_key] for r in shown], color=KEPT, height=0.5, label=kept_label)
    for position, row in zip(y, shown):
        axes.text(row["pairs"], position, f" {row['keep_rate']:.0%}", va="center", fontsize=8)
    axes.set_yticks(y, [str(r["language"]) for r in shown])
    axes.set_xlabel("samples")
    if shown[0]["pairs"] > 20 * max(shown[-1]["pairs"], 1):  # web languages are heavy-tailed: log scale
        axes.set_xscale("log")
        axes.set_xlabel("samples (log scale)")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.set_title(f"Pairs and {kept_label} samples per language (label: keep rate)")
    axes.legend(loc="lower right", fontsize=8)
    return to_png(figure)


def distribution_hist(axes, distribution: Distribution, bins, color=KEPT) -> None:
    values, counts = distribution.sorted_values()
    axes.hist(values, bins=bins, weights=counts, color=color)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def log_bins(distribution: Distribution, count: int = 30) -> np.ndarray:
    """Log-spaced bin edges spanning a positive distribution's values."""
    low, high = max(distribution.quantile(0.0), 1e-3), max(distribution.quantile(1.0), 1e-3)
    return np.geomspace(low * 0.97, high * 1.03, count)


def plain_log_axis(axes, ticks: list[float], most: int = 6) -> None:
    """Log x axis labelled with plain numbers at `ticks` inside the limits (every other one if too many)."""
    axes.set_xscale("log")
    low, high = axes.get_xlim()
    shown = [t for t in ticks if low <= t <= high] or [low, high]
    while len(shown) > most:
        shown = shown[::2]
    axes.xaxis.set_major_locator(FixedLocator(shown))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_locator(NullLocator())


SIZE_TICKS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
RATIO_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10]


def image_sizes_chart(width: Distribution, height: Distribution, ratio: Distribution) -> bytes:
    """Histograms of the originals' width and height and of their aspect ratio (log scales)."""
    figure, (sizes, ratios) = plt.subplots(1, 2, layout="constrained", figsize=(WIDTH, 2.8))
    both = Distribution()
    both.merge(width)
    both.merge(height)
    sizes.hist([width.sorted_values()[0], height.sorted_values()[0]], bins=log_bins(both),
               weights=[width.sorted_values()[1], height.sorted_values()[1]], color=[KEPT, ACCENT],
               label=["width", "height"])
    plain_log_axis(sizes, SIZE_TICKS)
    sizes.yaxis.set_major_locator(MaxNLocator(integer=True))
    sizes.set_xlabel("pixels (original)")
    sizes.set_ylabel("images")
    sizes.legend(fontsize=8)
    if ratio.count:
        distribution_hist(ratios, ratio, log_bins(ratio))
        plain_log_axis(ratios, RATIO_TICKS)
    ratios.set_xlabel("aspect ratio (width / height)")
    figure.suptitle("Downloaded images")
    return to_png(figure)


def words_chart(words: Distribution) -> bytes:
    """Histogram of OCR words per image, over images with text."""
    figure, axes = plt.subplots(layout="constrained", figsize=(WIDTH, 2.6))
    top = max(words.quantile(1.0) or 1, 1)
    distribution_hist(axes, words, np.arange(1, top + 2) - 0.5 if top <= 60 else 40)
    axes.set_xlabel("words read per image (images with text)")
    axes.set_ylabel("images")
    return to_png(figure)


def scores_chart(scores: Distribution, threshold: float | None) -> bytes:
    """Histogram of CLIP scores with the selection threshold."""
    figure, axes = plt.subplots(layout="constrained", figsize=(WIDTH, 2.8))
    distribution_hist(axes, scores, 40)
    if threshold is not None:
        axes.axvline(threshold, color=ACCENT, linestyle="--", label=f"threshold {threshold:.3f}")
        axes.legend(fontsize=8)
    axes.set_xlabel("CLIP score (cosine similarity of image and alt text)")
    axes.set_ylabel("samples")
    return to_png(figure)


def draw_charts(facts: dict, language_limit: int) -> dict[str, bytes]:
    """Every chart the facts support: {file name: PNG bytes}."""
    charts = {}
    if (facts.get("funnel") or {}).get("steps"):
        charts["funnel.png"] = funnel_chart(facts["funnel"]["steps"])
    if facts.get("languages"):
        charts["languages.png"] = languages_chart(facts["languages"]["rows"], facts["languages"]["keep_rate_of"],
                                                  language_limit)
    if facts.get("images"):
        images = facts["images"]
        charts["images.png"] = image_sizes_chart(images["original_width"], images["original_height"],
                                                 images["aspect_ratio"])
    if facts.get("ocr") and facts["ocr"]["words_per_image"].count:
        charts["ocr_words.png"] = words_chart(facts["ocr"]["words_per_image"])
    if facts.get("scores") and facts["scores"]["distribution"].count:
        charts["scores.png"] = scores_chart(facts["scores"]["distribution"], facts["scores"]["threshold"])
    return charts
