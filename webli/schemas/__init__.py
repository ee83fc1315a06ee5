"""Arrow schemas of every table the stages write, declared once.

Each stage's table is the previous one plus its new columns. Writers call
:func:`conform` so a table that does not match its schema never reaches disk.
"""

from __future__ import annotations

import pyarrow as pa

# Shared column names.
UID = "uid"
KEY = "key"
URL = "url"
ALT = "alt"
CAPTION = "caption"  # img2dataset's name for the text column
PAGE_URL = "page_url"
LANGUAGE = "language"
STATUS = "status"
DROP_REASON = "drop_reason"

CRAWL_PAIRS = pa.schema(
    [
        pa.field(UID, pa.string(), nullable=False),  # blake2b-128(url \0 alt), hex
        pa.field(URL, pa.string(), nullable=False),  # absolute image URL
        pa.field(ALT, pa.string(), nullable=False),  # NFC, whitespace collapsed
        pa.field(PAGE_URL, pa.string(), nullable=False),
        pa.field("page_title", pa.string()),
        pa.field("html_lang", pa.string()),  # <html lang>, as declared
        pa.field(LANGUAGE, pa.string(), nullable=False),  # detected from the alt text
        pa.field("language_score", pa.float32(), nullable=False),
        pa.field("fetch_time", pa.timestamp("s", tz="UTC")),
    ]
)

CRAWL_PAGES = pa.schema(
    [
        pa.field(URL, pa.string(), nullable=False),
        pa.field("depth", pa.int16()),
        pa.field("http_status", pa.int16()),
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("images", pa.int32()),  # <img> candidates found
        pa.field("pairs", pa.int32()),  # pairs kept
        pa.field(STATUS, pa.string(), nullable=False),  # "parsed" or "refused"
        pa.field("reason", pa.string()),  # why refused, when refused
        pa.field("fetch_time", pa.timestamp("s", tz="UTC")),
    ]
)

# What the download planner hands to one download task.
DOWNLOAD_PLAN = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(UID, pa.string(), nullable=False),
        pa.field(URL, pa.string(), nullable=False),
        pa.field(CAPTION, pa.string(), nullable=False),
        pa.field(PAGE_URL, pa.string(), nullable=False),
        pa.field(LANGUAGE, pa.string(), nullable=False),
        pa.field("language_score", pa.float32(), nullable=False),
    ]
)

# One row per planned sample, failures included (img2dataset's layout + ours).
DOWNLOAD = pa.schema(
    list(DOWNLOAD_PLAN)
    + [
        pa.field(STATUS, pa.string(), nullable=False),  # success / failed_to_download / failed_to_resize
        pa.field("error_message", pa.string()),
        pa.field(DROP_REASON, pa.string()),  # normalised reason, null on success
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        pa.field("sha256", pa.string()),  # of the original bytes
        pa.field("large_width", pa.int32()),  # the larger copy kept for OCR, if any
        pa.field("large_height", pa.int32()),
    ]
)

SCHEMAS = {
    "crawl_pairs": CRAWL_PAIRS,
    "crawl_pages": CRAWL_PAGES,
    "download_plan": DOWNLOAD_PLAN,
    "download": DOWNLOAD,
}


class SchemaError(ValueError):
    """A table does not match the schema it is written under."""


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with exactly `schema`'s columns, order and types.

    Raises SchemaError naming the missing column, the column that cannot be
    cast, or the non-nullable column that holds nulls.
    """
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SchemaError(f"table lacks column(s) {missing}; expected {schema.names}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        try:
            column = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(f"column {field.name!r}: cannot cast {column.type} to {field.type}: {err}") from err
        if not field.nullable and column.null_count:
            raise SchemaError(f"column {field.name!r} holds {column.null_count} null(s) but is not nullable")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table of `schema`."""
    return schema.empty_table()
