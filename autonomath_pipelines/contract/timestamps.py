"""The one timestamp format of the data contract: ISO-8601 UTC text with a ``Z`` (``2026-11-20T15:00:00Z``).

Every time column of ``schema.sql`` holds it, so lexical order is time order and SQL compares them as text.
"""

from __future__ import annotations

import datetime as dt

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso_utc(moment: dt.datetime) -> str:
    """``moment`` (aware) as stored in the database."""
    return moment.astimezone(dt.timezone.utc).strftime(UTC_FORMAT)


def iso_from_epoch(seconds: float) -> str:
    """Unix seconds (fractions dropped) as stored in the database."""
    return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc).strftime(UTC_FORMAT)


def parse_utc(text: str) -> dt.datetime:
    """A stored timestamp back as an aware UTC datetime."""
    return dt.datetime.strptime(text, UTC_FORMAT).replace(tzinfo=dt.timezone.utc)


def utc_now() -> dt.datetime:
    """Now in UTC, to the second (what a stored timestamp can say)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
