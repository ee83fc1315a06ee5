"""The card stage: a dataset card written from the run's own stats and tables.

`collect_card` reads every stage's output into the card's facts (`build`),
`draw_charts` draws them (`charts`), `render_markdown` / `render_html` write
the card (`render`). No Dask here: `webli.pipeline.card` runs it.
"""

from webli.stages.card.build import collect_card, jsonable
from webli.stages.card.charts import draw_charts
from webli.stages.card.outputs import RunOutputs
from webli.stages.card.render import render_html, render_markdown

__all__ = ["RunOutputs", "collect_card", "draw_charts", "jsonable", "render_html", "render_markdown"]
