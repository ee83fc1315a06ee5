"""OCR stage: the text check on real web images, speed against bare tesseract, resolution, accuracy.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_ocr.py                       # every part, report to results/ocr.md
    .venv/bin/python benchmarks/bench_ocr.py --speed-images 100 --reps 1
    .venv/bin/python benchmarks/bench_ocr.py --parts 4          # one part; the others from --work

Real shards: the realweb WARC is crawled and downloaded once (`webli crawl`,
`webli download` with `download.large_copy_size: 1024`) under --work; every
part reuses them.

1. Text check on every downloaded image: `webli ocr` with `ocr.text_check`
   off (full OCR of every image; its own output root sharing the download
   folder; finished shards are kept across runs), then the stage's own
   check (`decode_gray` + `text_score`, the decision `ocr_sample` makes) on
   every image. Reported: images the check skips, and the words full OCR
   finds on them (all words, and words of confidence >= 60) as a share of
   every word full OCR finds.
2. Speed, in this process, one image at a time, on a random subset: the
   stage's `ocr_sample` with the check off and no margin retry (exactly the
   tesseract work of the baseline), with the check off, and with the
   defaults (check on), against the bare `tesseract` command line (OSD with
   `--psm 0`, then OCR with the packs the stage chose and the same `--psm`,
   TSV out) on the same image files. All are interleaved per image,
   `--reps` times. CPU seconds (this process + its children) give images/s
   per core, robust to the load of a shared machine; wall seconds are shown
   too. Peak RSS of the largest tesseract process.
3. Resolution: on the same subset, words read from the 256 px thumbnail
   (`ocr.use_large_copy: false`) against the larger copy (1024 px), both
   read here with the check off.
4. Character error rate (Levenshtein distance / reference length, after NFC
   and whitespace removal) on text rendered with Debian's Noto fonts in
   every script whose font is installed (four lines of 20 px text in a
   1024 x 576 window, like a screenshot), read from the 1024 px image and
   from its 256 px thumbnail,
   with the alt text's language right, wrong (`en`), and with `eng` only;
   plus scikit-image's `page` (a photographed book page; transcribed below).

Nothing here contacts any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import common  # noqa: E402  (sets the quiet environment first)
from common import TreePeakRSS, fmt_range, log, md_table, mib  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PAGE_TEXT = ("Region-based segmentation\nLet us first determine markers of the coins and the\nbackground. These "
             "markers are pixels that we can label\nunambiguously as either object or background. Here,\nthe "
             "markers are found at the two extreme parts of the\nhistogram of grey values:\n"
             ">>> markers = np.zeros_like(coins)")


def write_yaml(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def webli(*args: str) -> None:
    """Run the CLI; stop the benchmark if it fails."""
    result = subprocess.run([sys.executable, "-m", "webli.pipeline.cli", *args], cwd=common.PROJECT_DIR,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"webli {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def realweb_shards(work: Path) -> Path:
    """Crawl + download the realweb WARC once (large copies of 1024 px); returns the download folder."""
    common.require_warc()
    root = work / "realweb"
    config = write_yaml(work / "realweb.yaml", {
        "output": str(root),
        "crawl": {"warc": [str(common.REALWEB_WARC)], "allow_private_networks": True},
        "download": {"large_copy_size": 1024, "shard_size": 1000, "timeout": 10},
        "cluster": {"workers": 2}})
    if not list((root / "download").glob("*_stats.json")):
        log("crawl + download of the realweb WARC (once)")
        webli("run", "-c", str(config), "--until", "download")
    return root / "download"


def ocr_run(work: Path, download: Path, name: str, ocr: dict) -> tuple[list[dict], float, str]:
    """`webli ocr` into its own root (download folder linked; finished shards are kept).

    Returns the sidecar rows, the summed shard durations (s) from the stats
    JSONs, and the peak RSS of a Dask worker ('n/a' when every shard was
    already done).
    """
    import pyarrow.parquet as pq

    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    link = root / "download"
    if not link.exists():
        link.symlink_to(download)
    config = write_yaml(work / f"{name}.yaml", {"output": str(root), "ocr": ocr, "cluster": {"workers": 2}})
    proc = subprocess.Popen([sys.executable, "-m", "webli.pipeline.cli", "ocr", "-c", str(config)],
                            cwd=common.PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreePeakRSS(proc.pid) as sampler:
        _, stderr = proc.communicate()
    if proc.returncode:
        sys.exit(f"webli ocr ({name}) failed:\n{stderr[-3000:]}")
    rows = [r for path in sorted((root / "ocr").glob("[0-9]*.parquet")) for r in pq.read_table(path).to_pylist()]
    durations = sum(json.loads(p.read_text())["duration_s"] for p in (root / "ocr").glob("*_stats.json"))
    workers = sampler.workers()
    return rows, durations, f"{mib(max(workers.values())):,.0f} MiB" if workers else "n/a (shards already done)"


# --- 1. the text check on every image ---------------------------------------------------

def confident(row: dict, minimum: float = 60.0) -> int:
    return sum(1 for word in row["ocr_words"] if word["conf"] >= minimum)


def check_decisions(download: Path) -> dict[str, tuple[float, bool]]:
    """(score, skipped) of the stage's text check for every image: the same decode and check `ocr_sample` runs."""
    from webli.pipeline.config import OcrConfig
    from webli.stages.ocr.shard import decode_gray
    from webli.stages.ocr.textcheck import TextCheckParams, text_score

    threshold = OcrConfig().text_threshold
    decisions = {}
    for key, sample in load_samples(download, use_large_copy=True).items():
        score = text_score(decode_gray(sample.image), TextCheckParams())
        decisions[key] = (score, score < threshold)
    return decisions


def bench_text_check(work: Path, download: Path) -> tuple[str, dict[str, dict]]:
    log("text check: full OCR of every image (`webli ocr`, check off), then the check on every image")
    everything, full_time, full_rss = ocr_run(work, download, "ocr-full", {"text_check": False})
    # Images tesseract did not finish (time limit, under this machine's load) have unknown words: left out.
    unfinished = Counter(r["ocr_status"] for r in everything if r["ocr_status"] != "read")
    full = [r for r in everything if r["ocr_status"] == "read"]
    by_key = {r["key"]: r for r in full}
    started = time.process_time()
    decisions = check_decisions(download)
    check_ms = 1000 * (time.process_time() - started) / max(len(decisions), 1)
    skipped = sorted(k for k, (_, skip) in decisions.items() if skip and k in by_key)
    words = sum(r["ocr_word_count"] for r in full)
    good = sum(confident(r) for r in full)
    lost = sum(by_key[k]["ocr_word_count"] for k in skipped)
    lost_good = sum(confident(by_key[k]) for k in skipped)
    with_words = sum(1 for r in full if r["ocr_word_count"])
    with_good = sum(1 for r in full if confident(r))
    skipped_with_words = sum(1 for k in skipped if by_key[k]["ocr_word_count"])
    skipped_with_good = sum(1 for k in skipped if confident(by_key[k]))
    seconds_all = sum(r["ocr_seconds"] for r in full)
    seconds_skipped = sum(by_key[k]["ocr_seconds"] for k in skipped)
    table = md_table(
        ["", "value"],
        [["images (successful downloads)", f"{len(everything):,}"],
         ["... not read to the end by full OCR, left out below", ", ".join(
             f"{status} {count}" for status, count in sorted(unfinished.items())) or "none"],
         ["images read by full OCR", f"{len(full):,}"],
         ["images where full OCR finds >= 1 word / >= 1 word of confidence >= 60",
          f"{with_words:,} / {with_good:,}"],
         ["images the check skips", f"**{len(skipped):,} ({len(skipped) / max(len(full), 1):.1%})**"],
         ["... on which full OCR finds >= 1 word / >= 1 word of confidence >= 60",
          f"{skipped_with_words:,} / {skipped_with_good:,}"],
         ["words full OCR finds: all / confidence >= 60", f"{words:,} / {good:,}"],
         ["words lost on skipped images: all", f"{lost:,} (**{lost / max(words, 1):.2%}**)"],
         ["words lost on skipped images: confidence >= 60", f"{lost_good:,} (**{lost_good / max(good, 1):.2%}**)"],
         ["share of full OCR's per-image time spent on the skipped images",
          f"{seconds_skipped / max(seconds_all, 1e-9):.1%}"],
         ["check cost per image (decode to gray + check, CPU)", f"{check_ms:.1f} ms"],
         ["`webli ocr` (check off): shard task time summed / peak RSS of a Dask worker",
          f"{full_time:,.0f} s / {full_rss}"]])
    examples = sorted(((confident(by_key[k]), by_key[k]["ocr_word_count"], k) for k in skipped), reverse=True)[:5]
    detail = "; ".join(f"{k} ({n} words, {g} confident): {by_key[k]['ocr_text'][:50]!r}"
                       for g, n, k in examples if n)
    return table + (f"\n\nSkipped images losing the most words: {detail}." if detail else ""), by_key


# --- 2. speed against bare tesseract --------------------------------------------------

def cpu_now() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(function, *args):
    cpu, wall = cpu_now(), time.perf_counter()
    result = function(*args)
    return result, cpu_now() - cpu, time.perf_counter() - wall


def bare_tesseract(path: str, packs: list[str], psm: int, out_base: str, osd: bool) -> None:
    """The obvious baseline: the tesseract command line itself (OSD when auto, then OCR to TSV)."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    if osd:
        subprocess.run(["tesseract", path, "-", "--psm", "0"], capture_output=True, env=env)
    if packs:
        subprocess.run(["tesseract", path, out_base, "-l", "+".join(packs), "--psm", str(psm), "tsv"],
                       capture_output=True, env=env)


def load_samples(download: Path, use_large_copy: bool) -> dict:
    """Every successful sample of the realweb shards, through the stage's own tar reading."""
    import pyarrow.parquet as pq

    from webli.stages.ocr.shard import JoinTally, join_samples, tar_samples

    samples = {}
    for table_path in sorted(download.glob("[0-9]*.parquet")):
        rows = [r for r in pq.read_table(table_path).to_pylist() if r["status"] == "success"]
        tar = table_path.with_suffix(".tar")
        with open(tar, "rb") as stream:
            tally = JoinTally()
            for sample in join_samples(rows, tar_samples(stream, str(tar), tally.tar_errors), use_large_copy,
                                       tally):
                samples[sample.key] = sample
    return samples


def bench_speed(download: Path, n: int, reps: int, seed: int, by_key: dict) -> str:
    from webli.pipeline.config import OcrConfig
    from webli.stages.ocr.shard import Reader, ocr_sample
    from webli.stages.ocr.tesseract import installed_packs, require_single_thread

    require_single_thread()
    installed = frozenset(installed_packs())
    samples = load_samples(download, use_large_copy=True)
    keys = sorted(samples)
    random.Random(seed).shuffle(keys)
    keys = sorted(keys[:n])
    work = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    variants = {  # name -> OcrConfig; "same" does exactly the tesseract work of the bare command
        "same": OcrConfig(text_check=False, margin=0), "off": OcrConfig(text_check=False),
        "on": OcrConfig(text_check=True)}
    readers = {name: Reader(config, installed, work) for name, config in variants.items()}
    names = ["bare", *variants]
    totals = {name: {"cpu": [], "wall": []} for name in names}
    log(f"speed: {len(keys)} images x {reps} rep(s), interleaved")
    sampler = TreePeakRSS(os.getpid()).__enter__()
    for rep in range(reps):
        cpu = dict.fromkeys(names, 0.0)
        wall = dict.fromkeys(names, 0.0)
        for key in keys:
            sample = samples[key]
            row, cpu["same"], wall["same"] = _add(timed(ocr_sample, sample, readers["same"]), cpu["same"],
                                                  wall["same"])
            path = work / f"bare-{key}.{sample.extension}"
            path.write_bytes(sample.image)
            _, cpu["bare"], wall["bare"] = _add(timed(bare_tesseract, str(path), row["ocr_languages"], 11,
                                                      str(work / "bare-out"), True), cpu["bare"], wall["bare"])
            path.unlink()
            for name in ("off", "on"):
                _, cpu[name], wall[name] = _add(timed(ocr_sample, sample, readers[name]), cpu[name], wall[name])
        for name in names:
            totals[name]["cpu"].append(len(keys) / cpu[name])
            totals[name]["wall"].append(len(keys) / wall[name])
        log(f"  rep {rep + 1}: " + ", ".join(f"{k} {len(keys) / cpu[k]:.2f} img/CPU-s" for k in names))
    sampler.__exit__(None, None, None)
    shutil.rmtree(work, ignore_errors=True)
    tesseract_kib = max((kib for pid, kib in sampler.peak_kib.items()
                         if sampler.cmdline.get(pid, "").startswith("tesseract")), default=0)
    base = totals["bare"]["cpu"]
    labels = {"bare": "bare `tesseract` CLI (OSD + OCR, same packs)",
              "same": "`ocr_sample`, check off, no margin retry (the same tesseract work)",
              "off": "`ocr_sample`, check off (defaults otherwise)", "on": "`ocr_sample`, defaults (check on)"}
    rows = [[labels[name], fmt_range(totals[name]["cpu"], 2), fmt_range(totals[name]["wall"], 2),
             fmt_range([b / o for b, o in zip(base, totals[name]["cpu"])], 2)] for name in names]
    table = md_table(["", "images/s per core (CPU)", "images/s (wall, 1 process)", "CPU time per image / bare"],
                     rows)
    overhead = [b / o - 1 for b, o in zip(base, totals["same"]["cpu"])]
    speedup = [on / off for on, off in zip(totals["on"]["cpu"], totals["off"]["cpu"])]
    words = sum(by_key[k]["ocr_word_count"] for k in keys if k in by_key)
    return (f"{table}\n\nOverhead of the stage over bare tesseract doing the same work: **{fmt_range(overhead, 3)}** "
            f"of bare CPU time per image (decoding, text check off, temp file, pytesseract, TSV parsing). The check "
            f"makes the stage **{fmt_range(speedup, 2)}x** faster on this subset ({len(keys)} random images, "
            f"{words:,} words by full OCR). Largest tesseract process (VmHWM, sampled every 20 ms): "
            f"{mib(tesseract_kib):,.0f} MiB; a Dask worker's own peak is in part 1.")


def _add(result, cpu_total, wall_total):
    value, cpu, wall = result
    return value, cpu_total + cpu, wall_total + wall


# --- 3. resolution: thumbnail against the larger copy -------------------------------------

def bench_resolution(download: Path, n: int, seed: int) -> str:
    from webli.pipeline.config import OcrConfig
    from webli.stages.ocr.shard import Reader, ocr_sample
    from webli.stages.ocr.tesseract import installed_packs

    installed = frozenset(installed_packs())
    sources = {"thumbnail": load_samples(download, use_large_copy=False),
               "large": load_samples(download, use_large_copy=True)}
    keys = sorted(sources["large"])
    random.Random(seed).shuffle(keys)
    keys = sorted(keys[:n])
    log(f"resolution: {len(keys)} images, thumbnail and larger copy")
    work = Path(tempfile.mkdtemp(prefix="bench-ocr-res-"))
    reader = Reader(OcrConfig(text_check=False), installed, work)
    rows = []
    for name, source in (("256 px thumbnail (`border` resize)", "thumbnail"),
                         ("larger copy (longest side <= 1024 px)", "large")):
        read = [ocr_sample(sources[source][k], reader) for k in keys]
        words = sum(r["ocr_word_count"] for r in read)
        good = sum(confident(r) for r in read)
        confs = [w["conf"] for r in read for w in r["ocr_words"]]
        with_text = sum(1 for r in read if confident(r))
        unfinished = sum(1 for r in read if r["ocr_status"] != "read")
        rows.append([name, f"{words:,}", f"{good:,}", f"{sum(confs) / max(len(confs), 1):.1f}", f"{with_text:,}",
                     f"{unfinished}"])
    shutil.rmtree(work, ignore_errors=True)
    return md_table(["image read", "words", "words conf >= 60", "mean word conf", "images with a conf >= 60 word",
                     "not finished (time limit)"], rows) + \
        f"\n\n{len(keys)} random realweb images (the same for both rows, the same subset as part 2), check off."


# --- 4. character error rate on known text ------------------------------------------------

def thumbnail_of(image, size: int = 256):
    """What the download stage keeps: img2dataset's `border` resize to size x size."""
    from PIL import Image

    scale = size / max(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return canvas


SCREEN_SIZE, SCREEN_LINES, SCREEN_FONT = (1024, 576), 4, 20


def screenshot(known, render):
    """A screenshot-like image: `known.text` on SCREEN_LINES lines at UI size (20 px) on a 1024 x 576 window."""
    from dataclasses import replace

    from PIL import Image

    text = render(replace(known, text="\n".join([known.text] * SCREEN_LINES)), size=SCREEN_FONT, padding=8)
    window = Image.new("RGB", SCREEN_SIZE, (250, 250, 250))
    window.paste(text, (48, 64))
    return window


def cer(read: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein
    from test_ocr_render import comparable

    reference = comparable(reference)
    return Levenshtein.distance(comparable(read), reference) / max(len(reference), 1)


def bench_cer() -> tuple[str, list[str]]:
    import numpy as np
    from PIL import Image
    from skimage import data as skdata
    from test_ocr_render import KNOWN_TEXTS, jpeg_bytes, missing_fonts, render

    from webli.pipeline.config import OcrConfig
    from webli.stages.ocr.shard import Reader, Sample, ocr_sample
    from webli.stages.ocr.tesseract import installed_packs

    installed = frozenset(installed_packs())
    work = Path(tempfile.mkdtemp(prefix="bench-ocr-cer-"))
    auto, english = (Reader(OcrConfig(text_check=False, **extra), installed, work)
                     for extra in ({}, {"languages": ["eng"]}))
    skipped, rows, scripts = [], [], set()

    def read(image, language, reader) -> dict:
        return ocr_sample(Sample("k", "u", language, jpeg_bytes(image), "large"), reader)

    cases = [(k.language, k.script, "\n".join([k.text] * SCREEN_LINES), screenshot(k, render)) for k in KNOWN_TEXTS
             if not missing_fonts(k)]
    skipped = [f"{k.language} ({missing_fonts(k)})" for k in KNOWN_TEXTS if missing_fonts(k)]
    cases.append(("en", "Latin (photo)", PAGE_TEXT, Image.fromarray(np.asarray(skdata.page())).convert("RGB")))
    for language, script, text, image in cases:
        log(f"CER: {language}")
        right = read(image, language, auto)
        rows.append([f"{language} ({script})", "+".join(right["ocr_languages"]), f"{cer(right['ocr_text'], text):.2f}",
                     f"{cer(read(thumbnail_of(image), language, auto)['ocr_text'], text):.2f}",
                     f"{cer(read(image, 'en', auto)['ocr_text'], text):.2f}",
                     f"{cer(read(image, None, english)['ocr_text'], text):.2f}"])
        scripts.add(script)
    shutil.rmtree(work, ignore_errors=True)
    table = md_table(["text (script)", "packs (auto)", "CER auto, large", "CER auto, 256 px thumbnail",
                      "CER auto, alt text says `en`", "CER `eng` only"], rows)
    return table + f"\n\n{len(scripts)} scripts.", skipped


# --- report ------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-bench-ocr"))
    parser.add_argument("--speed-images", type=int, default=60, help="random images for parts 2 and 3")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="1,2,3,4",
                        help="parts to run; the others are taken from an earlier run's --work, if any")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "ocr.md")
    return parser.parse_args(argv)


TITLES = {"1": "1. Text check on the realweb images", "2": "2. Speed against the bare tesseract command",
          "3": "3. Resolution: thumbnail against the larger copy", "4": "4. Character error rate on known text"}


def run_part(part: str, args, state: dict) -> str:
    """One part's Markdown; parts 2 and 3 use part 1's full-OCR rows (read back from --work)."""
    if part == "1":
        table, state["by_key"] = bench_text_check(args.work, state["download"])
        return table
    if "by_key" not in state:
        state["by_key"] = {r["key"]: r for r in ocr_run(args.work, state["download"], "ocr-full",
                                                        {"text_check": False})[0]}
    if part == "2":
        return bench_speed(state["download"], args.speed_images, args.reps, args.seed, state["by_key"])
    return bench_resolution(state["download"], args.speed_images, args.seed)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    from webli.stages.ocr.tesseract import installed_packs

    note = common.machine_note(("pytesseract", "opencv-python-headless", "pillow", "rapidfuzz"))
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    state: dict = {}
    for part in args.parts.split(","):
        if part == "4":
            table, skipped = bench_cer()
            table += "\n\n" + (f"Not rendered here: {'; '.join(skipped)}." if skipped
                                 else "Every script's font was installed.")
        else:
            state.setdefault("download", realweb_shards(args.work))
            table = run_part(part, args, state)
        (args.work / f"part-{part}.md").write_text(f"{note}\n\n{table}", encoding="utf-8")
    sections = ["# OCR stage: measured",
                f"Reproduce: `{common.command_line()}` ({version}; {len(installed_packs())} packs installed). "
                "Defaults: `ocr.languages: auto`, `psm` 11, larger copy read, check threshold 1 word-shaped blob. "
                "Each part starts with the machine note of the run that measured it."]
    for part, title in TITLES.items():
        cached = args.work / f"part-{part}.md"
        sections += [f"## {title}", cached.read_text(encoding="utf-8") if cached.exists() else "(not run)"]
    report = "\n\n".join(sections) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
