"""`webli card` on a real run of the demo site (crawl + download through the CLI on 127.0.0.1).

The card's funnel must add up, its totals must equal what the shards hold,
its loading snippets must run as printed, and its HTML must render in
headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import braceexpand
import numpy as np
import open_clip
import pytest
import torch
from helpers import copy_run, read_parquets, stats, webli
from huggingface_hub import DatasetCard
from PIL import Image

# Chromium run headless as root, kept off the network (no background requests to Google services).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


TINY_CLIP = {"name": "card-e2e-tiny", "embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def tiny_clip_folder(folder):
    """A random-weight tiny CLIP in the trainer's layout (model_config.json + model.pt), for the score stage."""
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    model = open_clip.CLIP(**{k: v for k, v in TINY_CLIP.items() if k != "name"})
    torch.save({"state_dict": model.state_dict()}, folder / "model.pt")
    return folder


def read_card(output):
    card = output / "card"
    return card, (card / "README.md").read_text(encoding="utf-8"), json.loads((card / "card.json").read_text())


@pytest.fixture(scope="module")
def demo_run(demo_download, tmp_path_factory):
    """A copy of the session's demo download: (output root, config path)."""
    folder = tmp_path_factory.mktemp("card-e2e")
    copied = copy_run(demo_download, folder, score={"model": str(tiny_clip_folder(folder / "tiny-clip"))},
                      select={"top_fraction": 0.5, "min_shards": 4})
    return copied.output, copied.config_path


@pytest.fixture(scope="module")
def download_card(demo_run):
    """The card written after crawl and download only: (output, card folder, README, card.json)."""
    output, config = demo_run
    result = webli("card", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return (output, *read_card(output))


@pytest.fixture(scope="module")
def card_run(demo_run, download_card):
    """The card written after score and select too (OCR and dedup not run)."""
    output, config = demo_run
    for stage in ("score", "select", "card"):
        result = webli(stage, "-c", str(config))
        assert result.returncode == 0, f"{stage}: {result.stderr[-3000:]}"
    return (output, *read_card(output))


def tar_keys(path) -> list[str]:
    with tarfile.open(path) as tar:
        return sorted({member.name.split(".", 1)[0] for member in tar.getmembers()})


def assert_funnel_adds_up(numbers: dict, expected_steps: list[str]) -> None:
    steps = numbers["funnel"]["steps"]
    assert [s["step"] for s in steps] == expected_steps
    for step in steps:
        assert sum(step["dropped_by_reason"].values()) == step["in"] - step["out"]
    by_name = {s["step"]: s for s in steps}
    for upstream, step in (("crawl", "plan"), ("plan", "download"), ("download", "score"), ("download", "select")):
        if step in by_name:
            assert by_name[step]["in"] == by_name[upstream]["out"]
    assert numbers["funnel"]["checks"] and all(check["ok"] for check in numbers["funnel"]["checks"])


@pytest.mark.slow
def test_funnel_adds_up_after_download(download_card):
    assert_funnel_adds_up(download_card[3], ["crawl", "plan", "download"])


@pytest.mark.slow
def test_funnel_adds_up_after_select(card_run):
    assert_funnel_adds_up(card_run[3], ["crawl", "plan", "download", "score", "select"])


@pytest.mark.slow
def test_card_totals_equal_the_shard_counts(card_run):
    output, _, markdown, numbers = card_run
    final = [key for tar in sorted((output / "select" / "shards").glob("*.tar")) for key in tar_keys(tar)]
    index = read_parquets(output / "select" / "shards")
    assert numbers["summary"]["samples"] == len(final) == len(index) == numbers["selection"]["samples_in_shards"]
    assert sum(r["selected"] for r in numbers["languages"]["rows"]) == len(final)
    assert numbers["scores"]["scored"] == sum(s["total"] for s in stats(output / "score").values())
    assert f"**What**: {len(final):,} image–alt-text pairs (final, selected)" in markdown
    steps = {s["step"]: s for s in numbers["funnel"]["steps"]}
    crawl_pairs = read_parquets(output / "crawl")
    download_rows = read_parquets(output / "download")
    in_tars = [key for tar in sorted((output / "download").glob("*.tar")) for key in tar_keys(tar)]
    assert steps["crawl"]["out"] == len(crawl_pairs)
    assert steps["crawl"]["in"] == sum(s["total"] for s in stats(output / "crawl").values())
    assert steps["download"]["in"] == len(download_rows)
    assert steps["download"]["out"] == len(in_tars) == sum(r["status"] == "success" for r in download_rows)
    assert steps["score"]["in"] == steps["select"]["in"] == len(in_tars)
    assert numbers["languages"]["pairs"] == len(download_rows)
    assert sum(r["downloaded"] for r in numbers["languages"]["rows"]) == len(in_tars)
    assert numbers["images"]["images"] == len(in_tars)
    download = steps["download"]
    assert f"| download | filter | {download['in']:,} | {download['out']:,} | {download['dropped']:,} |" in markdown


@pytest.mark.slow
def test_sections_of_later_stages_say_they_have_not_run(download_card, card_run):
    _, _, markdown, numbers = download_card
    for stage in ("ocr", "dedup", "score", "select", "train"):
        assert numbers["stages"][stage]["status"] == "not run"
        assert f"_The {stage} stage has not run yet" in markdown
    assert numbers["summary"]["kind"] == "downloaded" and numbers["shards"]["stage"] == "download"
    _, _, markdown, numbers = card_run
    for stage in ("ocr", "dedup", "train"):
        assert f"_The {stage} stage has not run yet" in markdown
    assert numbers["shards"]["stage"] == "select" and numbers["samples"]["rejected"]
    assert {s["reason"] for s in numbers["samples"]["rejected"]} == {"below_threshold"}
    card = DatasetCard(markdown).data
    assert set(card.language) == {r["language"] for r in numbers["languages"]["rows"] if r["selected"]} - {"und"}


def run_snippet(code: str, card_folder, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"), "HF_HOME": str(tmp_path / "hf-home")}
    return subprocess.run([sys.executable, "-c", code], cwd=card_folder, env=env, capture_output=True, text=True,
                          timeout=300)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


@pytest.mark.slow
def test_loading_snippets_run_as_printed(card_run, tmp_path):
    _, card, markdown, numbers = card_run
    blocks = python_blocks(markdown)
    assert blocks == [numbers["snippets"][name] for name in ("webdataset", "open_clip", "datasets")]
    webdataset_out = run_snippet(blocks[0], card, tmp_path)
    assert webdataset_out.returncode == 0, webdataset_out.stderr[-2000:]
    assert re.match(r"\(256, 256\) \w+ .+", webdataset_out.stdout)
    open_clip_out = run_snippet(blocks[1], card, tmp_path)
    assert open_clip_out.returncode == 0, open_clip_out.stderr[-2000:]
    assert "torch.Size([16, 3, 224, 224]) torch.Size([16, 77])" in open_clip_out.stdout
    pytest.importorskip("datasets", reason="Hugging Face datasets is not installed")
    datasets_out = run_snippet(blocks[2], card, tmp_path)
    assert datasets_out.returncode == 0, datasets_out.stderr[-2000:]
    assert f"num_rows: {numbers['summary']['samples']}" in datasets_out.stdout


@pytest.mark.slow
def test_open_clip_train_command_names_every_shard_and_sample(card_run):
    output, card, _, numbers = card_run
    command = numbers["snippets"]["open_clip_train"]
    pattern = re.search(r"--train-data '([^']+)'", command).group(1)
    shards = [(card / path).resolve() for path in braceexpand.braceexpand(pattern)]
    assert len(shards) == 4 and shards == sorted((output / "select" / "shards").glob("*.tar"))
    samples = int(re.search(r"--train-num-samples (\d+)", command).group(1))
    assert samples == sum(len(tar_keys(tar)) for tar in shards)


@pytest.mark.slow
def test_html_card_renders_in_headless_chromium(card_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    _, card, _, _ = card_run
    html = (card / "card.html").read_text(encoding="utf-8")
    assert not re.findall(r'<img src="(?!data:)', html)  # self-contained: every image inlined
    screenshot = tmp_path / "card.png"
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--window-size=1280,2400", f"--screenshot={screenshot}", (card / "card.html").as_uri()],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and screenshot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (2400, 1280)
    not_white = (pixels < 240).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, not_white  # text, tables and charts drawn, not a blank or black page
    blue = ((pixels[..., 2] > 150) & (pixels[..., 0] < 80)).mean()
    assert blue > 0.002, blue  # the chart bars (#2b6cb0) are painted: the inlined PNGs decoded
