"""The card's Collection section: sources, crawl dates, policies, pages fetched and refused."""

from __future__ import annotations

import pyarrow.compute as pc

from webli.pipeline.config import Config
from webli.stages.card.outputs import RunOutputs


def crawl_sources(plan: list[dict]) -> dict:
    """Seed URLs and WARC files of the crawl plan (crawl/_plan.json)."""
    return {"seeds": sorted(url for shard in plan for url in shard.get("seeds", [])),
            "warc": sorted(shard["warc"] for shard in plan if "warc" in shard)}


def crawl_dates(outputs: RunOutputs) -> dict:
    """First and last page fetch (UTC) over every crawl shard's pages table."""
    first, last = None, None
    for shard in outputs.shard_tables("crawl", ["fetch_time"], suffix="_pages.parquet"):
        bounds = pc.min_max(shard.table.column("fetch_time"))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None:
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    return {"first_fetch": first.isoformat() if first else None, "last_fetch": last.isoformat() if last else None}


def page_outcomes(shard_stats: list[dict]) -> dict:
    """Pages fetched, parsed and refused by reason, summed over the crawl shards' stats."""
    total, parsed, refused = 0, 0, {}
    for stats in shard_stats:
        pages = stats.get("pages", {})
        total += pages.get("total", 0)
        parsed += pages.get("parsed", 0)
        for reason, count in pages.get("refused_by_reason", {}).items():
            refused[reason] = refused.get(reason, 0) + count
    return {"total": total, "parsed": parsed, "refused": sum(refused.values()),
            "refused_by_reason": dict(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])))}


def policies(config: Config) -> dict:
    """The crawl's stated behaviour towards sites: user agent, robots.txt, opt-out directives."""
    return {"user_agent": config.crawl.user_agent, "obey_robots": config.crawl.obey_robots,
            "download_obey_robots": config.download.obey_robots,
            "header_directives": list(config.download.disallowed_header_directives),
            "allow_private_networks": config.crawl.allow_private_networks,
            "politeness_delay": config.crawl.politeness_delay,
            "max_concurrent_per_host": config.crawl.max_concurrent_per_host,
            "max_pages": config.crawl.max_pages, "max_depth": config.crawl.max_depth, "scope": config.crawl.scope}


def collect_collection(outputs: RunOutputs, config: Config) -> dict | None:
    """Everything the Collection section shows; None when the crawl has not run."""
    plan = outputs.read_json("crawl", "_plan.json")
    stats = list(outputs.shard_stats("crawl").values())
    if plan is None or not stats:
        return None
    return {"sources": crawl_sources(plan), "crawl_shards": len(plan), "crawl_shards_done": len(stats),
            **crawl_dates(outputs), "pages": page_outcomes(stats), "policies": policies(config)}
