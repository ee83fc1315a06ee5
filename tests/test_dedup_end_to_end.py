"""`webli dedup` from real download shards of the demo site, against an eval set made from the site's photos."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest
from helpers import copy_run, read_parquets, stats, webli, write_config

from webli.demo.images import load_photo
from webli.stages.dedup.demo import EDITED_PHOTOS, build_demo_eval_set, jpeg_bytes
from webli.stages.dedup.edits import apply_edits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def downloaded(demo_download, tmp_path_factory):
    """A copy of the session's demo download (50 samples per shard, so several shards)."""
    copied = copy_run(demo_download, tmp_path_factory.mktemp("dedup-e2e"))
    return copied.output.parent, copied.config


@pytest.fixture(scope="module")
def deduped(downloaded):
    """The demo eval set plus an empty one, then `webli dedup`."""
    folder, config = downloaded
    eval_set = build_demo_eval_set(folder / "eval")
    (folder / "empty-eval").mkdir()
    config = {**config, "dedup": {"eval_sets": [
        {"name": "demo", "images": eval_set["images"], "captions": eval_set["captions"]},
        {"name": "empty", "images": str(folder / "empty-eval")}]}}
    path = write_config(folder / "dedup.yaml", config)
    result = webli("dedup", "-c", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, config, path, eval_set


# The demo server's bad routes that serve a valid photo (webli/demo/server.py).
SERVED_PHOTOS = {"/img/bad/control.jpg": "chelsea", "/img/bad/otherbot-noimageai.jpg": "rocket"}


def photo_name(url: str) -> str | None:
    """'astronaut' for .../img/photos/astronaut-320.jpg, None for anything that is not a demo photo."""
    path = "/" + url.split("/", 3)[3]
    if path in SERVED_PHOTOS:
        return SERVED_PHOTOS[path]
    if "/img/photos/" not in url:
        return None
    return url.rsplit("/", 1)[-1].rsplit("-", 1)[0]


def rows_by_key(output) -> tuple[dict, dict]:
    downloads = {r["key"]: r for r in read_parquets(output / "download") if r["status"] == "success"}
    return downloads, {r["key"]: r for r in read_parquets(output / "dedup")}


def test_every_downloaded_sample_has_one_row(deduped):
    folder, config, _, _ = deduped
    downloads, verdicts = rows_by_key(folder / "out")
    assert sorted(verdicts) == sorted(downloads)
    assert all(v["uid"] == downloads[k]["uid"] for k, v in verdicts.items())


def test_edited_eval_photos_are_flagged_and_nothing_else(deduped):
    folder, _, _, _ = deduped
    downloads, verdicts = rows_by_key(folder / "out")
    flagged = {downloads[k]["url"] for k, v in verdicts.items() if v["image_duplicate"]}
    expected = {r["url"] for r in downloads.values() if photo_name(r["url"]) in EDITED_PHOTOS}
    assert len(expected) >= 8  # the four photos at several sizes
    assert flagged == expected
    for key, verdict in verdicts.items():
        if verdict["image_duplicate"]:
            assert verdict["image_eval_set"] == "demo" and verdict["matched_set"] == "demo"
            assert verdict["image_eval_item"].startswith(photo_name(downloads[key]["url"]) + "-")
            assert verdict["image_inliers"] >= 12 and verdict["is_duplicate"]


def test_paraphrased_alt_texts_are_flagged_by_text(deduped):
    folder, _, _, eval_set = deduped
    downloads, verdicts = rows_by_key(folder / "out")
    flagged = {downloads[k]["caption"] for k, v in verdicts.items() if v["text_duplicate"]}
    assert flagged == set(eval_set["expected"]["alts"])
    items = {v["text_eval_item"] for v in verdicts.values() if v["text_duplicate"]}
    assert items == {"chelsea-caption", "moon-caption"}


def test_stats_count_per_eval_set_and_the_bad_eval_inputs(deduped):
    folder, _, _, _ = deduped
    output = folder / "out"
    _, verdicts = rows_by_key(output)
    shard_stats = stats(output / "dedup")
    assert sum(s["total"] for s in shard_stats.values()) == len(verdicts)
    assert all(s["dropped_by_reason"] == {} and s["total"] == s["forwarded"] for s in shard_stats.values())
    removed = sum(s["by_eval_set"]["demo"]["removed"] for s in shard_stats.values())
    assert removed == sum(v["is_duplicate"] for v in verdicts.values())
    assert sum(s["by_eval_set"]["empty"]["removed"] for s in shard_stats.values()) == 0
    demo = json.loads((output / "dedup" / "index" / "demo" / "meta.json").read_text())
    assert demo["problems_by_reason"] == {"decode_error": 1}  # the corrupt eval image
    assert demo["images_indexed"] == len(EDITED_PHOTOS) + 3 and demo["captions_indexed"] == 4
    empty = json.loads((output / "dedup" / "index" / "empty" / "meta.json").read_text())
    assert empty["empty"] and empty["problems_by_reason"] == {"empty_eval_set": 1}


def test_rerun_is_a_no_op(deduped):
    folder, _, path, _ = deduped
    output = folder / "out" / "dedup"
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()}
    again = webli("dedup", "-c", str(path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()} == before


def test_changed_eval_set_rebuilds_the_index_and_rechecks_shards(deduped):
    folder, _, path, eval_set = deduped
    output = folder / "out"
    old = json.loads((output / "dedup" / "index" / "demo" / "meta.json").read_text())["fingerprint"]
    chelsea = apply_edits(load_photo("chelsea"), ("jitter", "crop"), seed=9)
    (folder / "eval" / "images" / "chelsea-jitter-crop.jpg").write_bytes(jpeg_bytes(chelsea))
    result = webli("dedup", "-c", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    new = json.loads((output / "dedup" / "index" / "demo" / "meta.json").read_text())["fingerprint"]
    assert new != old
    assert all(s["index_fingerprints"]["demo"] == new for s in stats(output / "dedup").values())
    downloads, verdicts = rows_by_key(output)
    flagged = {photo_name(downloads[k]["url"]) for k, v in verdicts.items() if v["image_duplicate"]}
    assert "chelsea" in flagged or "cat" in flagged


def test_changed_check_settings_recheck_the_shards_and_keep_the_index(deduped):
    folder, config, _, _ = deduped
    output = folder / "out"
    meta = output / "dedup" / "index" / "demo" / "meta.json"
    index_stamp, old = meta.stat().st_mtime_ns, {s["check_fingerprint"] for s in stats(output / "dedup").values()}
    unverified = write_config(folder / "unverified.yaml",
                              {**config, "dedup": {**config["dedup"], "image_min_verifier_score": None}})
    result = webli("dedup", "-c", str(unverified))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "with other check settings; checking it again" in result.stderr
    new = {s["check_fingerprint"] for s in stats(output / "dedup").values()}
    assert len(old) == len(new) == 1 and new != old
    assert meta.stat().st_mtime_ns == index_stamp  # the index does not depend on the check
    _, verdicts = rows_by_key(output)
    scored = [v["image_verifier_score"] for v in verdicts.values() if v["image_duplicate"]]
    assert scored and all(score is None for score in scored)  # checked again, without the verifier


def test_corrupt_image_inside_a_shard_is_counted(deduped, tmp_path):
    folder, config, _, _ = deduped
    copy = tmp_path / "out"
    shutil.copytree(folder / "out" / "download", copy / "download")
    tar_path = sorted((copy / "download").glob("*.tar"))[0]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    victim = next(m.name for m, _ in members if m.name.endswith(".jpg") and ".large." not in m.name)
    with tarfile.open(tar_path, "w") as tar:
        for member, data in members:
            data = b"\xff\xd8\xff\xe0 not a jpeg any more" if member.name == victim else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    path = write_config(tmp_path / "run.yaml", {**config, "output": str(copy)})
    result = webli("dedup", "-c", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    shard = stats(copy / "dedup")[int(tar_path.name[:5])]
    assert shard["problems_by_reason"].get("decode_error") == 1
    rows = {r["key"]: r for r in read_parquets(copy / "dedup")}
    assert rows[victim.split(".")[0]]["image_problem"] == "decode_error"
