"""The card's front matter, summary and known limitations, derived from the collected sections."""

from __future__ import annotations

from huggingface_hub import DatasetCardData

from webli.pipeline.config import Config

# Hugging Face's size categories: (upper bound exclusive, label).
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
                   (1_000_000_000_000, "100B<n<1T")]
TASK_CATEGORIES = ["image-to-text", "text-to-image", "zero-shot-image-classification"]
UNDETERMINED_LANGUAGES = {None, "", "und", "zxx", "mul"}


def size_category(samples: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if samples < bound), "n>1T")


def dataset_samples(facts: dict) -> tuple[int, str]:
    """How many samples the card describes, and which: selected (select ran) or downloaded."""
    if facts.get("selection"):
        return facts["selection"]["selected"], "selected"
    steps = {s["step"]: s for s in (facts.get("funnel") or {}).get("steps", [])}
    if "download" in steps:
        return steps["download"]["out"], "downloaded"
    return 0, "none"


def kept_languages(facts: dict) -> list[str]:
    """Language codes with at least one kept sample, most samples first (undetermined left out)."""
    languages = facts.get("languages")
    if not languages:
        return []
    key = "selected" if languages["keep_rate_of"] == "selected" else "downloaded"
    return [r["language"] for r in languages["rows"] if r[key] and r["language"] not in UNDETERMINED_LANGUAGES]


def card_languages(codes: list[str]) -> list[str]:
    """Hugging Face's `language` list: ISO 639 codes, so script or region subtags are cut ('zh-Hant' -> 'zh')."""
    return list(dict.fromkeys(code.split("-")[0].lower() for code in codes))


def front_matter(facts: dict, config: Config) -> str:
    """Hugging Face dataset-card YAML (without the --- fences)."""
    samples, _ = dataset_samples(facts)
    languages = card_languages(kept_languages(facts))
    data = DatasetCardData(
        pretty_name=config.card.pretty_name, license=config.card.license, language=languages or None,
        multilinguality="multilingual" if len(languages) > 1 else "monolingual" if languages else None,
        size_categories=[size_category(samples)], task_categories=list(TASK_CATEGORIES),
        source_datasets=["original"], tags=["image-text", "web-crawl", "webli", "webdataset"])
    return data.to_yaml().rstrip("\n") + "\n"


def summary(facts: dict) -> dict:
    """What, how many, from where, when."""
    samples, kind = dataset_samples(facts)
    collection = facts.get("collection") or {}
    sources = collection.get("sources", {"seeds": [], "warc": []})
    return {"samples": samples, "kind": kind, "languages": len(kept_languages(facts)),
            "languages_detected": (facts.get("languages") or {}).get("languages", 0),
            "seeds": len(sources["seeds"]), "warc_files": len(sources["warc"]),
            "pages_parsed": collection.get("pages", {}).get("parsed", 0),
            "first_fetch": collection.get("first_fetch"), "last_fetch": collection.get("last_fetch"),
            "with_ocr": bool(facts.get("ocr")), "scored": bool(facts.get("scores"))}


def limitations(facts: dict, config: Config) -> list[str]:
    """Known limitations and biases, each stated from this run's facts or config."""
    notes = [_language_note(facts), _coverage_note(facts), _consent_note(config), _decontamination_note(facts, config),
             _filter_note(facts),
             "Alt texts are written by page authors for accessibility or search, not as captions: many are short, "
             "generic or unrelated to the image; only rule-based alt-text filters and the CLIP score select them.",
             "No stage filters adult content, faces, or personal information in images, alt texts or OCR text.",
             f"Images are stored resized to {config.download.image_size} px ({config.download.resize_mode}); "
             "the originals are not kept, so fine detail and small text may be lost."]
    if facts.get("ocr"):
        notes.append("OCR text comes from tesseract with the language packs installed; scripts without a pack "
                     "are read poorly or not at all.")
    if config.crawl.allow_private_networks:
        notes.append("This run allowed loopback and private network addresses: it is a test or intranet crawl.")
    return [note for note in notes if note]


def _language_note(facts: dict) -> str | None:
    languages = facts.get("languages")
    if not languages or not languages["rows"]:
        return None
    top = languages["rows"][0]
    undetermined = sum(r["pairs"] for r in languages["rows"] if r["language"] in UNDETERMINED_LANGUAGES)
    return (f"Languages are detected from alt texts alone (fastText lid.176, CLD2 for CJK), which are short: "
            f"expect errors, most of all between close languages. {undetermined:,} of {languages['pairs']:,} pairs "
            f"have no detected language. The largest language, '{top['language']}', holds "
            f"{top['pairs'] / languages['pairs']:.0%} of the pairs.")


def _coverage_note(facts: dict) -> str | None:
    collection = facts.get("collection")
    if not collection:
        return None
    sources = collection["sources"]
    return (f"The data reflects its sources only ({len(sources['seeds']):,} seed URL(s), "
            f"{len(sources['warc']):,} WARC file(s)), not the web at large; topics, regions and languages "
            "follow those sites.")


def _consent_note(config: Config) -> str:
    if not (config.crawl.obey_robots and config.download.obey_robots):
        return ("robots.txt was NOT obeyed by every step of this run (crawl.obey_robots or download.obey_robots "
                "is false): sites' opt-outs were not respected.")
    directives = ", ".join(config.download.disallowed_header_directives) or "none"
    return ("robots.txt and opt-out directives (X-Robots-Tag: " + directives + "; <meta name=robots> noimageindex "
            "and noai) were honoured at crawl time only: opt-outs published later are not reflected.")


def _decontamination_note(facts: dict, config: Config) -> str:
    names = [eval_set.name for eval_set in config.dedup.eval_sets]
    if not facts.get("dedup"):
        return "Eval-set deduplication has not run: the data may contain evaluation images and captions."
    if not names:
        return "No eval sets were configured for deduplication: the data may contain evaluation images and captions."
    return (f"Near-duplicates were removed only for the configured eval sets ({', '.join(names)}); other benchmarks "
            "may overlap with the data.")


def _filter_note(facts: dict) -> str | None:
    scores = facts.get("scores")
    if not scores:
        return None
    models = ", ".join(scores["models"]) or "unknown"
    return (f"Samples were ranked by a CLIP model ({models}); keeping the top fraction keeps what that model "
            "already matches well, with its biases, and removes pairs it does not understand.")
