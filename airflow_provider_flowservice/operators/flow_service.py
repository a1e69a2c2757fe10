"""Start an on-demand flow run for a dataflow and a time window, and wait for it to finish.

Everything the user passes is checked before any request is sent. The run id and UI link are
pushed to XCom as soon as the run exists, so they are visible while the task waits. A retry of
the task does not start a second run for the same window: it reattaches to (or adopts) the run
an earlier try created; a deliberate clear still re-ingests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_flowservice.exceptions import (
    FlowServiceError,
    FlowServiceTimeoutError,
)
from airflow_provider_flowservice.links.flow_service import RUN_URL_XCOM_KEY, FlowServiceRunLink
from airflow_provider_flowservice.models import FlowRun
from airflow_provider_flowservice.outcome import EVENT_TERMINAL, EVENT_TIMEOUT, apply_outcome, format_summary
from airflow_provider_flowservice.retry import is_transient
from airflow_provider_flowservice.status import FlowRunStatus, RunState
from airflow_provider_flowservice.version_compat import (
    TASK_STATE_NEVER_EXPIRE,
    BaseOperator,
    conf,
    get_task_state_store,
)
from airflow_provider_flowservice.window import (
    Window,
    iso_utc,
    resolve_window_from_context,
    validate_delta_column,
    validate_duration,
    validate_flow_id,
    validate_start_time,
)

if TYPE_CHECKING:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.retry import RetryPolicy
    from airflow_provider_flowservice.version_compat import Context

#: task_state_store key holding the run this task instance created (Airflow 3.3+).
TASK_STATE_KEY = "flow_service_run"
DEFAULT_TIMEOUT_SECONDS = 24 * 3600.0


def is_automatic_retry(try_number: int, max_tries: int, retries: int) -> bool:
    """True when this try is an automatic retry, False on a first try (new DAG run or a clear).

    Airflow sets ``max_tries = retries`` for a new task instance and ``max_tries = try_number +
    retries`` when a task is cleared, so the first try of either has
    ``try_number == max_tries - retries + 1``; only automatic retries come after it.
    """
    return try_number > max_tries - retries + 1


@dataclass(frozen=True)
class _RunRequest:
    """The validated values a run is created with."""

    flow_id: str
    window: Window
    delta_column: str | None
    start_time: int | None


class FlowServiceCreateRunOperator(BaseOperator):
    """Create an on-demand Flow Service run for a dataflow and window; optionally wait for it.

    Returns the run id (XCom ``return_value``); the run's UI URL goes to XCom ``run_url``.

    :param flow_id: the dataflow id (a UUID). Templated.
    :param window_start: window start: aware datetime, ISO-8601 string with offset, or unix
        seconds. Templated. Default: the task's ``data_interval_start``.
    :param window_end: window end, same forms. Templated. Default: ``data_interval_end``.
    :param delta_column: delta column name, for the first run of a table-based source. Templated.
    :param start_time: when the run should begin (same forms as the window). Templated.
    :param wait_for_completion: wait until the run ends (else return right after creating it).
    :param deferrable: wait in the triggerer instead of the worker. Default:
        ``[operators] default_deferrable``.
    :param poll_interval: seconds between status polls.
    :param timeout: longest wait, seconds or timedelta. Default: ``execution_timeout`` if set, else 24 h.
    :param allow_partial_success: succeed (with a warning) when the run ends ``partialSuccess``.
    :param reuse_existing_run: on a retry, reattach to or adopt the run an earlier try created for
        the same flow and window, and wait on a run of this window that is still running instead
        of starting a second one. A deliberate clear still creates a new run.
    :param flow_service_conn_id: the Airflow connection (type ``adobe_flow_service``).
    :param retry: HTTP retry settings for the hook and the trigger.
    """

    template_fields: Sequence[str] = ("flow_id", "window_start", "window_end", "delta_column", "start_time")
    operator_extra_links = (FlowServiceRunLink(),)
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        flow_id: str,
        window_start: Any = None,
        window_end: Any = None,
        delta_column: str | None = None,
        start_time: Any = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30,
        timeout: float | timedelta | None = None,
        allow_partial_success: bool = False,
        reuse_existing_run: bool = True,
        flow_service_conn_id: str = "flow_service_default",
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.window_start = window_start
        self.window_end = window_end
        self.delta_column = delta_column
        self.start_time = start_time
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = validate_duration(poll_interval, "poll_interval")
        self.timeout = timeout
        if timeout is not None:
            validate_duration(timeout, "timeout")
        self.allow_partial_success = allow_partial_success
        self.reuse_existing_run = reuse_existing_run
        self.flow_service_conn_id = flow_service_conn_id
        self.retry = retry
        self._run_id: str | None = None

    @cached_property
    def hook(self) -> FlowServiceHook:
        """The sync hook, created on first use (never while the DAG is parsed)."""
        from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

        return FlowServiceHook(self.flow_service_conn_id, retry=self.retry)

    @property
    def timeout_seconds(self) -> float:
        """The longest wait: ``timeout``, else ``execution_timeout``, else 24 h."""
        if self.timeout is not None:
            return validate_duration(self.timeout, "timeout")
        if self.execution_timeout:
            return validate_duration(self.execution_timeout, "execution_timeout")
        return DEFAULT_TIMEOUT_SECONDS

    # ----------------------------------------------------------------- execute

    def execute(self, context: Context) -> str:
        """Validate, create (or reuse) the run, push its id and URL, then wait per the arguments."""
        flow_id = validate_flow_id(self.flow_id)
        window = resolve_window_from_context(self.window_start, self.window_end, context)
        delta_column = validate_delta_column(self.delta_column)
        start_time = validate_start_time(self.start_time)
        timeout = self.timeout_seconds
        self.log.info(
            "Flow Service run for flow %s, window %s%s%s",
            flow_id,
            window.describe(),
            f", delta column {delta_column!r}" if delta_column else "",
            f", start time {iso_utc(start_time)} (unix {start_time})" if start_time is not None else "",
        )

        hook = self.hook
        request = _RunRequest(flow_id, window, delta_column, start_time)
        run_id, existing = self._select_run(context, hook, request)
        self._run_id = run_id
        run_url = hook.run_ui_url(flow_id, run_id)
        ti = context["ti"]
        ti.xcom_push(key=RUN_URL_XCOM_KEY, value=run_url)
        ti.xcom_push(key="return_value", value=run_id)
        self.log.info("Flow run id: %s  (Experience Platform: %s)", run_id, run_url)

        if not self.wait_for_completion:
            self.log.info("wait_for_completion=False: not waiting for flow run %s.", run_id)
            return run_id
        if existing is not None and existing.status.is_terminal:
            self._finish(existing, window, run_url)
            return run_id
        if self.deferrable:
            self.log.info(
                "Deferring: the triggerer polls flow run %s every %s s for up to %s s.",
                run_id,
                self.poll_interval,
                timeout,
            )
            # Imported here, not at module level: it pulls in airflow.triggers.base, which a DAG
            # file being parsed does not need.
            from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger

            self.defer(
                trigger=FlowServiceRunTrigger(
                    run_id=run_id,
                    flow_service_conn_id=self.flow_service_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=self._deferral_end_time(context, timeout),
                    retry=self.retry.to_dict() if self.retry is not None else None,
                    flow_id=flow_id,
                ),
                method_name="execute_complete",
            )
        run = self._wait(hook, run_id, timeout)
        self._finish(run, window, run_url)
        return run_id

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> str:
        """Resume after the trigger fired: apply the same outcome rules as the blocking wait."""
        run_id = str(event.get("run_id"))
        self._run_id = run_id
        status = event.get("status")
        summary = event.get("summary")
        if status == EVENT_TERMINAL and summary:
            self.log.info("%s", format_summary(summary))
            apply_outcome(summary, allow_partial_success=self.allow_partial_success, logger=self.log)
            return run_id
        if status == EVENT_TIMEOUT:
            raise FlowServiceTimeoutError(
                f"{event.get('message')} Timeout was {self.timeout_seconds:.0f} s (set timeout=... on the "
                "operator to wait longer). A retry of this task reattaches to the same run.",
                run_id=run_id,
                last_status=event.get("run_status"),
            )
        raise FlowServiceError(event.get("message") or f"Waiting for flow run {run_id} failed: {event!r}")

    def on_kill(self) -> None:
        """Flow Service has no cancel endpoint: say so, and which run keeps going."""
        which = f"flow run {self._run_id}" if self._run_id else "the flow run (if it was created)"
        self.log.warning(
            "Task killed. Flow Service has no endpoint to cancel a run: %s goes on in Experience Platform.",
            which,
        )

    # ----------------------------------------------------------------- helpers

    def _deferral_end_time(self, context: Context, timeout: float) -> float:
        """Absolute deadline for the trigger, ahead of Airflow's own execution_timeout cut-off."""
        end = time.time() + timeout
        ti = context.get("ti")
        started = getattr(ti, "start_date", None)
        if self.execution_timeout and started is not None:
            limit = self.execution_timeout.total_seconds()
            end = min(end, started.timestamp() + limit - min(10.0, 0.05 * limit))
        return end

    def _finish(self, run: FlowRun, window: Window, run_url: str | None) -> None:
        self.log.info("%s", format_summary(run, window=window))
        apply_outcome(run, allow_partial_success=self.allow_partial_success, logger=self.log, run_url=run_url)

    def _wait(self, hook: FlowServiceHook, run_id: str, timeout: float) -> FlowRun:
        """Poll until the run ends or the timeout passes (runs in a worker: sleeping is fine)."""
        deadline = time.monotonic() + timeout
        last: FlowRun | None = None
        while True:
            try:
                run = hook.get_run(run_id)
            except FlowServiceError as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("Transient error polling flow run %s (will keep polling): %s", run_id, exc)
            else:
                if last is None or run.raw_status != last.raw_status:
                    self.log.info("Flow run %s status: %s", run_id, run.raw_status)
                last = run
                if run.status.is_terminal:
                    return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FlowServiceTimeoutError(
                    f"Flow run {run_id} did not finish within the timeout of {timeout:.0f} s (last status "
                    f"{last.raw_status if last else None!r}). The run continues in Experience Platform. "
                    "Raise timeout=... (or execution_timeout) on the operator to wait longer; a retry of "
                    "this task reattaches to the same run.",
                    run_id=run_id,
                    last_status=last.raw_status if last else None,
                )
            time.sleep(min(self.poll_interval, remaining))

    def _accepts(self, run: FlowRun) -> bool:
        return run.status is FlowRunStatus.SUCCESS or (
            run.status is FlowRunStatus.PARTIAL_SUCCESS and self.allow_partial_success
        )

    def _select_run(
        self, context: Context, hook: FlowServiceHook, request: _RunRequest
    ) -> tuple[str, FlowRun | None]:
        """Pick the run to wait on: reattach, adopt, or create. Returns (run id, known run or None)."""
        flow_id, window = request.flow_id, request.window
        if not self.reuse_existing_run:
            return self._create(context, hook, request), None

        ti = context.get("ti")
        retry = ti is not None and is_automatic_retry(
            int(ti.try_number or 1), int(ti.max_tries or 0), int(self.retries or 0)
        )
        store = get_task_state_store(context)

        if retry and store is not None:
            stored = self._read_store(store)
            if (
                stored
                and stored.get("flow_id") == flow_id
                and (stored.get("window_start"), stored.get("window_end")) == (window.start, window.end)
            ):
                try:
                    run = hook.get_run(str(stored["run_id"]))
                except FlowServiceError as exc:
                    self.log.warning(
                        "Could not read flow run %s stored by an earlier try (%s); looking up runs of the "
                        "window instead.",
                        stored.get("run_id"),
                        exc,
                    )
                else:
                    if run.status.state is RunState.RUNNING:
                        self.log.info(
                            "Reattaching to flow run %s created by an earlier try of this task (status %s).",
                            run.id,
                            run.raw_status,
                        )
                        return run.id, run
                    if self._accepts(run):
                        self.log.info(
                            "Adopting flow run %s created by an earlier try of this task: it already ended "
                            "with status %s; no new run is created.",
                            run.id,
                            run.raw_status,
                        )
                        return run.id, run
                    self.log.info(
                        "Flow run %s created by an earlier try ended with status %s; creating a new run.",
                        run.id,
                        run.raw_status,
                    )
                    return self._create(context, hook, request), None

        runs = hook.find_runs_for_window(flow_id, window.start, window.end)
        newest = runs[0] if runs else None
        if newest is not None:
            if newest.status.state is RunState.RUNNING:
                self.log.info(
                    "Flow run %s for this flow and window is still running (status %s); waiting on it "
                    "instead of starting a second run for the same window.",
                    newest.id,
                    newest.raw_status,
                )
                self._write_store(store, newest.id, flow_id, window)
                return newest.id, newest
            if retry and self._accepts(newest):
                self.log.info(
                    "Adopting run %s created by an earlier try for this flow and window (status %s); this "
                    "try is an automatic retry, so no new run is created.",
                    newest.id,
                    newest.raw_status,
                )
                self._write_store(store, newest.id, flow_id, window)
                return newest.id, newest
            self.log.info(
                "Latest run %s for this window ended with status %s; %s: creating a new run.",
                newest.id,
                newest.raw_status,
                "it is not reusable" if retry else "this is a first try (new DAG run or a clear)",
            )
        return self._create(context, hook, request), None

    def _create(self, context: Context, hook: FlowServiceHook, request: _RunRequest) -> str:
        flow_id, window = request.flow_id, request.window
        created = hook.create_run(
            flow_id,
            window.start,
            window.end,
            start_time=request.start_time,
            delta_column=request.delta_column,
        )
        if created.adopted:
            self.log.info(
                "Flow run %s: an earlier attempt of this request had created it; using it.", created.run_id
            )
        else:
            self.log.info("Created flow run %s.", created.run_id)
        if self.reuse_existing_run:
            store = get_task_state_store(context)
            self._write_store(store, created.run_id, flow_id, window)
        return created.run_id

    def _read_store(self, store: Any) -> dict[str, Any] | None:
        try:
            value = store.get(TASK_STATE_KEY)
        except Exception as exc:  # the store is a convenience: never fail the task for it
            self.log.warning("Could not read task_state_store key %r: %s", TASK_STATE_KEY, exc)
            return None
        return value if isinstance(value, dict) and value.get("run_id") else None

    def _write_store(self, store: Any, run_id: str, flow_id: str, window: Window) -> None:
        if store is None:
            return
        value = {"run_id": run_id, "flow_id": flow_id, "window_start": window.start, "window_end": window.end}
        try:
            if TASK_STATE_NEVER_EXPIRE is not None:
                store.set(TASK_STATE_KEY, value, retention=TASK_STATE_NEVER_EXPIRE)
            else:
                store.set(TASK_STATE_KEY, value)
        except Exception as exc:
            self.log.warning("Could not store flow run %s in task_state_store: %s", run_id, exc)
