"""Traceback parsing and fingerprints (lib/stacktrace.py)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st_

from autonomath_pipelines.lib import stacktrace as st
from autonomath_pipelines.lib.files import is_safe_file_name

SIMPLE = '''Traceback (most recent call last):
  File "/srv/app/api/routes.py", line {a}, in search_endpoint
    results = search_service.search(q)
  File "/srv/app/scoring.py", line {b}, in region_boost
    if hit["prefecture_code"] == region.code:
       ^^^^^^^^^^^^^^^^^^^^^^
KeyError: 'prefecture_code'
'''

CHAINED = '''Traceback (most recent call last):
  File "/srv/app/db.py", line 102, in write
    cur = conn.execute(sql, params)
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/api/routes.py", line 301, in post_feedback
    feedback.submit(body, key=api_key)
  File "/srv/app/feedback.py", line 51, in submit
    raise StorageError("could not write feedback") from exc
app.errors.StorageError: could not write feedback
'''

RECURSION = '''Traceback (most recent call last):
  File "/srv/app/api/routes.py", line 231, in resolve_alias
    return alias.resolve(surface)
  File "/srv/app/alias.py", line 41, in resolve
    return _follow(graph, graph[surface], 0)
''' + '''  File "/srv/app/alias.py", line 88, in _follow
    return _follow(graph, graph[node], depth + 1)
''' * 3 + '''  [Previous line repeated {n} more times]
  File "/srv/app/alias.py", line 84, in _follow
    if node.entity_id is None and node.target in graph:
RecursionError: maximum recursion depth exceeded
'''

FROZEN = '''Traceback (most recent call last):
  File "/srv/app/rank_ml.py", line 22, in load_model
    from sentence_transformers import SentenceTransformer
  File "<frozen importlib._bootstrap>", line 1176, in _find_and_load
  File "<string>", line 1, in <module>
ModuleNotFoundError: No module named 'sentencepiece'
'''


def test_simple_trace():
    trace = st.parse_traceback(SIMPLE.format(a=142, b=57))
    assert trace.complete and trace.exc_type == "KeyError"
    assert trace.outermost.message == "'prefecture_code'"
    assert [f.normalized for f in trace.outermost.frames] == ["routes.py:search_endpoint", "scoring.py:region_boost"]
    assert [f.line for f in trace.outermost.frames] == [142, 57]


def test_fingerprint_ignores_line_numbers():
    assert st.fingerprint(SIMPLE.format(a=142, b=57)) == st.fingerprint(SIMPLE.format(a=150, b=61))


@given(a=st_.integers(1, 10**6), b=st_.integers(1, 10**6))
@settings(max_examples=50, deadline=None)
def test_fingerprint_stable_under_any_line_numbers(a, b):
    assert st.fingerprint(SIMPLE.format(a=a, b=b)).name == st.fingerprint(SIMPLE.format(a=1, b=1)).name


def test_chained_exception_uses_outermost():
    trace = st.parse_traceback(CHAINED)
    assert len(trace.segments) == 2 and trace.segments[1].link == "cause"
    assert trace.segments[0].exc_type == "sqlite3.OperationalError"
    fp = st.fingerprint(trace)
    assert fp.exc_type == "app.errors.StorageError"
    assert fp.frames == ("routes.py:post_feedback", "feedback.py:submit")
    context = CHAINED.replace("The above exception was the direct cause of the following exception:",
                              "During handling of the above exception, another exception occurred:")
    assert st.parse_traceback(context).segments[1].link == "context"


def test_recursion_collapsed():
    trace = st.parse_traceback(RECURSION.format(n=950))
    assert trace.outermost.repeated == 950
    fp = st.fingerprint(trace)
    assert fp.frames == ("routes.py:resolve_alias", "alias.py:resolve", "alias.py:_follow")
    assert fp == st.fingerprint(RECURSION.format(n=3))


def test_frames_without_source_and_frozen_modules():
    fp = st.fingerprint(FROZEN)
    assert fp.frames == ("rank_ml.py:load_model", "importlib._bootstrap:_find_and_load", "<string>:<module>")
    assert fp.exc_type == "ModuleNotFoundError"


def test_top_five_frames_innermost():
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "/a/m{i}.py", line {i}, in f{i}' for i in range(8)]
    lines.append("ValueError: x")
    assert st.fingerprint("\n".join(lines)).frames == tuple(f"m{i}.py:f{i}" for i in range(3, 8))


def test_truncated_and_headless():
    cut = "\n".join(SIMPLE.format(a=1, b=2).splitlines()[:4]) + "\n...[truncated]"
    trace = st.parse_traceback(cut)
    assert trace.truncated and not trace.complete
    assert st.fingerprint(trace) is None
    headless = SIMPLE.format(a=1, b=2).split("\n", 1)[1]
    trace = st.parse_traceback(headless)
    assert trace.headless and trace.complete
    assert st.fingerprint(trace) == st.fingerprint(SIMPLE.format(a=3, b=4))
    dangling = CHAINED.split("Traceback (most recent call last):\n  File \"/srv/app/api")[0]
    assert st.parse_traceback(dangling).truncated


def test_name_is_safe_and_bounded():
    fp = st.Fingerprint("Some.Very.Long.Exception" * 10, ("a.py:" + "ф" * 200,))
    assert re.fullmatch(r"[a-z0-9_]+", fp.name) and len(fp.name) <= st.NAME_MAX
    assert st.fingerprint(SIMPLE.format(a=1, b=2)).name.startswith("keyerror_region_boost_")


@given(st_.text())
@settings(max_examples=300, deadline=None)
def test_parser_never_raises(text):
    trace = st.parse_traceback(text)
    fp = st.fingerprint(trace, fallback_type="X")
    if fp is not None:
        assert re.fullmatch(r"[a-z0-9_]+", fp.name) and len(fp.name) <= st.NAME_MAX
        assert is_safe_file_name(f"test_{fp.name}.py")


_pieces = st_.sampled_from([
    "Traceback (most recent call last):", '  File "x.py", line 3, in f', '  File "<frozen a>", in g',
    "    source()", "    ^^^^", "  [Previous line repeated 99999999999999 more times]", "ValueError: boom", "KeyError",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:", "...[truncated]", "", "garbage ::: \x00",
])


@given(st_.lists(_pieces, max_size=30))
@settings(max_examples=300, deadline=None)
def test_parser_never_raises_on_traceback_like_text(lines):
    trace = st.parse_traceback("\n".join(lines))
    st.fingerprint(trace)
    st.all_frames(trace)


def test_non_string_inputs():
    assert st.parse_traceback(None).segments == ()
    assert st.parse_traceback(b"bytes").segments == ()
    assert st.message_literals(None) == []
    assert st.message_literals("invalid literal for int() with base 10: '令和8'") == ["令和8"]
