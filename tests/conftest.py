import os
import sys
from pathlib import Path

# No test may reach Hugging Face's hub (tests send traffic to 127.0.0.1 only), also when run without make.
os.environ["HF_HUB_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers module

import pytest  # noqa: E402

from webli.demo.server import SiteServer  # noqa: E402
from webli.demo.site import build_demo_site  # noqa: E402


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory):
    """(site folder, manifest) of the demo site, built once per test session."""
    root = tmp_path_factory.mktemp("demo-site")
    return root, build_demo_site(root, seed=0)


@pytest.fixture(scope="session")
def demo_server(demo_site):
    """The demo site with its bad routes, on 127.0.0.1; slow routes stall 3 s."""
    with SiteServer(demo_site[0], slow_seconds=3.0) as server:
        yield server


@pytest.fixture(scope="session")
def demo_download(demo_server, tmp_path_factory):
    """The demo site crawled and downloaded once per session through `webli run --until download`.

    Returns a DemoRun: the output folder, the config dict and path, the CLI
    result and the paths the server saw. End-to-end tests of later stages
    work on `copy_run(...)` of it, so the site is crawled and downloaded once.
    """
    from helpers import DemoRun, webli, write_config

    folder = tmp_path_factory.mktemp("demo-download")
    config = {
        "output": str(folder / "out"),
        "crawl": {"seeds": [demo_server.url + "/index.html"], "allow_private_networks": True,
                  "politeness_delay": 0, "max_concurrent_per_host": 4, "timeout": 1.5, "max_depth": 4},
        # 2.5 s stays under the slow route's 3 s stall, with margin for a loaded machine
        "download": {"shard_size": 50, "timeout": 2.5, "large_copy_size": 512, "thread_count": 8},
        "cluster": {"workers": 2},
    }
    path = write_config(folder / "run.yaml", config)
    demo_server.clear_access_log()
    result = webli("run", "-c", str(path), "--until", "download")
    assert result.returncode == 0, result.stderr[-3000:]
    return DemoRun(folder / "out", config, path, result, tuple(demo_server.access_log))
