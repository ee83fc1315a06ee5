"""The card's selection and reference-trainer sections, read from select/ and train/."""

from __future__ import annotations

from numbers import Real

from webli.stages.card.outputs import RunOutputs
from webli.stages.select.threshold import ALL

SIZES_FILE = "shards/sizes.json"


def selection_thresholds(selection: dict) -> dict[str, float | None]:
    """Score threshold per selection group ('*' for a global selection, else per language) from
    selection.json; None for a group kept whole or not at all (no cut inside it)."""
    return {group: cut.get("score") for group, cut in selection.get("thresholds", {}).items()}


def global_threshold(selection: dict) -> float | None:
    return selection_thresholds(selection).get(ALL)


def collect_selection(outputs: RunOutputs) -> dict | None:
    """Thresholds, counts per reason and per language (select/selection.json) and the final shards (sizes.json)."""
    selection = outputs.read_json("select", "selection.json")
    if selection is None:
        return None
    sizes = outputs.read_json("select", SIZES_FILE) or {}
    thresholds = selection_thresholds(selection)
    return {"total": selection["total"], "eligible": selection.get("eligible"), "selected": selection["selected"],
            "dropped_by_reason": selection.get("dropped_by_reason", {}), "top_fraction": selection.get("top_fraction"),
            "per_language": bool(selection.get("per_language")), "rule": selection.get("rule"),
            "score_model_id": selection.get("score_model_id"), "threshold": thresholds.get(ALL),
            "thresholds": thresholds, "languages": selection.get("languages", {}),
            "shards": len(outputs.list_files("select", "shards", ".tar")), "samples_in_shards": sum(sizes.values()),
            "sizes": sizes}


# Parts of the trainer's metrics.json shown apart from the held-out metrics, or not at all (history, settings).
RUN_FACTS = ("model", "epochs", "steps", "splits")
NOT_SHOWN = ("history", "settings", "before_training", "zero_shot", *RUN_FACTS)
TRAINER_RUNS = (  # label, folder, heading
    ("reference", "train", "Reference CLIP trained on the shards"),
    ("random_baseline", "train/random_baseline",
     "Reference CLIP trained on a random subset of the downloaded pairs, of the same expected size"),
    ("bootstrap_filter", "bootstrap_filter",
     "Bootstrap filter (the model that scored the pairs, when score.model is 'bootstrap')"),
)


def flatten_metrics(metrics, prefix: str = "") -> list[tuple[str, float | None]]:
    """Numeric (or null) leaves of a nested metrics JSON as (dotted path, value), in file order."""
    if isinstance(metrics, dict):
        return [row for key, value in metrics.items() for row in flatten_metrics(value, f"{prefix}{key}.")]
    if isinstance(metrics, list):
        return [row for i, value in enumerate(metrics) for row in flatten_metrics(value, f"{prefix}{i}.")]
    if metrics is None or (isinstance(metrics, Real) and not isinstance(metrics, bool)):
        return [(prefix.rstrip("."), metrics)]
    return []


def trainer_run(metrics: dict, source: str, title: str = "") -> dict:
    """One trainer run: held-out metrics after (and before) training, zero-shot results, run facts."""
    before = dict(flatten_metrics(metrics.get("before_training") or {}))
    heldout = flatten_metrics({k: v for k, v in metrics.items() if k not in NOT_SHOWN})
    return {"source": source, "title": title, "model": metrics.get("model"),
            "facts": flatten_metrics({k: metrics[k] for k in RUN_FACTS if k in metrics and k != "model"}),
            "heldout": [{"metric": name, "after": value, "before": before.get(name)} for name, value in heldout],
            "zero_shot": flatten_metrics(metrics.get("zero_shot") or {})}


def collect_training(outputs: RunOutputs) -> dict | None:
    """The reference trainer's metrics (train/metrics.json) and the bootstrap filter's, when present."""
    runs = {}
    for label, stage, title in TRAINER_RUNS:
        metrics = outputs.read_json(stage, "metrics.json")
        if isinstance(metrics, dict):
            runs[label] = trainer_run(metrics, f"{stage}/metrics.json", title)
    return runs or None


def collect_comparison(outputs: RunOutputs) -> dict | None:
    """train/comparison.json: the model trained on the selection against the random-subset one, on the same
    held-out pairs, as rows (metric, selected, random)."""
    comparison = outputs.read_json("train", "comparison.json")
    if not isinstance(comparison, dict) or not {"selected", "random"} <= set(comparison):
        return None
    random = dict(flatten_metrics(comparison["random"]))
    return {"source": "train/comparison.json", "heldout": comparison.get("heldout"),
            "random_subset_fraction": comparison.get("random_subset_fraction"),
            "rows": [{"metric": name, "selected": value, "random": random.get(name)}
                     for name, value in flatten_metrics(comparison["selected"])]}
