"""`report.html`: the report as one self-contained page (Jinja2 template, pandas `Styler` tables,
charts embedded as PNG data), readable in any browser without the folder beside it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).with_name("templates")


def _inline_code(text: str) -> Markup:
    """Plain text with `code` spans (the Markdown the sections' sentences use), HTML-escaped."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _number(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


VERDICT_COLOURS = {"met": "#d8f0d8", "below": "#f7d4d2", "above": "#d5e4f7"}
"""The background of a cell that ends with its verdict in brackets (`reports.glance`)."""


_VERDICT_AT_END = re.compile(r"\((" + "|".join(VERDICT_COLOURS) + r")\)$")


def _verdict_colour(value) -> str:
    found = _VERDICT_AT_END.search(str(value))
    return f"background-color: {VERDICT_COLOURS[found.group(1)]}" if found else ""


def table_html(table: pd.DataFrame, index: bool = False) -> Markup:
    """`table` as an HTML table (pandas `Styler`), numbers to 4 significant digits, `-` where empty,
    a cell that ends with its verdict (`12x (met)`) coloured by it; the page's script makes it
    sortable by any column."""
    styler = (table.style.format(_number, na_rep="-", escape="html").map(_verdict_colour)
              .set_table_attributes('class="sortable"'))
    if not index:
        styler = styler.hide(axis="index")
    return Markup(styler.to_html())


def image_data(path: Path) -> str:
    """A PNG file as a `data:` URI, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_html(sections: list, path: Path, title: str = "jaxbench report") -> Path:
    """Write `sections` (`reports.sections.Section`) to `path` as one HTML page."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters.update(code=_inline_code, table=table_html, image=image_data)
    page = env.get_template("report.html.j2").render(sections=sections, title=title)
    Path(path).write_text(page)
    return Path(path)
