"""Render the card: Markdown with Hugging Face front matter (jinja2), and a self-contained HTML version.

The HTML is the Markdown rendered by markdown-it-py (raw HTML disabled, so
alt texts from the web cannot inject markup) with every image inlined as a
data: URI, so the one file opens anywhere.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from numbers import Real

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt

from webli.stages.card.outputs import NOT_RUN, PARTIAL

MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---\n", re.DOTALL)


def num(value) -> str:
    """Integers with thousands separators, floats with 2 decimals, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def fixed(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def metric(value: float | None) -> str:
    """A trainer metric: integers as they are, other numbers with 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    return num(value) if float(value).is_integer() else f"{value:.4g}"


def cell(value) -> str:
    """Text from the web made safe for one Markdown table cell: one line, Markdown punctuation escaped."""
    text = " ".join(str("–" if value is None else value).split())
    return MARKDOWN_SPECIALS.sub(r"\\\1", text) or "–"


def code(value) -> str:
    """Text for inside an inline code span (backticks would end it, pipes would split a table cell)."""
    return str(value).replace("`", "'").replace("|", "¦")


def code_span(value) -> str:
    return f"`{code(value)}`"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("webli.stages.card", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(num=num, pct=pct, fixed=fixed, metric=metric, cell=cell, code=code, code_span=code_span)
    return env


def absent_note(facts: dict, section: str, stage: str) -> str:
    """What a section says when it has nothing to show: not run, unreadable, or no rows."""
    if section in facts["unavailable"]:
        return f"_This section could not be read from the output tree: {cell(facts['unavailable'][section])}._"
    if facts["stages"][stage]["status"] == NOT_RUN:
        return f"_The {stage} stage has not run yet: `webli {stage} --config run.yaml`, then `webli card` fills this " \
               "section._"
    return f"_The {stage} stage has produced no rows for this section._"


def partial_note(facts: dict, stage: str) -> str:
    progress = facts["stages"][stage]
    if progress["status"] != PARTIAL:
        return ""
    return f"_Partial: {progress['shards_done']:,} of {progress['shards_expected']:,} shards done._ "


def render_markdown(facts: dict) -> str:
    """The card as Markdown with YAML front matter."""
    template = environment().get_template("card.md.j2")
    return template.render(**facts, absent=lambda section, stage: absent_note(facts, section, stage),
                           partial_note=lambda stage: partial_note(facts, stage))


def data_uri(name: str, data: bytes) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def inline_images(tokens, files: dict[str, bytes]) -> None:
    """Point every image token whose src is a card file at a data: URI of its bytes."""
    for token in tokens:
        for child in token.children or []:
            if child.type == "image" and child.attrGet("src") in files:
                child.attrSet("src", data_uri(child.attrGet("src"), files[child.attrGet("src")]))


def render_html(markdown: str, files: dict[str, bytes], title: str) -> str:
    """The card as one HTML page, images inlined; `files` maps relative paths in the Markdown to bytes."""
    match = FRONT_MATTER.match(markdown)
    front_matter, body = (match.group(1), markdown[match.end():]) if match else ("", markdown)
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(body)
    inline_images(tokens, files)
    page = environment().get_template("card.html.j2")
    return page.render(title=html.escape(title), front_matter=html.escape(front_matter),
                       body=parser.renderer.render(tokens, parser.options, {}))
