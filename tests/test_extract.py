from webli.stages.crawl.extract import absolute_url, best_srcset_url, parse_page, parse_srcset

PAGE = "http://127.0.0.1:9/dir/page.html"


def images(html, url=PAGE):
    page = parse_page(html, url)
    return [(absolute_url(i.src, page.base_url), i.alt) for i in page.images]


def test_srcset_picks_widest_width_descriptor():
    assert best_srcset_url(["a.jpg 320w, b.jpg 1280w, c.jpg 640w"]) == "b.jpg"


def test_srcset_density_and_default_descriptor():
    assert parse_srcset("a.jpg, b.jpg 2x") == [("a.jpg", 1.0, "x"), ("b.jpg", 2.0, "x")]
    assert best_srcset_url(["a.jpg, b.jpg 2x"]) == "b.jpg"


def test_srcset_url_with_comma_inside():
    assert best_srcset_url(["img.jpg?w=1,2 100w, big.jpg 900w"]) == "big.jpg"


def test_img_src_resolved_against_page():
    assert images('<img src="../img/a.jpg" alt="x">') == [("http://127.0.0.1:9/img/a.jpg", "x")]


def test_base_href_is_used_for_resolution():
    html = '<head><base href="/sub/"></head><img src="a b.jpg" alt="x">'
    assert images(html) == [("http://127.0.0.1:9/sub/a%20b.jpg", "x")]


def test_picture_source_beats_fallback_img():
    html = '<picture><source srcset="s.webp 1024w" type="image/webp"><img src="f.jpg" alt="p"></picture>'
    assert images(html) == [("http://127.0.0.1:9/dir/s.webp", "p")]


def test_lazy_load_data_src_beats_placeholder():
    html = '<img src="data:image/gif;base64,R0lGOD" data-src="real.jpg" alt="lazy">'
    assert images(html) == [("http://127.0.0.1:9/dir/real.jpg", "lazy")]


def test_entities_are_decoded_by_the_parser():
    assert images('<img src=a.jpg alt="caf&eacute; &amp; th&#233;">')[0][1] == "café & thé"


def test_fragment_dropped_and_non_ascii_percent_encoded():
    url, _ = images('<img src="/ф.jpg#top" alt="x">')[0]
    assert url == "http://127.0.0.1:9/%D1%84.jpg"


def test_title_lang_links_and_robots_meta():
    html = ('<html lang="de"><head><title> Titel </title><meta name="robots" content="noimageindex, nofollow">'
            '</head><body><a href="b.html#x">b</a><a href="mailto:a@b">m</a></body></html>')
    page = parse_page(html, PAGE)
    assert (page.title, page.html_lang) == ("Titel", "de")
    assert "http://127.0.0.1:9/dir/b.html" in page.links
    assert page.images_forbidden and page.nofollow


def test_links_skipped_when_not_asked():
    assert parse_page('<a href="b.html">b</a>', PAGE, with_links=False).links == []


def test_broken_html_still_yields_images():
    html = '<html><body><div><p><b>bold</td></table><img src="a.jpg" alt="first"></i><img src=b.jpg alt=second'
    assert [alt for _, alt in images(html)] == ["first"]  # the unfinished tag is dropped, as browsers do


def test_absolute_url_rejects_empty_and_keeps_data_uri():
    assert absolute_url("   ", PAGE) is None
    assert absolute_url("data:image/png;base64,xx", PAGE).startswith("data:")
