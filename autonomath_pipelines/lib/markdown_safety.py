"""Markdown pages that data cannot add markup to: escape interpolated text, then check the rendered page.

A value from the database (a program's name, an agency) is interpolated into a Markdown template.
Escaping HTML characters is not enough: ``![t](http://evil.example/t.png)`` is an image and
``[x](http://…)`` a link without a single ``<``. CommonMark lets a backslash make any ASCII
punctuation character literal, so :func:`escape_inline` escapes all of them (no syntax is left to
open) and leaves every other character alone (Japanese text is unchanged).

The check does not trust the escaping: :func:`markup_counts` parses the page with a real CommonMark
renderer (markdown-it-py) and counts the constructs that can fetch or point elsewhere — images,
links, autolinks, raw HTML — and :func:`injected_markup` reports how many a page has beyond the same
template rendered with inert values (the template's own ``<script>`` JSON-LD block is allowed that
way, a second one is not).
"""

from __future__ import annotations

import functools
import string
from collections import Counter
from collections.abc import Iterable

from markdown_it import MarkdownIt
from markdown_it.token import Token

#: The constructs a page may hold only where its template put them.
MARKUP_KINDS = ("image", "link", "autolink", "html_inline", "html_block")

_ESCAPES = str.maketrans({ch: "\\" + ch for ch in string.punctuation})


def escape_inline(value) -> str:
    """``value`` as literal inline Markdown text on one line.

    Control characters and line breaks become spaces and runs of whitespace one space (a value can
    neither end a heading nor start a block); every ASCII punctuation character is backslash-escaped
    (it can open no image, link, autolink, HTML, entity, emphasis or table cell)."""
    text = "" if value is None else str(value)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split()).translate(_ESCAPES)


def split_front_matter(markdown: str) -> tuple[str | None, str]:
    """``(front matter text, body)`` of a page that opens with a ``---`` YAML block; ``(None, page)``
    when it has none. Site generators read the front matter as data, not as Markdown."""
    if not markdown.startswith("---\n"):
        return None, markdown
    head, sep, body = markdown[4:].partition("\n---\n")
    return (head, body) if sep else (None, markdown)


@functools.cache
def _renderer() -> MarkdownIt:
    # CommonMark with raw HTML on (as static-site renderers have it) plus GFM tables, which the
    # templates use. Linkify stays off: it needs linkify-it-py, and escaped text cannot form a bare
    # URL token anyway (each escape is its own token).
    return MarkdownIt("commonmark").enable("table")


def _walk(tokens: Iterable[Token]) -> Iterable[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def markup_counts(markdown: str) -> Counter:
    """How many images, links, autolinks and raw HTML blocks/spans the page's body renders to."""
    _, body = split_front_matter(markdown)
    counts: Counter = Counter()
    for token in _walk(_renderer().parse(body)):
        if token.type == "image":
            counts["image"] += 1
        elif token.type == "link_open":
            counts["autolink" if token.markup in ("autolink", "linkify") else "link"] += 1
        elif token.type in ("html_inline", "html_block"):
            counts[token.type] += 1
    return counts


def injected_markup(page: str, template_counts: Counter) -> dict[str, int]:
    """Per kind, how many more of it ``page`` holds than the template's own (empty: nothing injected)."""
    found = markup_counts(page)
    return {kind: found[kind] - template_counts[kind] for kind in MARKUP_KINDS if found[kind] > template_counts[kind]}


def describe_markup(extra: dict[str, int]) -> str:
    """``1 image, 2 link`` for a report."""
    return ", ".join(f"{count} {kind}" for kind, count in extra.items())
