"""Kill the whole run with SIGKILL in the middle of a stage, run it again: no duplicate, no gap."""

from __future__ import annotations

import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT, read_parquets, stats, tar_samples, webli, write_config
from PIL import Image

PAGES, IMAGES_PER_PAGE, IMAGE_DELAY = 12, 10, 0.03
ALTS = ["A red square on white", "Un carré bleu sur fond blanc", "Ein grünes Quadrat auf Weiß", "Красный круг"]


def image_bytes(n: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64 + n % 7, 48), ((n * 37) % 256, (n * 91) % 256, 128)).save(buffer, "PNG")
    return buffer.getvalue()


class SlowImageSite(http.server.BaseHTTPRequestHandler):
    """Pages /p<N>.html with IMAGES_PER_PAGE images each; every image answers after IMAGE_DELAY s."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        if self.path == "/robots.txt":
            return self.reply(b"User-agent: *\nAllow: /\n", "text/plain")
        if self.path == "/index.html":
            links = "".join(f'<a href="/p{i}.html">page {i}</a>' for i in range(PAGES))
            return self.reply(f"<html><body>{links}</body></html>".encode(), "text/html")
        if self.path.startswith("/p") and self.path.endswith(".html"):
            page = int(self.path[2:-5])
            images = "".join(f'<img src="/img/{page * IMAGES_PER_PAGE + j}.png" alt="{ALTS[j % 4]} {page}-{j}">'
                             for j in range(IMAGES_PER_PAGE))
            return self.reply(f"<html><body>{images}</body></html>".encode(), "text/html")
        if self.path.startswith("/img/"):
            time.sleep(IMAGE_DELAY)
            return self.reply(image_bytes(int(self.path[5:-4])), "image/png")
        self.send_error(404)

    def reply(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def slow_site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowImageSite)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def kill_when_some_shards_done(config_path, folder, minimum: int, timeout: float = 120) -> int:
    """Start `webli download`, SIGKILL its whole process group once `minimum` shards are done."""
    process = subprocess.Popen([sys.executable, "-m", "webli.pipeline.cli", "download", "-c", str(config_path)],
                               cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(folder.glob("*_stats.json"))) >= minimum:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return len(list(folder.glob("*_stats.json")))
        time.sleep(0.05)
    process.kill()
    pytest.fail("the download finished or hung before it could be killed")


@pytest.mark.slow
def test_sigkill_mid_download_then_resume(tmp_path, slow_site):
    output = tmp_path / "out"
    config = write_config(tmp_path / "run.yaml", {
        "output": str(output),
        "crawl": {"seeds": [slow_site + "/index.html"], "allow_private_networks": True, "politeness_delay": 0,
                  "max_concurrent_per_host": 4},
        "download": {"shard_size": 6, "thread_count": 2, "min_image_size": 0},
        "cluster": {"workers": 2, "task_retries": 0},
    })
    crawl = webli("crawl", "-c", str(config))
    assert crawl.returncode == 0, crawl.stderr
    planned = PAGES * IMAGES_PER_PAGE
    shards = -(-planned // 6)

    done_at_kill = kill_when_some_shards_done(config, output / "download", minimum=2)
    assert 2 <= done_at_kill < shards

    resumed = webli("download", "-c", str(config))
    assert resumed.returncode == 0, resumed.stderr

    rows = read_parquets(output / "download")
    plan = read_parquets(output / "download" / "_plan")
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys)) == planned  # no duplicate, no gap
    assert sorted(keys) == sorted(row["key"] for row in plan)
    assert all(row["status"] == "success" for row in rows)
    tar_keys = [key for shard in sorted((output / "download").glob("*.tar")) for key in tar_samples(shard)]
    assert sorted(tar_keys) == sorted(keys)
    assert len(stats(output / "download")) == shards
    assert not [p for p in output.rglob("*") if ".tmp-" in p.name]

    again = webli("download", "-c", str(config))  # a finished stage re-runs as a no-op
    assert again.returncode == 0 and f"{planned} in, {planned} out" in again.stdout
