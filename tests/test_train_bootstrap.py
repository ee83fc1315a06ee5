"""Bootstrap filter and `webli train` end to end on real download shards of the demo site (slow)."""

from __future__ import annotations

import json

import open_clip
import pyarrow.parquet as pq
import pytest
import torch
from helpers import copy_run, read_parquets, webli
from PIL import Image

from webli.pipeline.config import load_config
from webli.pipeline.train import run_bootstrap_filter
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
    assert stats["total"] == len(successes) == stats["forwarded"] + stats["dropped"]
    by_split = {s: sum(r["split"] == s for r in splits) for s in ("train", "eval", "unused")}
    # downloaded images decode and crawled captions are non-empty: nothing is dropped, the splits agree
    assert stats["dropped"] == 0 and by_split == metrics["splits"] and by_split["eval"] > 0
    assert 0.0 <= metrics["auc"] <= 1.0 and metrics["pool"] == metrics["splits"]["eval"]
    assert set(metrics["image_to_text_recall"]) == {"1", "5", "10"} and metrics["epochs"] == 2


@pytest.mark.slow
def test_bootstrap_filter_loads_with_open_clip_and_load_clip(bootstrap):
    output, _ = bootstrap
    folder = output / "bootstrap_filter"
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
def test_webli_train_on_download_shards(downloaded):
    output, config = downloaded
    result = webli("train", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "train" / "metrics.json").read_text())
    stats = json.loads((output / "train" / "stats.json").read_text())
    assert f"train: {stats['total']} in, {stats['forwarded']} out" in result.stdout
    assert metrics["splits"]["train"] == stats["train_samples"] > 0 and metrics["epochs"] == 1
    assert (output / "train" / "checkpoints" / "epoch_0001.pt").is_file()
