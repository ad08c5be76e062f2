"""CPython traceback parsing and Sentry-style fingerprints (pure; never raises on any string).

Reads what Python services really log: CPython 3.8–3.13 (``^^^^``/``~~~~`` position markers, frames
without a source line such as ``<frozen ...>``/``<string>``, "[Previous line repeated N more times]"),
chained exceptions ("During handling of the above exception, another exception occurred:", "The above
exception was the direct cause of the following exception:"), ``ExceptionGroup`` blocks (``| `` prefixed,
``+-+---- 1 ----`` separators), IPython/Jupyter frames (``File /p.py:12, in f()``, ``Cell In[25], line 2``,
``<ipython-input-3-…> in <module>``, ``---->`` arrows, ANSI colours), a timestamp/level prefix repeated on
every line, JSON-escaped ``\n`` from structured logs, traces that lost their header, and truncated traces.

Fingerprint, like Sentry: the root cause (first printed exception of a chain; the first leaf of an
exception group) keyed by its type + its innermost five *in-app* frames (file basename or cell, function;
no line numbers; consecutive duplicates collapsed). In-app = a path under one of the configured prefixes,
or, with none configured, any path that is not stdlib / site-packages / ``<frozen …>`` / ``<string>``.
With no in-app frame: type + the message normalized (numbers, quoted values, hex, UUIDs, paths stripped).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Iterable

HEADER = "Traceback (most recent call last):"
GROUP_HEADER = "Exception Group Traceback (most recent call last):"
CHAIN_MARKERS = {
    "During handling of the above exception, another exception occurred:": "context",
    "The above exception was the direct cause of the following exception:": "cause",
}
#: Stands for a ``+---- 1 ----`` separator: a leaf of an exception group starts (it may have no traceback).
GROUP_ITEM = "\x00exception-group-item"
TOP_FRAMES = 5
NAME_MAX = 60
#: Paths that are never the service's own code, whatever prefixes are configured.
LIBRARY_MARKERS = (
    "site-packages",
    "dist-packages",
    "/lib/python",
    "\\lib\\python",
    "/python3.",
    "\\python3",
    "/usr/lib/",
    "/IPython/",
    "/ipykernel/",
    "/runpy.py",
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)"(?:, line (?P<line>\d+))?(?:, in (?P<func>.*?))?\s*$')
# IPython ≥ 8: ``File /path/x.py:123, in func(arg)`` / ``File ~/x.py:3`` / ``File <frozen os>:12, in f``
_IPY_FRAME = re.compile(r"^\s*File (?P<path>[^\s\"][^\n]*?):(?P<line>\d+)(?:, in (?P<func>[^\s(]+)(?:\(.*)?)?\s*$")
_IPY_CELL = re.compile(
    r"^\s*(?:Cell|Input) In ?\[(?P<cell>[^\]]*)\], line (?P<line>\d+)(?:, in (?P<func>[^\s(]+)(?:\(.*)?)?\s*$"
)
# IPython ≤ 7: ``<ipython-input-3-ab12> in <module>`` / ``/path/x.py in func(arg)``
_IPY7_FRAME = re.compile(r"^(?P<path><ipython-input-[^>]*>|<[^>\s]+>|\S+\.pyw?) in (?P<func>[\w<>.]+)(?:\(.*)?\s*$")
_IPY_HEADER = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)\s{2,}Traceback \(most recent call last\)\s*$")
_IPY_ARROW = re.compile(r"^-*>\s*\d+")
_GROUP_BAR = re.compile(r"^(?P<indent>\s*)[|+] ?")
_GROUP_SEPARATOR = re.compile(r"^\s*\+?[-+]+(?:\s*(?:\d+|\.\.\.[^-]*)\s*-+)?\s*$")
_ANCHOR = re.compile(r"(?:[A-Za-z_][\w.]*\s{2,})?(?:Exception Group )?Traceback \(most recent call last\)")
_REPEATED = re.compile(r"^\s*\[Previous line repeated (\d+) more times?\]\s*$")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_SLUG = re.compile(r"[^a-z0-9]+")
_JSON_ESCAPE = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_JSON_CHARS = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Frame:
    path: str
    line: int | None
    function: str

    @property
    def module(self) -> str:
        """File basename, the module of a frozen frame (``<frozen importlib._bootstrap>``), or ``<cell>``."""
        path = self.path.strip()
        if path.startswith("<frozen ") and path.endswith(">"):
            return path[len("<frozen ") : -1]
        if path.startswith(("<ipython-input-", "<cell")):
            return "<cell>"  # the cell number changes with every run of the notebook
        return re.split(r"[\\/]", path)[-1] or path

    @property
    def normalized(self) -> str:
        return f"{self.module}:{self.function}"

    def in_app(self, prefixes: Iterable[str] = ()) -> bool:
        return in_app(self.path, prefixes)


def in_app(path: str, prefixes: Iterable[str] = ()) -> bool:
    """Whether a frame's path is the service's own code (Sentry's in-app)."""
    path = path.strip()
    if path.startswith(("<ipython-input-", "<cell")):
        return True
    if path.startswith("<") or any(marker in path for marker in LIBRARY_MARKERS):
        return False  # <frozen …>, <string>, <stdin>, stdlib, site-packages
    prefixes = tuple(p for p in prefixes if p)
    return path.startswith(prefixes) if prefixes else True


@dataclass(frozen=True)
class Segment:
    """One exception of a chain: its frames (outermost first) and the exception line."""

    frames: tuple[Frame, ...] = ()
    exc_type: str | None = None
    message: str | None = None
    link: str | None = None  # how it follows the previous one: "context" | "cause" | "group" | None
    repeated: int = 0  # lines skipped by "[Previous line repeated N more times]"


@dataclass(frozen=True)
class ParsedTrace:
    segments: tuple[Segment, ...] = ()
    truncated: bool = False  # the last exception line is missing (cut off by the log shipper)
    headless: bool = False  # frames before any "Traceback" header

    @property
    def outermost(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    @property
    def exc_type(self) -> str | None:
        return self.outermost.exc_type if self.outermost else None

    @property
    def complete(self) -> bool:
        return bool(self.segments) and not self.truncated and self.exc_type is not None


@dataclass
class _Builder:
    frames: list[Frame] = field(default_factory=list)
    link: str | None = None
    repeated: int = 0
    started: bool = False

    def build(self, exc_type: str | None = None, message: str | None = None) -> Segment:
        return Segment(tuple(self.frames), exc_type, message, self.link, self.repeated)


def parse_traceback(text: object) -> ParsedTrace:
    """Parse ``text``; anything that is not a traceback gives a trace with no usable segments."""
    try:
        return _parse(clean_lines(text if isinstance(text, str) else ("" if text is None else str(text))))
    except Exception:  # pragma: no cover - defensive: the parser must never fail a run
        return ParsedTrace((), truncated=True)


def unescape_json(text: str) -> str:
    """A traceback shipped inside a JSON log record: the record's string that holds it, or the text
    with JSON escapes (``\\n``, ``\\"``, ``\\uXXXX``) undone when it has no real line breaks."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except ValueError:
            record = None
        if record is not None:
            strings = [v for v in _strings(record) if "File " in v or "Traceback" in v or "Cell In" in v]
            if strings:
                return max(strings, key=len)
    if "\\n" in text and text.count("\n") <= 1:
        return _JSON_ESCAPE.sub(lambda m: _JSON_CHARS.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)
    return text


def _strings(value: object, depth: int = 0):
    if depth > 20:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, depth + 1)


def log_prefix(lines: list[str]) -> re.Pattern | None:
    """The per-line log prefix (``2024-05-01 12:00:00,123 ERROR [app] ``) in front of the first
    traceback header, as a pattern with its digits free (timestamps move from line to line)."""
    for line in lines:
        anchor = _ANCHOR.search(line)
        if anchor and anchor.start() > 0:
            prefix = line[: anchor.start()]
            if not prefix.strip(" +|"):
                return None
            bare = prefix.rstrip("+| ")  # keep one separating space, not the group bars
            prefix = bare + (" " if prefix[len(bare) :].startswith(" ") else "")
            parts = _DIGITS.split(prefix)
            return re.compile(r"\d+".join(re.escape(p) for p in parts))
        if anchor:
            return None
    return None


def clean_lines(text: str) -> list[str]:
    """Lines of ``text`` as CPython printed them: JSON escapes undone, ANSI colours and a repeated
    log prefix removed, exception-group bars (``| ``) and separators dropped."""
    text = _ANSI.sub("", unescape_json(text))
    lines = text.splitlines()
    prefix = log_prefix(lines)
    out = []
    for raw in lines:
        line = raw.rstrip()
        if prefix is not None:
            match = prefix.match(line)
            if match:
                line = line[match.end() :]
        if _GROUP_SEPARATOR.match(line) and "+" in line:
            if any(ch.isdigit() for ch in line) or "..." in line:
                out.append(GROUP_ITEM)
            continue
        bar = _GROUP_BAR.match(line)
        if bar and (line.lstrip().startswith("| ") or line.lstrip().startswith("+ ") or line.strip() in "|+"):
            line = line[bar.end() :]
        out.append(line)
    return out


def _parse(lines: list[str]) -> ParsedTrace:
    segments: list[Segment] = []
    current = _Builder()
    headless = False
    cut = False
    pending_link: str | None = None

    def add_frame(path: str, number: str | None, func: str | None) -> None:
        nonlocal current, headless, pending_link
        if not current.started:
            headless = headless or not segments
            current = _Builder(link=pending_link, started=True)
            pending_link = None
        current.frames.append(
            Frame(path, int(number) if number and len(number) < 10 else None, (func or "?").strip() or "?")
        )

    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if line == GROUP_ITEM:
            if current.frames:  # frames never closed by an exception line
                segments.append(current.build())
            current = _Builder(link="group", started=True)
            continue
        if stripped in (HEADER, GROUP_HEADER) or _IPY_HEADER.match(stripped):
            if current.frames:  # a header without an exception line before it
                segments.append(current.build())
            current = _Builder(link=pending_link or (current.link if current.started else None), started=True)
            pending_link = None
            continue
        if stripped in CHAIN_MARKERS:
            if current.started:
                segments.append(current.build())
                current = _Builder()
            pending_link = CHAIN_MARKERS[stripped]
            continue
        if stripped.startswith("...") and "truncat" in stripped.lower():
            cut = True
            continue
        frame = _FRAME.match(line) or _IPY_FRAME.match(line)
        if frame:
            add_frame(frame.group("path"), frame.group("line"), frame.group("func"))
            continue
        cell = _IPY_CELL.match(line)
        if cell:
            add_frame("<cell>", cell.group("line"), cell.group("func") or "<module>")
            continue
        ipy7 = _IPY7_FRAME.match(stripped)
        if ipy7 and not line[:1].isspace():
            add_frame(ipy7.group("path"), None, ipy7.group("func"))
            continue
        repeated = _REPEATED.match(line)
        if repeated:
            current.repeated += min(int(repeated.group(1)[:9]), 10**9)
            continue
        if line[:1].isspace() or _IPY_ARROW.match(stripped) or set(stripped) <= set("-^~ "):
            continue  # a source line, position markers or an IPython arrow
        exception = _EXCEPTION.match(stripped)
        if exception and current.started and (current.frames or exception.group("message") is not None):
            segments.append(current.build(exception.group("type"), (exception.group("message") or "").strip()))
            current = _Builder()
            continue
    truncated = cut
    if current.started:  # frames never closed by an exception line
        segments.append(current.build())
        truncated = True
    elif pending_link is not None:  # a chain marker with nothing after it
        truncated = True
    return ParsedTrace(tuple(segments), truncated=truncated, headless=headless)


def collapse(frames: list[str] | tuple[str, ...]) -> list[str]:
    """Drop consecutive duplicates (recursion prints the same frame over and over)."""
    out: list[str] = []
    for f in frames:
        if not out or out[-1] != f:
            out.append(f)
    return out


_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b")
_QUOTED_VALUE = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-~@]+){2,}[\\/]?|~[\\/][\w.\-/\\]+")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")
_SPACES = re.compile(r"\s+")


def normalize_message(message: object) -> str:
    """An exception message with what varies between occurrences of one bug stripped: UUIDs, hex,
    quoted values, paths and numbers become placeholders."""
    if not isinstance(message, str):
        return ""
    text = _UUID.sub("<uuid>", message[:2000])
    text = _QUOTED_VALUE.sub("<v>", text)
    text = _PATH.sub("<path>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()[:200]


@dataclass(frozen=True)
class Fingerprint:
    exc_type: str
    frames: tuple[str, ...]  # in-app frames, innermost last, at most TOP_FRAMES
    message: str = ""  # the normalized message, only when there is no in-app frame

    @property
    def key(self) -> str:
        return self.exc_type + "|" + (">".join(self.frames) if self.frames else "msg:" + self.message)

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.key.encode("utf-8", "replace")).hexdigest()[:8]

    @property
    def name(self) -> str:
        """``<exception>_<innermost function>_<hash>``: ``[a-z0-9_]``, at most NAME_MAX characters."""
        exc = slug(self.exc_type.rsplit(".", 1)[-1]) or "error"
        func = ""
        for frame in reversed(self.frames):
            candidate = slug(frame.rsplit(":", 1)[-1])
            if candidate and candidate != "module":
                func = candidate
                break
        stem = "_".join(p for p in (exc, func) if p)[: NAME_MAX - 9].strip("_") or "error"
        return f"{stem}_{self.digest}"


def slug(text: str) -> str:
    return _SLUG.sub("_", text.lower()).strip("_")


def all_frames(trace: ParsedTrace) -> tuple[str, ...]:
    """Every segment's collapsed normalized frames, oldest exception first, '#' between segments."""
    out: list[str] = []
    for k, seg in enumerate(trace.segments):
        if k:
            out.append("#")
        out.extend(collapse([f.normalized for f in seg.frames]))
    return tuple(out)


def is_group(exc_type: str | None) -> bool:
    return bool(exc_type) and exc_type.rsplit(".", 1)[-1] in ("ExceptionGroup", "BaseExceptionGroup")


def root_cause(trace: ParsedTrace) -> Segment | None:
    """The exception the chain started from: the first printed one that has a type, skipping an
    exception group's own block for its first leaf; None when no segment has a type."""
    typed = [seg for seg in trace.segments if seg.exc_type]
    for seg in typed:
        if not is_group(seg.exc_type):
            return seg
    return typed[0] if typed else None


def fingerprint(
    trace: ParsedTrace | str, fallback_type: str | None = None, in_app_prefixes: Iterable[str] = ()
) -> Fingerprint | None:
    """The trace's Sentry-style fingerprint (root cause, in-app frames, else normalized message);
    None when no exception type can be read (cut before the first exception line) and no fallback."""
    if isinstance(trace, str):
        trace = parse_traceback(trace)
    seg = root_cause(trace)
    if seg is None:
        if not trace.segments or trace.truncated or not fallback_type:
            return None
        seg = Segment(trace.segments[0].frames, fallback_type, None)
    prefixes = tuple(in_app_prefixes)
    frames = collapse([f.normalized for f in seg.frames if f.in_app(prefixes)])[-TOP_FRAMES:]
    return Fingerprint(seg.exc_type, tuple(frames), "" if frames else normalize_message(seg.message))


_QUOTED = re.compile(r"'([^'\n]{1,80})'|\"([^\"\n]{1,80})\"")


def message_literals(message: object) -> list[str]:
    """Quoted values in an exception message (``'令和8'`` → ``令和8``): candidate ``@example`` inputs."""
    if not isinstance(message, str):
        return []
    return [a or b for a, b in _QUOTED.findall(message)]
