"""Cross-fitted bootstrap filters, scoring with them, `webli train`: on real download shards of the demo site."""

from __future__ import annotations

import json
from collections import Counter

import open_clip
import pyarrow.parquet as pq
import pytest
import torch
from helpers import copy_run, read_parquets, webli
from PIL import Image

from webli.pipeline.config import load_config
from webli.pipeline.train import run_bootstrap_filter
from webli.stages.score import ClipScorer, iter_tar_images, score_shard
from webli.stages.train.data import fold_of
from webli.stages.train.models import load_clip, register_model_config


@pytest.fixture(scope="module")
def downloaded(demo_download, tmp_path_factory):
    """A copy of the session's demo download: (output folder, config path)."""
    copied = copy_run(demo_download, tmp_path_factory.mktemp("bootstrap"), train={
        "data": "download", "epochs": 1, "batch_size": 16, "warmup_steps": 2, "workers": 1,
        "eval_fraction": 0.2, "bootstrap": {"epochs": 2, "eval_fraction": 0.2}})
    return copied.output, copied.config_path


@pytest.fixture(scope="module")
def bootstrap(downloaded):
    output, config = downloaded
    return output, run_bootstrap_filter(load_config(config))


@pytest.mark.slow
def test_bootstrap_filter_accounts_for_every_downloaded_pair(downloaded, bootstrap):
    output, stats = bootstrap
    successes = [r for r in read_parquets(output / "download") if r["status"] == "success"]
    folder = output / "bootstrap_filter"
    metrics = json.loads((folder / "metrics.json").read_text())
    splits = pq.read_table(folder / "splits.parquet").to_pylist()
    assert sorted(r["key"] for r in splits) == sorted(r["key"] for r in successes)
    assert stats["total"] == len(successes) == stats["forwarded"] + stats["dropped"] and stats["folds"] == 2
    by_split = {s: sum(r["split"] == s for r in splits) for s in ("eval", "scored", "unused")}
    # downloaded images decode and crawled captions are non-empty: nothing is dropped, the splits agree
    assert stats["dropped"] == 0 and metrics["splits"] == {**by_split, "folds": 2, "train": len(splits)}
    assert all(r["fold"] == fold_of(r["uid"], 2) and r["trained_by"] == [1 - r["fold"]] for r in splits)
    for fold in (0, 1):
        fold_metrics = json.loads((folder / f"fold_{fold}" / "metrics.json").read_text())
        fold_stats = json.loads((folder / f"fold_{fold}" / "stats.json").read_text())
        own = [r for r in splits if r["fold"] == fold]
        assert fold_stats["train_samples"] == len(splits) - len(own)  # every pair of the other fold, no other
        assert fold_metrics["pool"] == fold_stats["eval_samples"] == sum(r["split"] == "eval" for r in own) > 0
        assert 0.0 <= fold_metrics["auc"] <= 1.0 and fold_metrics["epochs"] == 2
        assert set(fold_metrics["image_to_text_recall"]) == {"1", "5", "10"}
    assert metrics["pool"] == by_split["eval"] and 0.0 <= metrics["auc"] <= 1.0


@pytest.mark.slow
def test_bootstrap_filters_load_with_open_clip_and_load_clip(bootstrap):
    output, _ = bootstrap
    for fold in (0, 1):
        folder = output / "bootstrap_filter" / f"fold_{fold}"
        name = register_model_config(folder / "model_config.json")
        assert name == json.loads((folder / "model_config.json").read_text())["name"] == "webli-tiny"
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(folder / "model.pt"))
        same, same_preprocess, tokenizer = load_clip(folder, None, "cpu")
        image = preprocess(Image.new("RGB", (80, 60), (200, 30, 30)))[None]
        texts = tokenizer(["ein rotes Bild", "赤い画像"])
        with torch.no_grad():
            assert torch.equal(model.eval().encode_image(image), same.encode_image(image))
            assert torch.equal(model.encode_text(texts), same.encode_text(texts))


@pytest.mark.slow
def test_bootstrap_filter_rerun_is_a_no_op(downloaded, bootstrap):
    output, config = downloaded
    folder = output / "bootstrap_filter"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert run_bootstrap_filter(load_config(config)) == bootstrap[1]
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


@pytest.mark.slow
def test_webli_score_scores_each_pair_with_the_filter_of_its_fold(downloaded, bootstrap):
    output, config = downloaded
    result = webli("score", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    folds = [load_clip(output / "bootstrap_filter" / f"fold_{k}", None, "cpu") for k in (0, 1)]
    scorers = [ClipScorer(*model, torch.device("cpu"), f"fold_{k}") for k, model in enumerate(folds)]
    scored_by = Counter()
    for table in sorted((output / "download").glob("[0-9]*.parquet")):
        rows = pq.read_table(table)
        with open(table.with_suffix(".tar"), "rb") as tar:
            images = list(iter_tar_images(tar))
        alone = [dict(zip(*score_shard(rows, images, s, 16)[0].select(["key", "score"]).to_pydict().values()))
                 for s in scorers]
        sidecar = pq.read_table(output / "score" / table.name).to_pylist()
        for row in sidecar:
            fold = fold_of(row["uid"], 2)
            scored_by[str(fold)] += 1
            assert row["score"] == pytest.approx(alone[fold][row["key"]], abs=1e-5)
            assert row["model_id"].startswith("webli-tiny@bootstrap-2fold:sha256:")
    stats = [json.loads(p.read_text()) for p in sorted((output / "score").glob("*_stats.json"))]
    assert sum((Counter(s["scored_by_fold"]) for s in stats), Counter()) == scored_by


@pytest.mark.slow
def test_webli_train_on_download_shards(downloaded):
    output, config = downloaded
    result = webli("train", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "train" / "metrics.json").read_text())
    stats = json.loads((output / "train" / "stats.json").read_text())
    assert f"train: {stats['total']} in, {stats['forwarded']} out" in result.stdout
    assert metrics["splits"]["train"] == stats["train_samples"] > 0 and metrics["epochs"] == 1
    assert (output / "train" / "checkpoints" / "epoch_0001.pt").is_file()
