"""Hooks for Adobe Experience Platform Flow Service: create flow runs and read them.

:class:`FlowServiceHook` (sync, ``requests``) serves operators and sensors;
:class:`FlowServiceAsyncHook` (``httpx.AsyncClient``) serves triggers. Both share the connection
settings, the process-wide IMS token cache, the retry policy and the error parsing. Neither reads
the connection nor touches the network when constructed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import requests

from airflow_provider_flowservice import __version__
from airflow_provider_flowservice.auth import TokenProvider
from airflow_provider_flowservice.connection import (
    API_PATH,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    FlowServiceConnectionSettings,
    connection_form_widgets,
    ui_field_behaviour,
)
from airflow_provider_flowservice.errors import one_line, parse_error_response
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRetryError,
)
from airflow_provider_flowservice.models import CreatedRun, Flow, FlowRun
from airflow_provider_flowservice.retry import (
    RetryPolicy,
    TransientFailure,
    acall_with_retry,
    call_with_retry,
    redirect_error,
    transient_from_httpx,
    transient_from_requests,
    transient_from_status,
)
from airflow_provider_flowservice.version_compat import BaseHook

log = logging.getLogger(__name__)

CLOCK_SKEW_SECONDS = 120
"""How much earlier than our first POST a run's ``createdAt`` may be and still count as ours."""
ADOPT_MAX_PAGES = 5
WINDOW_LOOKUP_MAX_PAGES = 20
WINDOW_LOOKUP_PAGE_SIZE = 100
TEST_CONNECTION_RETRY = RetryPolicy(
    max_attempts=2, initial_backoff=0.5, max_backoff=2.0, max_total_seconds=20.0
)
_USER_AGENT = f"airflow-provider-flowservice/{__version__}"
_MAX_UNIX_SECONDS = 10**11  # beyond year 5000: the value is in milliseconds


# ---------------------------------------------------------------- pure helpers shared by both hooks


def request_headers(settings: FlowServiceConnectionSettings, token: str, *, has_body: bool) -> dict[str, str]:
    """The headers every Flow Service call carries (plus Content-Type when there is a body)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": settings.client_id,
        "x-gw-ims-org-id": settings.org_id,
        "x-sandbox-name": settings.sandbox_name,
        "Accept": "application/json",
        "User-Agent": _USER_AGENT,
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


def _items(data: Any) -> list[Mapping[str, Any]]:
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


def _api_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


# ---------------------------------------------------------------- sync hook


class FlowServiceHook(BaseHook):
    """Talk to Flow Service: create runs, read runs and flows (sync, on ``requests``).

    Construction reads no connection and makes no request; both happen on first use.

    :param flow_service_conn_id: the ``adobe_flow_service`` connection to use.
    :param retry: retry policy for transient errors (429, 5xx, timeouts, resets); default
        :class:`RetryPolicy()`. A dict of its fields is accepted too.
    """

    conn_name_attr = "flow_service_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Adobe Experience Platform Flow Service"

    def __init__(
        self,
        flow_service_conn_id: str = default_conn_name,
        *,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_service_conn_id = flow_service_conn_id
        self.retry_policy = RetryPolicy.coerce(retry)

    # -- UI metadata (Airflow 2.x reads these; Airflow 3.x reads get_provider_info)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Labelled extra fields of the connection form (Airflow 2.x)."""
        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden standard fields, labels and placeholders of the connection form (Airflow 2.x)."""
        return ui_field_behaviour()

    # -- plumbing

    @cached_property
    def settings(self) -> FlowServiceConnectionSettings:
        """The validated connection, read once."""
        return FlowServiceConnectionSettings.from_connection(self.get_connection(self.flow_service_conn_id))

    @cached_property
    def tokens(self) -> TokenProvider:
        """This connection's access tokens (process-wide cache)."""
        return TokenProvider(self.settings, self.retry_policy)

    @cached_property
    def session(self) -> requests.Session:
        """One HTTP session per hook (connection reuse)."""
        return requests.Session()

    def get_conn(self) -> requests.Session:
        """The underlying ``requests.Session``."""
        return self.session

    def _http(
        self, method: str, url: str, path: str, token: str, *, params: Any, body: Any
    ) -> requests.Response:
        s = self.settings
        try:
            return self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=request_headers(s, token, has_body=body is not None),
                timeout=(s.connect_timeout, s.read_timeout),
                verify=s.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = transient_from_requests(exc)
            if failure is not None:
                failure.description = f"{failure.description} ({method} {s.host}{path})"
                raise failure from None
            raise _transport_error(s, method, path, exc) from None

    def _send_once(
        self, method: str, path: str, *, params: Any = None, body: Any = None, url: str | None = None
    ) -> Any:
        """One attempt (plus one repeat after a 401 and a token renewal); returns the decoded JSON."""
        target = url or self.settings.api_url + path
        token = self.tokens.get(self.session)
        resp = self._http(method, target, path, token, params=params, body=body)
        if resp.status_code == 401:
            error = parse_error_response(resp, method, path)
            if self.tokens.static or not self.tokens.is_token_refusal(error):
                raise self.tokens.refused_error(error)
            self.tokens.invalidate(token)
            token = self.tokens.get(self.session)
            resp = self._http(method, target, path, token, params=params, body=body)
            if resp.status_code == 401:
                raise self.tokens.refused_error(parse_error_response(resp, method, path))
        return _decode(self.settings, resp, method, path)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        policy: RetryPolicy | None = None,
    ) -> Any:
        return call_with_retry(
            policy or self.retry_policy,
            lambda: self._send_once(method, path, params=params, body=body),
            method=method,
            path=path,
        )

    # -- API

    def create_run(
        self,
        flow_id: str,
        window_start: int,
        window_end: int,
        *,
        start_time: int | None = None,
        delta_column: str | None = None,
    ) -> CreatedRun:
        """Create one on-demand run of ``flow_id`` for ``[window_start, window_end)`` (unix seconds).

        ``POST /runs`` is not idempotent, so when an attempt may have reached the server (read
        timeout, dropped connection, 5xx) the next attempt first looks for a run of this flow with
        the same window created since the first attempt, and adopts it (``adopted=True``). When no
        answer came in time (read timeout, 504) the server may still be working on it, so the
        look-up is repeated once the server has had another ``read_timeout`` (within the retry
        budget) before the POST is sent again. A 429 or a refused connection never reached Flow
        Service and is simply sent again.
        """
        body = create_run_body(
            flow_id, window_start, window_end, start_time=start_time, delta_column=delta_column
        )
        flow = body["flowId"]
        since_ms = int((time.time() - CLOCK_SKEW_SECONDS) * 1000)
        deadline = time.monotonic() + self.retry_policy.max_total_seconds
        maybe_created = False
        settle_until = 0.0

        def adopt() -> CreatedRun | None:
            found = self._adoptable_run(flow, window_start, window_end, since_ms)
            wait = min(settle_until, deadline) - time.monotonic()
            if found is None and wait > 0:
                self.log.info("Waiting %.1f s for an unanswered create request to settle.", wait)
                time.sleep(wait)
                found = self._adoptable_run(flow, window_start, window_end, since_ms)
            if found is None:
                return None
            self.log.warning(
                "An earlier create attempt for flow %s window [%s, %s) reached Flow Service: "
                "adopting run %s instead of creating a second one.",
                flow,
                window_start,
                window_end,
                found.id,
            )
            return CreatedRun(run_id=found.id, etag=found.etag, adopted=True)

        def attempt() -> CreatedRun:
            nonlocal maybe_created, settle_until
            if maybe_created:
                adopted = adopt()
                if adopted is not None:
                    return adopted
            try:
                data = self._send_once("POST", "/runs", body=body)
            except TransientFailure as failure:
                if failure.maybe_processed:
                    maybe_created = True
                    if failure.still_processing:
                        settle_until = time.monotonic() + self.settings.read_timeout
                raise
            return parse_created_run(data)

        created = call_with_retry(self.retry_policy, attempt, method="POST", path="/runs")
        self.log.info(
            "Flow Service run %s for flow %s (window %s-%s).", created.run_id, flow, window_start, window_end
        )
        return created

    def _adoptable_run(
        self, flow_id: str, window_start: int, window_end: int, since_ms: int
    ) -> FlowRun | None:
        """Newest run of the window created since ``since_ms``; single attempts (the caller retries)."""
        params: dict[str, Any] | None = runs_params(flow_id, order_by="-createdAt")
        url: str | None = None
        for _ in range(ADOPT_MAX_PAGES):
            data = self._send_once("GET", "/runs", params=params, url=url)
            runs = [FlowRun.from_api(i) for i in _items(data)]
            for run in runs:
                if (
                    matches_window(run, flow_id, window_start, window_end)
                    and (run.created_at or 0) >= since_ms
                ):
                    return run
            if runs and all(r.created_at is not None and r.created_at < since_ms for r in runs):
                return None  # newest first: older pages cannot hold it
            nxt = next_page(data, self.settings, params or {})
            if nxt is None:
                return None
            url, params = nxt
        return None

    def get_run(self, run_id: str) -> FlowRun:
        """Read one run (``GET /runs/{run_id}``)."""
        path = f"/runs/{_segment('run_id', run_id)}"
        data = self._request("GET", path)
        return _one(data, FlowRun.from_api, "run", run_id, path)

    def get_flow(self, flow_id: str) -> Flow:
        """Read one dataflow (``GET /flows/{flow_id}``)."""
        path = f"/flows/{_segment('flow_id', flow_id)}"
        data = self._request("GET", path)
        return _one(data, Flow.from_api, "flow", flow_id, path)

    def list_runs(
        self,
        flow_id: str,
        *,
        properties: Sequence[str] = (),
        limit: int | None = None,
        order_by: str | None = None,
        max_pages: int = 100,
    ) -> list[FlowRun]:
        """Runs of ``flow_id``, following ``_links.next`` for at most ``max_pages`` pages.

        :param properties: extra ``property`` filters, e.g. ``metrics.statusSummary.status==failed``.
        :param limit: page size sent to the API and the most runs returned.
        :param order_by: e.g. ``-createdAt`` (newest first).
        """
        return self._collect(runs_params(flow_id, properties, limit, order_by), limit, max_pages)

    def _collect(self, params: dict[str, Any], limit: int | None, max_pages: int) -> list[FlowRun]:
        runs: list[FlowRun] = []
        url: str | None = None
        seen: set[str] = set()
        for page in range(max(1, max_pages)):
            data = call_with_retry(
                self.retry_policy,
                lambda u=url, p=params: self._send_once("GET", "/runs", params=p, url=u),  # type: ignore[misc]
                method="GET",
                path="/runs",
            )
            runs.extend(FlowRun.from_api(i) for i in _items(data))
            if limit is not None and len(runs) >= limit:
                return runs[:limit]
            nxt = next_page(data, self.settings, params)
            if nxt is None or repr(nxt) in seen:
                return runs
            seen.add(repr(nxt))
            url, params = nxt
            if page == max_pages - 1:
                self.log.warning("Stopped listing runs after %d pages (max_pages); more exist.", max_pages)
        return runs

    def find_runs_for_window(self, flow_id: str, window_start: int, window_end: int) -> list[FlowRun]:
        """Runs of ``flow_id`` with exactly this window (unix seconds), newest first."""
        params = runs_params(flow_id, limit=WINDOW_LOOKUP_PAGE_SIZE, order_by="-createdAt")
        runs = self._collect(params, None, WINDOW_LOOKUP_MAX_PAGES)
        return newest_first([r for r in runs if matches_window(r, flow_id, window_start, window_end)])

    def run_ui_url(self, flow_id: str, run_id: str | None = None) -> str:
        """Link to the run in the Experience Platform UI (no network).

        Uses extra ``ui_url_template`` (placeholders ``{org_id} {sandbox_name} {flow_id} {run_id}``),
        default :data:`airflow_provider_flowservice.connection.DEFAULT_UI_URL_TEMPLATE`.
        """
        return self.settings.ui_url(flow_id, run_id)

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and read one run (``GET /runs?limit=1``); say what failed if anything did."""
        ok, message = self._round_trip()
        conn_id = self.flow_service_conn_id
        if not ok and f"'{conn_id}'" not in message:
            message = f"Connection '{conn_id}': {message}"
        return ok, message

    def _round_trip(self) -> tuple[bool, str]:
        try:
            s = self.settings
        except FlowServiceConfigError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"could not read the connection: {exc}"
        try:
            TokenProvider(s, TEST_CONNECTION_RETRY).get(self.session)
        except FlowServiceAuthError as exc:
            return False, f"Adobe IMS refused the client: {exc}"
        except FlowServiceError as exc:
            return False, f"could not get a token from Adobe IMS at {s.ims_token_url}: {exc}"
        try:
            self._request("GET", "/runs", params={"limit": 1}, policy=TEST_CONNECTION_RETRY)
        except FlowServiceAuthError as exc:
            return False, f"Flow Service refused the access token or org: {exc}"
        except FlowServiceRetryError as exc:
            return False, f"Flow Service at {s.base_url} is unreachable or failing: {exc}"
        except FlowServiceApiError as exc:
            if exc.status_code in (400, 403):
                return False, f"Flow Service refused the org, sandbox or API key: {exc}"
            return False, f"Flow Service answered with an error: {exc}"
        except FlowServiceError as exc:
            return False, str(exc)
        return True, (
            f"Connected to Flow Service at {s.base_url} (org {s.org_id}, sandbox {s.sandbox_name}); "
            "the token was accepted and runs can be listed."
        )


# ---------------------------------------------------------------- async hook


class FlowServiceAsyncHook:
    """The async twin of :class:`FlowServiceHook` for triggers (``httpx.AsyncClient``).

    Never blocks the event loop: the Airflow connection is read once off the loop, requests are
    awaited and waits use ``asyncio.sleep``. One client per hook, reused; call :meth:`aclose`.

    :param flow_service_conn_id: the ``adobe_flow_service`` connection to use.
    :param retry: retry policy for transient errors; default :class:`RetryPolicy()`.
    """

    def __init__(
        self,
        flow_service_conn_id: str = DEFAULT_CONN_ID,
        *,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
    ) -> None:
        self.flow_service_conn_id = flow_service_conn_id
        self.retry_policy = RetryPolicy.coerce(retry)
        self._settings: FlowServiceConnectionSettings | None = None
        self._tokens: TokenProvider | None = None
        self._client: httpx.AsyncClient | None = None

    async def get_settings(self) -> FlowServiceConnectionSettings:
        """The validated connection, read once without blocking the loop."""
        if self._settings is None:
            conn = await _aget_connection(self.flow_service_conn_id)
            self._settings = FlowServiceConnectionSettings.from_connection(conn)
            self._tokens = TokenProvider(self._settings, self.retry_policy)
        return self._settings

    async def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            s = await self.get_settings()
            verify: Any = s.verify
            if isinstance(verify, str):
                import ssl

                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
                verify=verify,
                follow_redirects=False,
                headers={"User-Agent": _USER_AGENT},
            )
        return self._client

    async def _http(
        self, method: str, url: str, path: str, token: str, *, params: Any, body: Any
    ) -> httpx.Response:
        s = await self.get_settings()
        client = await self._get_client()
        try:
            return await client.request(
                method,
                url,
                params=params,
                json=body,
                headers=request_headers(s, token, has_body=body is not None),
            )
        except httpx.HTTPError as exc:
            failure = transient_from_httpx(exc)
            if failure is not None:
                failure.description = f"{failure.description} ({method} {s.host}{path})"
                raise failure from None
            raise _transport_error(s, method, path, exc) from None

    async def _send_once(self, method: str, path: str, *, params: Any = None, url: str | None = None) -> Any:
        s = await self.get_settings()
        client = await self._get_client()
        tokens = self._tokens
        assert tokens is not None
        target = url or s.api_url + path
        token = await tokens.aget(client)
        resp = await self._http(method, target, path, token, params=params, body=None)
        if resp.status_code == 401:
            error = parse_error_response(resp, method, path)
            if tokens.static or not tokens.is_token_refusal(error):
                raise tokens.refused_error(error)
            tokens.invalidate(token)
            token = await tokens.aget(client)
            resp = await self._http(method, target, path, token, params=params, body=None)
            if resp.status_code == 401:
                raise tokens.refused_error(parse_error_response(resp, method, path))
        return _decode(s, resp, method, path)

    async def _request(self, method: str, path: str, *, params: Any = None, url: str | None = None) -> Any:
        send: Callable[[], Awaitable[Any]] = lambda: self._send_once(method, path, params=params, url=url)  # noqa: E731
        return await acall_with_retry(self.retry_policy, send, method=method, path=path)

    async def get_run(self, run_id: str) -> FlowRun:
        """Read one run (``GET /runs/{run_id}``)."""
        path = f"/runs/{_segment('run_id', run_id)}"
        return _one(await self._request("GET", path), FlowRun.from_api, "run", run_id, path)

    async def get_flow(self, flow_id: str) -> Flow:
        """Read one dataflow (``GET /flows/{flow_id}``)."""
        path = f"/flows/{_segment('flow_id', flow_id)}"
        return _one(await self._request("GET", path), Flow.from_api, "flow", flow_id, path)

    async def list_runs(
        self,
        flow_id: str,
        *,
        properties: Sequence[str] = (),
        limit: int | None = None,
        order_by: str | None = None,
        max_pages: int = 100,
    ) -> list[FlowRun]:
        """Runs of ``flow_id`` following ``_links.next`` (same arguments as the sync hook)."""
        params = runs_params(flow_id, properties, limit, order_by)
        s = await self.get_settings()
        runs: list[FlowRun] = []
        url: str | None = None
        seen: set[str] = set()
        for _ in range(max(1, max_pages)):
            data = await self._request("GET", "/runs", params=params, url=url)
            runs.extend(FlowRun.from_api(i) for i in _items(data))
            if limit is not None and len(runs) >= limit:
                return runs[:limit]
            nxt = next_page(data, s, params)
            if nxt is None or repr(nxt) in seen:
                break
            seen.add(repr(nxt))
            url, params = nxt
        return runs

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> FlowServiceAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------- shared response handling


async def _aget_connection(conn_id: str) -> Any:
    """Read the Airflow connection off the event loop (async API on Airflow 3, a thread on 2.x)."""
    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:
        return await aget(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


def _segment(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FlowServiceConfigError(f"{name}={value!r} is empty; pass the id Flow Service returned.")
    return quote(value.strip(), safe="")


def _one(data: Any, build: Callable[[Mapping[str, Any]], Any], what: str, ident: str, path: str) -> Any:
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


def _decode(
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
    text = resp.text
    if not text.strip():
        return {}
    try:
        return resp.json()
    except ValueError:
        raise FlowServiceApiError(
            f"Flow Service {method} {path} answered HTTP {status} with a body that is not JSON: "
            f"{one_line(text, 200)}",
            status_code=status,
            method=method,
            url=path,
        ) from None


def _transport_error(
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


__all__ = ["FlowServiceAsyncHook", "FlowServiceHook"]
