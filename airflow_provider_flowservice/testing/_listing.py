"""``GET /runs`` query handling: ``property`` filters, ``orderby``, ``limit``, continuation tokens."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from airflow_provider_flowservice.testing._faults import FLOW_SERVICE_PREFIX
from airflow_provider_flowservice.testing._responses import BAD_REQUEST, fail

_FILTER = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|>=|<=|>|<)(.*)$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def field_value(obj: Any, dotted: str) -> Any:
    """``metrics.statusSummary.status`` -> that value, or None when any part is missing."""
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def matches(run: dict[str, Any], expression: str) -> bool:
    """One ``property=`` filter: ``field==value`` (case-insensitive), ``!=``, ``>``, ``<``, or ``field``."""
    if _FIELD.match(expression):
        return field_value(run, expression) is not None
    match = _FILTER.match(expression)
    if match is None:
        raise fail(
            400,
            BAD_REQUEST,
            f"Invalid property filter {expression!r}; use field==value, e.g. flowId==<flow id>.",
        )
    name, op, wanted = match.groups()
    actual = field_value(run, name)
    if actual is None:
        return op == "!="
    if op in ("==", "!="):
        equal = str(actual).casefold() == wanted.strip().casefold()
        return equal if op == "==" else not equal
    try:
        left, right = float(actual), float(wanted)
    except ValueError:
        raise fail(400, BAD_REQUEST, f"Filter {expression!r} compares a non-numeric value.") from None
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]


def filter_field(expression: str) -> str:
    """The property path a ``property=`` filter tests (``params.windowStartTime>=1`` -> that)."""
    match = _FILTER.match(expression)
    return (match.group(1) if match else expression).strip()


def refuse_filters(filters: Iterable[str], refused: Collection[str]) -> None:
    """Answer 400, as a server that cannot filter on a property does, for a filter on ``refused``."""
    for expression in filters:
        if filter_field(expression) in refused:
            raise fail(
                400,
                BAD_REQUEST,
                f"Filtering on property {filter_field(expression)!r} is not supported "
                f"(filter {expression!r}).",
            )


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded))["offset"])
    except (ValueError, KeyError, TypeError):
        offset = -1
    if offset < 0:
        raise fail(400, BAD_REQUEST, f"Invalid continuationToken {token!r}.")
    return offset


@dataclass(frozen=True)
class RunQuery:
    """A parsed, validated ``GET /runs`` query."""

    raw: dict[str, list[str]]
    filters: list[str]
    limit: int | None
    order_field: str
    descending: bool
    count: bool
    offset: int

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> RunQuery:
        limit_raw = query.get("limit", [None])[-1]
        order = (query.get("orderby", [None])[-1] or "-createdAt").strip()
        count = (query.get("count", ["false"])[-1] or "").lower() == "true"
        token = query.get("continuationToken", [None])[-1]
        if count and limit_raw is not None:
            raise fail(400, BAD_REQUEST, "count=true cannot be combined with limit; drop one of them.")
        if limit_raw is not None and (not limit_raw.isdigit() or int(limit_raw) < 1):
            raise fail(400, BAD_REQUEST, f"limit must be a positive integer, got {limit_raw!r}.")
        order_field = order.lstrip("+-")
        if not _FIELD.match(order_field):
            raise fail(400, BAD_REQUEST, f"Invalid orderby {order!r}; use e.g. -createdAt.")
        return cls(
            raw=query,
            filters=query.get("property", []),
            limit=int(limit_raw) if limit_raw is not None else None,
            order_field=order_field,
            descending=order.startswith("-"),
            count=count,
            offset=_decode(token) if token else 0,
        )

    def select(
        self, runs: Iterable[dict[str, Any]], seq: Callable[[dict[str, Any]], int]
    ) -> list[dict[str, Any]]:
        """Runs passing every filter, ordered by ``orderby`` then creation order (for ties)."""
        selected = [run for run in runs if all(matches(run, f) for f in self.filters)]

        def key(run: dict[str, Any]) -> tuple[Any, int]:
            value = field_value(run, self.order_field)
            return (value if isinstance(value, int | float) else str(value), seq(run))

        try:
            selected.sort(key=key, reverse=self.descending)
        except TypeError:
            raise fail(400, BAD_REQUEST, f"Cannot order runs by {self.order_field!r}.") from None
        return selected

    def page_size(self, default: int) -> int:
        return max(1, min(default, self.limit) if self.limit else default)

    def next_path(self, offset: int) -> str:
        """The same query for the page starting at ``offset`` (``continuationToken`` replaced)."""
        pairs = [(k, v) for k, values in self.raw.items() if k != "continuationToken" for v in values]
        pairs.append(("continuationToken", _encode(offset)))
        return f"{FLOW_SERVICE_PREFIX}/runs?{urlencode(pairs)}"
