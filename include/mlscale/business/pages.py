"""The HTML pages people read (the business report, the ML models page): Jinja2 templates (templates/) with
autoescape on, so no value (a model description, a decision reason, a check's subject) is ever read as markup,
and a Content-Security-Policy that allows no resource from elsewhere and no script but the ML models page's
own file (static/links.js)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

if TYPE_CHECKING:  # the ML models page's plugin imports this module in every Airflow process: no pandas here
    import pandas as pd

# No frames, no requests anywhere: the pages are text, tables, inline styles and inline PNG charts. In each
# page's <meta> (so the report is bound by it when opened as a file too) and, with the one directive a <meta>
# cannot carry (who may frame the page: the Airflow UI, same origin), in the HTTP header that serves it.
# The report runs no script at all. The ML models page runs one file of its own (never inline code, so no
# injected markup can run): Airflow shows the page in a sandboxed frame that may not open windows, and the
# script opens its new-tab links from the Airflow window instead (static/links.js).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
PAGE_CSP = f"{CSP}; script-src 'self'"
STATIC = Path(__file__).parent / "static"
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def header(csp: str) -> str:
    """The HTTP Content-Security-Policy of a page served with `csp` in its <meta>: framed by the Airflow UI only."""
    return f"{csp}; frame-ancestors 'self'"


def render(template: str, csp: str = CSP, **context) -> str:
    """A template of templates/ with `context`, every value escaped, under the policy `csp`."""
    return ENV.get_template(template).render(csp=csp, **context)


def chart(fig) -> dict:
    """A matplotlib figure as an inline PNG: {'alt': its first title (and the dates its x axis shows, for a
    date axis), 'src': a data: URI}."""
    import matplotlib.dates as mdates

    ax = fig.axes[0]
    alt = ax.get_title()
    if isinstance(ax.xaxis.get_major_locator(), mdates.AutoDateLocator):
        lo, hi = (mdates.num2date(x) for x in ax.get_xlim())
        alt += f" (dates shown: {lo:%Y-%m-%d} to {hi:%Y-%m-%d})"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return {"alt": alt, "src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


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
