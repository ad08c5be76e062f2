"""The shape loops C and H share: head queries pre-executed through the search resource, then each
payload judged against what the service answered (``lib/service_agreement.py``)."""

import datetime as dt
from typing import Any, Iterable

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.contract.timestamps import iso_utc, parse_utc
from autonomath_pipelines.lib import badrows, service_agreement
from autonomath_pipelines.lib.badrows import BadRows
from autonomath_pipelines.lib.gates import Gate
from autonomath_pipelines.lib.payload import dumps_payload
from autonomath_pipelines.loops.common import log_bad_rows
from autonomath_pipelines.resources import AutonomathDatabase, ProgramSearch


class AgreementConfig(dg.Config):
    top1_agreement_floor: float = Field(
        default=service_agreement.DEFAULT_AGREEMENT_FLOOR,
        description="Blocking: least share of consistently answered queries whose cached top-1 is the service's.",
    )


def agreement_gates(floor: float = service_agreement.DEFAULT_AGREEMENT_FLOOR) -> tuple[Gate, ...]:
    return (service_agreement.answered_not_empty(), service_agreement.top1_agreement_floor(floor))


#: Days before the window whose logged top-1 answers make the built-in search's popularity prior.
POPULARITY_DAYS = 7


def service_popularity(database: AutonomathDatabase, before_iso: str, days: int = POPULARITY_DAYS) -> dict[str, int]:
    """How often the service put each program first in the ``days`` before ``before_iso`` (query_log):
    the built-in search's tie-breaker. The window itself is left out, so a query's own answers in the
    window never decide its payload."""
    start = iso_utc(parse_utc(before_iso) - dt.timedelta(days=days))
    with database.read_only() as conn:
        rows = badrows.checked_rows(
            conn,
            "SELECT top1_program_id, count(*) FROM query_log WHERE ts >= ? AND ts < ? AND result_count > 0 "
            "AND typeof(top1_program_id) = 'text' GROUP BY top1_program_id",
            (start, before_iso),
            table="query_log",
        )
    return {pid: int(n) for pid, n in rows}


def pre_execute(
    context: dg.AssetExecutionContext,
    program_search: ProgramSearch,
    queries: Iterable[str],
    popularity: dict[str, int] | None = None,
) -> tuple[dict[str, str], dict[str, Any], BadRows]:
    """Each distinct query's serialized payload (searched once), the search's metadata, and the
    service rows the built-in search left out as malformed."""
    distinct = sorted(set(queries))
    with program_search.searcher(popularity) as searcher:
        payloads = {text: dumps_payload(searcher.payload(text)) for text in distinct}
        skipped: BadRows = searcher.skipped_rows
        info = getattr(searcher, "index_info", None)
        stored = getattr(searcher, "answers_stored", None)  # the service's own search keeps none
    log_bad_rows(context, skipped)
    meta: dict[str, Any] = {
        "search": program_search.kind(),
        "payloads_computed": len(payloads),
        "popularity_programs": len(popularity or {}),
    }
    if stored is not None:
        # Answers an earlier run kept (reranked under today's popularity): a daily run's share is near 1.
        meta["search_answers_stored"] = stored
    if info is not None:
        meta.update(
            search_index_programs=info.programs, search_index_aliases=info.aliases, search_index_rebuilt=info.rebuilt
        )
    return payloads, meta, skipped


def judged(candidates: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``candidates`` with the service comparison columns and ``cache_decision``, and its summary."""
    decided = service_agreement.decide(candidates)
    return decided, service_agreement.agreement_summary(decided)


def cacheable(candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidates a publish writes: those whose payload answers as the service does."""
    if "cache_decision" not in candidates.columns:
        return candidates
    return candidates[candidates["cache_decision"] == service_agreement.CACHE]
