"""The Jinja2 environment of the HTML pages: templates from this package, autoescape on,
and every value a template prints passed through :func:`crit_plus.render.safe_text` first
(control characters, bidi overrides and undecodable bytes shown escaped), so a name from
a checkpoint can neither run as markup nor garble the page."""

from __future__ import annotations

import functools
from importlib import resources

from ..describe import address_range, human_bytes, percent
from ..render import safe_text

#: The style sheet, inlined in every page (templates/style.css).
STYLE = "style.css"


def _printable(value):
    """What a ``{{ value }}`` prints: markup as it is (SVG built here, already escaped),
    None as nothing, anything else as :func:`safe_text` (Jinja then escapes it)."""
    from markupsafe import Markup

    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    return safe_text(value)


def _number(value):
    """``12 345`` for 12345 (a thin space between thousands)."""
    return f"{value:,}".replace(",", "\u202f") if isinstance(value, int) else value


@functools.lru_cache(maxsize=1)
def environment():
    """The one Jinja2 environment (built on first use: Jinja2 loads only for HTML)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crit_plus.html", "templates"),
        autoescape=True, finalize=_printable, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    env.filters.update(bytes=human_bytes, range=address_range, percent=percent,
                       number=_number)
    env.globals["style"] = (resources.files("crit_plus.html") / "templates" / STYLE) \
        .read_text(encoding="utf-8")
    return env


def render(template, **context):
    """The text of ``template`` (a file name under templates/) filled with ``context``."""
    return environment().get_template(template).render(**context)
