"""Flow Service request and response shapes, shared by the sync and async hooks.

No I/O: the headers every call carries, the create body, the accepted create answers, where
``_links.next`` points, and how a response becomes JSON or the right exception. A rule that
needs requests (the 401 renewal, paging) is a generator: it yields what to send and is sent what
came back; the sync hook drives it with :func:`drive`, the async hook with :func:`adrive`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar
from urllib.parse import SplitResult, parse_qs, quote, urlsplit

from airflow_provider_flowservice import __version__
from airflow_provider_flowservice._auth import AccessToken, Renewals, TokenProvider
from airflow_provider_flowservice._connection import API_PATH, FlowServiceConnectionSettings
from airflow_provider_flowservice._errors import ResponseLike, one_line, parse_error_response, redact
from airflow_provider_flowservice._retry import (
    is_tls_failure,
    redirect_error,
    tls_error_of,
    transient_from_status,
)
from airflow_provider_flowservice._window import (
    resolve_window,
    validate_delta_column,
    validate_flow_id,
    validate_start_time,
)
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceConfigError
from airflow_provider_flowservice.models import CreatedRun, FlowRun

USER_AGENT = f"airflow-provider-flowservice/{__version__}"
_DEFAULT_PORTS = {"http": 80, "https": 443}
Step = TypeVar("Step")
Result = TypeVar("Result")


def drive(rule: Generator[Step, Any, Result], send: Callable[[Step], Any]) -> Result:
    """Drive ``rule`` with blocking I/O: ``send`` each step it yields and give it the answer."""
    answer = None
    while True:
        try:
            step = rule.send(answer)
        except StopIteration as end:
            return end.value
        answer = send(step)


async def adrive(rule: Generator[Step, Any, Result], send: Callable[[Step], Awaitable[Any]]) -> Result:
    """:func:`drive` with awaited I/O."""
    answer = None
    while True:
        try:
            step = rule.send(answer)
        except StopIteration as end:
            return end.value
        answer = await send(step)


def authorized(
    settings: FlowServiceConnectionSettings, tokens: TokenProvider, method: str, path: str
) -> Generator[None, tuple[AccessToken, ResponseLike], Any]:
    """One request under the 401 rule: yields for each send, is sent (the token used, the response).

    After a 401 the refused token is forgotten and the request sent again with a renewed one while
    :class:`~airflow_provider_flowservice._auth.Renewals` allows; otherwise the auth error is
    raised. Every token sent is a secret of the messages built from a response. Returns the JSON.
    """
    sent: list[str] = []
    renewals = Renewals()
    while True:
        token, resp = yield None
        sent.append(token.value)
        if resp.status_code != 401:
            return decode_response(settings, resp, method, path, token=token.value)
        error = parse_error_response(resp, method, path, secrets=settings.secrets(*sent))
        tokens.after_refusal(error, token, renewals)


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
    return value


def create_run_body(
    flow_id: str,
    window_start: int,
    window_end: int,
    *,
    start_time: int | None = None,
    delta_column: str | None = None,
) -> dict[str, Any]:
    """The ``POST /runs`` body; times as strings of unix seconds, as the documentation shows.

    Checks what the operator checks, with the same messages (``_window.py``): a UUID flow id, a
    non-empty ordered window of unix seconds (not milliseconds, not past 2200), a column name.
    """
    flow = validate_flow_id(flow_id)
    start, end = _unix_seconds("window_start", window_start), _unix_seconds("window_end", window_end)
    window = resolve_window(start, end)
    params: dict[str, Any] = {"windowStartTime": str(window.start), "windowEndTime": str(window.end)}
    if start_time is not None:
        params["startTime"] = str(validate_start_time(_unix_seconds("start_time", start_time)))
    column = validate_delta_column(delta_column)
    if column is not None:
        params["deltaColumn"] = {"name": column}
    return {"flowId": flow, "params": params}


def first_item(data: Any) -> Mapping[str, Any] | None:
    """``items[0]`` of a list wrapper, or the object itself when it is not wrapped."""
    if not isinstance(data, Mapping):
        return None
    items = data.get("items")
    if isinstance(items, list):
        return items[0] if items and isinstance(items[0], Mapping) else None
    return data if data.get("id") else None


def parse_created_run(
    data: Any, method: str = "POST", path: str = "/runs", *, secrets: Iterable[str | None] = ()
) -> CreatedRun:
    """Accept every documented create answer: ``{"items": [{id, etag}]}``, bare ``{id, etag}``, a run."""
    item = first_item(data)
    if item is None or not item.get("id"):
        raise FlowServiceApiError(
            f"Flow Service {method} {path} answered without a run id: "
            f"{one_line(redact(str(data), secrets), 300)}",
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
        if _origin(parts) != _origin(base):
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


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host name and effective port: ``https://h`` and ``https://h:443`` are one origin."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: never our host
        return scheme, "", -1
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


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


class Page(NamedTuple):
    """A ``GET /runs`` page to read: ``url`` None for the first (``api_url + "/runs"``)."""

    url: str | None
    params: dict[str, Any]


def run_pages(
    settings: FlowServiceConnectionSettings,
    params: dict[str, Any],
    limit: int | None,
    max_pages: int,
    warn: Callable[..., object],
) -> Generator[Page, Any, list[FlowRun]]:
    """The runs of ``GET /runs``: yields each :class:`Page` to read, is sent its JSON.

    Follows ``_links.next`` until the last page, ``limit`` runs, a link already followed, or
    ``max_pages`` pages (then warns: more exist).
    """
    runs: list[FlowRun] = []
    page = Page(None, params)
    seen: set[str] = set()
    for _ in range(max(1, max_pages)):
        data = yield page
        runs.extend(FlowRun.from_api(i) for i in items_of(data))
        if limit is not None and len(runs) >= limit:
            return runs[:limit]
        nxt = next_page(data, settings, page.params)
        if nxt is None or repr(nxt) in seen:
            return runs
        seen.add(repr(nxt))
        page = Page(*nxt)
    warn("Stopped listing runs after %d pages (max_pages); more exist.", max(1, max_pages))
    return runs


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


class AdoptionRule(NamedTuple):
    """Which run an unanswered create attempt may have made, so the next attempt can adopt it.

    :param since_ms: the first attempt (unix ms), less the clock-skew allowance.
    :param ended_before_ms: the first attempt, less a small skew: a run created before it that has
        already *ended* belongs to an earlier try (ours cannot have finished that fast).
    :param exclude: run ids known to exist before the create (never ours).
    """

    flow_id: str
    window_start: int
    window_end: int
    since_ms: int
    ended_before_ms: int
    exclude: frozenset[str] = frozenset()

    def admits(self, run: FlowRun) -> bool:
        """Same flow and window, not excluded, created since ``since_ms``, not an earlier try's ended run."""
        if run.id in self.exclude:
            return False
        if not matches_window(run, self.flow_id, self.window_start, self.window_end):
            return False
        created = run.created_at
        if created is None or created < self.since_ms:
            return False
        return not (run.status.is_terminal and created < self.ended_before_ms)


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
    settings: FlowServiceConnectionSettings,
    resp: ResponseLike,
    method: str,
    path: str,
    *,
    token: str | None = None,
) -> Any:
    """Success -> decoded JSON; redirect, transient status or error -> raise the right thing.

    :param token: the access token the request carried; like the client secret, it is replaced
        by ``***`` in any message built from the response.
    """
    status, headers = resp.status_code, resp.headers
    if 300 <= status < 400:
        raise redirect_error(status, headers.get("Location"), method, path, settings.host)
    if status >= 400:
        error = parse_error_response(resp, method, path, secrets=settings.secrets(token))
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
            f"{one_line(redact(resp.text, settings.secrets(token)), 200)}",
            status_code=status,
            method=method,
            url=path,
        ) from None


def transport_error(
    settings: FlowServiceConnectionSettings, method: str, path: str, exc: Exception
) -> FlowServiceApiError:
    """A request that could not be sent and would fail the same way again (TLS, a bad URL).

    It has no HTTP status, which is what makes :func:`~airflow_provider_flowservice._retry.is_transient`
    call it permanent: a trigger or a wait ends on it instead of polling until its deadline.
    """
    tls = tls_error_of(exc)
    shown = tls if tls is not None else exc  # the TLS reason, not requests' long wrapper around it
    text = str(exc).upper()
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text:
        fix = (
            "the server at that address does not speak TLS: check the scheme and port of the "
            "connection host (https:// on a plain-http port?)"
        )
    elif is_tls_failure(exc) or "SSL" in type(exc).__name__ or "CERTIFICATE" in text:
        fix = "TLS verification failed: set extra verify_tls to the path of your CA bundle (or fix the host)"
    else:
        fix = "check the connection host"
    return FlowServiceApiError(
        f"Flow Service {method} {path} could not be sent to {settings.host}: {type(shown).__name__}: "
        f"{one_line(str(shown), 300)}. Hint: {fix}.",
        method=method,
        url=path,
    )
