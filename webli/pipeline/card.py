"""Card stage: write `<output>/card/` (README.md, card.html, card.json, charts/, samples/) from the run's outputs.

The card is one global summary, not a sharded map: it reads every stage's
stats and the columns it needs shard by shard in this process, and is
rewritten on every run (it is cheap next to any stage), so it always
describes the tree as it is. Same tree and config, same bytes.
"""

from __future__ import annotations

import json
import logging

from webli.pipeline.config import Config
from webli.pipeline.storage import StageDir
from webli.stages.card import RunOutputs, collect_card, draw_charts, jsonable, render_html, render_markdown

log = logging.getLogger(__name__)
STAGE = "card"
GENERATED_FOLDERS = ("charts", "samples")


def sample_images(facts: dict) -> dict[str, bytes]:
    """{samples/KEY.jpg: thumbnail} of every sample shown with an image."""
    groups = facts.get("samples") or {}
    return {f"samples/{s.key}.jpg": s.image for members in groups.values() for s in members if s.image}


def remove_stale(store: StageDir, written: set[str]) -> int:
    """Delete charts and thumbnails of an earlier card that this one does not show; returns how many."""
    stale = []
    for folder in GENERATED_FOLDERS:
        path = store.file(folder)
        if store.fs.isdir(path):
            stale += [p for p in store.fs.ls(path, detail=False) if f"{folder}/{p.rsplit('/', 1)[-1]}" not in written]
    for path in stale:
        store.fs.rm(path)
    return len(stale)


def card_stats(facts: dict, files: list[str]) -> dict:
    """What `webli card` reports: the samples the card describes and what it found."""
    samples = facts["summary"]["samples"]
    checks = (facts.get("funnel") or {}).get("checks", [])
    return {"stage": STAGE, "total": samples, "forwarded": samples, "dropped_by_reason": {},
            "described": facts["summary"]["kind"], "files": sorted(files),
            "sections_missing": sorted(k for k in ("collection", "funnel", "languages", "images", "ocr", "dedup",
                                                    "scores", "selection", "training", "shards") if not facts.get(k)),
            "sections_unavailable": facts["unavailable"],
            "checks_failed": [c["check"] for c in checks if not c["ok"]]}


def run_card(config: Config) -> dict:
    """Write the dataset card under `<output>/card/`; returns its stats."""
    facts = collect_card(RunOutputs(config.output), config)
    files = {f"charts/{name}": data for name, data in draw_charts(facts, config.card.chart_languages).items()}
    files.update(sample_images(facts))
    store = StageDir(config.output, STAGE)
    store.makedirs()
    for name, data in sorted(files.items()):
        store.write_bytes(name, data)
    removed = remove_stale(store, set(files))
    markdown = render_markdown(facts)
    store.write_bytes("card.json", json.dumps(jsonable(facts), indent=2, ensure_ascii=False, sort_keys=True,
                                              default=str).encode())
    written = [*files, "card.json", "README.md"]
    if config.card.html:
        store.write_bytes("card.html", render_html(markdown, files, config.card.pretty_name).encode())
        written.append("card.html")
    elif store.fs.exists(store.file("card.html")):
        store.fs.rm(store.file("card.html"))  # an earlier card's HTML would no longer match
    store.write_bytes("README.md", markdown.encode())  # last: the card is complete
    stats = card_stats(facts, written)
    log.info("card: %s (%d files, %d stale removed)%s", store.file("README.md"), len(written), removed,
             f"; funnel checks FAILED: {stats['checks_failed']}" if stats["checks_failed"] else "")
    return stats
