"""The HTML pages people read (the business report, the ML models page): Jinja2 templates (templates/) with
autoescape on, so no value (a model description, a decision reason, a check's subject) is ever read as markup,
and a Content-Security-Policy that allows no script and no resource from elsewhere."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import pandas as pd

# No scripts, no frames, no requests anywhere: the pages are text, tables, inline styles and inline PNG charts.
# In each page's <meta> (so the report is bound by it when opened as a file too) and, with the one directive a
# <meta> cannot carry (who may frame the page: the Airflow UI, same origin), in the HTTP header that serves it.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
CSP_HEADER = f"{CSP}; frame-ancestors 'self'"
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    """A template of templates/ with `context`, every value escaped."""
    return ENV.get_template(template).render(csp=CSP, **context)


def chart(fig) -> dict:
    """A matplotlib figure as an inline PNG: {'alt': its first title, 'src': a data: URI}."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return {"alt": fig.axes[0].get_title(), "src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def _cell(value, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return fmt.format(value) if fmt else str(value)


def table(frame: pd.DataFrame, formats: dict[str, str] | None = None, links: tuple[str, ...] = ()) -> dict:
    """A DataFrame for the `table` macro: column names, and rows of cells {'text', 'href'} (NULLs blank;
    `formats` maps columns to format strings; the values of `links` columns are URLs, shown as links)."""
    formats = formats or {}
    rows = [[{"text": _cell(v, formats.get(c)), "href": _cell(v, None) if c in links else ""} for c, v in row.items()]
            for _, row in frame.iterrows()]
    return {"columns": [str(c) for c in frame.columns], "rows": rows}
