"""Query text normalization shared by search, caches and every loop that counts queries.

The API normalizes a query the same way before it looks up ``query_cache``, so the cache key of a
warmed query and of a live request agree: NFKC (full-width ＩＴ → IT, half-width ｶﾅ → カナ,
ideographic space → space), case-folded, whitespace collapsed, control characters dropped.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata

# Cc/Cf/Cs/Co/Cn: controls, zero-width joiners, surrogates, private use, unassigned.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
#: Longest query text (characters, as stored) the loops treat as a query. Longer rows are malformed
#: input (pasted documents, abuse): skipped and counted, never embedded, cached or proposed.
MAX_QUERY_CHARS = 1000


def normalize_query(text: str) -> str:
    """Canonical form of a query; idempotent: ``normalize_query(normalize_query(t)) == normalize_query(t)``."""
    if not isinstance(text, str):
        raise TypeError(f"query text must be str, got {type(text).__name__}")
    return _normalize(text)


# Query texts repeat (Zipf): a week of logs has a few thousand distinct texts in ~10^5 rows.
@functools.lru_cache(maxsize=1 << 17)
def _normalize(text: str) -> str:
    previous = None
    # NFKC and casefold can each produce text the other changes again (e.g. 'ß' → 'ss', 'ﬃ');
    # iterate to a fixed point so normalization is idempotent for every input.
    while previous != text:
        previous = text
        text = unicodedata.normalize("NFKC", text).casefold()
        # isprintable() is false for every dropped category and every separator but the ASCII space:
        # a printable text has nothing to drop or turn into a space (the per-character pass is the
        # identity), and most queries are printable.
        if not text.isprintable():
            text = "".join(
                " " if ch.isspace() else ch
                for ch in text
                if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES
            )
        text = " ".join(text.split())
    return text


def query_hash(normalized_text: str) -> str:
    """Cache key: hex SHA-256 of the already-normalized query text."""
    return hashlib.sha256(normalized_text.encode("utf-8", "surrogatepass")).hexdigest()


def tokens(normalized_text: str) -> list[str]:
    """Whitespace tokens of a normalized query, duplicates removed, order kept."""
    return list(dict.fromkeys(normalized_text.split()))


def clip(text: object, limit: int = 300) -> str:
    """``text`` cut to at most ``limit`` characters (``…`` marks a cut): for evidence and previews."""
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
