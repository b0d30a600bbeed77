"""The one Jinja2 environment of the report and the dashboards, and its filters.

HTML templates autoescape: a query text or an agent name containing markup is
shown as text. Figures are formatted by ``perfmon_py.report_digest`` (shared
with the report messages sent through the alert channels), so a figure reads
the same in the HTML report, the Markdown report, an email and a dashboard.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pgperfmon import charts, resources

TEMPLATES = Path(__file__).resolve().parent / "templates"


def digest() -> Any:
    """perfmon_py.report_digest of plpython/: figure formatting shared with the server."""
    return resources.plpython_module("report_digest")


def parse_ts(value: Any) -> datetime | None:
    """A timestamp of the report's JSON (ISO 8601 text) or from psycopg, else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def ts(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def num(value: Any, unit: str | None = None) -> str:
    if value is None or value == "":
        return ""
    try:
        return digest().number(float(value), unit)
    except (TypeError, ValueError):
        return str(value)


def plain(value: Any) -> str:
    """A cell: lists joined, JSON-ish things compact, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, datetime):
        return ts(value)
    return str(value)


def one_line(text: str) -> str:
    """``text`` as one line of plain text for a terminal or a log: a control character (a line break in a
    database's name, an escape sequence that recolours or clears the screen) is written as
    its Python escape, so the name is still told apart and forges no line of its own."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def md_code(value: Any) -> str:
    """A Markdown table cell's code span: one line, pipes and backticks neutralised, control
    characters (an escape sequence, a right-to-left override) written as escapes."""
    text = one_line(" ".join(plain(value).split()))
    return text.replace("|", "\\|").replace("`", "'")


def md_cell(value: Any) -> str:
    """A Markdown table cell: as md_code, and no HTML tag, autolink or link can open in it
    (a table or agent named <img onerror=...> or [x](url) is shown as text)."""
    return md_code(value).replace("<", "&lt;").replace("[", "\\[")


class Notes:
    """Numbered "how it was computed" notes of a report: one number per figure."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._index: dict[tuple[str, str], int] = {}

    def ref(self, label: str, node: Any) -> int:
        how = digest().how(node)
        key = (label, how)
        if key not in self._index:
            self.items.append(key)
            self._index[key] = len(self.items)
        return self._index[key]


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True,
                                            default=False),
        extensions=["jinja2.ext.do"],
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
        # A NULL from the database is an empty cell, not the word None.
        finalize=lambda value: "" if value is None else value,
    )
    d = digest()
    env.filters.update(
        figure=d.figure, how=d.how, number=d.number, incidents=d.incidents,
        duration=lambda v: "" if v is None else d.duration(float(v)),
        ts=ts, num=num, plain=plain, md=md_cell, md_code=md_code,
    )
    env.globals.update(charts=charts, Markup=Markup)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
