"""Escaping interpolated text for Markdown, and counting the markup a page renders to (markdown-it-py)."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from autonomath_pipelines.lib.markdown_safety import (
    describe_markup,
    escape_inline,
    injected_markup,
    markup_counts,
    split_front_matter,
)

HOSTILE = (
    "![t](http://evil.example/t.png) [x](http://a.example) <http://b.example> <img src=x> "
    "<b>太字</b> &amp; [ref]: http://c.example a|b *強調* `code` \\"
)


def rendered_text(markdown: str) -> str:
    """The literal text of a one-paragraph document, and nothing but text tokens allowed."""
    [para_open, inline, para_close] = MarkdownIt("commonmark").enable("table").parse(markdown)
    assert (para_open.type, para_close.type) == ("paragraph_open", "paragraph_close")
    assert {child.type for child in inline.children} <= {"text", "text_special"}
    return "".join(child.content for child in inline.children)


def test_japanese_text_is_unchanged():
    assert escape_inline("IT導入補助金（東京都）") == "IT導入補助金（東京都）"
    assert escape_inline("ものづくり　補助金\n第2版") == "ものづくり 補助金 第2版"


def test_every_ascii_punctuation_character_is_escaped():
    assert escape_inline("![t](u)") == "\\!\\[t\\]\\(u\\)"
    assert escape_inline("a<b>&c|d\\") == "a\\<b\\>\\&c\\|d\\\\"


def test_a_hostile_name_renders_as_its_own_text_without_markup():
    assert markup_counts(HOSTILE) != Counter()  # the renderer does see markup in the raw text
    assert markup_counts(escape_inline(HOSTILE)) == Counter()
    assert rendered_text(escape_inline(HOSTILE)) == HOSTILE


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_any_text_escapes_to_exactly_its_own_literal_text(text):
    """For any text: a paragraph, a heading and a list item of its escaped form hold no image, link,
    autolink or HTML, and the paragraph reads back as the text (whitespace runs made one space)."""
    escaped = escape_inline(text)
    assert "\n" not in escaped
    document = f"# 見出し {escaped}\n\n- 制度名: {escaped}\n\n| 項目 | {escaped} |\n| --- | --- |\n| a | b |\n"
    assert markup_counts(document) == Counter()
    normalized = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if normalized:
        assert rendered_text(escaped) == normalized


def test_counts_each_kind_and_skips_front_matter():
    page = (
        '---\ntitle: "![t](http://evil.example/t.png)"\n---\n\n'
        "![i](http://a/i.png) [l](http://a/) <http://a/> x <span>y</span>\n\n<div>\nz\n</div>\n"
    )
    assert markup_counts(page) == Counter(image=1, link=1, autolink=1, html_inline=2, html_block=1)
    assert split_front_matter(page)[0] == 'title: "![t](http://evil.example/t.png)"'
    assert split_front_matter("no front matter") == (None, "no front matter")


def test_injected_markup_is_what_exceeds_the_template():
    template = Counter(html_block=1)
    assert injected_markup("<script>\n{}\n</script>\n", template) == {}
    extra = injected_markup("<script>\n{}\n</script>\n\n<div>\n</div>\n\n![i](u) ![j](v)\n", template)
    assert extra == {"image": 2, "html_block": 1}
    assert describe_markup(extra) == "2 image, 1 html_block"
