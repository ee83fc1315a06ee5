"""OCR stage units: pack selection, OSD/TSV parsing, the text check, and shards with bad inputs."""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytesseract
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata
from test_ocr_render import BY_LANGUAGE, comparable, jpeg_bytes, missing_fonts, render

from webli import schemas
from webli.pipeline.config import ConfigError, OcrConfig, load_config
from webli.schemas import ocr as schema
from webli.stages.ocr.languages import PackPolicy, choose_packs, language_pack, pack_script, resolve_pack
from webli.stages.ocr.shard import choose_image, ocr_shard
from webli.stages.ocr.tesseract import parse_osd, parse_tsv, words_to_text
from webli.stages.ocr.textcheck import text_score

# The packs `make` installs, spelled as Debian installs them (script packs at the top of tessdata).
DEBIAN_PACKS = frozenset(
    "eng deu fra spa ita por nld pol ces swe dan nor fin hun ron tur vie ind rus ukr bul ell ara fas heb hin ben "
    "tam tha chi_sim chi_tra jpn kor osd Latin Cyrillic Greek Arabic Hebrew Devanagari HanS HanT Japanese Hangul "
    "Thai".split())

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract not installed (`make install` as root installs it)")


# --- language packs ------------------------------------------------------------

@pytest.mark.parametrize("language, pack", [
    ("en", "eng"), ("de", "deu"), ("ja", "jpn"), ("zh", "chi_sim"), ("zh-Hant", "chi_tra"), ("ZH_hant", "chi_tra"),
    ("nb", "nor"), ("he", "heb"), ("fa", "fas"), ("deu", "deu"), ("pt-BR", "por"),
    ("cy", None), ("xx", None), ("", None), (None, None), ("osd", None),
])
def test_alt_language_maps_to_an_installed_pack(language, pack):
    assert language_pack(language, DEBIAN_PACKS) == pack


def test_script_packs_resolve_in_either_layout():
    assert resolve_pack("Latin", DEBIAN_PACKS) == "Latin"
    assert resolve_pack("Latin", {"script/Latin", "eng"}) == "script/Latin"
    assert resolve_pack("script/Cyrillic", DEBIAN_PACKS) == "Cyrillic"
    assert resolve_pack("Fraktur", DEBIAN_PACKS) is None
    assert pack_script("script/HanT") == "Han" and pack_script("Hangul") == "Korean" and pack_script("deu") == "Latin"


@pytest.mark.parametrize("language, script, packs", [
    ("de", None, ["deu"]),  # Latin alt text, OSD silent: its pack alone
    ("de", "Latin", ["deu"]),  # OSD agrees
    ("ja", None, ["jpn", "eng"]),  # non-Latin: English follows
    ("ja", "Han", ["jpn", "eng"]),  # Japanese text mixes in Han: jpn reads it
    ("ja", "Katakana", ["jpn", "eng"]),  # OSD's finer name
    ("en", "Cyrillic", ["eng", "rus"]),  # the image's script differs from the alt text's
    ("en", "Hangul", ["eng", "kor"]),
    ("zh-Hant", "Han", ["chi_tra", "eng"]),
    ("en", "Han", ["eng", "chi_sim"]),
    (None, "Arabic", ["ara", "eng"]),  # no alt-text pack: OSD's script alone
    ("xx", None, ["eng"]),  # nothing known: the fallback
    (None, "Ogham", ["eng"]),  # a script without a pack: the fallback
    ("ru", "Greek", ["rus", "ell", "eng"]),
])
def test_packs_come_from_the_alt_language_and_osd_script(language, script, packs):
    assert choose_packs(language, script, DEBIAN_PACKS) == packs


def test_script_pack_used_when_no_language_pack_of_that_script_is_installed():
    installed = {"eng", "Cyrillic", "Latin"}
    assert choose_packs("en", "Cyrillic", installed) == ["eng", "Cyrillic"]
    assert choose_packs("uk", None, installed) == ["eng"]  # ukr not installed, no script seen: fallback


def test_pack_policy_limits_and_fallbacks():
    assert choose_packs("ru", "Greek", DEBIAN_PACKS, PackPolicy(max_packs=2)) == ["rus", "ell"]
    assert choose_packs("ja", None, DEBIAN_PACKS, PackPolicy(secondary=None)) == ["jpn"]
    assert choose_packs(None, None, DEBIAN_PACKS, PackPolicy(fallback=("deu", "eng"))) == ["deu", "eng"]
    assert choose_packs(None, None, {"osd"}) == []  # nothing installed to read with


# --- tesseract output parsing ------------------------------------------------------

OSD_OUTPUT = """Page number: 0
Orientation in degrees: 0
Rotate: 0
Orientation confidence: 2.75
Script: Cyrillic
Script confidence: 5.56
"""

TSV_OUTPUT = "\n".join([
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext",
    "1\t1\t0\t0\t0\t0\t0\t0\t753\t483\t-1\t",
    "4\t1\t1\t1\t1\t0\t11\t24\t177\t12\t-1\t",
    "5\t1\t1\t1\t1\t1\t11\t24\t31\t9\t96.133377\tФайл",
    "5\t1\t1\t1\t1\t2\t60\t24\t60\t12\t92.668327\tПросмотр",
    "5\t1\t2\t1\t1\t1\t0\t0\t753\t22\t95.000000\t ",
    "5\t1\t3\t1\t1\t1\t5\t40\t20\t10\t41.5\t\"quoted\"",
])


def test_osd_output_gives_script_and_confidence():
    guess = parse_osd(OSD_OUTPUT)
    assert (guess.script, guess.confidence) == ("Cyrillic", 5.56)
    assert parse_osd("").script is None and parse_osd("").confidence is None


def test_tsv_words_keep_boxes_and_confidences_and_skip_blanks():
    words = parse_tsv(TSV_OUTPUT)
    assert [w.text for w in words] == ["Файл", "Просмотр", '"quoted"']
    assert (words[1].left, words[1].top, words[1].width, words[1].height, words[1].conf) == (60, 24, 60, 12, 92.67)
    assert words_to_text(words) == 'Файл Просмотр\n"quoted"'
    assert parse_tsv("") == [] and words_to_text([]) == ""


# --- the text check ----------------------------------------------------------------

def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def test_text_check_finds_nothing_in_blank_smooth_or_tiny_images():
    assert text_score(np.full((300, 400), 255, np.uint8)) == 0
    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    assert text_score(ramp) == 0
    yy, xx = np.mgrid[0:300, 0:400]
    disc = ((yy - 150) ** 2 + (xx - 200) ** 2 < 90 ** 2).astype(np.uint8) * 200
    assert text_score(disc) == 0  # one big shape is not a word
    assert text_score(np.zeros((4, 4), np.uint8)) == 0


@pytest.mark.parametrize("language", ["en", "ru", "ar", "hi", "th"])
@pytest.mark.parametrize("size", [14, 40])
def test_text_check_finds_rendered_text_small_and_large(language, size):
    known = BY_LANGUAGE[language]
    if missing_fonts(known):
        pytest.skip(missing_fonts(known))
    assert text_score(_gray(render(known, size=size))) >= 1
    light_on_dark = render(known, size=size, colors=((240, 240, 240), (30, 40, 90)))
    assert text_score(_gray(light_on_dark)) >= 1


def test_text_check_finds_text_inside_ui_frames():
    known = BY_LANGUAGE["en"]
    if missing_fonts(known):
        pytest.skip(missing_fonts(known))
    label = render(known, size=14, padding=3)
    window = Image.new("RGB", (label.width + 40, label.height * 4), (240, 240, 240))
    for row in range(3):  # a list box: rows of labels, each framed, the frames touching the text
        window.paste(label, (20, 6 + row * label.height))
        ImageDraw.Draw(window).rectangle((18, 4 + row * label.height, 22 + label.width, 6 + (row + 1) * label.height),
                                         outline=(90, 90, 90))
    assert text_score(_gray(window)) >= 3  # each framed label found on its own


def test_text_check_finds_text_in_scikit_image_photos_of_text():
    assert text_score(skdata.page()) >= 5  # a photographed book page
    assert text_score(skdata.text()) >= 1  # handwriting on paper


# --- image choice --------------------------------------------------------------------

def test_large_copy_preferred_when_asked_and_present():
    files = {"jpg": b"small", "large.jpg": b"large", "txt": b"alt"}
    assert choose_image(files, use_large_copy=True) == (b"large", "large", "jpg")
    assert choose_image(files, use_large_copy=False) == (b"small", "thumbnail", "jpg")
    assert choose_image({"jpg": b"small"}, use_large_copy=True) == (b"small", "thumbnail", "jpg")
    assert choose_image({"txt": b"alt"}, use_large_copy=True) is None


# --- shards: every row accounted for, bad inputs counted -----------------------------

def _download_rows(keys_languages: list[tuple[str, str]], failed: tuple[str, ...] = ()) -> pa.Table:
    rows = [{"key": key, "uid": f"uid-{key}", "url": f"http://127.0.0.1/{key}.jpg", "caption": "alt",
             "page_url": "http://127.0.0.1/", "language": language, "language_score": 0.9,
             "status": "failed_to_download" if key in failed else "success",
             "drop_reason": "http_error" if key in failed else None} for key, language in keys_languages]
    return _pad_download(rows)


def _pad_download(rows: list[dict]) -> pa.Table:
    for row in rows:
        for name in schemas.DOWNLOAD.names:
            row.setdefault(name, None)
    return schemas.conform(pa.Table.from_pylist(rows, schema=schemas.DOWNLOAD), schemas.DOWNLOAD)


def _tar(samples: dict[str, dict[str, bytes]], truncate_to: int | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key, files in samples.items():
            for extension, payload in files.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    data = buffer.getvalue()
    return io.BytesIO(data[:truncate_to] if truncate_to else data)


def _blank_jpeg() -> bytes:
    return jpeg_bytes(Image.new("RGB", (200, 120), (250, 250, 250)))


@pytest.fixture(scope="module")
def english_sign() -> bytes:
    known = BY_LANGUAGE["en"]
    if missing_fonts(known):
        pytest.skip(missing_fonts(known))
    return jpeg_bytes(render(known, size=36))


@needs_tesseract
def test_bad_inputs_give_counted_reasons_and_a_row_each(english_sign):
    good = english_sign
    corrupt = good[: len(good) // 3]  # a truncated JPEG
    download = _download_rows([("000", "en"), ("001", "en"), ("002", "en"), ("003", "en"), ("004", "en"),
                               ("005", "en")], failed=("005",))
    tar = _tar({"000": {"jpg": b"thumb", "large.jpg": good}, "001": {"jpg": corrupt},
                "002": {"jpg": b"not an image at all"}, "004": {"txt": b"caption only"},
                "009": {"jpg": good}, "003": {"jpg": _blank_jpeg()}})
    table, stats = ocr_shard(download, tar, "test.tar", OcrConfig(languages=["eng"]), _installed())
    rows = {r["key"]: r for r in table.to_pylist()}
    assert list(rows) == ["000", "001", "002", "003", "004"]  # successes only, sorted; nothing dropped
    assert {k: r["ocr_status"] for k, r in rows.items()} == {
        "000": "read", "001": "decode_error", "002": "decode_error", "003": "skipped_no_text",
        "004": "missing_image"}
    assert "quick brown fox" in rows["000"]["ocr_text"] and rows["000"]["ocr_source"] == "large"
    assert rows["000"]["ocr_languages"] == ["eng"] and rows["000"]["ocr_mean_conf"] > 80
    assert all(r["ocr_error"] for k, r in rows.items() if k in ("001", "002", "004"))
    assert stats["total"] == stats["forwarded"] == 5 and stats["dropped_by_reason"] == {}
    assert stats["problems_by_reason"] == {"decode_error": 2, "missing_image": 1,
                                           "sample_not_in_download_table": 1}
    assert stats["status_counts"] == {"decode_error": 2, "missing_image": 1, "read": 1, "skipped_no_text": 1}


@needs_tesseract
def test_unreadable_tar_marks_the_rest_missing_and_is_counted(english_sign):
    download = _download_rows([("000", "en"), ("001", "en")])
    whole = _tar({"000": {"jpg": english_sign}, "001": {"jpg": english_sign}}).getvalue()
    table, stats = ocr_shard(download, io.BytesIO(whole[: len(whole) - len(english_sign) // 2 - 1024]),
                             "cut.tar", OcrConfig(languages=["eng"]), _installed())
    statuses = dict(zip(table.column("key").to_pylist(), table.column("ocr_status").to_pylist()))
    assert statuses == {"000": "read", "001": "missing_image"}
    assert "tar unreadable" in table.column("ocr_error").to_pylist()[1]
    assert stats["problems_by_reason"] == {"missing_image": 1, "tar_read_error": 1}


def _fake_tesseract(folder: Path, body: str) -> str:
    """A `tesseract` stand-in: answers --version and --list-langs like the real one, else runs `body`."""
    script = folder / "tesseract"
    script.write_text("#!/bin/sh\n"
                      'case "$1" in --version) echo "tesseract 5.3.0"; exit 0;; '
                      '--list-langs) printf "List of available languages (1):\\neng\\n"; exit 0;; esac\n'
                      f"{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize("body, status", [
    ("sleep 30", "ocr_timeout"),  # hung: stopped at the time limit
    ("kill -9 $$", "tesseract_error"),  # killed by a signal
    ("echo 'Error in pixReadStream' >&2; exit 1", "tesseract_error"),
])
def test_hung_or_killed_tesseract_is_counted_and_the_worker_goes_on(tmp_path, monkeypatch, english_sign, body,
                                                                    status):
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", _fake_tesseract(tmp_path, body))
    download = _download_rows([("000", "en"), ("001", "en")])
    tar = _tar({"000": {"jpg": english_sign}, "001": {"jpg": english_sign}})
    config = OcrConfig(languages=["eng"], time_limit=0.5)
    table, stats = ocr_shard(download, tar, "test.tar", config, ["eng"])
    assert table.column("ocr_status").to_pylist() == [status, status]
    assert stats["problems_by_reason"] == {status: 2}
    assert all(seconds < 25 for seconds in table.column("ocr_seconds").to_pylist())  # not the 30 s sleep


@needs_tesseract
def test_non_latin_text_needs_its_pack(tmp_path):
    known = BY_LANGUAGE["ru"]
    if missing_fonts(known):
        pytest.skip(missing_fonts(known))
    sign = jpeg_bytes(render(known, size=36))
    download = _download_rows([("000", "ru")])
    auto, _ = ocr_shard(download, _tar({"000": {"jpg": sign}}), "t.tar", OcrConfig(), _installed())
    english, _ = ocr_shard(download, _tar({"000": {"jpg": sign}}), "t.tar", OcrConfig(languages=["eng"]),
                           _installed())
    assert auto.column("ocr_languages").to_pylist()[0][0] == "rus"
    assert comparable(auto.column("ocr_text").to_pylist()[0]) == comparable(known.text)
    assert comparable(english.column("ocr_text").to_pylist()[0]) != comparable(known.text)


def test_sidecar_schema_and_an_empty_shard():
    table, stats = ocr_shard(_download_rows([("000", "en")], failed=("000",)), _tar({}), "empty.tar", OcrConfig(),
                             ["eng"])
    assert table.schema == schema.OCR and table.num_rows == 0
    assert stats["total"] == stats["forwarded"] == 0 and stats["problems_by_reason"] == {}


def test_configured_packs_must_be_installed():
    from webli.stages.ocr.tesseract import TesseractMissing
    with pytest.raises(TesseractMissing, match="klingon"):
        ocr_shard(_download_rows([]), _tar({}), "t.tar", OcrConfig(languages=["eng", "klingon"]), ["eng"])


def test_ocr_config_keys_are_checked(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"output": str(tmp_path), "ocr": {"langauges": ["eng"]}}))
    with pytest.raises(ConfigError, match="ocr.langauges: unknown key"):
        load_config(path)
    assert load_config(None, [f"output={tmp_path}", "ocr.languages=[eng, deu]"]).ocr.languages == ["eng", "deu"]


def _installed() -> list[str]:
    return sorted(pytesseract.get_languages(config=""))


@needs_tesseract
def test_ocr_task_writes_sidecar_then_stats_and_skips_done_shards(tmp_path):
    from webli.pipeline.ocr import ocr_task, sum_ocr_stats
    from webli.pipeline.storage import StageDir

    config = load_config(None, [f"output={tmp_path}"])
    download = StageDir(str(tmp_path), "download")
    for shard, keys in ((0, ["00", "01"]), (1, ["10"])):
        download.write_table(f"{shard:05d}.parquet", _download_rows([(k, "en") for k in keys]), schemas.DOWNLOAD)
        download.write_stats(shard, {"total": len(keys), "forwarded": len(keys), "dropped_by_reason": {}})
    download.write_bytes("00000.tar", _tar({"00": {"jpg": _blank_jpeg()}, "01": {"jpg": _blank_jpeg()}}).getvalue())
    first = [ocr_task(0, config), ocr_task(1, config)]  # shard 1 has no tar at all
    sidecar = tmp_path / "ocr" / "00000.parquet"
    written = sidecar.stat().st_mtime_ns
    assert ocr_task(0, config) == json.loads((tmp_path / "ocr" / "00000_stats.json").read_text())
    assert sidecar.stat().st_mtime_ns == written
    total = sum_ocr_stats(first)
    assert total["total"] == total["forwarded"] == 3 and total["dropped"] == 0
    assert total["status_counts"] == {"skipped_no_text": 2, "missing_image": 1}
    assert total["problems_by_reason"] == {"missing_image": 1, "tar_read_error": 1}


TSV_HEADER = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"


def test_image_without_words_is_read_again_with_a_margin(tmp_path, monkeypatch, english_sign):
    # The stand-in finds a word only in the margin copy (a .pgm), at (40, 40) in its coordinates.
    body = (f'case "$1" in *.pgm) printf "{TSV_HEADER}\\n5\\t1\\t1\\t1\\t1\\t1\\t40\\t40\\t50\\t20\\t91.5\\tHello\\n"'
            f' > "$2.tsv";; *) printf "{TSV_HEADER}\\n" > "$2.tsv";; esac; echo "$@" >> {tmp_path}/calls')
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", _fake_tesseract(tmp_path, body))
    download = _download_rows([("000", "en")])
    table, stats = ocr_shard(download, _tar({"000": {"jpg": english_sign}}), "t.tar",
                             OcrConfig(languages=["eng"], margin=32), ["eng"])
    row = table.to_pylist()[0]
    assert row["ocr_text"] == "Hello" and row["ocr_margin"] == 32
    assert (row["ocr_words"][0]["left"], row["ocr_words"][0]["top"]) == (8, 8)  # back in the image's pixels
    assert stats["read_again_with_margin"] == 1
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and "--psm 11" in calls[0] and "--psm 6" in calls[1]
    table, _ = ocr_shard(download, _tar({"000": {"jpg": english_sign}}), "t.tar",
                         OcrConfig(languages=["eng"], margin=0), ["eng"])
    assert table.column("ocr_word_count").to_pylist() == [0] and table.column("ocr_margin").to_pylist() == [0]


@needs_tesseract
def test_framed_demo_sign_is_read():
    import random

    from webli.demo.content import SIGN_TEXTS
    from webli.demo.images import render_sign

    sign = next(s for s in SIGN_TEXTS if (s.lang, s.slug) == ("de", "feeding"))
    image = render_sign(sign, random.Random(0))
    image = image.resize((512, round(image.height * 512 / image.width)))  # the download's larger copy
    table, _ = ocr_shard(_download_rows([("000", "de")]), _tar({"000": {"jpg": jpeg_bytes(image)}}), "t.tar",
                         OcrConfig(), _installed())
    row = table.to_pylist()[0]
    assert comparable(row["ocr_text"]).strip("|") == comparable(sign.text)
    assert all(0 <= w["left"] and w["left"] + w["width"] <= image.width for w in row["ocr_words"])
