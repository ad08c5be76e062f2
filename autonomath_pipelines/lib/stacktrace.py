"""CPython traceback parsing and Sentry-style fingerprints (pure; never raises on any string).

Handles chained exceptions ("During handling of the above exception, another exception occurred:",
"The above exception was the direct cause of the following exception:"), frames without a source
line (``<frozen ...>``, ``<string>``), 3.11 position markers, recursion
("[Previous line repeated N more times]"), traces that lost their header, and truncated traces.

Fingerprint = the outermost (last printed) exception's type + its innermost five normalized frames
(file basename or frozen module, function; no line numbers; consecutive duplicates collapsed).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

HEADER = "Traceback (most recent call last):"
CHAIN_MARKERS = {
    "During handling of the above exception, another exception occurred:": "context",
    "The above exception was the direct cause of the following exception:": "cause",
}
TOP_FRAMES = 5
NAME_MAX = 60

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)"(?:, line (?P<line>\d+))?(?:, in (?P<func>.*?))?\s*$')
_REPEATED = re.compile(r"^\s*\[Previous line repeated (\d+) more times?\]\s*$")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Frame:
    path: str
    line: int | None
    function: str

    @property
    def module(self) -> str:
        """File basename, or the module of a frozen frame (``<frozen importlib._bootstrap>``)."""
        path = self.path.strip()
        if path.startswith("<frozen ") and path.endswith(">"):
            return path[len("<frozen "):-1]
        return re.split(r"[\\/]", path)[-1] or path

    @property
    def normalized(self) -> str:
        return f"{self.module}:{self.function}"


@dataclass(frozen=True)
class Segment:
    """One exception of a chain: its frames (outermost first) and the exception line."""

    frames: tuple[Frame, ...] = ()
    exc_type: str | None = None
    message: str | None = None
    link: str | None = None        # how it follows the previous segment: "context" | "cause" | None
    repeated: int = 0              # lines skipped by "[Previous line repeated N more times]"


@dataclass(frozen=True)
class ParsedTrace:
    segments: tuple[Segment, ...] = ()
    truncated: bool = False        # the last exception line is missing (cut off by the log shipper)
    headless: bool = False         # frames before any "Traceback" header

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
        return _parse(text if isinstance(text, str) else ("" if text is None else str(text)))
    except Exception:  # pragma: no cover - defensive: the parser must never fail a run
        return ParsedTrace((), truncated=True)


def _parse(text: str) -> ParsedTrace:
    segments: list[Segment] = []
    current = _Builder()
    headless = False
    cut = False
    pending_link: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped == HEADER:
            if current.started:               # a header without an exception line before it
                segments.append(current.build())
            current = _Builder(link=pending_link, started=True)
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
        frame = _FRAME.match(line)
        if frame:
            if not current.started:
                headless = headless or not segments
                current = _Builder(link=pending_link, started=True)
                pending_link = None
            number = frame.group("line")
            current.frames.append(Frame(frame.group("path"), int(number) if number and len(number) < 10 else None,
                                        (frame.group("func") or "?").strip() or "?"))
            continue
        repeated = _REPEATED.match(line)
        if repeated:
            current.repeated += min(int(repeated.group(1)[:9]), 10**9)
            continue
        if line[:1].isspace():                # a source line or position markers
            continue
        exception = _EXCEPTION.match(stripped)
        if exception and current.started and (current.frames or exception.group("message") is not None):
            segments.append(current.build(exception.group("type"), (exception.group("message") or "").strip()))
            current = _Builder()
            continue
    truncated = cut
    if current.started:                        # frames never closed by an exception line
        segments.append(current.build())
        truncated = True
    elif pending_link is not None:             # a chain marker with nothing after it
        truncated = True
    return ParsedTrace(tuple(segments), truncated=truncated, headless=headless)


def collapse(frames: list[str] | tuple[str, ...]) -> list[str]:
    """Drop consecutive duplicates (recursion prints the same frame over and over)."""
    out: list[str] = []
    for f in frames:
        if not out or out[-1] != f:
            out.append(f)
    return out


@dataclass(frozen=True)
class Fingerprint:
    exc_type: str
    frames: tuple[str, ...]            # innermost last, at most TOP_FRAMES

    @property
    def key(self) -> str:
        return self.exc_type + "|" + ">".join(self.frames)

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


def fingerprint(trace: ParsedTrace | str, fallback_type: str | None = None) -> Fingerprint | None:
    """The trace's fingerprint; None when it has no exception type (truncated) and no fallback."""
    if isinstance(trace, str):
        trace = parse_traceback(trace)
    seg = trace.outermost
    exc_type = (seg.exc_type if seg else None) or (fallback_type if not trace.truncated else None)
    if not exc_type or seg is None:
        return None
    frames = collapse([f.normalized for f in seg.frames])[-TOP_FRAMES:]
    return Fingerprint(exc_type, tuple(frames))


_QUOTED = re.compile(r"'([^'\n]{1,80})'|\"([^\"\n]{1,80})\"")


def message_literals(message: object) -> list[str]:
    """Quoted values in an exception message (``'令和8'`` → ``令和8``): candidate ``@example`` inputs."""
    if not isinstance(message, str):
        return []
    return [a or b for a, b in _QUOTED.findall(message)]
