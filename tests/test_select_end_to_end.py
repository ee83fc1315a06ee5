"""crawl -> download -> score -> select on the demo site, through the CLI and Dask (slow).

The scoring model is a tiny random-weight CLIP saved as a checkpoint: the
scores mean nothing, but every step is the real one, and the selection is
checked against the score sidecars.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import copy_run, read_parquets, stats, tar_samples, webli
from test_score import make_tiny_model

# Four CLI stages, each starting Dask workers: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def run(demo_download, tmp_path_factory):
    """A copy of the session's demo download, then `webli score` and `webli select`."""
    folder = tmp_path_factory.mktemp("select-e2e")
    model = make_tiny_model(folder / "model")
    copied = copy_run(demo_download, folder, score={"model": str(model), "batch_size": 16},
                      select={"top_fraction": 0.3, "shard_size": 5, "min_shards": 4})
    results = {stage: webli(stage, "-c", str(copied.config_path)) for stage in ("score", "select")}
    for stage, result in results.items():
        assert result.returncode == 0, f"{stage}: {result.stderr[-3000:]}"
    return copied.output, copied.config_path, results


def test_every_downloaded_sample_is_scored_once(run):
    output, _, _ = run
    downloaded = {r["key"] for r in read_parquets(output / "download") if r["status"] == "success"}
    scored = read_parquets(output / "score")
    assert sorted(r["key"] for r in scored) == sorted(downloaded)
    assert all(r["score"] is not None and -1 <= r["score"] <= 1 for r in scored)
    assert len({r["model_id"] for r in scored}) == 1


def test_selection_is_the_exact_top_fraction_of_the_scores(run):
    output, _, results = run
    scored = sorted((-np.float32(r["score"]), r["key"]) for r in read_parquets(output / "score"))
    keep = int(0.3 * len(scored))  # every download success is eligible: no dedup stage ran, all decoded
    selection = json.loads((output / "select" / "selection.json").read_text())
    index = read_parquets(output / "select" / "shards")
    assert sorted(r["key"] for r in index) == sorted(k for _, k in scored[:keep])
    assert selection["selected"] == keep and selection["eligible"] == len(scored)
    totals = {k: sum(s[k] for s in stats(output / "select").values()) for k in ("total", "forwarded")}
    assert totals == {"total": len(read_parquets(output / "download")), "forwarded": keep}
    assert f"select: {totals['total']} in, {keep} out" in results["select"].stdout


def test_final_shards_follow_the_open_clip_contract(run):
    output, _, _ = run
    shards = output / "select" / "shards"
    sizes = json.loads((shards / "sizes.json").read_text())
    assert len(sizes) >= 4 and all(n > 0 for n in sizes.values())
    for name, size in sizes.items():
        samples = tar_samples(shards / name)
        assert len(samples) == size == pq.read_metadata(shards / name.replace(".tar", ".parquet")).num_rows
        for key, files in samples.items():
            assert "." not in key and set(files) == {"jpg", "txt", "json"}
            meta = json.loads(files["json"])
            assert files["txt"].decode() == meta["caption"] and meta["url"].startswith("http://127.0.0.1")


def test_rerun_of_score_and_select_is_a_no_op(run):
    output, config, _ = run
    before = {p: p.stat().st_mtime_ns for stage in ("score", "select") for p in (output / stage).rglob("*")}
    for stage in ("score", "select"):
        assert webli(stage, "-c", str(config)).returncode == 0
    after = {p: p.stat().st_mtime_ns for stage in ("score", "select") for p in (output / stage).rglob("*")}
    assert after == before


def test_train_on_selected_shards_compares_with_an_equal_size_random_subset(run):
    output, config, _ = run
    result = webli("train", "-c", str(config), "--set", "train.epochs=1", "--set", "train.batch_size=8",
                   "--set", "train.eval_fraction=0.3", "--set", "train.warmup_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    comparison = json.loads((output / "train" / "comparison.json").read_text())
    selected, random = comparison["selected"], comparison["random"]
    assert selected["pool"] == random["pool"] > 0  # the same held-out downloaded pairs for both models
    downloaded = sum(r["status"] == "success" for r in read_parquets(output / "download"))
    kept = sum(json.loads((output / "select" / "shards" / "sizes.json").read_text()).values())
    assert comparison["random_subset_fraction"] == pytest.approx(kept / downloaded)
    assert selected["train_samples"] > 0 and random["train_samples"] > 0
    assert (output / "train" / "random_baseline" / "model.pt").exists()
    again = webli("train", "-c", str(config), "--set", "train.epochs=1", "--set", "train.batch_size=8",
                  "--set", "train.eval_fraction=0.3", "--set", "train.warmup_steps=1")
    assert again.returncode == 0 and json.loads((output / "train" / "comparison.json").read_text()) == comparison
