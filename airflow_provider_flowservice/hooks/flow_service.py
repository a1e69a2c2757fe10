"""Hooks for Adobe Experience Platform Flow Service: create flow runs and read them.

:class:`FlowServiceHook` (sync, ``requests``) serves operators and sensors;
:class:`FlowServiceAsyncHook` (``aiohttp``) serves triggers. Both share the connection
settings, the process-wide IMS token cache, the retry policy and the error parsing. Neither reads
the connection nor touches the network when constructed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_flowservice._auth import AccessToken, TokenProvider
from airflow_provider_flowservice._connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    FlowServiceConnectionSettings,
    connection_form_widgets,
    ui_field_behaviour,
)
from airflow_provider_flowservice._retry import (
    RetryPolicy,
    TransientFailure,
    acall_with_retry,
    call_with_retry,
    transient_from_aiohttp,
    transient_from_requests,
)
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRetryError,
)
from airflow_provider_flowservice.hooks._api import (
    AdoptionRule,
    adrive,
    authorized,
    create_run_body,
    drive,
    items_of,
    matches_window,
    newest_first,
    next_page,
    one_item,
    parse_created_run,
    path_segment,
    request_headers,
    run_pages,
    runs_params,
    transport_error,
)
from airflow_provider_flowservice.models import ConnectionSpec, CreatedRun, Flow, FlowConnection, FlowRun
from airflow_provider_flowservice.version_compat import BaseHook

# requests and aiohttp (and the shared session) are imported on first use, not at module
# level: every DAG file that uses the provider imports this module, and they dominate its cost.
if TYPE_CHECKING:
    import aiohttp
    import requests
    import yarl

    from airflow_provider_flowservice.hooks._conn_state import ConnState
    from airflow_provider_flowservice.hooks._session import Reply

log = logging.getLogger(__name__)

CLOCK_SKEW_SECONDS = 120
"""How much earlier than our first POST a run's ``createdAt`` may be and still count as ours."""
ENDED_RUN_SKEW_SECONDS = 5
"""A run that has already ended counts as ours only if created at most this long before our first POST."""
ADOPT_MAX_PAGES = 5
WINDOW_LOOKUP_MAX_PAGES = 3
"""Pages of one window's runs read (server-filtered, newest first: the first page decides)."""
WINDOW_LOOKUP_PAGE_SIZE = 100
WINDOW_FALLBACK_MAX_PAGES = 20
"""Pages of all the flow's runs read when the server refuses the window filter."""
TEST_CONNECTION_RETRY = RetryPolicy(
    max_attempts=2, initial_backoff=0.5, max_backoff=2.0, max_total_seconds=20.0
)

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
        import requests

        return requests.Session()

    def get_conn(self) -> requests.Session:
        """The underlying ``requests.Session``."""
        return self.session

    def _http(
        self, method: str, url: str, path: str, token: str, *, params: Any, body: Any
    ) -> requests.Response:
        import requests

        s = self.settings
        try:
            return self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=request_headers(s, token, has_body=body is not None),
                timeout=(s.connect_timeout, s.read_timeout),
                verify=s.tls_verify(),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = transient_from_requests(exc)
            if failure is not None:
                failure.description = f"{failure.description} ({method} {s.host}{path})"
                raise failure from None
            raise transport_error(s, method, path, exc) from None

    def _send_once(
        self, method: str, path: str, *, params: Any = None, body: Any = None, url: str | None = None
    ) -> Any:
        """One attempt under the 401 rule (``_api.authorized``); the decoded JSON."""
        target = url or self.settings.api_url + path

        def send(_: None) -> tuple[AccessToken, requests.Response]:
            token = self.tokens.get_token(self.session)
            return token, self._http(method, target, path, token.value, params=params, body=body)

        return drive(authorized(self.settings, self.tokens, method, path), send)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        url: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> Any:
        """``_send_once`` under the retry policy."""
        return call_with_retry(
            policy or self.retry_policy,
            lambda: self._send_once(method, path, params=params, body=body, url=url),
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
        exclude_run_ids: Collection[str] = (),
    ) -> CreatedRun:
        """Create one on-demand run of ``flow_id`` for ``[window_start, window_end)`` (unix seconds).

        ``POST /runs`` is not idempotent, so when an attempt may have reached the server (read
        timeout, dropped connection, 5xx) the next attempt first looks for a run of this flow with
        the same window created since the first attempt, and adopts it (``adopted=True``). When no
        answer came in time (read timeout, 504) the server may still be working on it, so the
        look-up is repeated once the server has had another ``read_timeout`` (within the retry
        budget) before the POST is sent again. A 429 or a refused connection never reached Flow
        Service and is simply sent again. The look-ups count against ``max_total_seconds``: when
        it runs out before one can finish, no second POST is sent (:class:`FlowServiceRetryError`).

        :param exclude_run_ids: runs known to exist before this call (e.g. seen by the caller's own
            look-up): never adopted. Runs that had already ended although created before the first
            POST (allowing :data:`ENDED_RUN_SKEW_SECONDS`) are never adopted either.
        """
        body = create_run_body(
            flow_id, window_start, window_end, start_time=start_time, delta_column=delta_column
        )
        flow = body["flowId"]
        first_ms = int(time.time() * 1000)
        rule = AdoptionRule(
            flow,
            window_start,
            window_end,
            since_ms=first_ms - CLOCK_SKEW_SECONDS * 1000,
            ended_before_ms=first_ms - ENDED_RUN_SKEW_SECONDS * 1000,
            exclude=frozenset([exclude_run_ids] if isinstance(exclude_run_ids, str) else exclude_run_ids),
        )
        deadline = time.monotonic() + self.retry_policy.max_total_seconds
        maybe_created = False
        settle_until = 0.0
        last: list[TransientFailure] = []

        def adopt() -> CreatedRun | None:
            found = self._adoptable_run(rule, deadline, last)
            wait = min(settle_until, deadline) - time.monotonic()
            if found is None and wait > 0:
                self.log.info("Waiting %.1f s for an unanswered create request to settle.", wait)
                time.sleep(wait)
                found = self._adoptable_run(rule, deadline, last)
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
                if time.monotonic() >= deadline:
                    raise self._budget_spent(rule, last)
            try:
                data = self._send_once("POST", "/runs", body=body)
            except TransientFailure as failure:
                last[:] = [failure]
                if failure.maybe_processed:
                    maybe_created = True
                    if failure.still_processing:
                        settle_until = time.monotonic() + self.settings.read_timeout
                raise
            cached = self.tokens.cached()
            token = cached.value if cached is not None else None
            return parse_created_run(data, secrets=self.settings.secrets(token))

        try:
            created = call_with_retry(self.retry_policy, attempt, method="POST", path="/runs")
        except FlowServiceApiError as exc:
            # Adobe's wording may not name the values it refused: name what was sent.
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                delta = f", deltaColumn {delta_column!r}" if delta_column else ""
                exc.add_context(
                    f"The request was: flow_id {flow}, window [{window_start}, {window_end}) in unix "
                    f"seconds{delta}."
                )
                from airflow_provider_flowservice._refusal import explain_refusal

                explain_refusal(self, flow, exc)  # a deleted or disabled flow: say so (one GET)
            raise
        self.log.info(
            "Flow Service run %s for flow %s (window %s-%s).", created.run_id, flow, window_start, window_end
        )
        return created

    def _budget_spent(self, rule: AdoptionRule, last: Sequence[TransientFailure]) -> FlowServiceRetryError:
        """No time left to learn whether an unanswered create made a run: say so, send nothing more."""
        policy = self.retry_policy
        cause = f" Last error: {last[-1].description}." if last else ""
        return FlowServiceRetryError(
            f"Flow Service POST /runs for flow {rule.flow_id} window [{rule.window_start}, "
            f"{rule.window_end}): the retry "
            f"budget (max_total_seconds={policy.max_total_seconds:g}) ran out while checking whether an "
            "unanswered create attempt had created a run, so no second POST was sent and the run may or "
            "may not exist. Look for it under the dataflow's runs in Experience Platform; a task retry "
            "with reuse_existing_run=True finds a running or successful one. Raise RetryPolicy "
            f"max_total_seconds to give the check more time.{cause}",
            status_code=last[-1].status_code if last else None,
            method="POST",
            url="/runs",
        )

    def _adoptable_run(
        self, rule: AdoptionRule, deadline: float, last: Sequence[TransientFailure]
    ) -> FlowRun | None:
        """Newest run the rule admits; single attempts (the caller retries).

        Bounded by the time budget: past ``deadline`` no further page is read and it raises
        rather than guess (the first page is always read, so one look-up is always made).
        """
        params: dict[str, Any] | None = runs_params(rule.flow_id, order_by="-createdAt")
        url: str | None = None
        for page in range(ADOPT_MAX_PAGES):
            if page and time.monotonic() >= deadline:
                raise self._budget_spent(rule, last)
            data = self._send_once("GET", "/runs", params=params, url=url)
            runs = [FlowRun.from_api(i) for i in items_of(data)]
            for run in runs:
                if rule.admits(run):
                    return run
            if runs and all(r.created_at is not None and r.created_at < rule.since_ms for r in runs):
                return None  # newest first: older pages cannot hold it
            nxt = next_page(data, self.settings, params or {})
            if nxt is None:
                return None
            url, params = nxt
        return None

    def _read_one(
        self, collection: str, name: str, value: str, parse: Callable[[Mapping[str, Any]], Any], what: str
    ) -> Any:
        """``GET /{collection}/{value}``: the one item of its list wrapper, parsed (``name`` for errors)."""
        path = f"/{collection}/{path_segment(name, value)}"
        return one_item(self._request("GET", path), parse, what, value, path)

    def get_run(self, run_id: str) -> FlowRun:
        """Read one run (``GET /runs/{run_id}``)."""
        return self._read_one("runs", "run_id", run_id, FlowRun.from_api, "run")

    def get_flow(self, flow_id: str) -> Flow:
        """Read one dataflow (``GET /flows/{flow_id}``)."""
        return self._read_one("flows", "flow_id", flow_id, Flow.from_api, "flow")

    # Lineage reads: what a flow reads from and writes to (issue 12; docs/lineage.md).
    def get_source_connection(self, connection_id: str) -> FlowConnection:
        """Read a flow's source connection (``GET /sourceConnections/{id}``)."""
        return self._read_one(
            "sourceConnections", "connection_id", connection_id, FlowConnection.from_api, "source connection"
        )

    def get_target_connection(self, connection_id: str) -> FlowConnection:
        """Read a flow's target connection (``GET /targetConnections/{id}``; ``params.dataSetId``)."""
        return self._read_one(
            "targetConnections", "connection_id", connection_id, FlowConnection.from_api, "target connection"
        )

    def get_connection_spec(self, spec_id: str) -> ConnectionSpec:
        """Read a connection spec (``GET /connectionSpecs/{id}``): its name is the source kind."""
        return self._read_one(
            "connectionSpecs", "spec_id", spec_id, ConnectionSpec.from_api, "connection spec"
        )

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
        pages = run_pages(self.settings, params, limit, max_pages, self.log.warning)
        return drive(pages, lambda page: self._request("GET", "/runs", params=page.params, url=page.url))

    def find_runs_for_window(self, flow_id: str, window_start: int, window_end: int) -> list[FlowRun]:
        """Runs of ``flow_id`` with exactly this window (unix seconds), newest first.

        The server filters (``property=`` on ``flowId`` and the window the create sent, as unix
        seconds; a second query finds runs that echo it in milliseconds), so the cost is one or two
        requests whatever the flow's history; every run is checked again here. When the server
        refuses a window filter (HTTP 400), the flow's runs are read unfiltered, newest first, for
        at most :data:`WINDOW_FALLBACK_MAX_PAGES` pages; if more exist it raises
        :class:`FlowServiceError` rather than answer "none", which a caller would take as leave
        to create a run that may duplicate one it did not see.
        """
        flow = flow_id.strip() if isinstance(flow_id, str) else flow_id
        seconds = [
            f"params.windowStartTime=={window_start}",
            f"params.windowEndTime=={window_end}",
        ]
        try:
            runs = self._window_query(flow, seconds)
        except FlowServiceApiError as exc:
            if exc.status_code != 400:
                raise
            return self._window_fallback(flow, window_start, window_end, exc)
        milliseconds = [
            f"params.windowStartTime>={window_start * 1000}",
            f"params.windowStartTime<={window_start * 1000 + 999}",
            f"params.windowEndTime>={window_end * 1000}",
            f"params.windowEndTime<={window_end * 1000 + 999}",
        ]
        try:
            runs += self._window_query(flow, milliseconds)
        except FlowServiceApiError as exc:
            if exc.status_code != 400:
                raise
            # Runs this provider creates carry seconds: they were all found above.
            self.log.info("Flow Service refused the look-up of runs echoing their window in ms: %s", exc)
        unique = {r.id: r for r in runs if matches_window(r, flow, window_start, window_end)}
        return newest_first(list(unique.values()))

    def _window_query(self, flow_id: str, filters: Sequence[str]) -> list[FlowRun]:
        params = runs_params(flow_id, filters, limit=WINDOW_LOOKUP_PAGE_SIZE, order_by="-createdAt")
        return self._collect(params, None, WINDOW_LOOKUP_MAX_PAGES)

    def _window_fallback(
        self, flow_id: str, window_start: int, window_end: int, refused: FlowServiceApiError
    ) -> list[FlowRun]:
        """Every run of the flow, read newest first, filtered here; raise if there are too many to read."""
        self.log.warning(
            "Flow Service refused to filter runs by window (%s); reading flow %s's runs unfiltered, at most "
            "%d pages.",
            refused,
            flow_id,
            WINDOW_FALLBACK_MAX_PAGES,
        )
        params = runs_params(flow_id, limit=WINDOW_LOOKUP_PAGE_SIZE, order_by="-createdAt")
        runs: list[FlowRun] = []
        url: str | None = None
        for _ in range(WINDOW_FALLBACK_MAX_PAGES):
            data = self._request("GET", "/runs", params=params, url=url)
            runs.extend(FlowRun.from_api(i) for i in items_of(data))
            nxt = next_page(data, self.settings, params)
            if nxt is None:
                found = [r for r in runs if matches_window(r, flow_id, window_start, window_end)]
                return newest_first(found)
            url, params = nxt
        raise FlowServiceError(
            f"Flow Service refused to filter flow {flow_id}'s runs by window ({refused}), and the flow has "
            f"more runs than the {WINDOW_FALLBACK_MAX_PAGES} pages read ({len(runs)} runs), so this "
            f"provider cannot tell whether a run of window [{window_start}, {window_end}) (unix seconds) "
            "already exists or is still running. No run was created: one could duplicate it. To create "
            "a run without looking, set reuse_existing_run=False on the operator (a retry may then create "
            "a second run for the window)."
        )

    def run_ui_url(self, flow_id: str, run_id: str | None = None) -> str:
        """Link to the run in the Experience Platform UI (no network).

        Uses extra ``ui_url_template`` (placeholders ``{org_id} {sandbox_name} {flow_id} {run_id}``),
        default :data:`airflow_provider_flowservice._connection.DEFAULT_UI_URL_TEMPLATE`.
        """
        return self.settings.ui_url(flow_id, run_id)

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and read one run (``GET /runs?limit=1``); say what failed if anything did.

        The message names fields, never the connection id: Airflow's Test button tests a copy under a
        random temporary id (e.g. ``rXyuEuEN``) that the user has never seen.
        """
        ok, message = self._round_trip()
        return ok, _without_conn_id(message, self.flow_service_conn_id)

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


def _without_conn_id(message: str, conn_id: str) -> str:
    """``message`` with "connection '<id>'" phrases turned into "the connection"."""
    quoted = re.escape(f"'{conn_id}'")
    message = re.sub(rf"(?<![A-Za-z])Connection {quoted}", "The connection", message)
    return re.sub(rf"(?<![A-Za-z])connection {quoted}", "the connection", message)


# ---------------------------------------------------------------- async hook


class FlowServiceAsyncHook:
    """The async twin of :class:`FlowServiceHook` for triggers (``aiohttp``).

    Never blocks the event loop: the Airflow connection is read off the loop, requests are
    awaited and waits use ``asyncio.sleep``. Hooks on one event loop share one
    ``aiohttp.ClientSession`` (``hooks/_session.py``) and one read of each connection, reused for
    60 s (``hooks/_conn_state.py``); call :meth:`aclose` to let go of the session.

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
        self._state: ConnState | None = None
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    async def _conn(self) -> ConnState:
        """The loop's shared state of the connection (read at most once a minute per loop)."""
        from airflow_provider_flowservice.hooks import _conn_state

        state = self._state
        if state is None or not state.fresh(_conn_state.clock()):
            state = self._state = await _conn_state.get(self.flow_service_conn_id, _aget_connection)
        return state

    async def get_settings(self) -> FlowServiceConnectionSettings:
        """The validated connection, read without blocking the loop (shared by the loop's hooks)."""
        return (await self._conn()).settings

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            from airflow_provider_flowservice.hooks import _session

            self._session = _session.acquire()
        return self._session

    async def _http(
        self, state: ConnState, method: str, url: str, path: str, token: str, *, params: Any
    ) -> Reply:
        from airflow_provider_flowservice.hooks import _session

        session = await self._get_session()
        target = self._urls.get(url)
        if target is None:  # a trigger polls one URL all its life: parse it once
            import yarl

            target = self._urls[url] = yarl.URL(url, encoded=True)
        try:
            return await _session.send(
                session,
                method,
                target,
                params=params,
                headers=state.headers(token),
                ssl_context=state.ssl_context,
                timeout=state.timeout,
                proxy=state.proxy,
            )
        except Exception as exc:
            s = state.settings
            failure = transient_from_aiohttp(exc)
            if failure is not None:
                failure.description = f"{failure.description} ({method} {s.host}{path})"
                raise failure from None
            import aiohttp

            if isinstance(exc, aiohttp.ClientError | ValueError | OSError):
                raise transport_error(s, method, path, exc) from None
            raise

    async def _token(self, tokens: TokenProvider) -> AccessToken:
        """The access token: the connection's own, the cached one, or a new one from IMS."""
        cached = tokens.cached()  # no session needed for it
        if cached is not None:
            return cached
        return await tokens.aget_token(await self._get_session())

    async def _send_once(self, method: str, path: str, *, params: Any = None, url: str | None = None) -> Any:
        state = await self._conn()
        s = state.settings
        tokens = state.tokens(self.retry_policy)
        target = url or s.api_url + path

        async def send(_: None) -> tuple[AccessToken, Reply]:
            token = await self._token(tokens)
            return token, await self._http(state, method, target, path, token.value, params=params)

        try:
            return await adrive(authorized(s, tokens, method, path), send)
        except FlowServiceAuthError:
            from airflow_provider_flowservice.hooks import _conn_state

            _conn_state.drop(self.flow_service_conn_id, state)  # the next request reads it again
            raise

    async def _request(self, method: str, path: str, *, params: Any = None, url: str | None = None) -> Any:
        send: Callable[[], Awaitable[Any]] = lambda: self._send_once(method, path, params=params, url=url)  # noqa: E731
        return await acall_with_retry(self.retry_policy, send, method=method, path=path)

    async def get_run(self, run_id: str) -> FlowRun:
        """Read one run (``GET /runs/{run_id}``)."""
        path = f"/runs/{path_segment('run_id', run_id)}"
        return one_item(await self._request("GET", path), FlowRun.from_api, "run", run_id, path)

    async def get_flow(self, flow_id: str) -> Flow:
        """Read one dataflow (``GET /flows/{flow_id}``)."""
        path = f"/flows/{path_segment('flow_id', flow_id)}"
        return one_item(await self._request("GET", path), Flow.from_api, "flow", flow_id, path)

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
        pages = run_pages(await self.get_settings(), params, limit, max_pages, log.warning)
        return await adrive(
            pages, lambda page: self._request("GET", "/runs", params=page.params, url=page.url)
        )

    async def aclose(self) -> None:
        """Let go of the loop's shared session (idempotent); the last hook on the loop closes it."""
        if self._session is not None:
            from airflow_provider_flowservice.hooks import _session

            session, self._session = self._session, None
            await _session.release(session)

    async def __aenter__(self) -> FlowServiceAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _aget_connection(conn_id: str) -> Any:
    """Read the Airflow connection off the event loop (async API on Airflow 3, a thread on 2.x)."""
    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:
        return await aget(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


__all__ = ["FlowServiceAsyncHook", "FlowServiceConnectionSettings", "FlowServiceHook", "RetryPolicy"]
