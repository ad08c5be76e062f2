"""The project's Jinja2 templates (``lib/templates/``), loaded one way for every generated file."""

from __future__ import annotations

import functools
from typing import Callable

import jinja2


@functools.cache
def _environment(filters: tuple[tuple[str, Callable], ...]) -> jinja2.Environment:
    # Generated files are Markdown, YAML and Python, not HTML: escaping is each value's own filter,
    # and a missing variable is an error rather than an empty string in a page.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("autonomath_pipelines.lib", "templates"),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(dict(filters))
    return env


def template(name: str, **filters: Callable) -> jinja2.Template:
    """The template ``lib/templates/<name>`` with the given filters (cached per name and filters)."""
    return _environment(tuple(sorted(filters.items()))).get_template(name)
