"""Shared test helpers: run the CLI in a subprocess, read a stage's outputs."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def webli(*args: str, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run `webli ARGS` in a subprocess (the console script's module), capturing output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "webli.pipeline.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def read_parquets(folder: Path, pattern: str = "[0-9][0-9][0-9][0-9][0-9].parquet") -> list[dict]:
    """All rows of the shard Parquet files in `folder`, in shard order."""
    return [row for path in sorted(folder.glob(pattern)) for row in pq.read_table(path).to_pylist()]


def tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """{key: {extension: bytes}} of a WebDataset tar."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, extension = member.name.split(".", 1)
            samples.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return samples


@dataclass(frozen=True)
class DemoRun:
    """A pipeline run on the demo site: output folder, config (dict and file), CLI result, paths served."""

    output: Path
    config: dict
    config_path: Path
    result: subprocess.CompletedProcess | None = None
    access_log: tuple[str, ...] = ()


def copy_run(run: DemoRun, folder: Path, **sections) -> DemoRun:
    """A copy of `run`'s output under `folder`, with a config that points at it plus `sections` merged in."""
    output = folder / "out"
    shutil.copytree(run.output, output)
    config = copy.deepcopy(run.config)
    config["output"] = str(output)
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return DemoRun(output, config, write_config(folder / "run.yaml", config))


def stats(folder: Path) -> dict[int, dict]:
    return {int(p.name[:5]): json.loads(p.read_text()) for p in sorted(folder.glob("*_stats.json"))}


__all__ = ["DemoRun", "copy_run", "write_config", "webli", "read_parquets", "tar_samples", "stats"]
