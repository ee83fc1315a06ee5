import sys
from pathlib import Path

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
