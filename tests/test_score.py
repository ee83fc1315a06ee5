"""Score stage: CLIP similarity per sample, problems counted, model resolution that fails fast.

A tiny random-weight open_clip model is created here and saved as a
checkpoint beside its config; synthetic download shards stand in for the
download stage. The helpers that write them are imported by test_select.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from helpers import webli, write_config
from PIL import Image

from webli import schemas
from webli.pipeline.config import ConfigError, validate_config
from webli.pipeline.score import describe_model, resolve_scoring_model, score_task
from webli.pipeline.storage import StageDir, shard_name
from webli.schemas.score import SCORE_SIDECAR
from webli.stages.score import ClipScorer, FoldScorers, decode_rgb, iter_tar_images, score_shard
from webli.stages.train.data import fold_of
from webli.stages.train.models import load_clip

TINY_NAME = "webli-score-test-tiny"
TINY_CONFIG = {
    "name": TINY_NAME,
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip() -> open_clip.CLIP:
    """The tiny architecture, built by open_clip from the config (random weights)."""
    return open_clip.CLIP(**{k: v for k, v in TINY_CONFIG.items() if k != "name"})


def make_tiny_model(folder, seed: int = 0):
    """A folder with model_config.json and model.pt of a random-weight tiny CLIP (the trainer's layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.json").write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(seed)
    model = tiny_clip()
    torch.save({"state_dict": model.state_dict()}, folder / "model.pt")
    return folder


def make_bootstrap_filters(output, seeds: tuple[int, ...] = (1, 2)) -> list:
    """The layout `webli bootstrap-filter` leaves: one tiny model per fold, then the set's stats.json."""
    folder = output / "bootstrap_filter"
    folds = [make_tiny_model(folder / f"fold_{k}", seed=seed) for k, seed in enumerate(seeds)]
    (folder / "stats.json").write_text(json.dumps({"stage": "bootstrap_filter", "folds": len(seeds)}))
    return folds


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-clip") / "model")


def jpeg(seed: int, size: int = 48) -> bytes:
    """A small JPEG with random blocks of colour: different seeds, different images."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(np.kron(blocks, np.ones((size // 4, size // 4, 1), dtype=np.uint8)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def download_row(key: str, caption: str, language: str = "en", status: str = "success") -> dict:
    """One row of a download table (schema DOWNLOAD)."""
    ok = status == "success"
    return {"key": key, "uid": f"uid-{key}", "url": f"http://127.0.0.1/img/{key}.jpg", "caption": caption,
            "page_url": "http://127.0.0.1/page.html", "language": language, "language_score": 0.9,
            "status": status, "error_message": None if ok else "http error 404",
            "drop_reason": None if ok else "http_error", "width": 48 if ok else None,
            "height": 48 if ok else None, "original_width": 48 if ok else None,
            "original_height": 48 if ok else None, "sha256": ("0" * 64) if ok else None,
            "large_width": None, "large_height": None}


def tar_bytes(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    """A WebDataset tar of (key, {extension: bytes}) in the given order."""
    out = io.BytesIO()
    with wds.TarWriter(out, mtime=0) as writer:
        for key, files in samples:
            writer.write({"__key__": key, **files})
    return out.getvalue()


def write_download_shard(root, shard_id: int, rows: list[dict], images: dict[str, bytes] | None = None) -> None:
    """A download shard as the download stage leaves it: tar, Parquet, stats JSON (written last).

    `images` maps keys to image bytes; by default every successful row gets a distinct JPEG.
    """
    store = StageDir(str(root), "download")
    if images is None:
        images = {r["key"]: jpeg(int(r["key"])) for r in rows if r["status"] == "success"}
    samples = [(key, {"jpg": data, "txt": b"alt", "json": b"{}"}) for key, data in images.items()]
    store.write_bytes(f"{shard_name(shard_id)}.tar", tar_bytes(samples))
    table = pa.Table.from_pylist(rows, schema=schemas.DOWNLOAD) if rows else schemas.empty(schemas.DOWNLOAD)
    store.write_table(f"{shard_name(shard_id)}.parquet", table, schemas.DOWNLOAD)
    successes = sum(r["status"] == "success" for r in rows)
    store.write_stats(shard_id, {"stage": "download", "total": len(rows), "forwarded": successes,
                                 "dropped_by_reason": {"http_error": len(rows) - successes}})


@pytest.fixture(scope="module")
def scorer(tiny_model):
    model, preprocess, tokenizer = load_clip(str(tiny_model), None, "cpu")
    return ClipScorer(model, preprocess, tokenizer, torch.device("cpu"), "tiny@sha256:test")


def reference_similarity(tiny_model, image: bytes, caption: str) -> float:
    """Cosine similarity computed with open_clip directly, as its README does."""
    model = tiny_clip()
    open_clip.load_checkpoint(model, str(tiny_model / "model.pt"))
    model.eval()
    preprocess = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
    tokens = open_clip.tokenize([caption], context_length=TINY_CONFIG["text_cfg"]["context_length"])
    with torch.no_grad():
        image_features = model.encode_image(preprocess(Image.open(io.BytesIO(image)).convert("RGB")).unsqueeze(0))
        text_features = model.encode_text(tokens)
    image_features /= image_features.norm(dim=-1, keepdim=True)
    text_features /= text_features.norm(dim=-1, keepdim=True)
    return float((image_features @ text_features.T)[0, 0])


def test_known_pair_scores_as_open_clip_computes_it(tiny_model, scorer):
    rows = pa.Table.from_pylist([download_row("0001", "a red square on a blue field")], schema=schemas.DOWNLOAD)
    image = jpeg(1)
    table, stats = score_shard(rows, [("0001", image)], scorer, batch_size=8)
    expected = reference_similarity(tiny_model, image, "a red square on a blue field")
    assert table.column("score").to_pylist()[0] == pytest.approx(expected, abs=1e-5)
    assert stats["scored"] == 1 and stats["total"] == stats["forwarded"] == 1


def test_scores_do_not_depend_on_batch_size_or_tar_order(scorer):
    rows = pa.Table.from_pylist([download_row(f"{i:04d}", f"caption number {i}") for i in range(7)],
                                schema=schemas.DOWNLOAD)
    images = [(f"{i:04d}", jpeg(i)) for i in range(7)]
    one, _ = score_shard(rows, images, scorer, batch_size=1)
    many, _ = score_shard(rows, list(reversed(images)), scorer, batch_size=4)
    assert one.column("key").to_pylist() == [f"{i:04d}" for i in range(7)]
    np.testing.assert_allclose(one.column("score").to_numpy(), many.column("score").to_numpy(), atol=1e-5)
    assert len(set(one.column("score").to_pylist())) == 7


def test_bad_inputs_are_counted_problems_not_crashes(scorer):
    rows = pa.Table.from_pylist([
        download_row("0001", "fine"), download_row("0002", "corrupt image"), download_row("0003", "no image"),
        download_row("0004", "failed download", status="failed_to_download"),
    ], schema=schemas.DOWNLOAD)
    images = [("0001", jpeg(1)), ("0002", b"\xff\xd8\xff\xe0 not really a jpeg"), ("0009", jpeg(9)),
              ("0001", jpeg(5))]
    table, stats = score_shard(rows, images, scorer, batch_size=8)
    by_key = {r["key"]: r for r in table.to_pylist()}
    assert set(by_key) == {"0001", "0002", "0003"}  # the failed download is not a sample
    assert by_key["0001"]["score"] is not None and by_key["0001"]["problem"] is None
    assert (by_key["0002"]["score"], by_key["0002"]["problem"]) == (None, "decode_error")
    assert (by_key["0003"]["score"], by_key["0003"]["problem"]) == (None, "missing_image")
    assert stats["problems_by_reason"] == {"decode_error": 1, "missing_image": 1}
    assert stats["tar_images_without_row"] == 1 and stats["tar_images_repeated"] == 1
    assert stats["total"] == stats["forwarded"] == 3 and stats["dropped_by_reason"] == {}
    assert table.schema == SCORE_SIDECAR


def test_empty_shard_gives_empty_sidecar(scorer):
    table, stats = score_shard(schemas.empty(schemas.DOWNLOAD), [], scorer, batch_size=8)
    assert table.num_rows == 0 and stats["total"] == 0 and table.schema == SCORE_SIDECAR


def test_tar_reader_yields_only_the_main_image():
    data = tar_bytes([("0001", {"jpg": b"A", "large.jpg": b"B", "txt": b"t", "json": b"{}"}),
                      ("0002", {"png": b"C"})])
    assert list(iter_tar_images(io.BytesIO(data))) == [("0001", b"A"), ("0002", b"C")]
    assert decode_rgb(b"not an image") is None and decode_rgb(jpeg(3)).mode == "RGB"


def config_for(tmp_path, **score) -> object:
    return validate_config({"output": str(tmp_path / "out"), "score": score})


def test_missing_bootstrap_filter_says_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match="make bootstrap-filter"):
        resolve_scoring_model(config_for(tmp_path))
    folds = make_bootstrap_filters(tmp_path / "out")
    (folds[1] / "model.pt").unlink()  # one fold's filter is missing: still says what to run
    with pytest.raises(ConfigError, match="(?s)fold_1.*make bootstrap-filter"):
        resolve_scoring_model(config_for(tmp_path))


def test_a_single_bootstrap_filter_of_an_older_version_is_refused(tmp_path):
    make_tiny_model(tmp_path / "out" / "bootstrap_filter")
    (tmp_path / "out" / "bootstrap_filter" / "stats.json").write_text('{"stage": "bootstrap_filter"}')
    with pytest.raises(ConfigError, match="(?s)trained on the pairs it would score.*make bootstrap-filter"):
        resolve_scoring_model(config_for(tmp_path))


def test_pretrained_tag_offline_fails_fast_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # nothing cached here
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError, match="(?s)HF_HUB_OFFLINE.*pretrained"):  # why, then what to do
        resolve_scoring_model(config_for(tmp_path, model="ViT-B-32", pretrained="laion2b_s34b_b79k"))


def test_random_weights_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="without weights"):
        resolve_scoring_model(config_for(tmp_path, model="ViT-B-32"))


def test_bootstrap_and_checkpoint_models_are_identified_by_their_weights(tmp_path, tiny_model):
    folds = make_bootstrap_filters(tmp_path / "out")
    spec = resolve_scoring_model(config_for(tmp_path))
    assert spec.folds == tuple(str(f) for f in folds) and spec.model == str(folds[0])
    assert spec.model_id.startswith(f"{TINY_NAME}@bootstrap-2fold:sha256:")
    make_tiny_model(folds[1], seed=3)  # other weights in one fold: another filter set
    assert resolve_scoring_model(config_for(tmp_path)).model_id not in (spec.model_id, None)
    other = resolve_scoring_model(config_for(tmp_path, model=str(tiny_model / "model_config.json"),
                                             pretrained=str(tiny_model / "model.pt")))
    assert other.model_id.startswith(f"{TINY_NAME}@sha256:") and other.model_id != spec.model_id
    assert other.folds == ()
    assert describe_model("ViT-B-32", "ViT-B-32", "laion2b_s34b_b79k", "/cache/x.bin") == "ViT-B-32/laion2b_s34b_b79k"


def test_score_task_writes_sidecar_then_stats_and_skips_done_shards(tmp_path, tiny_model):
    out = tmp_path / "out"
    write_download_shard(out, 3, [download_row(f"{i:04d}", f"pair {i}") for i in range(3)])
    config = config_for(tmp_path, model=str(tiny_model), batch_size=2)
    spec = resolve_scoring_model(config)
    stats = score_task(3, config, spec)
    assert stats["scored"] == 3 and stats["model_id"] == spec.model_id
    assert (out / "score" / "00003_stats.json").exists()
    sidecar = pq.read_table(out / "score" / "00003.parquet")
    assert sidecar.column("model_id").to_pylist() == [spec.model_id] * 3
    (out / "score" / "00003.parquet").unlink()  # a done shard is not redone
    assert score_task(3, config, spec)["scored"] == 3 and not (out / "score" / "00003.parquet").exists()


def fold_scorer(folder, model_id: str) -> ClipScorer:
    model, preprocess, tokenizer = load_clip(str(folder), None, "cpu")
    return ClipScorer(model, preprocess, tokenizer, torch.device("cpu"), model_id)


def test_each_pair_is_scored_by_the_model_of_its_fold(tmp_path, scorer):
    other = fold_scorer(make_tiny_model(tmp_path / "other", seed=7), "other")
    rows = pa.Table.from_pylist([download_row(f"{i:04d}", f"caption number {i}") for i in range(12)],
                                schema=schemas.DOWNLOAD)
    images = [(f"{i:04d}", jpeg(i)) for i in range(12)]
    folds = {f"{i:04d}": fold_of(f"uid-{i:04d}", 2) for i in range(12)}
    assert set(folds.values()) == {0, 1}  # both folds are exercised
    table, stats = score_shard(rows, images, FoldScorers((scorer, other), "set@test"), batch_size=3)
    alone = [score_shard(rows, images, model, batch_size=5)[0].column("score").to_pylist()
             for model in (scorer, other)]
    expected = [alone[folds[k]][i] for i, k in enumerate(table.column("key").to_pylist())]
    np.testing.assert_allclose(table.column("score").to_numpy(), expected, atol=1e-5)
    assert table.column("model_id").to_pylist() == ["set@test"] * 12 and table.schema == SCORE_SIDECAR
    assert stats["scored_by_fold"] == {str(k): list(folds.values()).count(k) for k in (0, 1)}
    assert "scored_by_fold" not in score_shard(rows, images, scorer, batch_size=4)[1]


def test_score_task_with_the_bootstrap_filters_routes_by_fold(tmp_path):
    out = tmp_path / "out"
    folds = make_bootstrap_filters(out)
    write_download_shard(out, 0, [download_row(f"{i:04d}", f"pair {i}") for i in range(8)])
    config = config_for(tmp_path, batch_size=2)
    spec = resolve_scoring_model(config)
    stats = score_task(0, config, spec)
    routed = [fold_of(f"uid-{i:04d}", 2) for i in range(8)]
    assert stats["scored_by_fold"] == {"0": routed.count(0), "1": routed.count(1)}
    sidecar = pq.read_table(out / "score" / "00000.parquet").to_pylist()
    for row in sidecar:
        model = fold_scorer(folds[fold_of(row["uid"], 2)], "x")
        single = score_shard(pa.Table.from_pylist([download_row(row["key"], f"pair {int(row['key'])}")],
                                                  schema=schemas.DOWNLOAD), [(row["key"], jpeg(int(row["key"])))],
                             model, batch_size=1)[0]
        assert row["score"] == pytest.approx(single.column("score")[0].as_py(), abs=1e-5)
        assert row["model_id"] == spec.model_id


@pytest.mark.slow
def test_webli_score_writes_sidecars_and_refuses_another_model(tmp_path, tiny_model):
    """Through the CLI and Dask: two shards (one empty), a re-run is a no-op, a new model is refused."""
    out = tmp_path / "out"
    write_download_shard(out, 0, [download_row(f"{i:04d}", f"pair {i}") for i in range(5)]
                         + [download_row("0005", "gone", status="failed_to_download")])
    write_download_shard(out, 1, [])
    config = write_config(tmp_path / "run.yaml", {
        "output": str(out), "score": {"model": str(tiny_model), "batch_size": 2}, "cluster": {"workers": 1}})
    result = webli("score", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "score: 5 in, 5 out" in result.stdout
    first = pq.read_table(out / "score" / "00000.parquet")
    assert first.column("key").to_pylist() == [f"{i:04d}" for i in range(5)]
    assert all(not math.isnan(s) for s in first.column("score").to_pylist())
    assert pq.read_table(out / "score" / "00001.parquet").num_rows == 0
    mtime = (out / "score" / "00000.parquet").stat().st_mtime_ns
    assert webli("score", "-c", str(config)).returncode == 0
    assert (out / "score" / "00000.parquet").stat().st_mtime_ns == mtime
    make_tiny_model(tmp_path / "other", seed=7)
    refused = webli("score", "-c", str(config), "--set", f"score.model={tmp_path / 'other'}")
    assert refused.returncode == 2 and "scores of another model" in refused.stderr
