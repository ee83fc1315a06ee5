"""The card's OCR, eval-set dedup and CLIP-score sections, folded from the sidecars shard by shard.

Each `collect_*` returns None when its stage has not run. The column names of
each sidecar are listed once, at the top of its section, so a change of a
stage's format is a one-line change here (and a failing test).
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from webli.pipeline.config import Config
from webli.schemas.dedup import DUPLICATE, IMAGE_DUPLICATE, MATCHED_SET, TEXT_DUPLICATE
from webli.stages.card.content import value_counts
from webli.stages.card.distributions import Distribution
from webli.stages.card.outputs import RunOutputs
from webli.stages.card.results import selection_thresholds
from webli.stages.select.threshold import ALL

# --- OCR -------------------------------------------------------------------------------------------------

OCR_COLUMNS = ["ocr_status", "ocr_word_count", "ocr_mean_conf", "ocr_languages", "ocr_script"]
NO_SCRIPT = "(no script detection)"


def collect_ocr(outputs: RunOutputs) -> dict | None:
    """Share of images with text, words per image, OCR languages and scripts, problems by reason."""
    shards, images, with_text = 0, 0, 0
    status, languages, scripts = Counter(), Counter(), Counter()
    words, confidence = Distribution(), Distribution(decimals=1)
    for shard in outputs.shard_tables("ocr", OCR_COLUMNS):
        shards, images = shards + 1, images + shard.table.num_rows
        status.update(value_counts(shard.table.column("ocr_status")))
        texted = shard.table.filter(pc.greater(shard.table.column("ocr_word_count"), 0))
        with_text += texted.num_rows
        languages.update(value_counts(pc.list_flatten(texted.column("ocr_languages"))))
        scripts.update(value_counts(pc.fill_null(texted.column("ocr_script"), NO_SCRIPT)))
        words.add(texted.column("ocr_word_count").to_numpy(zero_copy_only=False))
        confidence.add(texted.column("ocr_mean_conf").to_numpy(zero_copy_only=False))
    if shards == 0:
        return None
    problems = Counter()
    for stats in outputs.shard_stats("ocr").values():
        problems.update(stats.get("problems_by_reason", {}))
    return {"images": images, "with_text": with_text, "share_with_text": with_text / images if images else 0.0,
            "words_per_image": words, "mean_confidence": confidence, "status": dict(status.most_common()),
            "languages": dict(languages.most_common()), "scripts": dict(scripts.most_common()),
            "problems_by_reason": dict(problems.most_common())}


# --- eval-set dedup --------------------------------------------------------------------------------------

# Per verdict: the dedup sidecar's flag column and the column naming the eval set of that kind of match.
VERDICTS = {"image": (IMAGE_DUPLICATE, "image_eval_set"), "text": (TEXT_DUPLICATE, "text_eval_set"),
            "either": (DUPLICATE, MATCHED_SET)}
DEDUP_READ = [DUPLICATE, IMAGE_DUPLICATE, TEXT_DUPLICATE, MATCHED_SET]
DEDUP_OPTIONAL = ("image_eval_set", "text_eval_set", "image_problem")


def dedup_shard_counts(table: pa.Table) -> dict[str, Counter]:
    """Per verdict (image, text, either): flagged samples per eval set of the match."""
    counts = {}
    for verdict, (flag, eval_set) in VERDICTS.items():
        flagged = table.filter(pc.fill_null(table.column(flag), False))
        counts[verdict] = value_counts(flagged.column(eval_set if eval_set in table.column_names else MATCHED_SET))
    return counts


def eval_set_rows(counts: dict[str, Counter], configured: list[str]) -> list[dict]:
    """One row per eval set (configured ones first, also with no match), flagged samples per verdict."""
    found = sorted({n for c in counts.values() for n in c if n not in configured}, key=str)
    return [{"eval_set": name, **{verdict: counts[verdict].get(name, 0) for verdict in VERDICTS}}
            for name in [*configured, *found]]


def collect_dedup(outputs: RunOutputs, config: Config) -> dict | None:
    """Samples flagged as near-duplicates of each eval set, by image and by text; images not checked, by why."""
    samples, shards = 0, 0
    counts, problems = {verdict: Counter() for verdict in VERDICTS}, Counter()
    for shard in outputs.shard_tables("dedup", DEDUP_READ, optional=DEDUP_OPTIONAL):
        shards, samples = shards + 1, samples + shard.table.num_rows
        for verdict, shard_counts in dedup_shard_counts(shard.table).items():
            counts[verdict].update(shard_counts)
        if "image_problem" in shard.table.column_names:
            problems.update(value_counts(shard.table.column("image_problem").drop_null()))
    if shards == 0:
        return None
    configured = [eval_set.name for eval_set in config.dedup.eval_sets]
    return {"samples": samples, "eval_sets": eval_set_rows(counts, configured), "configured": configured,
            "image_problems": dict(problems.most_common()),
            **{f"flagged_{verdict}": sum(c.values()) for verdict, c in counts.items()}}


# --- CLIP scores -----------------------------------------------------------------------------------------

SCORE_COLUMNS = ["key", "score", "model_id", "problem"]
SCORE_DECIMALS = 3


NO_DOWNLOAD_ROW = "(no download row)"


def scores_with_language(scores: pa.Table, download: pa.Table) -> pa.Table:
    """The score sidecar joined with the download rows' language, by key (a key without one is labelled)."""
    joined = scores.join(download.select(["key", "language"]), "key", join_type="left outer")
    language = pc.fill_null(joined.column("language"), NO_DOWNLOAD_ROW)
    return joined.set_column(joined.schema.get_field_index("language"), "language", language)


def threshold_of(thresholds: dict[str, float | None], language: str) -> float | None:
    """The score threshold a sample of `language` was held to (a global one, or its language's)."""
    return thresholds.get(ALL, thresholds.get(language))


def collect_scores(outputs: RunOutputs) -> dict | None:
    """Score distribution, per-language medians, models used, unscored samples and the selection thresholds."""
    thresholds = selection_thresholds(outputs.read_json("select", "selection.json") or {})
    overall, per_language, above = Distribution(SCORE_DECIMALS), {}, Counter()
    models, problems, shards, rows = Counter(), Counter(), 0, 0
    for shard in outputs.shard_tables("score", SCORE_COLUMNS):
        download = outputs.read_table("download", f"{shard.shard_id:05d}.parquet", ["key", "language"])
        table = scores_with_language(shard.table, download)
        shards, rows = shards + 1, rows + table.num_rows
        models.update(value_counts(table.column("model_id")))
        problems.update(value_counts(table.column("problem").drop_null()))
        scored = table.filter(pc.is_valid(table.column("score")))
        overall.add(scored.column("score").to_numpy(zero_copy_only=False))
        for language in pc.unique(scored.column("language")).to_pylist():
            subset = scored.filter(pc.equal(scored.column("language"), language)).column("score")
            per_language.setdefault(language, Distribution(SCORE_DECIMALS)).add(subset.to_numpy(zero_copy_only=False))
            if (threshold := threshold_of(thresholds, language)) is not None:
                above[language] += pc.sum(pc.greater_equal(subset, threshold)).as_py() or 0
    if shards == 0:
        return None
    return {"samples": rows, "scored": overall.count, "distribution": overall, "models": dict(models.most_common()),
            "problems": dict(problems.most_common()), "threshold": thresholds.get(ALL),
            "per_language_thresholds": ALL not in thresholds and bool(thresholds),
            "at_or_above_threshold": sum(above.values()) if thresholds else None,
            "per_language": [{"language": lang, "count": d.count, "median": d.quantile(0.5),
                              "threshold": threshold_of(thresholds, lang), "at_or_above": above.get(lang, 0)}
                             for lang, d in sorted(per_language.items(), key=lambda kv: (-kv[1].count, str(kv[0])))]}
