"""Score-stage throughput per core against a bare open_clip encode loop, for a tiny model and ViT-B-32.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_score.py                  # both models, 3 repetitions
    .venv/bin/python benchmarks/bench_score.py --reps 5 --models tiny

Input: real download shards of the realweb corpus (`webli crawl` of the
realweb WARC, then `webli download`), made under --work if not there yet.
Models: the shipped `webli-tiny` config (64 px ViT) on every shard, and
open_clip's ViT-B-32 on the first shard cut into shards of 64 (same bytes),
both with random weights saved as checkpoints (speed does not depend on the
weights).

In one process, one torch thread (one core), `--reps` times, the two
alternating shard by shard (so both see the same background load):
  - stage: `score_task` on the shards, as a Dask worker runs it (read the
    download Parquet, stream the tar, decode, preprocess, tokenise, encode in
    batches, write the sidecar Parquet and stats JSON);
  - bare loop: the same images (bytes already in memory) and alt texts through
    PIL decode, the model's preprocess, tokenizer, `encode_image` /
    `encode_text` and a cosine, in batches of the same size: what a script
    that calls open_clip directly does.
The ratio stage / bare loop is the stage's efficiency (target >= 0.8).
Then `webli score` itself (LocalCluster, 2 worker processes) on the same
shards, once: samples/s per core including cluster start and model loading,
and the peak RSS of each Dask worker (VmHWM).

The Markdown report goes to stdout and benchmarks/results/score.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (sets the quiet environment first)
from common import TreePeakRSS, fmt_range, log, md_table, mib  # noqa: E402

VENV_BIN = Path(sys.executable).parent
WEBLI = str(VENV_BIN / "webli")
BATCH = 64
MODELS = {"tiny": "webli-tiny", "vit-b-32": "ViT-B-32"}


def write_yaml(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def make_shards(work: Path, shard_size: int) -> Path:
    """Real download shards of the realweb WARC under work/realweb (made once)."""
    output = work / "realweb"
    if (output / "download").is_dir() and any((output / "download").glob("*_stats.json")):
        return output
    common.require_warc()
    config = write_yaml(work / "download.yaml", {
        "output": str(output), "crawl": {"warc": [str(common.REALWEB_WARC)], "allow_private_networks": True},
        "download": {"shard_size": shard_size, "timeout": 10.0}, "cluster": {"workers": 2}})
    for stage in ("crawl", "download"):
        log(f"webli {stage} on the realweb WARC")
        subprocess.run([WEBLI, stage, "-c", str(config)], check=True, cwd=common.PROJECT_DIR)
    return output


def small_shards(shards: Path, work: Path, source_id: int, size: int) -> Path:
    """The successes of one download shard cut into shards of `size` (same bytes), under work/small-SIZE.

    Lets the slow model alternate stage and bare loop every few seconds, not every few minutes.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import webdataset as wds

    from webli import schemas
    from webli.pipeline.storage import StageDir
    from webli.stages.score import iter_tar_images

    root = work / f"small-{size}"
    store = StageDir(str(root), "download")
    if store.done_shards():
        return root
    rows = pq.read_table(shards / "download" / f"{source_id:05d}.parquet")
    rows = rows.filter(pc.equal(rows.column("status"), "success")).sort_by("key")
    with open(shards / "download" / f"{source_id:05d}.tar", "rb") as f:
        images = dict(iter_tar_images(f))
    for shard_id, start in enumerate(range(0, rows.num_rows, size)):
        chunk = rows.slice(start, size)
        with store.atomic_path(f"{shard_id:05d}.tar") as tmp, open(tmp, "wb") as out, \
                wds.TarWriter(out, mtime=0) as writer:
            for row in chunk.to_pylist():
                writer.write({"__key__": row["key"], "jpg": images[row["key"]], "txt": row["caption"]})
        store.write_table(f"{shard_id:05d}.parquet", chunk, schemas.DOWNLOAD)
        store.write_stats(shard_id, {"stage": "download", "total": chunk.num_rows, "forwarded": chunk.num_rows,
                                     "dropped_by_reason": {}})
    return root


def make_checkpoint(work: Path, name: str) -> Path:
    """A folder with model_config.json + model.pt (random weights) of an open_clip or shipped model."""
    import open_clip
    import torch

    from webli.stages.train.models import model_config_record, register_model_config

    folder = work / "models" / name
    if (folder / "model.pt").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    registered = register_model_config(name)
    torch.manual_seed(0)
    model = open_clip.create_model(registered)
    record = model_config_record(registered)
    record["name"] = f"bench-{name}"  # a built-in name cannot be re-registered with a config file
    (folder / "model_config.json").write_text(json.dumps(record))
    torch.save({"state_dict": model.state_dict()}, folder / "model.pt")
    return folder


def shard_inputs(download: Path, shard_ids: list[int]) -> list[tuple[list[bytes], list[str]]]:
    """Per shard: (image bytes, alt texts) of the successful samples, read into memory for the bare loop."""
    import pyarrow.parquet as pq

    from webli.stages.score import iter_tar_images

    out = []
    for shard_id in shard_ids:
        rows = pq.read_table(download / f"{shard_id:05d}.parquet").to_pylist()
        captions = {r["key"]: r["caption"] for r in rows if r["status"] == "success"}
        with open(download / f"{shard_id:05d}.tar", "rb") as f:
            images = [(key, data) for key, data in iter_tar_images(f) if key in captions]
        out.append(([data for _, data in images], [captions[key] for key, _ in images]))
    return out


def bare_loop(model, preprocess, tokenizer, inputs, batch: int) -> int:
    """open_clip used directly: decode, preprocess, tokenise, encode, cosine; returns samples scored."""
    import torch
    from PIL import Image

    done = 0
    with torch.inference_mode():
        for images, texts in inputs:
            for start in range(0, len(images), batch):
                pixels = torch.stack([preprocess(Image.open(io.BytesIO(data)).convert("RGB"))
                                      for data in images[start:start + batch]])
                image_features = model.encode_image(pixels, normalize=True)
                text_features = model.encode_text(tokenizer(texts[start:start + batch]), normalize=True)
                done += len((image_features * text_features).sum(-1).tolist())
    return done


def stage_run(config, spec, shard_id: int) -> int:
    """`score_task` on one shard (its sidecar and stats removed first, so the shard is scored again)."""
    from webli.pipeline.score import score_task

    for path in (Path(config.output) / "score").glob(f"{shard_id:05d}*"):
        path.unlink()
    return score_task(shard_id, config, spec)["scored"]


def stage_root(work: Path, shards: Path, name: str) -> Path:
    """An output root whose download/ is the given shards (symlinked), for the stage's own sidecars."""
    root = work / f"stage-{name}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "download").symlink_to(shards / "download")
    return root


def measure_model(work: Path, shards: Path, name: str, shard_ids: list[int], reps: int) -> dict:
    import torch

    from webli.pipeline.config import validate_config
    from webli.pipeline.score import resolve_scoring_model, worker_scorer

    torch.set_num_threads(1)
    folder = make_checkpoint(work, MODELS[name])
    root = stage_root(work, shards, name)
    config = validate_config({"output": str(root), "score": {"model": str(folder), "batch_size": BATCH,
                                                             "device": "cpu"}})
    spec = resolve_scoring_model(config)
    scorer = worker_scorer(spec)  # loaded once, as in a worker
    inputs = shard_inputs(shards / "download", shard_ids)
    samples = sum(len(images) for images, _ in inputs)
    log(f"{name}: {samples} samples in {len(shard_ids)} shard(s), {reps} repetitions")
    bare_loop(scorer.model, scorer.preprocess, scorer.tokenizer, [(inputs[0][0][:BATCH], inputs[0][1][:BATCH])],
              BATCH)  # warm-up
    rates = {"stage": [], "bare": []}
    for rep in range(reps):
        seconds, scored = {"stage": 0.0, "bare": 0.0}, {"stage": 0, "bare": 0}
        for i, shard_id in enumerate(shard_ids):  # alternate shard by shard: both modes see the same load
            for mode in ("stage", "bare") if (rep + i) % 2 == 0 else ("bare", "stage"):
                started = time.perf_counter()
                if mode == "stage":
                    scored[mode] += stage_run(config, spec, shard_id)
                else:
                    scored[mode] += bare_loop(scorer.model, scorer.preprocess, scorer.tokenizer, [inputs[i]], BATCH)
                seconds[mode] += time.perf_counter() - started
        for mode in rates:
            rates[mode].append(scored[mode] / seconds[mode])
        log(f"  {name} rep {rep}: stage {rates['stage'][-1]:.1f}/s, bare loop {rates['bare'][-1]:.1f}/s")
    ratios = [s / b for s, b in zip(rates["stage"], rates["bare"])]
    params = sum(p.numel() for p in scorer.model.parameters())
    return {"name": name, "samples": samples, "params": params, "rates": rates, "ratios": ratios,
            "folder": folder, "peak_kib": _self_peak_kib()}


def _self_peak_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cli_run(work: Path, shards: Path, folder: Path, name: str, workers: int) -> dict:
    """`webli score` on every shard with a LocalCluster: samples/s per core and worker peak RSS."""
    root = work / f"cli-{name}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "download").symlink_to(shards / "download")
    config = write_yaml(work / f"cli-{name}.yaml", {
        "output": str(root), "score": {"model": str(folder), "batch_size": BATCH, "device": "cpu"},
        "cluster": {"workers": workers}})
    started = time.perf_counter()
    process = subprocess.Popen([WEBLI, "score", "-c", str(config)], cwd=common.PROJECT_DIR,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreePeakRSS(process.pid) as peaks:
        out, err = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"webli score failed: {err[-2000:]}")
    stats = [json.loads(p.read_text()) for p in (root / "score").glob("*_stats.json")]
    scored = sum(s["scored"] for s in stats)
    return {"samples": scored, "seconds": elapsed, "per_core": scored / elapsed / workers,
            "in_tasks": scored / sum(s["duration_s"] for s in stats),
            "worker_peak_mib": max(map(mib, peaks.workers().values()), default=0.0),
            "driver_peak_mib": mib(peaks.root())}


def report(results: list[dict], cli: dict[str, dict], args) -> str:
    rows = []
    for r in results:
        rows.append([r["name"], f"{r['params'] / 1e6:.1f} M", r["samples"], fmt_range(r["rates"]["stage"]),
                     fmt_range(r["rates"]["bare"]), fmt_range(r["ratios"], 2)])
    throughput = md_table(["model", "parameters", "samples", "stage samples/s/core", "bare loop samples/s/core",
                           "ratio stage / bare"], rows)
    cli_rows = [[name, c["samples"], f"{c['seconds']:.1f}", f"{c['per_core']:.1f}", f"{c['in_tasks']:.1f}",
                 f"{c['worker_peak_mib']:.0f}", f"{c['driver_peak_mib']:.0f}"] for name, c in cli.items()]
    cli_table = md_table(["model", "samples", "wall s", "samples/s/core (whole command)",
                          "samples/s/core (in shard tasks)", "worker peak RSS MiB", "driver peak RSS MiB"], cli_rows)
    bench_peak = max((r["peak_kib"] for r in results), default=0)
    return "\n".join([
        "# Score stage benchmark", "",
        common.machine_note(("torch", "open_clip_torch", "pillow", "pyarrow")), "",
        f"Command: `{common.command_line()}`", "",
        f"Input: real download shards of the realweb corpus (256 px JPEG, alt texts in many languages): every "
        f"shard for the tiny model, the first one cut into shards of {args.vit_shard_size} for ViT-B-32; batch "
        f"size {BATCH}; random weights (speed does not depend on them); one torch thread.", "",
        "## Stage vs a bare open_clip encode loop (same process, same images, interleaved)", "",
        throughput, "",
        "The stage reads the download Parquet and tar, decodes, preprocesses, tokenises, encodes, and writes the "
        "sidecar; the bare loop starts from image bytes already in memory. Median (min-max) over "
        f"{args.reps} repetitions. Peak RSS of this benchmark process: {mib(bench_peak):.0f} MiB.", "",
        "## `webli score` end to end (LocalCluster, 2 worker processes, once)", "",
        cli_table, "",
        "Whole command: samples / wall / workers, with Python and Dask start-up, the driver's model check and each "
        "worker's model loading (most of the wall time on a few shards). In shard tasks: samples / the summed "
        "`duration_s` of the shard stats (see score_dask.md for the allocator setting this depends on).",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-bench-score"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--shard-size", type=int, default=500, help="download shard size if shards are made")
    parser.add_argument("--vit-shard-size", type=int, default=64,
                        help="ViT-B-32 (slow on CPU) scores the first download shard cut into shards of this size")
    parser.add_argument("--shards", type=Path, help="an existing output root with download/ shards")
    parser.add_argument("--no-cli", action="store_true", help="skip the `webli score` runs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    shards = args.shards or make_shards(args.work, args.shard_size)
    all_ids = sorted(int(p.name[:5]) for p in (shards / "download").glob("*_stats.json"))
    results, cli = [], {}
    for name in args.models:
        if name == "tiny":
            results.append(measure_model(args.work, shards, name, all_ids, args.reps))
        else:
            small = small_shards(shards, args.work, all_ids[0], args.vit_shard_size)
            ids = sorted(int(p.name[:5]) for p in (small / "download").glob("*_stats.json"))
            results.append(measure_model(args.work, small, name, ids, args.reps))
    if not args.no_cli and "tiny" in args.models:
        log("webli score (tiny) with a LocalCluster of 2 workers")
        cli["tiny"] = cli_run(args.work, shards, results[args.models.index("tiny")]["folder"], "tiny", 2)
    text = report(results, cli, args)
    print(text)
    common.RESULTS_DIR.mkdir(exist_ok=True)
    (common.RESULTS_DIR / "score.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
