"""The compliance console's search: the filters a query gives, and how a row is shown.

Plain code (no I/O): the handler in ``api.compliance`` hands it the query string and
the archive's rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

FILTERS = ("visit", "inmate", "visitor", "from", "to")
SUMMARY = ("visit", "inmate", "inmate_name", "visitors", "starts_at", "ends_at", "state",
           "seconds", "bytes", "seal", "on_hold", "sealed_at", "deleted_at")


class BadQuery(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_when(text: str, *, end: bool) -> float:
    """Unix seconds from ``from``/``to`` query text.

    Unix seconds or ISO 8601. A date alone is a whole UTC day: as ``from`` it means its
    start, as ``to`` the start of the next day (so ``to`` is inclusive of that date). A
    date-time without a zone is UTC. Raises ValueError.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class SearchQuery:
    filters: dict[str, str]  # the non-empty filters as given (what the audit records)
    date_from: float | None
    date_to: float | None
    limit: int

    @classmethod
    def of(cls, query: Mapping[str, str]) -> SearchQuery:
        """Raises ``BadQuery`` (``bad_date``, ``bad_limit``)."""
        given = {k: query.get(k, "").strip()[:200] for k in FILTERS}
        try:
            date_from = parse_when(given["from"], end=False) if given["from"] else None
            date_to = parse_when(given["to"], end=True) if given["to"] else None
        except ValueError:
            raise BadQuery("bad_date", "give dates as YYYY-MM-DD or ISO 8601") from None
        try:
            limit = max(1, min(int(query.get("limit", "100")), 500))
        except ValueError:
            raise BadQuery("bad_limit", "limit must be a number") from None
        return cls({k: v for k, v in given.items() if v}, date_from, date_to, limit)

    @property
    def visit(self) -> str | None:
        return self.filters.get("visit")

    @property
    def inmate(self) -> str | None:
        return self.filters.get("inmate")

    @property
    def visitor(self) -> str | None:
        return self.filters.get("visitor")


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A recording's index row as the list shows it."""
    return {k: row.get(k) for k in SUMMARY}


def people(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Who was recorded: the inmate first, then the visitors."""
    found = []
    if row.get("inmate"):
        found.append({"id": row["inmate"], "name": row.get("inmate_name") or row["inmate"],
                      "role": "inmate"})
    for v in row.get("visitors") or []:
        found.append({"id": v["sub"], "name": v.get("name") or v["sub"], "role": "visitor"})
    return found
