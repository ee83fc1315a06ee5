"""Crawl stage: seeds or WARC files -> (image URL, alt text) pairs."""
