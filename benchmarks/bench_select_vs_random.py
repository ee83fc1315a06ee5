"""Does the CLIP filter pick better training data than chance? DataComp's judgement on the realweb pairs.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_select_vs_random.py --data-root /tmp/x/out --work /tmp/x/svr
    .venv/bin/python benchmarks/bench_select_vs_random.py --fractions 0.3 0.5 --epochs 10

Data: the crawl + download output of the realweb WARC under --data-root
(about 2,000 real image / alt-text pairs in 20+ languages; see
bench_train.py, which makes it). Only crawl/ and download/ are copied into
--work; OCR and dedup are not run (select works without them).

Steps, all through the stage functions `webli run` calls: the bootstrap
filter (its defaults), score with it, then for each top fraction: select,
and `run_train` on the selected shards with `train.compare_random`, which
also trains the same model on a uid-hash random subset of the downloaded
pairs of the same expected size and evaluates both on the same held-out
downloaded pairs (none of which either model trained on). Reported per
fraction: the pairs each model trained on and the held-out AUC and
recall@1/5/10 of each. The filter is cross-fitted (train.bootstrap.folds),
so no pair is scored by a filter that trained on it; how much that matters
is in results/train.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import command_line, log, machine_note, md_table, write_report  # noqa: E402

from webli.pipeline.config import validate_config  # noqa: E402
from webli.pipeline.score import run_score  # noqa: E402
from webli.pipeline.select import run_select  # noqa: E402
from webli.pipeline.train import run_bootstrap_filter, run_train  # noqa: E402

METRICS = [("auc", "AUC"), ("image_to_text_recall.1", "i→t R@1"), ("image_to_text_recall.5", "i→t R@5"),
           ("image_to_text_recall.10", "i→t R@10"), ("text_to_image_recall.1", "t→i R@1"),
           ("text_to_image_recall.5", "t→i R@5"), ("text_to_image_recall.10", "t→i R@10")]


def copy_inputs(data_root: Path, work: Path) -> Path:
    """crawl/ and download/ of the realweb run (and its bootstrap filter and scores, when it has them: their
    stages skip finished work), copied once into work/base."""
    base = work / "base"
    if not (base / "download").exists():
        for stage in ("crawl", "download", "bootstrap_filter", "score"):
            if (data_root / stage).exists():
                shutil.copytree(data_root / stage, base / stage)
    return base


def run_config(output: Path, fraction: float, epochs: int) -> dict:
    return {"output": str(output),
            "select": {"top_fraction": fraction, "min_shards": 2},
            "train": {"epochs": epochs, "eval_fraction": 0.1, "compare_random": True},
            "cluster": {"workers": 2}}


def prepare_fraction(base: Path, work: Path, fraction: float) -> Path:
    """A run folder for one fraction sharing the scored base (crawl, download, filter, score copied)."""
    output = work / f"top-{fraction:g}"
    if not output.exists():
        shutil.copytree(base, output, ignore=shutil.ignore_patterns("select", "train"))
    return output


def metric(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="realweb run with crawl/ and download/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-select-vs-random"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/select_vs_random.md"))
    arguments = parser.parse_args()
    note = machine_note(("torch", "open_clip_torch"))
    base = copy_inputs(arguments.data_root, arguments.work)
    base_config = validate_config(run_config(base, arguments.fractions[0], arguments.epochs))
    log("bootstrap filter")
    filter_stats = run_bootstrap_filter(base_config)
    log("score")
    run_score(base_config)
    rows = []
    for fraction in arguments.fractions:
        output = prepare_fraction(base, arguments.work, fraction)
        config = validate_config(run_config(output, fraction, arguments.epochs))
        log(f"select + train, top {fraction:g}")
        selected = run_select(config)["forwarded"]
        comparison = run_train(config)["comparison"]
        for label in ("selected", "random"):
            record = comparison[label]
            rows.append([f"{fraction:g}", f"{label} ({selected} selected)" if label == "selected" else label,
                         record["train_samples"], record["pool"]]
                        + [round(v, 3) if isinstance(v := metric(record, key), float) else v for key, _ in METRICS])
    report = "\n\n".join([
        "# Training on the selection against training on a random subset (realweb)",
        note, f"Command: `{command_line()}`",
        f"Data: {arguments.data_root} (crawl + download of the realweb WARC). Model `webli-tiny`, "
        f"{arguments.epochs} epochs, batch 64; held out: the downloaded pairs whose uid hash falls in the "
        "10% eval split, the same pairs for both models. The pairs were scored by the cross-fitted bootstrap filter "
        f"(defaults; {filter_stats.get('total')} pairs). One run per row, one seed: no repetitions, so "
        "differences of a few points are within run-to-run noise.",
        md_table(["top fraction", "trained on", "train pairs", "held-out pairs", *[h for _, h in METRICS]], rows),
    ])
    write_report(report, arguments.out)


if __name__ == "__main__":
    main()
