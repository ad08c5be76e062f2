"""Planted failure modes of the demo service and their CPython-style tracebacks.

A failure mode is a fixed chain of exceptions, each a fixed stack of frames. What varies between
occurrences is what varies in production: line numbers (they move with every deploy of the service),
messages (the key, token, value or id involved) and the recursion depth. A few traces are cut off or
lose their header, as log shippers do.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

import numpy as np

APP = "/srv/autonomath/app"
STDLIB = "/usr/local/lib/python3.11"
SITE = "/srv/autonomath/.venv/lib/python3.11/site-packages"


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    func: str
    source: str | None  # None: a frame without a source line (frozen modules, C code, <string>)
    caret: bool = False  # CPython 3.11 position markers under the source line


@dataclass(frozen=True)
class Segment:
    frames: tuple[Frame, ...]
    exc_type: str  # as printed: builtins bare, others qualified
    messages: tuple[str, ...]  # one is chosen per occurrence; "{n}" / "{req}" are filled in
    recursion: int | None = None  # index of the frame that recurses (printed 3x + "[Previous line ...]")


@dataclass(frozen=True)
class FailureMode:
    name: str
    endpoints: tuple[str, ...]
    segments: tuple[Segment, ...]  # oldest first: segments[0] is the first exception raised
    links: tuple[str, ...]  # between consecutive segments: "context" or "cause"
    weight: float
    first_version: int = 0  # deploy version that introduced the bug
    background: bool = False  # also raised by background jobs (job:* endpoints, no request id)
    burst: bool = False  # part of its occurrences fall on a single incident day

    @property
    def exception_type(self) -> str:
        return self.segments[-1].exc_type

    @property
    def top_frames(self) -> list[str]:
        """Innermost-last frames of the outermost exception, as ``path:func``."""
        return [f"{f.path}:{f.func}" for f in self.segments[-1].frames]


def _f(path: str, line: int, func: str, source: str | None, caret: bool = False) -> Frame:
    return Frame(path, line, func, source, caret)


_ROUTE_SEARCH = _f(
    f"{APP}/api/routes.py", 142, "search_endpoint", "results = search_service.search(q, filters=filters, limit=limit)"
)
_ROUTE_PROGRAM = _f(f"{APP}/api/routes.py", 188, "program_detail", "return programs.get_program(program_id)")
_STARLETTE = _f(f"{SITE}/starlette/routing.py", 74, "app", "response = await func(request)")
_RUN_SYNC = _f(f"{SITE}/anyio/to_thread.py", 56, "run_sync", None)

FAILURE_MODES: tuple[FailureMode, ...] = (
    FailureMode(
        "search_region_keyerror",
        ("GET /v1/search",),
        (
            Segment(
                (
                    _STARLETTE,
                    _ROUTE_SEARCH,
                    _f(f"{APP}/search.py", 211, "search", "ranked = rank_results(hits, query)"),
                    _f(f"{APP}/search.py", 123, "rank_results", "score += region_boost(hit, query.region)"),
                    _f(f"{APP}/scoring.py", 57, "region_boost", 'if hit["prefecture_code"] == region.code:', True),
                ),
                "KeyError",
                ("'prefecture_code'", "'municipality'", "'region'"),
            ),
        ),
        (),
        9.0,
    ),
    FailureMode(
        "fts_syntax_error",
        ("GET /v1/search",),
        (
            Segment(
                (
                    _ROUTE_SEARCH,
                    _f(f"{APP}/search.py", 198, "search", "hits = fts.match(build_match(query.text), limit=limit)"),
                    _f(
                        f"{APP}/fts.py",
                        64,
                        "match",
                        "rows = self.conn.execute(SQL_MATCH, (expr, limit)).fetchall()",
                        True,
                    ),
                ),
                "sqlite3.OperationalError",
                (
                    'fts5: syntax error near "\\""',
                    'fts5: syntax error near "*"',
                    'fts5: syntax error near "AND"',
                    'fts5: syntax error near "-"',
                    'fts5: syntax error near ":"',
                    "unterminated string",
                ),
            ),
            Segment(
                (
                    _ROUTE_SEARCH,
                    _f(
                        f"{APP}/search.py",
                        201,
                        "search",
                        'raise SearchUnavailable(f"FTS query failed for request {request_id}")',
                    ),
                ),
                "app.errors.SearchUnavailable",
                ("FTS query failed for request {req}",),
            ),
        ),
        ("context",),
        7.0,
    ),
    FailureMode(
        "alias_cycle_recursion",
        ("GET /v1/alias/resolve",),
        (
            Segment(
                (
                    _f(f"{APP}/api/routes.py", 231, "resolve_alias", "return alias.resolve(surface)"),
                    _f(f"{APP}/alias.py", 41, "resolve", "return _follow(graph, graph[surface], 0)"),
                    _f(f"{APP}/alias.py", 88, "_follow", "return _follow(graph, graph[node], depth + 1)", True),
                    _f(f"{APP}/alias.py", 84, "_follow", "if node.entity_id is None and node.target in graph:"),
                ),
                "RecursionError",
                ("maximum recursion depth exceeded", "maximum recursion depth exceeded in comparison"),
                recursion=2,
            ),
        ),
        (),
        3.0,
        first_version=1,
    ),
    FailureMode(
        "wareki_year_parse",
        ("GET /v1/search",),
        (
            Segment(
                (
                    _ROUTE_SEARCH,
                    _f(f"{APP}/search.py", 167, "parse_filters", 'year = textnorm.fiscal_year(params.get("year"))'),
                    _f(f"{APP}/textnorm.py", 93, "fiscal_year", 'return int(value.removesuffix("年度"))', True),
                ),
                "ValueError",
                (
                    "invalid literal for int() with base 10: '令和8'",
                    "invalid literal for int() with base 10: 'R8'",
                    "invalid literal for int() with base 10: '二〇二六'",
                    "invalid literal for int() with base 10: '令和７'",
                ),
            ),
        ),
        (),
        5.0,
    ),
    FailureMode(
        "deadline_strptime",
        ("GET /v1/rounds",),
        (
            Segment(
                (
                    _f(
                        f"{APP}/api/routes.py",
                        266,
                        "list_rounds",
                        "return [r.to_json() for r in rounds.list_open(today)]",
                    ),
                    _f(f"{APP}/rounds.py", 72, "list_open", 'deadline = parse_deadline(row["closes_text"])'),
                    _f(f"{APP}/rounds.py", 31, "parse_deadline", 'return datetime.strptime(text, "%Y-%m-%d").date()'),
                    _f(
                        f"{STDLIB}/_strptime.py",
                        568,
                        "_strptime_datetime",
                        "tt, fraction, gmtoff_fraction = _strptime(data_string, format)",
                    ),
                    _f(
                        f"{STDLIB}/_strptime.py",
                        349,
                        "_strptime",
                        'raise ValueError("time data %r does not match format %r" %',
                    ),
                ),
                "ValueError",
                (
                    "time data '2026年5月31日' does not match format '%Y-%m-%d'",
                    "time data '令和8年6月1日' does not match format '%Y-%m-%d'",
                    "time data '5/31' does not match format '%Y-%m-%d'",
                    "time data '2026/05/31 17:00' does not match format '%Y-%m-%d'",
                ),
            ),
        ),
        (),
        4.0,
    ),
    FailureMode(
        "feedback_db_locked",
        ("POST /v1/feedback",),
        (
            Segment(
                (
                    _f(f"{APP}/feedback.py", 48, "submit", "db.write(INSERT_FEEDBACK, row)"),
                    _f(f"{APP}/db.py", 102, "write", "cur = conn.execute(sql, params)"),
                ),
                "sqlite3.OperationalError",
                ("database is locked",),
            ),
            Segment(
                (
                    _f(f"{APP}/api/routes.py", 301, "post_feedback", "feedback.submit(body, key=api_key)"),
                    _f(f"{APP}/feedback.py", 51, "submit", 'raise StorageError("could not write feedback") from exc'),
                ),
                "app.errors.StorageError",
                ("could not write feedback",),
            ),
        ),
        ("cause",),
        3.0,
        burst=True,
    ),
    FailureMode(
        "billing_webhook_json",
        ("POST /v1/billing/webhook",),
        (
            Segment(
                (
                    _f(f"{APP}/billing.py", 77, "webhook", "event = json.loads(body)"),
                    _f(f"{STDLIB}/json/__init__.py", 346, "loads", "return _default_decoder.decode(s)"),
                    _f(f"{STDLIB}/json/decoder.py", 337, "decode", "obj, end = self.raw_decode(s, idx=_w(s, 0).end())"),
                    _f(
                        f"{STDLIB}/json/decoder.py",
                        355,
                        "raw_decode",
                        'raise JSONDecodeError("Expecting value", s, err.value) from None',
                    ),
                ),
                "json.decoder.JSONDecodeError",
                ("Expecting value: line 1 column 1 (char 0)", "Expecting value: line 1 column {n} (char {m})"),
            ),
        ),
        (),
        2.0,
    ),
    FailureMode(
        "program_detail_none",
        ("GET /v1/programs/{program_id}",),
        (
            Segment(
                (
                    _STARLETTE,
                    _ROUTE_PROGRAM,
                    _f(f"{APP}/programs.py", 58, "get_program", "return render(program, rounds.latest(program_id))"),
                    _f(f"{APP}/programs.py", 91, "render", '"deadline": latest_round.get("closes_at"),', True),
                ),
                "AttributeError",
                ("'NoneType' object has no attribute 'get'",),
            ),
        ),
        (),
        6.0,
        first_version=1,
    ),
    FailureMode(
        "amount_ratio_zero_division",
        ("GET /v1/search",),
        (
            Segment(
                (
                    _ROUTE_SEARCH,
                    _f(f"{APP}/search.py", 131, "rank_results", "score += amount_ratio(hit, query) * W_AMOUNT"),
                    _f(f"{APP}/scoring.py", 88, "amount_ratio", 'return query.amount / hit["max_amount_jpy"]', True),
                ),
                "ZeroDivisionError",
                ("division by zero", "float division by zero"),
            ),
        ),
        (),
        3.5,
        first_version=2,
    ),
    FailureMode(
        "source_fetch_timeout",
        ("GET /v1/programs/{program_id}/source", "job:liveness_scan"),
        (
            Segment(
                (
                    _f(f"{APP}/fetch.py", 39, "fetch_source", "resp = client.get(url, timeout=10.0)"),
                    _f(f"{SITE}/httpx/_client.py", 1054, "get", "return self.request("),
                    _f(
                        f"{SITE}/httpx/_client.py",
                        827,
                        "request",
                        "return self.send(request, auth=auth, follow_redirects=follow_redirects)",
                    ),
                    _f(
                        f"{SITE}/httpx/_transports/default.py", 232, "handle_request", "with map_httpcore_exceptions():"
                    ),
                    _f(f"{STDLIB}/contextlib.py", 158, "__exit__", "self.gen.throw(typ, value, traceback)"),
                    _f(
                        f"{SITE}/httpx/_transports/default.py",
                        86,
                        "map_httpcore_exceptions",
                        "raise mapped_exc(message) from exc",
                    ),
                ),
                "httpx.ReadTimeout",
                ("The read operation timed out", "timed out"),
            ),
        ),
        (),
        2.5,
        background=True,
    ),
    FailureMode(
        "ranker_import_error",
        ("GET /v1/search", "job:embed_refresh"),
        (
            Segment(
                (
                    _f(f"{APP}/rank_ml.py", 22, "load_model", "from sentence_transformers import SentenceTransformer"),
                    _f("<frozen importlib._bootstrap>", 1176, "_find_and_load", None),
                    _f("<frozen importlib._bootstrap>", 1147, "_find_and_load_unlocked", None),
                    _f("<frozen importlib._bootstrap>", 690, "_load_unlocked", None),
                    _f("<frozen importlib._bootstrap_external>", 940, "exec_module", None),
                    _f("<frozen importlib._bootstrap>", 241, "_call_with_frames_removed", None),
                    _f(
                        f"{SITE}/sentence_transformers/__init__.py",
                        10,
                        "<module>",
                        "from sentence_transformers.backend import export_dynamic_quantized_onnx_model",
                    ),
                ),
                "ModuleNotFoundError",
                ("No module named 'sentencepiece'", "No module named 'tokenizers'"),
            ),
        ),
        (),
        1.5,
        first_version=2,
    ),
    FailureMode(
        "export_sjis_encode",
        ("GET /v1/export.csv",),
        (
            Segment(
                (_f(f"{APP}/export.py", 66, "export_csv", 'out.write(line.encode("shift_jis"))'),),
                "UnicodeEncodeError",
                (
                    "'shift_jis' codec can't encode character '\\u2460' in position {n}: illegal multibyte sequence",
                    "'shift_jis' codec can't encode character '\\u9ad9' in position {n}: illegal multibyte sequence",
                    "'shift_jis' codec can't encode character '\\u2161' in position {n}: illegal multibyte sequence",
                ),
            ),
        ),
        (),
        1.2,
    ),
    FailureMode(
        "pagination_index",
        ("GET /v1/search",),
        (
            Segment(
                (
                    _ROUTE_SEARCH,
                    _f(f"{APP}/search.py", 240, "paginate", 'cursor = hits[offset + limit - 1]["rowid"]', True),
                ),
                "IndexError",
                ("list index out of range",),
            ),
        ),
        (),
        2.0,
    ),
    FailureMode(
        "template_eval_string",
        ("job:digest",),
        (
            Segment(
                (
                    _f(f"{APP}/jobs/digest.py", 29, "render_digest", "value = eval(expr, {}, context)"),
                    _f("<string>", 1, "<module>", None),
                ),
                "NameError",
                ("name 'loops_total' is not defined", "name 'promoted' is not defined"),
            ),
        ),
        (),
        0.8,
        background=True,
    ),
)

FAILURE_MODES_BY_NAME = {m.name: m for m in FAILURE_MODES}


def _line_offset(path: str, version: int) -> int:
    """Deterministic line shift of an app file in a deploy version (stdlib/site-packages never move)."""
    if version == 0 or not path.startswith(APP):
        return 0
    h = zlib.crc32(f"{path}#{version}".encode())
    return int(h % 23) - 4 + 3 * version


def render(mode: FailureMode, version: int, rng: np.random.Generator, request_id: str | None) -> tuple[str, str, str]:
    """One occurrence: (traceback text, exception type, message)."""
    blocks: list[str] = []
    message = ""
    for k, seg in enumerate(mode.segments):
        lines = ["Traceback (most recent call last):"]
        for i, fr in enumerate(seg.frames):
            line_no = fr.line + _line_offset(fr.path, version)
            repeat = 3 if seg.recursion == i else 1
            for _ in range(repeat):
                lines.append(f'  File "{fr.path}", line {line_no}, in {fr.func}')
                if fr.source is not None:
                    lines.append(f"    {fr.source}")
                    if fr.caret:
                        # the failing expression: same columns every time the same code fails
                        stripped = fr.source.rstrip()
                        start = zlib.crc32(stripped.encode()) % max(1, len(stripped) // 3)
                        lines.append("    " + " " * start + "^" * max(1, len(stripped) - start))
            if seg.recursion == i:
                lines.append(f"  [Previous line repeated {int(rng.integers(900, 997))} more times]")
        template = seg.messages[int(rng.integers(len(seg.messages)))]
        message = template.format(n=int(rng.integers(2, 400)), m=int(rng.integers(1, 400)), req=request_id or "-")
        lines.append(f"{seg.exc_type}: {message}")
        blocks.append("\n".join(lines))
        if k < len(mode.links):
            blocks.append(
                "During handling of the above exception, another exception occurred:"
                if mode.links[k] == "context"
                else "The above exception was the direct cause of the following exception:"
            )
    return "\n\n".join(blocks) + "\n", mode.exception_type, message


def describe(mode: FailureMode) -> dict:
    """JSON-able description for the truth file."""
    return {
        "exception_type": mode.exception_type,
        "endpoints": list(mode.endpoints),
        "chain": [
            {
                "exception_type": s.exc_type,
                "frames": [f"{f.path}:{f.func}" for f in s.frames],
                "recursion": s.recursion is not None,
            }
            for s in mode.segments
        ],
        "links": list(mode.links),
        "top_frames": mode.top_frames,
        "first_version": mode.first_version,
    }


# ------------------------------------------------------------------ how the service's logs carry them

#: How a rendered trace reaches error_log, with its share of rows. Real services mix these: several
#: Python versions, log shippers that prefix each line or JSON-encode the record, notebooks run by
#: analysts, and TaskGroup/ExceptionGroup wrappers around request handlers.
LOG_FORMATS: dict[str, float] = {
    "plain": 0.50,
    "py313": 0.10,
    "log_prefix": 0.10,
    "json_record": 0.08,
    "json_escaped": 0.05,
    "ipython": 0.07,
    "ipython_ansi": 0.03,
    "exception_group": 0.07,
}
_ANSI_RED, _ANSI_GREEN, _ANSI_RESET = "\x1b[0;31m", "\x1b[0;32m", "\x1b[0m"
_FRAME_LINE = re.compile(r'^  File "(?P<path>[^"]*)", line (?P<line>\d+), in (?P<func>.*)$')


def _py313_markers(line: str) -> str:
    """3.13 marks the whole expression with ``~`` and the failing operator with ``^``."""
    body = line.lstrip(" ")
    if not body or set(body) != {"^"}:
        return line
    tildes = len(body) * 2 // 3
    return line[: len(line) - len(body)] + "~" * tildes + "^" * (len(body) - tildes)


def _ipython(text: str, exc_type: str, colour: bool) -> str:
    """The trace as IPython ≥ 8 prints it: a type header, ``File path:N, in f()`` frames with
    ``---->`` arrows on the source line, optionally in ANSI colour."""
    red, green, reset = (_ANSI_RED, _ANSI_GREEN, _ANSI_RESET) if colour else ("", "", "")
    out = [
        f"{red}{'-' * 75}{reset}",
        f"{red}{exc_type}{reset}{' ' * max(1, 42 - len(exc_type))}Traceback (most recent call last)",
    ]
    line_no = "0"
    for line in text.rstrip("\n").split("\n")[1:]:
        frame = _FRAME_LINE.match(line)
        if frame:
            line_no = frame.group("line")
            out += ["", f"File {green}{frame.group('path')}:{line_no}{reset}, in {frame.group('func')}()"]
        elif line.startswith("    ") and not set(line.strip()) <= {"^", "~"}:
            out.append(f"{green}---> {line_no}{reset} {line.strip()}")
        elif line.startswith("  [Previous line"):
            out.append(line.strip())
        elif not line.startswith(" "):
            name, _, rest = line.partition(":")
            out += ["", f"{red}{name}{reset}:{rest}"]
    return "\n".join(out) + "\n"


def _exception_group(text: str) -> str:
    """The trace as the one leaf of an ExceptionGroup raised by an ``asyncio.TaskGroup`` handler."""
    lines = [
        "  + Exception Group Traceback (most recent call last):",
        f'  |   File "{APP}/api/middleware.py", line 48, in dispatch',
        "  |     async with asyncio.TaskGroup() as tg:",
        f'  |   File "{STDLIB}/asyncio/taskgroups.py", line 145, in __aexit__',
        "  |     raise me from None",
        "  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)",
        "  +-+---------------- 1 ----------------",
    ]
    lines += [f"    | {line}".rstrip() for line in text.rstrip("\n").split("\n")]
    lines.append("    +------------------------------------")
    return "\n".join(lines) + "\n"


def ship(text: str, log_format: str, exc_type: str, ts: str) -> str:
    """``text`` (a CPython 3.11 trace from ``render``) as it lands in error_log in ``log_format``."""
    if log_format == "py313":
        return "\n".join(_py313_markers(line) for line in text.split("\n"))
    if log_format == "log_prefix":
        return "\n".join(
            f"{ts.replace('T', ' ')[:19]},{k % 1000:03d} ERROR [autonomath.api] {line}"
            for k, line in enumerate(text.rstrip("\n").split("\n"))
        )
    if log_format == "json_record":
        return json.dumps(
            {"ts": ts, "level": "error", "logger": "autonomath.api", "exc_info": text}, ensure_ascii=False
        )
    if log_format == "json_escaped":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    if log_format in ("ipython", "ipython_ansi"):
        return _ipython(text, exc_type, colour=log_format == "ipython_ansi")
    if log_format == "exception_group":
        return _exception_group(text)
    return text


def log_format_for(mode: FailureMode, u: float) -> str:
    """The format of one occurrence from a uniform draw ``u``; chained traces are never shown by IPython here."""
    acc = 0.0
    for name, share in LOG_FORMATS.items():
        acc += share
        if u < acc:
            return "plain" if name.startswith("ipython") and len(mode.segments) > 1 else name
    return "plain"
