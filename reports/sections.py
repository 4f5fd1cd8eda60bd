"""The report's content, built once and written out twice: as Markdown (`section_markdown`) and as
HTML (`reports.html`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jaxbench.reports.summary import to_markdown


@dataclass
class Section:
    """One section of the report, written out as Markdown (`section_markdown`) and as HTML
    (`reports.html`): a paragraph, bullet lines, links, tables (each with a title, or none), charts."""

    title: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, address relative to the report)
    index: bool = False  # whether the tables' index is a column worth showing (the environment's)


def section_markdown(section: Section) -> str:
    """`section` as Markdown: its heading, paragraph, bullets, links, tables, then charts as images."""
    parts = [f"## {section.title}\n"]
    parts += [section.text + "\n"] if section.text else []
    parts += ["".join(f"- {line}\n" for line in section.items)] if section.items else []
    parts += ["".join(f"- [{text}]({address})\n" for text, address in section.links)] if section.links else []
    for title, table in section.tables:
        body = table.to_markdown() + "\n" if section.index else to_markdown(table)
        parts.append(f"### {title}\n\n{body}" if title else body)
    parts += [f"![{path.stem}]({path.name})\n" for path in section.charts]
    return "\n".join(parts)
