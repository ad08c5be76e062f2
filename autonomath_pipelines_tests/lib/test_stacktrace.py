"""Traceback parsing and fingerprints (lib/stacktrace.py)."""

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st_

from autonomath_pipelines.lib import stacktrace as st
from autonomath_pipelines.lib.files import is_safe_file_name

SIMPLE = """Traceback (most recent call last):
  File "/srv/app/api/routes.py", line {a}, in search_endpoint
    results = search_service.search(q)
  File "/srv/app/scoring.py", line {b}, in region_boost
    if hit["prefecture_code"] == region.code:
       ^^^^^^^^^^^^^^^^^^^^^^
KeyError: 'prefecture_code'
"""

CHAINED = """Traceback (most recent call last):
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
"""

RECURSION = (
    """Traceback (most recent call last):
  File "/srv/app/api/routes.py", line 231, in resolve_alias
    return alias.resolve(surface)
  File "/srv/app/alias.py", line 41, in resolve
    return _follow(graph, graph[surface], 0)
"""
    + """  File "/srv/app/alias.py", line 88, in _follow
    return _follow(graph, graph[node], depth + 1)
"""
    * 3
    + """  [Previous line repeated {n} more times]
  File "/srv/app/alias.py", line 84, in _follow
    if node.entity_id is None and node.target in graph:
RecursionError: maximum recursion depth exceeded
"""
)

FROZEN = """Traceback (most recent call last):
  File "/srv/app/rank_ml.py", line 22, in load_model
    from sentence_transformers import SentenceTransformer
  File "<frozen importlib._bootstrap>", line 1176, in _find_and_load
  File "<string>", line 1, in <module>
ModuleNotFoundError: No module named 'sentencepiece'
"""


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


def test_chained_exception_groups_by_root_cause():
    trace = st.parse_traceback(CHAINED)
    assert len(trace.segments) == 2 and trace.segments[1].link == "cause"
    assert trace.segments[0].exc_type == "sqlite3.OperationalError"
    assert trace.exc_type == "app.errors.StorageError"
    fp = st.fingerprint(trace)
    assert fp.exc_type == "sqlite3.OperationalError"  # issue 13: like Sentry, the root cause
    assert fp.frames == ("db.py:write",)
    context = CHAINED.replace(
        "The above exception was the direct cause of the following exception:",
        "During handling of the above exception, another exception occurred:",
    )
    assert st.parse_traceback(context).segments[1].link == "context"


def test_recursion_collapsed():
    trace = st.parse_traceback(RECURSION.format(n=950))
    assert trace.outermost.repeated == 950
    fp = st.fingerprint(trace)
    assert fp.frames == ("routes.py:resolve_alias", "alias.py:resolve", "alias.py:_follow")
    assert fp == st.fingerprint(RECURSION.format(n=3))


def test_frames_without_source_and_frozen_modules():
    fp = st.fingerprint(FROZEN)
    assert fp.frames == ("rank_ml.py:load_model",)  # frozen / <string> frames are never in-app
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
    dangling = CHAINED.split('Traceback (most recent call last):\n  File "/srv/app/api')[0]
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


_pieces = st_.sampled_from(
    [
        "Traceback (most recent call last):",
        '  File "x.py", line 3, in f',
        '  File "<frozen a>", in g',
        "    source()",
        "    ^^^^",
        "  [Previous line repeated 99999999999999 more times]",
        "ValueError: boom",
        "KeyError",
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
        "...[truncated]",
        "",
        "garbage ::: \x00",
    ]
)


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


# ---------------------------------------------------------------- issue 13: what services really log

PY313 = """Traceback (most recent call last):
  File "/srv/app/api/routes.py", line 142, in search_endpoint
    results = search_service.search(q)
              ~~~~~~~~~~~~~~~~~~~~~^^^
  File "/srv/app/scoring.py", line 57, in region_boost
    if hit["prefecture_code"] == region.code:
       ~~~^^^^^^^^^^^^^^^^^^^
KeyError: 'prefecture_code'
"""

GROUP = """  + Exception Group Traceback (most recent call last):
  |   File "/srv/app/jobs.py", line 10, in <module>
  |     run()
  |   File "/srv/app/jobs.py", line 7, in run
  |     raise ExceptionGroup("many", [ValueError(1), TypeError(2)])
  | ExceptionGroup: many (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/srv/app/jobs.py", line 3, in fetch
    |     raise ValueError(1)
    | ValueError: 1
    +---------------- 2 ----------------
    | TypeError: 2
    +------------------------------------
"""

IPYTHON8 = """\x1b[0;31m---------------------------------------------------------------------------\x1b[0m
\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)
Cell \x1b[0;32mIn[3], line 1\x1b[0m
\x1b[0;32m----> 1\x1b[0m f(\x1b[38;5;241m0\x1b[39m)

Cell In[2], line 2, in f(x)
      1 def f(x):
----> 2     return div(1, x)

File /srv/app/calc.py:12, in div(a, b)
     10 def div(a, b):
---> 12     return a / b

\x1b[0;31mZeroDivisionError\x1b[0m: division by zero
"""

IPYTHON7 = """---------------------------------------------------------------------------
ZeroDivisionError                         Traceback (most recent call last)
<ipython-input-2-9f8e7a6b5c4d> in <module>
----> 1 f(0)

/srv/app/calc.py in div(a, b)
     11 def div(a, b):
---> 12     return a / b

ZeroDivisionError: division by zero
"""


def test_python_313_markers_parse_like_311():
    assert st.fingerprint(PY313) == st.fingerprint(SIMPLE.format(a=1, b=2))


def test_exception_group_groups_by_first_leaf():
    trace = st.parse_traceback(GROUP)
    assert [s.exc_type for s in trace.segments] == ["ExceptionGroup", "ValueError", "TypeError"]
    assert trace.segments[0].frames[-1].normalized == "jobs.py:run"
    fp = st.fingerprint(trace)
    assert fp.exc_type == "ValueError" and fp.frames == ("jobs.py:fetch",)


def test_ipython_frames_cells_arrows_and_colours():
    trace = st.parse_traceback(IPYTHON8)
    assert trace.complete and trace.exc_type == "ZeroDivisionError"
    assert [f.normalized for f in trace.outermost.frames] == ["<cell>:<module>", "<cell>:f", "calc.py:div"]
    assert trace.outermost.frames[-1].line == 12
    assert st.fingerprint(trace).frames == ("<cell>:<module>", "<cell>:f", "calc.py:div")
    old = st.parse_traceback(IPYTHON7)
    assert [f.normalized for f in old.outermost.frames] == ["<cell>:<module>", "calc.py:div"]
    assert old.outermost.message == "division by zero"


def test_log_prefix_on_every_line_and_json_escaped():
    prefixed = "\n".join(
        f"2026-05-01 12:00:0{i},1{i}3 ERROR [api] {line}" for i, line in enumerate(SIMPLE.format(a=1, b=2).splitlines())
    )
    assert st.fingerprint(prefixed) == st.fingerprint(SIMPLE.format(a=1, b=2))
    record = json.dumps({"ts": "2026-05-01T12:00:00Z", "level": "error", "exc_info": SIMPLE.format(a=1, b=2)})
    assert st.fingerprint(record) == st.fingerprint(SIMPLE.format(a=1, b=2))
    escaped = json.dumps(SIMPLE.format(a=1, b=2))[1:-1]
    assert "\n" not in escaped and st.fingerprint(escaped) == st.fingerprint(SIMPLE.format(a=1, b=2))


def test_in_app_prefixes_and_message_fallback():
    library_only = """Traceback (most recent call last):
  File "/usr/lib/python3.12/json/decoder.py", line 355, in raw_decode
    raise JSONDecodeError("Expecting value", s, err.value) from None
json.decoder.JSONDecodeError: Expecting value: line 1 column 17 (char 16)
"""
    fp = st.fingerprint(library_only)
    assert fp.frames == () and fp.message == "Expecting value: line <n> column <n> (char <n>)"
    assert fp == st.fingerprint(library_only.replace("17 (char 16)", "3 (char 2)"))
    assert st.fingerprint(SIMPLE.format(a=1, b=2), in_app_prefixes=["/srv/app/api"]).frames == (
        "routes.py:search_endpoint",
    )
    assert not st.in_app("/srv/app/.venv/lib/python3.11/site-packages/httpx/_client.py")
    assert not st.in_app("<frozen importlib._bootstrap>") and st.in_app("/srv/app/x.py")


def test_normalize_message_strips_what_varies():
    a = st.normalize_message(
        "user 3f2b8c1e-1d2a-4b3c-9d8e-7f6a5b4c3d2e not found at 0x7f3a2b in '/srv/data/a.csv' row 12"
    )
    b = st.normalize_message("user 00000000-1111-2222-3333-444444444444 not found at 0xdeadbeef in '/x/y/z.csv' row 9")
    assert a == b == "user <uuid> not found at <hex> in <v> row <n>"
    assert st.normalize_message("open /var/log/app/x.log failed") == "open <path> failed"


_TRACES = st_.sampled_from([SIMPLE.format(a=1, b=2), CHAINED, RECURSION.format(n=5), FROZEN, PY313, GROUP, IPYTHON8])
_PREFIX = st_.from_regex(
    r"\A(20\d\d-[01]\d-[0-3]\d [0-2]\d:[0-5]\d:[0-5]\d,\d{3} (ERROR|WARNING) \[[a-z]{1,8}\] )\Z", fullmatch=True
)


@given(_TRACES, _PREFIX)
def test_property_log_prefix_keeps_the_fingerprint(text, prefix):
    prefixed = "\n".join(prefix + line for line in text.splitlines())
    assert st.fingerprint(prefixed) == st.fingerprint(text)


@given(_TRACES, st_.booleans())
def test_property_json_escaping_keeps_the_fingerprint(text, as_record):
    shipped = json.dumps({"message": "boom", "traceback": text}) if as_record else json.dumps(text)[1:-1]
    assert st.fingerprint(shipped) == st.fingerprint(text)


@given(_TRACES, st_.integers(min_value=0, max_value=60), st_.integers(min_value=0, max_value=200))
def test_property_truncation_keeps_what_remains(text, keep_lines, cut_chars):
    lines = text.splitlines()[:keep_lines]
    cut = "\n".join(lines)[: max(0, len("\n".join(lines)) - cut_chars % 7)]
    trace = st.parse_traceback(cut)
    full = st.all_frames(st.parse_traceback(text))
    kept = st.all_frames(trace)
    assert full[: len(kept)] == kept or full[: len(kept) - 1] == kept[:-1]  # the last frame may be cut mid-line
    fp = st.fingerprint(trace)
    assert fp is None or re.fullmatch(r"[a-z0-9_]+", fp.name)
