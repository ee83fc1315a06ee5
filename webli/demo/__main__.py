"""`make demo`: build the demo site, serve it on 127.0.0.1, run every implemented stage on it.

    python -m webli.demo [--output demo-output] [--keep]

The run's output is rebuilt each time (the site is served on a new port, so
its URLs, and therefore every uid, change between runs) unless --keep is given.
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from webli.demo.server import SiteServer
from webli.demo.site import build_demo_site
from webli.pipeline.cli import implemented_stages, run_stage, summary_line
from webli.pipeline.config import config_to_yaml, validate_config
from webli.pipeline.storage import StageDir

log = logging.getLogger("webli.demo")


def demo_config(output: Path, site_url: str) -> dict:
    """The demo's run config: polite but quick, loopback allowed, short timeouts for the bad routes."""
    return {
        "output": str(output),
        "crawl": {"seeds": [f"{site_url}/index.html"], "allow_private_networks": True, "max_depth": 4,
                  "politeness_delay": 0.02, "max_concurrent_per_host": 4, "timeout": 2.0},
        "download": {"shard_size": 64, "timeout": 2.0, "large_copy_size": 768, "thread_count": 16},
    }


def language_table(output: Path) -> list[tuple[str, int]]:
    """Pairs per detected language over the crawl output."""
    counts = collections.Counter()
    for path in sorted((output / "crawl").glob("[0-9]*[0-9].parquet")):
        counts.update(pq.read_table(path, columns=["language"]).column("language").to_pylist())
    return counts.most_common()


def print_summary(output: Path, results: dict[str, dict]) -> None:
    print("\n== webli demo ==")
    for stage, stats in results.items():
        print(f"{stage:>9}: {summary_line(stats)}")
        if stats.get("dropped_by_reason"):
            print("           drops: " + ", ".join(f"{k}={v}" for k, v in stats["dropped_by_reason"].items()))
    print("languages: " + ", ".join(f"{code} {n}" for code, n in language_table(output)))
    print(f"outputs:   {output}/crawl (pairs + pages Parquet), {output}/download (WebDataset tars + Parquet)")
    print(f"config:    {output}/config.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("demo-output"))
    parser.add_argument("--keep", action="store_true", help="do not delete the previous run's output")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    site_dir, run_dir = arguments.output / "site", arguments.output / "run"
    manifest = build_demo_site(site_dir)
    log.info("demo site: %d pages, %d images, alt texts in %s", len(manifest["pages"]), len(manifest["images"]),
             ", ".join(manifest["languages"]))
    if run_dir.exists() and not arguments.keep:
        shutil.rmtree(run_dir)
    with SiteServer(site_dir) as server:
        log.info("serving the demo site at %s", server.url)
        config = validate_config(demo_config(run_dir.resolve(), server.url))
        StageDir(str(run_dir), "").write_bytes("config.yaml", config_to_yaml(config).encode())
        results = {name: run_stage(name, config) for name in implemented_stages()}
    print_summary(run_dir.resolve(), results)


if __name__ == "__main__":
    main()
