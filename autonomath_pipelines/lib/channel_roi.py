"""Channel ROI (loop F): per acquisition channel, the last 28 days' sign-ups, paid sign-ups and net revenue.

The heavy lifting is one SQL statement (``AGGREGATES_SQL``) the loop runs against the read-only
database: group-by aggregations over the window, one row per raw ``utm_source`` (and whether the
billing events could be attributed to a subscriber at all), with window functions for each group's
share of the window's totals. What is decided here, in plain pandas, is the naming and the
reconciliation:

- ``utm_source`` NULL → channel ``(unknown)``, ``''`` (or blank) → ``(empty)``: named, never dropped.
  (The demo world's truth labels these ``(null)`` and ``(empty)``.)
- Billing events whose ``subscriber_id`` matches no subscriber → channel ``(unattributed)``, so the
  revenue of the channels always sums to the window's billing exactly.
- ``signups_28d``: subscribers whose ``signed_up_at`` lies in the window; ``paid_28d``: those of them
  whose plan is ``'paid'`` (the subscriber's current plan, as stored).
- ``revenue_28d_jpy``: Σ charge − Σ refund over ``billing_events`` with ``ts`` in the window, attributed
  to the channel of the event's subscriber — whenever that subscriber signed up (revenue in the
  window from every cohort the channel brought). A refund nets out in the window in which it is
  booked; a channel's revenue can therefore be negative.
- Malformed input (issue 8): a ``utm_source`` that is not readable text of at most
  ``MAX_UTM_CHARS`` characters (a BLOB, a 100 kB paste, bytes that are not UTF-8) names the channel
  ``(unreadable)`` — the sign-up and its revenue are real, only the label is lost. Billing events
  whose timestamp is not contract text or whose amount is not an integer in [0, 10^12] are left out
  of the window (and of the reconciliation total, which reads with the same rule), as are sign-ups
  and requests whose timestamp is not contract text. ``bad_input`` counts them.
- Extras (metadata, not table columns): charges, refunds, paying subscribers, and requests from the
  channel's subscribers' API keys (``subscribers.api_key`` → ``query_log``) in the window; a key two
  subscribers name counts once (for the latest sign-up). Requests from keys no subscriber holds
  (internal, rotated-away keys) belong to no channel and do not create a row.
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from autonomath_pipelines.lib import badrows
from autonomath_pipelines.lib.gates import Gate, GateResult

UNKNOWN = "(unknown)"
EMPTY = "(empty)"
UNATTRIBUTED = "(unattributed)"
UNREADABLE = "(unreadable)"
MAX_UTM_CHARS = 200

#: Well-formedness of the rows this loop reads (``lib/badrows.py``).
BILLING_RULES = badrows.TableRules(
    "billing_events",
    "id",
    (badrows.timestamp("ts"), badrows.number("amount_jpy", lo=0, hi=badrows.MAX_AMOUNT_JPY, integer=True)),
)
SIGNUP_RULES = badrows.TableRules("subscribers", "subscriber_id", (badrows.timestamp("signed_up_at"),))
REQUEST_RULES = badrows.TableRules("query_log", "id", (badrows.timestamp("ts"),))
#: utm_source as read: readable text of at most MAX_UTM_CHARS characters, else the (unreadable) label.
_UTM = (
    f"CASE WHEN utm_source IS NULL OR (typeof(utm_source) = 'text' AND length(utm_source) <= {MAX_UTM_CHARS}) "
    f"THEN utm_source ELSE '{UNREADABLE}' END"
)

COUNT_COLUMNS = (
    "signups_28d",
    "paid_28d",
    "charges_jpy",
    "refunds_jpy",
    "paying_subscribers",
    "requests_28d",
    "active_keys",
)
OUTPUT_COLUMNS = (
    "channel",
    "signups_28d",
    "paid_28d",
    "revenue_28d_jpy",
    "charges_jpy",
    "refunds_jpy",
    "paying_subscribers",
    "requests_28d",
    "active_keys",
    "paid_rate",
    "revenue_per_signup_jpy",
    "revenue_share",
)

#: One row per (utm_source, attributed) with the window's sign-ups, billing and requests. Parameters
#: ``:start`` and ``:end`` (ISO-8601 UTC text, [start, end)). Each source is aggregated on its own
#: index range first (query_log by key before the join), then the three are stacked and summed: a
#: full outer join in which NULL utm_sources group together (GROUP BY treats NULLs as equal).
AGGREGATES_SQL = f"""
WITH subs AS (
    SELECT subscriber_id, api_key, signed_up_at, plan, {_UTM} AS utm_source,
           {SIGNUP_RULES.good("subscribers")} AS signup_ok
    FROM subscribers
),
signups AS (
    SELECT utm_source, 1 AS attributed, COUNT(*) AS signups_28d,
           SUM(plan = 'paid') AS paid_28d,
           0 AS charges_jpy, 0 AS refunds_jpy, 0 AS paying_subscribers, 0 AS requests_28d, 0 AS active_keys
    FROM subs
    WHERE signed_up_at >= :start AND signed_up_at < :end AND signup_ok
    GROUP BY utm_source
),
billing AS (
    SELECT s.utm_source, (s.subscriber_id IS NOT NULL) AS attributed, 0 AS signups_28d, 0 AS paid_28d,
           SUM(CASE WHEN b.event_type = 'charge' THEN b.amount_jpy ELSE 0 END) AS charges_jpy,
           SUM(CASE WHEN b.event_type = 'refund' THEN b.amount_jpy ELSE 0 END) AS refunds_jpy,
           COUNT(DISTINCT CASE WHEN b.event_type = 'charge' THEN b.subscriber_id END) AS paying_subscribers,
           0 AS requests_28d, 0 AS active_keys
    FROM billing_events AS b LEFT JOIN subs AS s ON s.subscriber_id = b.subscriber_id
    WHERE b.ts >= :start AND b.ts < :end AND {BILLING_RULES.good("b")}
    GROUP BY s.utm_source, (s.subscriber_id IS NOT NULL)
),
key_requests AS (
    SELECT api_key, COUNT(*) AS requests FROM query_log
    WHERE ts >= :start AND ts < :end AND {REQUEST_RULES.good("query_log")}
    GROUP BY api_key
),
key_owner AS (
    -- a key counts once: if several subscribers name it, the latest sign-up owns it
    SELECT api_key, utm_source FROM (
        SELECT api_key, utm_source,
               ROW_NUMBER() OVER (PARTITION BY api_key ORDER BY signed_up_at DESC, subscriber_id DESC) AS nth
        FROM subs WHERE api_key IS NOT NULL
    ) WHERE nth = 1
),
requests AS (
    SELECT o.utm_source, 1 AS attributed, 0 AS signups_28d, 0 AS paid_28d, 0 AS charges_jpy, 0 AS refunds_jpy,
           0 AS paying_subscribers, SUM(k.requests) AS requests_28d, COUNT(*) AS active_keys
    FROM key_requests AS k JOIN key_owner AS o ON o.api_key = k.api_key
    GROUP BY o.utm_source
),
stacked AS (
    SELECT * FROM signups UNION ALL SELECT * FROM billing UNION ALL SELECT * FROM requests
),
grouped AS (
    SELECT utm_source, attributed,
           SUM(signups_28d) AS signups_28d, SUM(paid_28d) AS paid_28d,
           SUM(charges_jpy) AS charges_jpy, SUM(refunds_jpy) AS refunds_jpy,
           SUM(charges_jpy) - SUM(refunds_jpy) AS revenue_28d_jpy,
           SUM(paying_subscribers) AS paying_subscribers,
           SUM(requests_28d) AS requests_28d, SUM(active_keys) AS active_keys
    FROM stacked
    GROUP BY utm_source, attributed
)
SELECT utm_source, attributed, signups_28d, paid_28d, charges_jpy, refunds_jpy, revenue_28d_jpy,
       paying_subscribers, requests_28d, active_keys,
       SUM(revenue_28d_jpy) OVER () AS window_revenue_jpy,
       SUM(signups_28d) OVER () AS window_signups,
       RANK() OVER (ORDER BY revenue_28d_jpy DESC) AS revenue_rank
FROM grouped
ORDER BY revenue_rank, utm_source IS NULL, utm_source, attributed
"""

#: The independent check the reconciliation gate compares against: the window's billing, no join.
BILLING_TOTALS_SQL = f"""
SELECT COALESCE(SUM(CASE WHEN event_type = 'charge' THEN amount_jpy END), 0) AS charges_jpy,
       COALESCE(SUM(CASE WHEN event_type = 'refund' THEN amount_jpy END), 0) AS refunds_jpy,
       COUNT(*) AS events
FROM billing_events WHERE ts >= ? AND ts < ? AND {BILLING_RULES.good("billing_events")}
"""


def readable_utm(rows: list[tuple], names: list[str]) -> list[tuple]:
    """Aggregate rows with a ``utm_source`` that does not decode (``UndecodableText``) relabelled
    ``(unreadable)``, so the revenue stays in the table and no undecodable text reaches it."""
    index = names.index("utm_source")
    return [row[:index] + (UNREADABLE,) + row[index + 1 :] if badrows.text_problem(row[index]) else row for row in rows]


def bad_input(conn, start: str, end: str) -> badrows.BadRows:
    """What the window's aggregates left out or relabelled: malformed billing events, sign-ups and
    requests, and subscribers whose utm_source is not readable (counted under ``(unreadable)``)."""
    window = "{col} >= ? AND {col} < ?"
    bad = badrows.count_bad(conn, BILLING_RULES, window.format(col="ts"), (start, end))
    bad.extend(badrows.count_bad(conn, SIGNUP_RULES))
    bad.extend(badrows.count_bad(conn, REQUEST_RULES))
    names, rows, _ = badrows.fetch_checked(
        conn, "SELECT subscriber_id, utm_source FROM subscribers WHERE utm_source IS NOT NULL ORDER BY rowid"
    )
    unreadable = [
        sid for sid, utm in rows if badrows.text_problem(utm) or not isinstance(utm, str) or len(utm) > MAX_UTM_CHARS
    ]
    bad.add(
        "subscribers",
        "utm_source",
        f"not readable text of at most {MAX_UTM_CHARS} characters (counted under {UNREADABLE})",
        "text",
        len(unreadable),
        unreadable,
    )
    return bad


def channel_name(utm_source: Any, attributed: bool = True) -> str:
    """The readable channel of a raw ``utm_source``; unattributable billing gets its own channel."""
    if not attributed:
        return UNATTRIBUTED
    if utm_source is None or (isinstance(utm_source, float) and pd.isna(utm_source)):
        return UNKNOWN
    text = str(utm_source)
    return EMPTY if text.strip() == "" else text


def empty_channels() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in OUTPUT_COLUMNS})
    frame["channel"] = pd.Series(dtype=object)
    for column in ("paid_rate", "revenue_per_signup_jpy", "revenue_share"):
        frame[column] = pd.Series(dtype=float)
    return frame[list(OUTPUT_COLUMNS)]


def channel_table(aggregates: pd.DataFrame) -> pd.DataFrame:
    """One row per named channel from the SQL aggregates (raw groups that name alike are summed).

    Sorted by revenue (descending), then channel. Counts are integers; ``revenue_28d_jpy`` is
    charges − refunds exactly (integer arithmetic, never floats)."""
    if aggregates.empty:
        return empty_channels()
    frame = aggregates.copy()
    frame["channel"] = [channel_name(u, bool(a)) for u, a in zip(frame["utm_source"], frame["attributed"])]
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].fillna(0).astype("int64")
    table = frame.groupby("channel", sort=True, dropna=False)[list(COUNT_COLUMNS)].sum().reset_index()
    table["revenue_28d_jpy"] = table["charges_jpy"] - table["refunds_jpy"]
    table["paid_rate"] = (table["paid_28d"] / table["signups_28d"].where(table["signups_28d"] > 0)).astype(float)
    table["revenue_per_signup_jpy"] = (
        table["revenue_28d_jpy"] / table["signups_28d"].where(table["signups_28d"] > 0)
    ).astype(float)
    total = int(table["revenue_28d_jpy"].sum())
    table["revenue_share"] = table["revenue_28d_jpy"] / total if total else 0.0
    table = table.sort_values(["revenue_28d_jpy", "channel"], ascending=[False, True], kind="mergesort")
    return table[list(OUTPUT_COLUMNS)].reset_index(drop=True)


def summary(table: pd.DataFrame) -> dict[str, int]:
    """The window's totals, for metadata the UI plots."""
    total = lambda c: int(table[c].sum()) if len(table) else 0  # noqa: E731
    return {
        "channels": len(table),
        "signups": total("signups_28d"),
        "paid": total("paid_28d"),
        "revenue_jpy": total("revenue_28d_jpy"),
        "charges_jpy": total("charges_jpy"),
        "refunds_jpy": total("refunds_jpy"),
        "requests": total("requests_28d"),
    }


# ---------------------------------------------------------------------------------------- gates


def revenue_reconciles(billing_totals: Callable[[], tuple[int, int]]) -> Gate:
    """Σ revenue over channels == Σ charge − Σ refund of ``billing_events`` in the window, exactly;
    and so do the charge and refund sums on their own. ``billing_totals`` reads the database anew."""

    def evaluate(frame: pd.DataFrame) -> GateResult:
        charges, refunds = (int(v) for v in billing_totals())
        got = {c: int(frame[c].sum()) if len(frame) else 0 for c in ("charges_jpy", "refunds_jpy", "revenue_28d_jpy")}
        expected = {"charges_jpy": charges, "refunds_jpy": refunds, "revenue_28d_jpy": charges - refunds}
        off = {c: got[c] - expected[c] for c in expected if got[c] != expected[c]}
        per_row = (
            int((frame["revenue_28d_jpy"] != frame["charges_jpy"] - frame["refunds_jpy"]).sum()) if len(frame) else 0
        )
        passed = not off and per_row == 0
        return GateResult(
            passed,
            f"channels sum to {got['revenue_28d_jpy']} JPY, billing_events to {expected['revenue_28d_jpy']} JPY"
            + (f"; differences {off}" if off else "")
            + (f"; {per_row} rows not charges − refunds" if per_row else ""),
            {
                "revenue_channels_jpy": got["revenue_28d_jpy"],
                "revenue_billing_jpy": expected["revenue_28d_jpy"],
                "charges_billing_jpy": charges,
                "refunds_billing_jpy": refunds,
                "rows_inconsistent": per_row,
            },
        )

    return Gate(
        "revenue_reconciles",
        "Channel revenue sums exactly to charges − refunds of billing_events in the window.",
        evaluate,
    )


def one_row_per_channel() -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        names = frame["channel"] if len(frame) else pd.Series(dtype=object)
        blank = int(names.isna().sum() + (names.dropna().astype(str).str.strip() == "").sum())
        duplicated = int(names.duplicated().sum())
        return GateResult(
            blank == duplicated == 0,
            f"{duplicated} duplicate channels, {blank} unnamed",
            {"duplicated": duplicated, "unnamed": blank},
        )

    return Gate("one_row_per_channel", "Exactly one row per channel, every channel named (no NULL or blank).", evaluate)


def counts_sound() -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        if not len(frame):
            return GateResult(True, "no rows", {"negative": 0, "paid_above_signups": 0})
        counts = [c for c in COUNT_COLUMNS if c in frame.columns]
        negative = int((frame[counts] < 0).any(axis=1).sum())
        above = int((frame["paid_28d"] > frame["signups_28d"]).sum())
        return GateResult(
            negative == above == 0,
            f"{negative} rows with a negative count, {above} with more paid than sign-ups",
            {"negative": negative, "paid_above_signups": above},
        )

    return Gate("no_negative_counts", "No count is negative, and paid sign-ups never exceed sign-ups.", evaluate)


def candidate_gates(billing_totals: Callable[[], tuple[int, int]]) -> tuple[Gate, ...]:
    return (revenue_reconciles(billing_totals), one_row_per_channel(), counts_sound())
