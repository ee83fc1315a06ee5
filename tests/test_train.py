"""The reference trainer: model loading, data stream accounting, loop, checkpoints, resume, evaluation.

A micro model (32 px, one layer per tower) on synthetic colour/shape shards
keeps every test fast on two busy cores.
"""

from __future__ import annotations

import io
import json
import math
import socket
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageDraw

from webli.pipeline.config import ConfigError, validate_config
from webli.pipeline.storage import StageDir
from webli.pipeline.train import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    STATS_FILE,
    bootstrap_splits,
    glob_shards,
    run_bootstrap_filter,
    run_train,
)
from webli.schemas import DOWNLOAD
from webli.stages.train import data as train_data
from webli.stages.train.data import (
    EVAL,
    SCORED,
    TRAIN,
    UNUSED,
    StreamSpec,
    epoch_loader,
    fold_of,
    fold_split_of,
    split_of,
    uid_position,
)
from webli.stages.train.evaluate import (
    Embeddings,
    derangement,
    heldout_metrics,
    read_image_folder,
    retrieval_recall,
    shuffled_pair_auc,
    zero_shot_accuracy,
)
from webli.stages.train.loop import (
    TrainState,
    build_optimizer,
    checkpoint_payload,
    fit,
    lr_schedule,
    restore,
    train_step,
)
from webli.stages.train.models import ModelLoadError, create_clip, load_clip, register_model_config, shipped_model_names

MICRO = {
    "name": "webli-test-micro",
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")


def pair_image(colour: str, shape: str, jitter: int) -> bytes:
    image = Image.new("RGB", (48, 48), (120 + jitter, 120, 120 - jitter))
    draw = ImageDraw.Draw(image)
    box = [10 + jitter % 7, 10, 36 + jitter % 7, 36]
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, shards: int, per_shard: int, extra: dict[str, dict[str, bytes]] | None = None) -> Path:
    """Tar shards of 'a red circle'-style pairs (+ `extra` samples in the last shard) and sizes.json."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for shard in range(shards):
        name = f"{shard:05d}.tar"
        samples = {}
        for row in range(per_shard):
            key = f"{shard:05d}{row:04d}"
            colour = list(COLOURS)[(row * 7 + shard) % len(COLOURS)]
            shape = SHAPES[(row // 4 + shard) % 2]
            samples[key] = {"jpg": pair_image(colour, shape, row % 11), "txt": f"a {colour} {shape}".encode(),
                            "json": json.dumps({"key": key, "uid": f"uid-{key}"}).encode()}
        if extra and shard == shards - 1:
            samples.update(extra)
        with tarfile.open(folder / name, "w") as tar:
            for key, files in samples.items():
                for extension, payload in files.items():
                    add_member(tar, f"{key}.{extension}", payload)
        sizes[name] = len(samples)
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread: on a shared machine, OpenMP threads waiting on each other cost more than they bring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "micro.json"
    path.write_text(json.dumps(MICRO))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"), shards=2, per_shard=40)


@pytest.fixture(scope="module")
def micro(micro_config):
    torch.manual_seed(0)
    return create_clip(str(micro_config), None, "cpu")


def tensors_of(path: Path, preprocess, tokenizer, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    spec = StreamSpec((str(path / "00000.tar"),), TRAIN, 0.0, n, shuffle=False)
    batch = next(b for b in epoch_loader(spec, preprocess, tokenizer, 0) if b.images is not None)
    return batch.images, batch.texts


# --- models ---------------------------------------------------------------------------

def test_register_shipped_config_and_builtin_names():
    assert "webli-tiny" in shipped_model_names()
    assert register_model_config("webli-tiny") == "webli-tiny"
    assert open_clip.get_model_config("webli-tiny")["vision_cfg"]["image_size"] == 64
    assert register_model_config("ViT-B-32") == "ViT-B-32"


def test_register_json_uses_its_name_key(micro_config):
    assert register_model_config(micro_config) == "webli-test-micro"
    assert "webli-test-micro" in open_clip.list_models()
    assert "name" not in open_clip.get_model_config("webli-test-micro")


def test_register_refuses_unknown_names_and_clashes_with_builtins(tmp_path):
    with pytest.raises(ModelLoadError, match="shipped configs"):
        register_model_config("no-such-model")
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({**MICRO, "name": "RN50"}))
    with pytest.raises(ModelLoadError, match="differs from open_clip's built-in"):
        register_model_config(clash)


def test_pretrained_tag_offline_fails_fast_saying_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-webli-cache")
    with pytest.raises(ModelLoadError, match="pass its path as pretrained") as err:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(err.value)
    with pytest.raises(ModelLoadError, match="neither a file nor an open_clip tag"):
        load_clip("ViT-B-32", "no-such-tag", "cpu")


def test_pretrained_tag_with_its_source_unreachable_fails_fast_saying_what_to_do(monkeypatch):
    """Online by configuration, but the hub cannot be reached: refused at once, before any download attempt.
    The endpoint is a closed loopback port, so the test sends nothing off this machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-webli-cache")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent-webli-cache")
    monkeypatch.setattr("open_clip.download_pretrained", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(ModelLoadError, match=f"(?s)127.0.0.1:{closed_port} cannot be reached.*pass its path"):
        load_clip("ViT-B-32", "laion2b_s34b_b79k", "cpu")


def test_checkpoint_reloads_to_identical_outputs(micro, shards, tmp_path):
    name, model, preprocess_train, preprocess_eval, tokenizer = micro
    images, texts = tensors_of(shards, preprocess_eval, tokenizer)
    optimizer = build_optimizer(model, 1e-3, 0.1)
    train_step(model, open_clip.ClipLoss(), optimizer, images, texts)
    path = tmp_path / "model.pt"
    torch.save(checkpoint_payload(name, model, optimizer, TrainState(epochs_done=1), {}), path)
    (tmp_path / "model_config.json").write_text(json.dumps(MICRO))
    model.eval()
    with torch.no_grad():
        expected = model.encode_image(images), model.encode_text(texts)
    reloaded, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(path))  # the contract
    from_folder, _, _ = load_clip(tmp_path, None, "cpu")
    from_file, _, _ = load_clip(path, None, "cpu")
    for clip in (reloaded.eval(), from_folder, from_file):
        with torch.no_grad():
            assert torch.equal(clip.encode_image(images), expected[0])
            assert torch.equal(clip.encode_text(texts), expected[1])


# --- loop -----------------------------------------------------------------------------

def test_a_few_steps_lower_the_loss(micro_config, shards):
    torch.manual_seed(1)
    _, model, _, preprocess, tokenizer = create_clip(str(micro_config), None, "cpu")
    images, texts = tensors_of(shards, preprocess, tokenizer)
    optimizer = build_optimizer(model, 2e-3, 0.0)
    losses = [train_step(model, open_clip.ClipLoss(), optimizer, images, texts) for _ in range(6)]
    assert losses[-1] < losses[0] - 0.1, losses


def test_lr_warms_up_then_decays_and_stays_at_the_end():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    schedule = lr_schedule(optimizer, 1.0, warmup_steps=4, total_steps=20)
    rates = [schedule(step) for step in range(30)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(rates[4:20], rates[5:21]))
    assert rates[20] == rates[29] == pytest.approx(0.0)
    assert optimizer.param_groups[0]["lr"] == rates[-1]


def test_resumed_fit_equals_uninterrupted_fit(micro_config, shards):
    def fresh():
        torch.manual_seed(0)
        _, model, preprocess, _, tokenizer = create_clip(str(micro_config), None, "cpu")
        optimizer = build_optimizer(model, 1e-3, 0.1)
        return model, optimizer, lr_schedule(optimizer, 1e-3, 2, 8), preprocess, tokenizer

    def batches(preprocess, tokenizer):
        return lambda epoch: epoch_loader(StreamSpec((str(shards / "00000.tar"), str(shards / "00001.tar")), TRAIN,
                                                     0.2, 16, seed=3, epoch=epoch, shuffle_buffer=20),
                                          preprocess, tokenizer, 0)

    model, optimizer, schedule, preprocess, tokenizer = fresh()
    saved = {}
    straight = fit(model, optimizer, schedule, batches(preprocess, tokenizer), 2, TrainState(), 3, torch.device("cpu"),
                   lambda state, _: saved.setdefault(state.epochs_done,
                                                     _serialised(checkpoint_payload("m", model, optimizer, state, {}))))
    payload = torch.load(io.BytesIO(saved[1]), weights_only=True)
    model2, optimizer2, schedule2, preprocess2, tokenizer2 = fresh()
    state = restore(payload, model2, optimizer2)
    assert state.epochs_done == 1 and state.step == straight.history[0]["steps"]
    resumed = fit(model2, optimizer2, schedule2, batches(preprocess2, tokenizer2), 2, state, 3, torch.device("cpu"),
                  lambda *_: None)
    untimed = [[{k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in run.history]
               for run in (straight, resumed)]
    assert resumed.step == straight.step and untimed[0] == untimed[1]  # same losses, learning rates, samples
    for key, value in model.state_dict().items():
        assert torch.equal(value, model2.state_dict()[key]), key


def _serialised(payload: dict) -> bytes:
    out = io.BytesIO()
    torch.save(payload, out)
    return out.getvalue()


# --- data -------------------------------------------------------------------------------

def test_split_is_a_pure_function_of_the_uid():
    uids = [f"uid-{i}" for i in range(4000)]
    splits = Counter(split_of(u, 0.1) for u in uids)
    assert 300 < splits[EVAL] < 500 and splits[TRAIN] == 4000 - splits[EVAL]
    assert [split_of(u, 0.1) for u in uids] == [split_of(u, 0.1) for u in uids]
    subset = [split_of(u, 0.1, 0.5) for u in uids]
    assert 1800 < subset.count(UNUSED) < 2200
    # a pair held out in the whole pool is held out in any subset that keeps it
    assert all(s in (EVAL, UNUSED) for u, s in zip(uids, subset) if split_of(u, 0.1) == EVAL)


def test_every_sample_is_counted_by_reason(tmp_path, micro):
    _, _, _, preprocess, tokenizer = micro
    good = pair_image("red", "circle", 0)
    meta = {"json": b'{"uid": "uid-x"}'}
    extra = {
        "bad0001": {"jpg": b"\xff\xd8\xff not really a jpeg", "txt": b"broken", **meta},
        "bad0002": {"jpg": good, "txt": b"   ", **meta},
        "bad0003": {"jpg": good, **meta},
        "bad0004": {"txt": b"no image", **meta},
        "bad0005": {"jpg": good, "txt": b"\xff\xfe latin-1 \xe9", **meta},
        "nouid0006": {"jpg": good, "txt": b"a caption without metadata"},
    }
    folder = write_shards(tmp_path / "s", shards=1, per_shard=10, extra=extra)
    spec = StreamSpec((str(folder / "00000.tar"),), TRAIN, 0.0, 4, shuffle=False, drop_partial=True)
    batches = list(epoch_loader(spec, preprocess, tokenizer, 0))
    counts = train_data.StreamCounts()
    for batch in batches:
        counts.add(batch.counts)
    assert counts.read == 16
    assert counts.dropped == {"decode_error": 1, "empty_caption": 1, "missing_caption": 1, "missing_image": 1,
                              "caption_bad_encoding": 1}
    assert counts.used == 11 and counts.unbatched == 3 and sum(len(b) for b in batches) == 8
    assert counts.problems == {"no_uid": 1}
    assert batches[-1].images is None  # the closing counts-only item


def test_unreadable_shard_is_a_counted_problem(tmp_path, shards, micro):
    _, _, _, preprocess, tokenizer = micro
    truncated = tmp_path / "00009.tar"
    truncated.write_bytes((shards / "00000.tar").read_bytes()[:30_000])
    spec = StreamSpec((str(truncated), str(tmp_path / "missing.tar"), str(shards / "00001.tar")), TRAIN, 0.0, 8,
                      shuffle=False, drop_partial=False)
    counts = train_data.StreamCounts()
    for batch in epoch_loader(spec, preprocess, tokenizer, 0):
        counts.add(batch.counts)
    read_errors = {k: v for k, v in counts.problems.items() if k.startswith("shard_read_error:")}
    assert read_errors == {"shard_read_error:ReadError": 1, "shard_read_error:FileNotFoundError": 1}
    assert 40 < counts.read < 80 and counts.used == counts.read - sum(counts.dropped.values())


def test_train_and_eval_streams_partition_the_shards(shards, micro):
    _, _, _, preprocess, tokenizer = micro
    urls = tuple(str(p) for p in sorted(shards.glob("*.tar")))
    seen = {}
    for split in (TRAIN, EVAL):
        spec = StreamSpec(urls, split, 0.25, 8, shuffle=split == TRAIN, drop_partial=False)
        seen[split] = [k for b in epoch_loader(spec, preprocess, tokenizer, 0) for k in b.keys]
    assert not set(seen[TRAIN]) & set(seen[EVAL])
    assert len(seen[TRAIN]) + len(seen[EVAL]) == 80 and 8 < len(seen[EVAL]) < 35
    assert glob_shards(str(shards / "*.tar")).samples == 80


# --- evaluation -------------------------------------------------------------------------

def unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim))).float(),
                                         dim=1)


def test_recall_and_auc_of_perfect_and_random_embeddings():
    rows = unit_rows(200, 16, 0)
    perfect = Embeddings(rows, rows.clone(), [str(i) for i in range(200)], train_data.StreamCounts())
    assert retrieval_recall(perfect)["image_to_text_recall"] == {"1": 1.0, "5": 1.0, "10": 1.0}
    assert shuffled_pair_auc(perfect)["auc"] == 1.0
    noise = Embeddings(rows, unit_rows(200, 16, 1), perfect.keys, perfect.counts)
    metrics = heldout_metrics(noise)
    assert 0.35 < metrics["auc"] < 0.65 and metrics["text_to_image_recall"]["10"] < 0.2
    assert metrics["pool"] == 200


def test_recall_counts_the_true_partner_rank():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # text 1 is closest to image 0, not image 1
    recall = retrieval_recall(Embeddings(images, texts, ["a", "b", "c"], train_data.StreamCounts()), ks=(1, 2))
    # image 1 scores 0 with every text: a tie is not counted against the true partner
    assert recall["image_to_text_recall"] == {"1": 1.0, "2": 1.0}
    assert recall["text_to_image_recall"] == {"1": pytest.approx(2 / 3), "2": 1.0}


def test_derangement_moves_every_item():
    for n in (2, 3, 17):
        partner = derangement(n, seed=n)
        assert sorted(partner) == list(range(n)) and all(partner[i] != i for i in range(n))


def test_zero_shot_counts_samples_and_unreadable_images(tmp_path, micro):
    _, model, _, preprocess, tokenizer = micro
    for colour in ("red", "blue"):
        (tmp_path / colour).mkdir()
        for i in range(3):
            (tmp_path / colour / f"{i}.jpg").write_bytes(pair_image(colour, "square", i))
    (tmp_path / "blue" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "blue" / "notes.txt").write_text("ignored: not an image suffix")
    assert read_image_folder(tmp_path).classnames == ["blue", "red"]
    result = zero_shot_accuracy(model, tokenizer, preprocess, tmp_path, ["a {} square"], batch_size=4)
    assert result["samples"] == 6 and result["classes"] == 2 and result["dropped_by_reason"] == {"decode_error": 1}
    assert 0.0 <= result["top1"] <= 1.0 and "top5" not in result


# --- the pipeline runners -----------------------------------------------------------------

def train_config(tmp_path: Path, data: str, model: Path, **train) -> object:
    return validate_config({
        "output": str(tmp_path / "out"),
        "train": {"model": str(model), "data": data, "epochs": 2, "batch_size": 16, "warmup_steps": 2, "lr": 2e-3,
                  "workers": 0, "eval_fraction": 0.25, "device": "cpu", "keep_checkpoints": 2, **train},
        "cluster": {"workers": 1},
    })


def test_run_train_outputs_resume_and_skip(tmp_path, shards, micro_config):
    config = train_config(tmp_path, str(shards / "*.tar"), micro_config)
    stats = run_train(config)
    folder = tmp_path / "out" / "train"
    assert stats["total"] == 80 == stats["forwarded"] + stats["dropped"]
    assert stats["train_samples"] + stats["eval_samples"] == 80 and stats["epochs"] == 2
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["splits"]["eval"] == stats["eval_samples"] and metrics["auc"] is not None
    assert set(metrics["image_to_text_recall"]) == {"1", "5", "10"}
    assert metrics["before_training"]["pool"] == metrics["pool"]
    first = torch.load(folder / "model.pt", weights_only=True)["state_dict"]
    assert sorted(p.name for p in (folder / CHECKPOINT_DIR).iterdir()) == ["epoch_0001.pt", "epoch_0002.pt"]

    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert run_train(config) == stats  # done: skipped
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before

    # as if killed after epoch 1's checkpoint: the next run resumes and ends with the same weights
    for name in ("model.pt", METRICS_FILE, STATS_FILE, f"{CHECKPOINT_DIR}/epoch_0002.pt"):
        (folder / name).unlink()
    resumed = run_train(config)
    assert resumed["steps"] == stats["steps"]
    again = torch.load(folder / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path, shards, micro_config):
    config = train_config(tmp_path, str(shards / "*.tar"), micro_config, epochs=1)
    run_train(config)
    (tmp_path / "out" / "train" / STATS_FILE).unlink()
    with pytest.raises(ConfigError, match="lr differ"):
        run_train(train_config(tmp_path, str(shards / "*.tar"), micro_config, epochs=1, lr=1e-2))


def test_missing_inputs_are_clear_errors(tmp_path, micro_config):
    with pytest.raises(ConfigError, match="run `webli select` first"):
        run_train(train_config(tmp_path, "select", micro_config))
    with pytest.raises(ConfigError, match="matches no .tar file"):
        run_train(train_config(tmp_path, str(tmp_path / "none-*.tar"), micro_config))
    with pytest.raises(ConfigError, match="run `webli download` first"):
        run_bootstrap_filter(train_config(tmp_path, "download", micro_config))


def test_train_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="train.bootstrap.epoch: unknown key"):
        validate_config({"output": str(tmp_path), "train": {"bootstrap": {"epoch": 3}}})
    assert math.isclose(validate_config({"output": str(tmp_path)}).train.bootstrap.eval_fraction, 0.1)


def test_bootstrap_splits_table_matches_the_stream_split(tmp_path):
    store = StageDir(str(tmp_path), "download")
    rows = [{"key": f"0000000{i}", "uid": f"uid-{i}", "url": "http://x/", "caption": "c", "page_url": "http://x/",
             "language": "en", "language_score": 1.0, "status": "success" if i % 3 else "failed_to_download"}
            for i in range(9)]
    table = pa.Table.from_pylist([{**{f.name: None for f in DOWNLOAD}, **r} for r in rows])
    store.write_table("00000.parquet", table, DOWNLOAD)
    store.write_stats(0, {"total": 9, "forwarded": 6, "dropped_by_reason": {"http_error": 3}})
    splits = bootstrap_splits(str(tmp_path), 0.3, 0.7, folds=3).to_pylist()
    assert [r["key"] for r in splits] == [r["key"] for r in rows if r["status"] == "success"]
    for r in splits:
        assert r["fold"] == fold_of(r["uid"], 3) and r["shard"] == 0
        assert r["split"] == fold_split_of(r["uid"], 0.3, 0.7, r["fold"], 3)
        assert r["trained_by"] == ([] if r["split"] == UNUSED else [k for k in range(3) if k != r["fold"]])


# --- cross-fitting ------------------------------------------------------------------------

def test_fold_split_is_deterministic_and_independent_of_the_other_draws():
    uids = [f"uid-{i}" for i in range(6000)]
    folds = [fold_of(u, 3) for u in uids]
    assert folds == [fold_of(u, 3) for u in uids] and all(1800 < folds.count(k) < 2200 for k in range(3))
    # independent of the held-out and subset draws: each fold holds about its share of either
    heldout = [f for u, f in zip(uids, folds) if split_of(u, 0.2) == EVAL]
    outside = [f for u, f in zip(uids, folds) if split_of(u, 0.0, 0.5) == UNUSED]
    assert all(abs(heldout.count(k) / len(heldout) - 1 / 3) < 0.05 for k in range(3))
    assert all(abs(outside.count(k) / len(outside) - 1 / 3) < 0.05 for k in range(3))
    assert np.corrcoef([uid_position(u, b"webli-fold-v1") for u in uids],
                       [uid_position(u, b"webli-heldout-v1") for u in uids])[0, 1] ** 2 < 0.01


def test_every_pair_is_scored_by_a_filter_that_never_trained_on_it():
    for uid in (f"uid-{i}" for i in range(3000)):
        own = fold_of(uid, 4)
        views = [fold_split_of(uid, 0.25, 0.8, fold, 4) for fold in range(4)]
        if split_of(uid, 0.25, 0.8) == UNUSED:
            assert views == [UNUSED] * 4  # no filter sees a pair outside the bootstrap split
            continue
        assert views[own] in (EVAL, SCORED) and views.count(TRAIN) == 3  # every other filter trains on it
        assert (views[own] == EVAL) == (split_of(uid, 0.25, 0.8) == EVAL)  # the same held-out draw


def test_a_fold_stream_trains_on_the_other_folds_and_evaluates_on_its_own(shards, micro):
    _, _, _, preprocess, tokenizer = micro
    urls = tuple(str(p) for p in sorted(shards.glob("*.tar")))
    seen = {}
    for split in (TRAIN, EVAL):
        spec = StreamSpec(urls, split, 0.5, 16, shuffle=False, drop_partial=False, fold=1, folds=2)
        seen[split] = [k for b in epoch_loader(spec, preprocess, tokenizer, 0) for k in b.keys]
    assert seen[TRAIN] and seen[EVAL]
    assert all(fold_of(f"uid-{k}", 2) == 0 for k in seen[TRAIN])
    assert all(fold_of(f"uid-{k}", 2) == 1 and split_of(f"uid-{k}", 0.5) == EVAL for k in seen[EVAL])


def write_download_tables(folder: Path) -> None:
    """A download stage's Parquet + stats beside each tar of `write_shards` (every sample a success)."""
    store = StageDir(str(folder.parent), folder.name)
    for shard_id, tar_path in enumerate(sorted(folder.glob("*.tar"))):
        with tarfile.open(tar_path) as tar:
            metas = [json.loads(tar.extractfile(m).read()) | {"key": m.name[:-5]} for m in tar.getmembers()
                     if m.name.endswith(".json")]
        rows = [{**{f.name: None for f in DOWNLOAD}, "key": m["key"], "uid": m["uid"], "url": "http://x/",
                 "caption": "c", "page_url": "http://x/", "language": "en", "language_score": 1.0,
                 "status": "success"} for m in metas]
        store.write_table(f"{shard_id:05d}.parquet", pa.Table.from_pylist(rows), DOWNLOAD)
        store.write_stats(shard_id, {"total": len(rows), "forwarded": len(rows), "dropped_by_reason": {}})


def bootstrap_config(tmp_path: Path, micro_config: Path, **bootstrap) -> object:
    return validate_config({
        "output": str(tmp_path / "out"),
        "train": {"batch_size": 8, "warmup_steps": 1, "lr": 2e-3, "workers": 0, "device": "cpu",
                  "bootstrap": {"model": str(micro_config), "epochs": 1, "eval_fraction": 0.4, **bootstrap}},
        "cluster": {"workers": 1}})


def test_cross_fitted_filters_train_per_fold_and_account_for_every_pair(tmp_path, micro_config):
    broken = {"b0000": {"jpg": b"junk", "txt": b"a caption", "json": b'{"uid": "uid-b0000"}'}}
    write_download_tables(write_shards(tmp_path / "out" / "download", shards=2, per_shard=24, extra=broken))
    stats = run_bootstrap_filter(bootstrap_config(tmp_path, micro_config))
    folder = tmp_path / "out" / "bootstrap_filter"
    splits = pq.read_table(folder / "splits.parquet").to_pylist()
    assert len(splits) == 49 and all(r["fold"] not in r["trained_by"] for r in splits)
    for fold in range(2):
        fold_stats = json.loads((folder / f"fold_{fold}" / STATS_FILE).read_text())
        fold_metrics = json.loads((folder / f"fold_{fold}" / METRICS_FILE).read_text())
        others = [r for r in splits if r["fold"] != fold]
        own = [r for r in splits if r["fold"] == fold]
        # filter k read exactly the other folds' pairs for training, and its own fold's held-out pairs for the AUC
        assert fold_stats["train_samples"] + sum(fold_stats["train_dropped_by_reason"].values()) == len(others)
        assert fold_stats["eval_samples"] == sum(r["split"] == EVAL and r["uid"] != "uid-b0000" for r in own)
        assert fold_stats["total"] == 49 and fold_metrics["fold"] == fold and (folder / f"fold_{fold}" /
                                                                                "model.pt").is_file()
    assert stats["total"] == 49 and stats["forwarded"] == 48 and stats["dropped_by_reason"] == {"decode_error": 1}
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["splits"]["folds"] == 2 and set(metrics["by_fold"]) == {"0", "1"}
    assert metrics["pool"] == stats["eval_samples"] == sum(s["eval_samples"] for s in stats["by_fold"])
    assert run_bootstrap_filter(bootstrap_config(tmp_path, micro_config)) == stats  # done: skipped
    with pytest.raises(ConfigError, match="made with 2 folds"):
        run_bootstrap_filter(bootstrap_config(tmp_path, micro_config, folds=3))


def test_a_single_filter_of_an_older_version_is_refused(tmp_path, micro_config):
    store = StageDir(str(tmp_path / "out"), "bootstrap_filter")
    store.write_json(STATS_FILE, {"stage": "bootstrap_filter", "total": 1, "forwarded": 1})
    with pytest.raises(ConfigError, match="no cross-fitting"):
        run_bootstrap_filter(bootstrap_config(tmp_path, micro_config))
    with pytest.raises(ConfigError, match="greater than or equal to 2|folds"):
        bootstrap_config(tmp_path, micro_config, folds=1)


def test_a_data_set_smaller_than_a_batch_still_trains(shards, micro):
    _, _, _, preprocess, tokenizer = micro
    spec = StreamSpec((str(shards / "00000.tar"),), TRAIN, 0.0, 64, shuffle=True, drop_partial=True)
    batches = [b for b in epoch_loader(spec, preprocess, tokenizer, 0) if b.images is not None]
    assert [len(b) for b in batches] == [40]
    spec = StreamSpec((str(shards / "00000.tar"),), TRAIN, 0.0, 16, shuffle=True, drop_partial=True)
    assert [len(b) for b in epoch_loader(spec, preprocess, tokenizer, 0)] == [16, 16, 0]  # 8 left out


def test_bad_zero_shot_set_fails_before_training(tmp_path, shards, micro_config):
    (tmp_path / "one-class" / "cat").mkdir(parents=True)
    config = train_config(tmp_path, str(shards / "*.tar"), micro_config,
                          zero_shot=[{"name": "pets", "images": str(tmp_path / "one-class")}])
    with pytest.raises(ConfigError, match="needs 2\\+ class sub-folders"):
        run_train(config)
    assert not (tmp_path / "out" / "train" / CHECKPOINT_DIR).exists()


def test_shards_without_a_usable_pair_stop_after_one_epoch(tmp_path, micro_config):
    broken = {f"b{i:04d}": {"jpg": b"junk", "txt": b"a caption", "json": b'{"uid": "u%d"}' % i} for i in range(5)}
    folder = write_shards(tmp_path / "s", shards=1, per_shard=0, extra=broken)
    with pytest.raises(ConfigError, match="no usable training pair"):
        run_train(train_config(tmp_path, str(folder / "*.tar"), micro_config, eval_fraction=0.0))
    assert not (tmp_path / "out" / "train" / CHECKPOINT_DIR).exists()
