from collections import Counter

import pytest

from webli.pipeline.config import AltFilterConfig
from webli.stages.crawl.extract import ImageCandidate, ParsedPage
from webli.stages.crawl.pairs import (
    alt_drop_reason,
    boilerplate_set,
    is_tracking_pixel,
    normalize_alt,
    page_pairs,
    pair_uid,
)

RULES = AltFilterConfig()
BOILERPLATE = boilerplate_set(RULES)


def test_normalize_alt_nfc_and_whitespace():
    assert normalize_alt("  Cafe\u0301 \n\t au\u00a0lait ") == "Café au lait"


@pytest.mark.parametrize("alt, reason", [
    ("", "alt_empty"),
    ("IMG_1234.JPG", "alt_file_name"),
    ("photo (2).png", "alt_file_name"),
    ("https://example.org/a.jpg", "alt_url"),
    ("www.example.org", "alt_url"),
    ("ab", "alt_too_short"),
    ("x" * 513, "alt_too_long"),
    ("Logo", "alt_boilerplate"),
    ("Prev", "alt_boilerplate"),
    ("Note:", "alt_boilerplate"),
    ("caf\ufffd au lait", "alt_bad_encoding"),
    ("A cat on a sofa", None),
    ("東京の夜景", None),
])
def test_alt_drop_reasons(alt, reason):
    assert alt_drop_reason(alt, RULES, BOILERPLATE) == reason


def test_boilerplate_list_is_configurable():
    rules = AltFilterConfig(boilerplate=["sunset"])
    assert alt_drop_reason("Sunset", rules, boilerplate_set(rules)) == "alt_boilerplate"
    assert alt_drop_reason("Logo", rules, boilerplate_set(rules)) is None


@pytest.mark.parametrize("width, height, pixel", [("1", "1", True), ("1px", None, True), (None, "0", True),
                                                   ("100", "1", True), ("100%", "1.5", False), (None, None, False)])
def test_tracking_pixel(width, height, pixel):
    assert is_tracking_pixel(width, height) is pixel


def test_uid_is_stable_and_depends_on_both_fields():
    assert pair_uid("u", "a") == pair_uid("u", "a") != pair_uid("u", "b")
    assert len(pair_uid("u", "a")) == 32


def test_page_pairs_counts_every_drop_and_deduplicates():
    page = ParsedPage(title=None, html_lang=None, images=[
        ImageCandidate("http://h/a.jpg", "A red bicycle", None, None),
        ImageCandidate("http://h/a.jpg", " A red  bicycle ", None, None),  # same pair after normalisation
        ImageCandidate("data:image/png;base64,xx", "A red bicycle", None, None),
        ImageCandidate("ftp://h/b.jpg", "A blue car", None, None),
        ImageCandidate("http://h/p.gif", "Tracking", "1", "1"),
        ImageCandidate("http://h/c.jpg", None, None, None),
    ])
    drops, seen = Counter(), set()
    kept = page_pairs(page, RULES, BOILERPLATE, seen, drops)
    assert [(u, a) for _, u, a in kept] == [("http://h/a.jpg", "A red bicycle")]
    assert drops == Counter(duplicate_pair=1, data_uri=1, non_http_scheme=1, tracking_pixel=1, alt_empty=1)
    assert len(kept) + sum(drops.values()) == len(page.images)


def test_page_meta_robots_drops_all_images():
    page = ParsedPage(title=None, html_lang=None, robots_directives={"noimageindex"},
                      images=[ImageCandidate("http://h/a.jpg", "A red bicycle", None, None)])
    drops = Counter()
    assert page_pairs(page, RULES, BOILERPLATE, set(), drops) == []
    assert drops == Counter(page_robots_noimageindex=1)
