"""`make demo`: build the demo site, serve it on 127.0.0.1, run the whole pipeline on it.

    python -m webli.demo [--output demo-output] [--keep]

crawl -> download -> OCR -> eval-set dedup (against a small eval set made from
the site's own photos) -> bootstrap filter -> score -> select -> train (on the
selected shards, and on a random subset of the same size) -> card. The run's
output is rebuilt each time (the site is served on a new port, so its URLs,
and therefore every uid, change between runs) unless --keep is given.
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
from webli.pipeline.cli import pipeline_steps, run_stage, summary_line
from webli.pipeline.config import config_to_yaml, validate_config
from webli.pipeline.storage import StageDir
from webli.stages.dedup.demo import build_demo_eval_set

log = logging.getLogger("webli.demo")


def demo_config(output: Path, site_url: str, eval_set: dict) -> dict:
    """The demo's run config: polite but quick, loopback allowed, short timeouts for the bad routes.

    The site has about a hundred usable pairs, so the selection keeps a third
    of them (WebLI kept a tenth of billions) and a fifth is held out to compare
    the trained models on: their retrieval figures are those of a toy run.
    """
    return {
        "output": str(output),
        "crawl": {"seeds": [f"{site_url}/index.html"], "allow_private_networks": True, "max_depth": 4,
                  "politeness_delay": 0.02, "max_concurrent_per_host": 4, "timeout": 2.0},
        "download": {"shard_size": 64, "timeout": 2.0, "large_copy_size": 768, "thread_count": 16},
        "dedup": {"eval_sets": [{"name": "demo", "images": eval_set["images"], "captions": eval_set["captions"]}]},
        "select": {"top_fraction": 0.3, "min_shards": 2},
        "train": {"epochs": 5, "batch_size": 16, "warmup_steps": 5, "eval_fraction": 0.2,
                  "bootstrap": {"epochs": 10, "eval_fraction": 0.2}},
        "card": {"pretty_name": "webli-builder demo", "description": "A run of webli-builder on its bundled demo "
                 "site (generated at run time and served on 127.0.0.1); not a dataset to train on."},
    }


def language_table(output: Path) -> list[tuple[str, int]]:
    """Pairs per detected language over the crawl output."""
    counts = collections.Counter()
    for path in sorted((output / "crawl").glob("[0-9]*[0-9].parquet")):
        counts.update(pq.read_table(path, columns=["language"]).column("language").to_pylist())
    return counts.most_common()


def comparison_lines(comparison: dict) -> list[str]:
    """The selected-vs-random training comparison as aligned lines."""
    lines = [f"{'trained on':<16}{'pairs':>7}{'AUC':>7}" + "".join(f"{f'{d} R@{k}':>9}" for d in ("i2t", "t2i")
                                                                    for k in (1, 5, 10))]
    for label in ("selected", "random"):
        run = comparison[label]
        recalls = [run.get(f"{direction}_recall", {}).get(str(k)) for direction in ("image_to_text", "text_to_image")
                   for k in (1, 5, 10)]
        auc = run.get("auc")
        lines.append(f"{label:<16}{run['train_samples']:>7}{auc if auc is None else f'{auc:.3f}':>7}"
                     + "".join(f"{'-' if r is None else f'{r:.3f}':>9}" for r in recalls))
    return lines


def print_summary(output: Path, results: dict[str, dict]) -> None:
    print("\n== webli demo ==")
    for stage, stats in results.items():
        print(f"{stage:>16}: {summary_line(stats)}")
        if stats.get("dropped_by_reason"):
            print(" " * 18 + "drops: " + ", ".join(f"{k}={v}" for k, v in stats["dropped_by_reason"].items()))
    print("languages: " + ", ".join(f"{code} {n}" for code, n in language_table(output)))
    comparison = results.get("train", {}).get("comparison")
    if comparison:
        pool = comparison["selected"].get("pool", 0)
        print(f"\nreference CLIP, evaluated on the same {pool} held-out downloaded pairs:")
        print("\n".join("  " + line for line in comparison_lines(comparison)))
        print("  (toy sizes: differences this small are noise; on real data see "
              "benchmarks/results/select_vs_random.md)")
    print(f"\noutputs:   {output}/<stage> for each stage; final shards in {output}/select/shards")
    print(f"card:      {output}/card/README.md and {output}/card/card.html")
    print(f"config:    {output}/config.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("demo-output"))
    parser.add_argument("--keep", action="store_true", help="do not delete the previous run's output")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    site_dir, run_dir, eval_dir = arguments.output / "site", arguments.output / "run", arguments.output / "eval"
    manifest = build_demo_site(site_dir)
    log.info("demo site: %d pages, %d images, alt texts in %s", len(manifest["pages"]), len(manifest["images"]),
             ", ".join(manifest["languages"]))
    if run_dir.exists() and not arguments.keep:
        shutil.rmtree(run_dir)
    with SiteServer(site_dir) as server:
        log.info("serving the demo site at %s", server.url)
        eval_set = build_demo_eval_set(eval_dir.resolve())
        config = validate_config(demo_config(run_dir.resolve(), server.url, eval_set))
        StageDir(str(run_dir), "").write_bytes("config.yaml", config_to_yaml(config).encode())
        results = {name: run_stage(name, config) for name in pipeline_steps(config)}
    print_summary(run_dir.resolve(), results)


if __name__ == "__main__":
    main()
