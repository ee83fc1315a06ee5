"""`make demo`'s program end to end: the whole flow on the demo site, the printed summary and the card."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    result = subprocess.run([sys.executable, "-m", "webli.demo", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=1700)
    assert result.returncode == 0, result.stderr[-3000:]
    return output / "run", result.stdout


def test_every_step_ran_in_order_and_is_summarised(demo):
    _, stdout = demo
    steps = ["crawl", "download", "ocr", "dedup", "bootstrap-filter", "score", "select", "train", "card"]
    lines = [line.split(":")[0].strip() for line in stdout.splitlines() if ": " in line and " in, " in line]
    assert lines == steps


def test_selected_and_random_models_are_compared_on_the_same_pairs(demo):
    run, stdout = demo
    comparison = json.loads((run / "train" / "comparison.json").read_text())
    assert comparison["selected"]["pool"] == comparison["random"]["pool"] > 0
    table = stdout[stdout.index("reference CLIP, evaluated on the same"):]
    assert [line.split()[0] for line in table.splitlines()[2:4]] == ["selected", "random"]


def test_demo_eval_set_photos_are_kept_out_of_the_final_shards(demo):
    run, _ = demo
    selection = json.loads((run / "select" / "selection.json").read_text())
    assert selection["dropped_by_reason"]["eval_duplicate_image"] > 0
    index = [row for path in sorted((run / "select" / "shards").glob("*.parquet"))
             for row in pq.read_table(path, columns=["dedup_is_duplicate"]).to_pylist()]
    assert index and not any(row["dedup_is_duplicate"] for row in index)


def test_the_card_is_written_for_the_demo_run(demo):
    run, stdout = demo
    card = (run / "card" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "## Reference trainer results" in card
    assert "Selected shards against a random subset" in card
    assert (run / "card" / "card.html").stat().st_size > 10_000
    assert f"{run}/card/README.md" in stdout
