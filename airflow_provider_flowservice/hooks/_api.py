"""Flow Service request and response shapes, shared by the sync and async hooks.

Pure functions, no I/O: the headers every call carries, the create body, the accepted create
answers, where ``_links.next`` points, and how a response becomes JSON or the right exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from airflow_provider_flowservice import __version__
from airflow_provider_flowservice.connection import API_PATH, FlowServiceConnectionSettings
from airflow_provider_flowservice.errors import one_line, parse_error_response
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceConfigError
from airflow_provider_flowservice.models import CreatedRun, FlowRun
from airflow_provider_flowservice.retry import redirect_error, transient_from_status

if TYPE_CHECKING:
    import httpx
    import requests

USER_AGENT = f"airflow-provider-flowservice/{__version__}"
_MAX_UNIX_SECONDS = 10**11  # beyond year 5000: the value is in milliseconds


def request_headers(settings: FlowServiceConnectionSettings, token: str, *, has_body: bool) -> dict[str, str]:
    """The headers every Flow Service call carries (plus Content-Type when there is a body)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": settings.client_id,
        "x-gw-ims-org-id": settings.org_id,
        "x-sandbox-name": settings.sandbox_name,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _unix_seconds(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FlowServiceConfigError(
            f"{name}={value!r} is not an integer; pass unix seconds, e.g. 1651584991."
        )
    if value < 0 or value >= _MAX_UNIX_SECONDS:
        raise FlowServiceConfigError(
            f"{name}={value} is out of range; pass unix seconds (10 digits, e.g. 1651584991), "
            "not milliseconds."
        )
    return value


def create_run_body(
    flow_id: str,
    window_start: int,
    window_end: int,
    *,
    start_time: int | None = None,
    delta_column: str | None = None,
) -> dict[str, Any]:
    """The ``POST /runs`` body; times as strings of unix seconds, as the documentation shows."""
    if not isinstance(flow_id, str) or not flow_id.strip() or "/" in flow_id:
        raise FlowServiceConfigError(
            f"flow_id={flow_id!r} is not a dataflow id; pass the dataflow's id (a UUID) from "
            "Sources > Dataflows in Experience Platform."
        )
    start = _unix_seconds("window_start", window_start)
    end = _unix_seconds("window_end", window_end)
    if end <= start:
        raise FlowServiceConfigError(
            f"window_end={end} is not after window_start={start}; the window must be non-empty."
        )
    params: dict[str, Any] = {"windowStartTime": str(start), "windowEndTime": str(end)}
    if start_time is not None:
        params["startTime"] = str(_unix_seconds("start_time", start_time))
    if delta_column is not None:
        if not isinstance(delta_column, str) or not delta_column.strip():
            raise FlowServiceConfigError(
                f"delta_column={delta_column!r} is not a column name; pass the source column name, "
                "or None for file-based flows and for later runs of a table-based flow."
            )
        params["deltaColumn"] = {"name": delta_column.strip()}
    return {"flowId": flow_id.strip(), "params": params}


def first_item(data: Any) -> Mapping[str, Any] | None:
    """``items[0]`` of a list wrapper, or the object itself when it is not wrapped."""
    if not isinstance(data, Mapping):
        return None
    items = data.get("items")
    if isinstance(items, list):
        return items[0] if items and isinstance(items[0], Mapping) else None
    return data if data.get("id") else None


def parse_created_run(data: Any, method: str = "POST", path: str = "/runs") -> CreatedRun:
    """Accept every documented create answer: ``{"items": [{id, etag}]}``, bare ``{id, etag}``, a run."""
    item = first_item(data)
    if item is None or not item.get("id"):
        raise FlowServiceApiError(
            f"Flow Service {method} {path} answered without a run id: {one_line(str(data), 300)}",
            method=method,
            url=path,
        )
    etag = item.get("etag")
    return CreatedRun(run_id=str(item["id"]), etag=str(etag) if etag is not None else None)


def next_page(
    data: Any, settings: FlowServiceConnectionSettings, params: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """Where ``_links.next`` points (an absolute URL, a path or a query string), or None on the last page.

    The link's query overrides the current parameters; a link to another host is refused so the
    token never leaves the configured host.
    """
    links = data.get("_links") if isinstance(data, Mapping) else None
    nxt = links.get("next") if isinstance(links, Mapping) else None
    href = nxt.get("href") if isinstance(nxt, Mapping) else nxt
    if not isinstance(href, str) or not href.strip():
        return None
    href = href.strip()
    base = urlsplit(settings.base_url)
    api_path = urlsplit(settings.api_url).path
    if "://" in href:
        parts = urlsplit(href)
        if parts.netloc.lower() != base.netloc.lower() or parts.scheme != base.scheme:
            raise FlowServiceApiError(
                f"Flow Service GET /runs gave a next-page link to '{parts.scheme}://{parts.netloc}', not the "
                f"configured '{base.scheme}://{base.netloc}'; refusing to send credentials there.",
                method="GET",
                url="/runs",
            )
        url, query = f"{parts.scheme}://{parts.netloc}{parts.path}", parts.query
    else:
        if "?" not in href and "=" in href and "/" not in href:
            href = "?" + href  # a bare query string
        path, _, query = href.partition("?")
        if not path:
            url = settings.api_url + "/runs"
        elif path.startswith(api_path) or (path.startswith("/") and API_PATH in path):
            url = f"{base.scheme}://{base.netloc}{path}"
        else:
            url = settings.api_url + "/" + path.lstrip("/")
    merged = dict(params)
    for key, values in parse_qs(query, keep_blank_values=True).items():
        merged[key] = values if len(values) > 1 else values[0]
    return url, merged


def runs_params(
    flow_id: str, properties: Sequence[str] = (), limit: int | None = None, order_by: str | None = None
) -> dict[str, Any]:
    """Query parameters of ``GET /runs`` for one flow (``property`` filters are ANDed)."""
    if not isinstance(flow_id, str) or not flow_id.strip():
        raise FlowServiceConfigError(f"flow_id={flow_id!r} is not a dataflow id.")
    params: dict[str, Any] = {"property": [f"flowId=={flow_id.strip()}", *properties]}
    if limit is not None:
        params["limit"] = int(limit)
    if order_by:
        params["orderby"] = order_by
    return params


def items_of(data: Any) -> list[Mapping[str, Any]]:
    items = data.get("items") if isinstance(data, Mapping) else None
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def matches_window(run: FlowRun, flow_id: str, window_start: int, window_end: int) -> bool:
    """Same flow (when the run says) and exactly the same window."""
    return (
        (run.flow_id is None or run.flow_id == flow_id)
        and run.window_start == window_start
        and run.window_end == window_end
    )


def newest_first(runs: Sequence[FlowRun]) -> list[FlowRun]:
    """Sort by ``createdAt`` descending; runs without it last, in their original order."""
    return sorted(runs, key=lambda r: -(r.created_at or 0) if r.created_at is not None else float("inf"))


def path_segment(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FlowServiceConfigError(f"{name}={value!r} is empty; pass the id Flow Service returned.")
    return quote(value.strip(), safe="")


def one_item(data: Any, build: Callable[[Mapping[str, Any]], Any], what: str, ident: str, path: str) -> Any:
    item = first_item(data)
    if item is None:
        raise FlowServiceApiError(
            f"Flow Service GET {path} returned no {what} {ident!r}; check the id and the "
            "connection's sandbox.",
            status_code=404,
            method="GET",
            url=path,
            run_id=ident if what == "run" else None,
        )
    return build(item)


def decode_response(
    settings: FlowServiceConnectionSettings, resp: requests.Response | httpx.Response, method: str, path: str
) -> Any:
    """Success -> decoded JSON; redirect, transient status or error -> raise the right thing."""
    status, headers = resp.status_code, resp.headers
    if 300 <= status < 400:
        raise redirect_error(status, headers.get("Location"), method, path, settings.host)
    if status >= 400:
        error = parse_error_response(resp, method, path)
        failure = transient_from_status(status, headers, error)
        if failure is not None:
            raise failure
        raise error
    body = resp.content
    if not body.strip():
        return {}
    try:
        # The bytes straight to json (it tells UTF-8/16/32 apart itself): ``resp.text`` would first
        # work out a charset from the headers, which costs a triggerer's poll more than the parse.
        return json.loads(body)
    except ValueError:
        raise FlowServiceApiError(
            f"Flow Service {method} {path} answered HTTP {status} with a body that is not JSON: "
            f"{one_line(resp.text, 200)}",
            status_code=status,
            method=method,
            url=path,
        ) from None


def transport_error(
    settings: FlowServiceConnectionSettings, method: str, path: str, exc: Exception
) -> FlowServiceApiError:
    tls = "SSL" in type(exc).__name__ or "CERTIFICATE" in str(exc).upper()
    fix = (
        "TLS verification failed: set extra verify_tls to the path of your CA bundle (or fix the host)"
        if tls
        else "check the connection host"
    )
    return FlowServiceApiError(
        f"Flow Service {method} {path} could not be sent to {settings.host}: {type(exc).__name__}: "
        f"{one_line(str(exc), 300)}. Hint: {fix}.",
        method=method,
        url=path,
    )
