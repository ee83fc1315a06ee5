"""Shared helpers of the crawl and download benchmarks.

- where the "realweb" corpus lives (site, server, WARC) and how to make it;
- median / min-max summaries and Markdown tables;
- a machine note (cores, load, date, versions);
- a sampler of the peak resident memory of a process tree (the kernel's
  per-process high-water mark, VmHWM, read from /proc every few ms).

Nothing here contacts any address but 127.0.0.1.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

REALWEB_WWW = Path("/tmp/realweb/www")
REALWEB_PORT = 8765
REALWEB_BASE = f"http://127.0.0.1:{REALWEB_PORT}"
REALWEB_LOG = Path(f"{REALWEB_WWW}.server.log")
REALWEB_WARC = Path("/tmp/realweb/warc/realweb-subset.warc.gz")
SHARED = "/work/shared/realweb"

BUILD_CMD = f"bash {SHARED}/build.sh {REALWEB_WWW}"
SERVE_CMD = f"bash {SHARED}/serve.sh {REALWEB_WWW} {REALWEB_PORT}"
WARC_CMD = f"bash {SHARED}/warc.sh {REALWEB_BASE} {REALWEB_WARC.parent} 2"

# Keep library start-up off the network (albumentations, imported by
# img2dataset, checks PyPI for a newer version unless told not to).
QUIET_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
             "TOKENIZERS_PARALLELISM": "false"}
os.environ.update(QUIET_ENV)


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the Markdown report)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- corpus checks -------------------------------------------------------------

def _fail(missing: str, commands: list[str]) -> None:
    print(f"error: {missing}. Create it with:", file=sys.stderr)
    for command in commands:
        print(f"    {command}", file=sys.stderr)
    print(f"(see {SHARED}/README.md)", file=sys.stderr)
    sys.exit(2)


def server_up(timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{REALWEB_BASE}/robots.txt", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def require_site() -> None:
    if not (REALWEB_WWW / "index.html").is_file():
        _fail(f"the realweb site is not built at {REALWEB_WWW}", [BUILD_CMD, SERVE_CMD])


def require_server() -> None:
    require_site()
    if not server_up():
        _fail(f"the realweb server does not answer at {REALWEB_BASE}/", [SERVE_CMD])


def require_warc() -> None:
    if not REALWEB_WARC.is_file():
        commands = [] if (REALWEB_WWW / "index.html").is_file() else [BUILD_CMD]
        if not server_up():
            commands.append(SERVE_CMD)
        _fail(f"the realweb WARC {REALWEB_WARC} does not exist", commands + [WARC_CMD])


# --- numbers and tables ----------------------------------------------------------

def summary(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt_range(values: list[float], digits: int = 1, unit: str = "") -> str:
    """'median (min-max)' of repeated measurements."""
    med, lo, hi = summary(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f}{unit} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def alternating(items, rep: int) -> list:
    """`items` in order on even repetitions and reversed on odd ones, so that no side of an interleaved
    comparison always runs first (and meets the colder caches)."""
    items = list(items)
    return items if rep % 2 == 0 else items[::-1]


def write_report(report: str, out: Path | None) -> None:
    """Print a Markdown report and, when `out` is given, write it there."""
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n", encoding="utf-8")
        log(f"report written to {out}")


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(kib: float) -> float:
    return kib / 1024.0


def versions(*packages: str) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def machine_note(packages: tuple[str, ...] = ()) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"Machine: {os.cpu_count()} cores ({cpu}), **shared with other work** (load average at the start: "
            f"{load}), so every figure is a median over repetitions with the min-max range in brackets. "
            f"Date: {now}. Python {platform.python_version()}; {versions(*packages)}.")


def command_line() -> str:
    """The command that produced this report, runnable from the project root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(PROJECT_DIR)
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", str(script), *sys.argv[1:]])


# --- peak memory of a process tree ------------------------------------------------

def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field.encode()):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process so far (its threads included, its children not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    """Direct children, from /proc/PID/task/*/children (no psutil needed)."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                continue
    except OSError:
        pass
    return kids


class TreePeakRSS:
    """Sample VmHWM (peak RSS so far, kept by the kernel) of `root` and all its descendants.

    Because VmHWM is itself a high-water mark, a sampling period only risks
    missing what a process allocates in its last period before exit.
    """

    def __init__(self, root_pid: int, period: float = 0.02):
        self.root_pid = root_pid
        self.period = period
        self.peak_kib: dict[int, int] = {}
        self.cmdline: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.samples: dict[int, int] = {}
        self.threads: dict[int, int] = {}  # most threads seen at once
        self.cpu: dict[int, float] = {}  # user + system CPU seconds at the last sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreePeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        stack = [self.root_pid]
        while stack:
            pid = stack.pop()
            hwm = _status_kib(pid, "VmHWM:")
            if hwm is None:
                continue
            cmdline = _cmdline(pid)
            if cmdline != self.cmdline.get(pid):
                # New process, or one that called execve (e.g. a fork running `uname -p`): a forked
                # child first shows its parent's command line and shared pages, so start afresh.
                self.cmdline[pid] = cmdline
                self.peak_kib[pid] = 0
                self.samples[pid] = 0
                self.threads[pid] = 0
                self.cpu[pid] = 0.0
            self.peak_kib[pid] = max(self.peak_kib[pid], hwm)
            self.samples[pid] += 1
            self.threads[pid] = max(self.threads.get(pid, 0), _status_kib(pid, "Threads:") or 0)
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self.cpu[pid] = cpu
            for child in _children(pid):
                self.parent.setdefault(child, pid)
                stack.append(child)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.period)
        self._sample()

    def workers(self, min_threads: int = 0, min_life: float = 0.5) -> dict[int, int]:
        """Peak KiB of the multiprocessing-spawned workers (Dask workers, img2dataset pool).

        Processes seen for less than `min_life` seconds are left out: a worker
        that forks to run a command shows the worker's command line until it
        calls execve. With `min_threads`, so are processes that never ran that
        many threads at once (e.g. img2dataset's logger process, beside the
        pool workers that each run a download thread pool).
        """
        min_samples = max(2, int(min_life / self.period))
        return {pid: kib for pid, kib in self.peak_kib.items()
                if "spawn_main" in self.cmdline.get(pid, "") and pid != self.root_pid
                and self.samples.get(pid, 0) >= min_samples and self.threads.get(pid, 0) >= min_threads}

    def root(self) -> int:
        return self.peak_kib.get(self.root_pid, 0)
