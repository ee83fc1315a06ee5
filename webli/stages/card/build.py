"""Collect every section of the card from a run's output tree.

`collect_card` returns the card's facts: one entry per section (None when
its stage has not run), the funnel with its checks, the stages' progress and
what the sections could not read. A section whose input is malformed (a
column missing) is reported under `unavailable` with the reason and the rest
of the card is still written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tarfile
from collections.abc import Callable

import pyarrow as pa

from webli.pipeline.config import Config, config_to_yaml
from webli.stages.card import overview
from webli.stages.card.collection import collect_collection
from webli.stages.card.content import collect_images, collect_languages
from webli.stages.card.distributions import Distribution
from webli.stages.card.environment import software_versions
from webli.stages.card.funnel import Check, funnel_checks, read_funnel
from webli.stages.card.metadata import collect_dedup, collect_ocr, collect_scores
from webli.stages.card.outputs import STAGES, MissingColumns, RunOutputs, stage_progress
from webli.stages.card.results import collect_comparison, collect_selection, collect_training
from webli.stages.card.samples import draw_samples
from webli.stages.card.shards import collect_shards
from webli.stages.card.snippets import collect_snippets

log = logging.getLogger(__name__)
# What a malformed output tree raises while a section reads it: the section is left out, with the reason.
UNREADABLE = (MissingColumns, pa.ArrowInvalid, tarfile.TarError, json.JSONDecodeError, OSError)
UNREADABLE_STATUS = "unreadable"


def collect_funnel(outputs: RunOutputs, train_data: str) -> dict | None:
    """Funnel steps and their consistency checks (plus: the final shards hold what select kept)."""
    steps = read_funnel(outputs)
    if not steps:
        return None
    checks = funnel_checks(steps, train_data)
    selection = collect_selection(outputs)
    if selection is not None:
        checks.append(Check("select: samples in the final shards (sizes.json) = selected",
                            selection["selected"], selection["samples_in_shards"]))
    return {"steps": [s.as_dict() for s in steps], "checks": [c.as_dict() for c in checks]}


def section_collectors(outputs: RunOutputs, config: Config) -> dict[str, Callable[[], object]]:
    """Each section's collector, in card order."""
    card = config.card
    return {
        "collection": lambda: collect_collection(outputs, config),
        "funnel": lambda: collect_funnel(outputs, config.train.data),
        "languages": lambda: collect_languages(outputs),
        "images": lambda: collect_images(outputs),
        "ocr": lambda: collect_ocr(outputs),
        "dedup": lambda: collect_dedup(outputs, config),
        "scores": lambda: collect_scores(outputs),
        "selection": lambda: collect_selection(outputs),
        "samples": lambda: draw_samples(outputs, card.samples_per_group, card.thumbnail_size, card.sample_seed),
        "training": lambda: collect_training(outputs),
        "comparison": lambda: collect_comparison(outputs),
        "shards": lambda: collect_shards(outputs),
    }


def progress_of(outputs: RunOutputs, stage: str, unavailable: dict) -> dict:
    """A stage's progress record; 'unreadable' (and the reason under `unavailable`) if its plan is corrupt."""
    try:
        return stage_progress(outputs, stage).as_dict()
    except UNREADABLE as err:
        unavailable[f"{stage} progress"] = f"{type(err).__name__}: {err}"
        return {"status": UNREADABLE_STATUS, "shards_done": None, "shards_expected": None}


def collect_card(outputs: RunOutputs, config: Config) -> dict:
    """Every section's facts; sections that cannot be read are listed under `unavailable`, with why."""
    unavailable: dict[str, str] = {}
    facts: dict = {"stages": {stage: progress_of(outputs, stage, unavailable) for stage in STAGES},
                   "unavailable": unavailable}
    for name, collect in section_collectors(outputs, config).items():
        try:
            facts[name] = collect()
        except UNREADABLE as err:
            log.warning("card section %s left out: %s", name, err)
            facts[name], facts["unavailable"][name] = None, f"{type(err).__name__}: {err}"
    samples, _ = overview.dataset_samples(facts)
    facts["snippets"] = collect_snippets(facts["shards"]["shard_set"], samples) if facts.get("shards") else None
    facts["summary"] = overview.summary(facts)
    facts["limitations"] = overview.limitations(facts, config)
    facts["front_matter"] = overview.front_matter(facts, config)
    facts["versions"] = software_versions()
    facts["config_yaml"] = config_to_yaml(config)
    facts["card"] = {"pretty_name": config.card.pretty_name, "license": config.card.license,
                     "description": config.card.description, "html": config.card.html}
    return facts


def jsonable(value):
    """The facts as plain JSON values: distributions as their summaries, samples without image bytes."""
    if isinstance(value, Distribution):
        return value.summary()
    if hasattr(value, "as_dict"):
        return jsonable(value.as_dict())
    if dataclasses.is_dataclass(value):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
