"""Start an on-demand flow run for a dataflow and a time window, and wait for it to finish.

Everything the user passes is checked before any request is sent. The run id and UI link are
pushed to XCom as soon as the run exists, so they are visible while the task waits. A retry of
the task does not start a second run for the same window: it reattaches to (or adopts) the run
an earlier try created; a deliberate clear still re-ingests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_flowservice._outcome import EVENT_TERMINAL, EVENT_TIMEOUT, apply_outcome, format_summary
from airflow_provider_flowservice._watch import RunWatch, defer_wait
from airflow_provider_flowservice._window import (
    Window,
    iso_utc,
    resolve_window_from_context,
    validate_delta_column,
    validate_duration,
    validate_flow_id,
    validate_start_time,
)
from airflow_provider_flowservice.assets import outlets_with_alias
from airflow_provider_flowservice.exceptions import (
    FlowServiceError,
    FlowServiceTimeoutError,
)
from airflow_provider_flowservice.links.flow_service import (
    KNOWN_RUN_URL_ATTR,
    FlowServiceRunLink,
    publish_run_url,
    pushed_run_url,
)
from airflow_provider_flowservice.models import FlowRun
from airflow_provider_flowservice.status import FlowRunStatus, RunState
from airflow_provider_flowservice.version_compat import (
    BaseOperator,
    conf,
    get_task_state_store,
    previous_try_max_tries,
)

if TYPE_CHECKING:
    from airflow_provider_flowservice._lineage import LineageRecorder
    from airflow_provider_flowservice._retry import RetryPolicy
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.version_compat import Context

#: task_state_store key holding this task instance's flow run (Airflow 3.3+).
TASK_STATE_KEY = "flow_service_run"
#: How long the stored entry is kept. It is trusted only within the sequence of tries that wrote
#: it (a clear starts a new one), so it must outlive a retry sequence, not the DAG run; deleting
#: the DAG run deletes it at once. Explicit, so a short ``[state_store] default_retention_days``
#: cannot drop it between two retries.
TASK_STATE_RETENTION = timedelta(days=30)
#: At most this many ids of runs that existed before the sequence's first create are stored.
MAX_PRE_EXISTING_IDS = 100
DEFAULT_TIMEOUT_SECONDS = 24 * 3600.0


def first_try_of_sequence(max_tries: int, retries: int) -> int:
    """The try number that began the current sequence of tries (a first try and its automatic retries).

    Airflow sets ``max_tries = retries`` for a new task instance and ``max_tries = try_number +
    retries`` when a task is cleared, so the sequence's first try is ``max_tries - retries + 1``:
    it changes with every clear and stays the same through automatic retries.
    """
    return max_tries - retries + 1


def is_automatic_retry(try_number: int, max_tries: int, retries: int) -> bool:
    """True when this try is an automatic retry, False on a first try (new DAG run or a clear)."""
    return try_number > first_try_of_sequence(max_tries, retries)


class _RunRequest(NamedTuple):
    """The validated values a run is created with."""

    flow_id: str
    window: Window
    delta_column: str | None
    start_time: int | None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """True when a stored entry is for this flow and window."""
        return entry.get("flow_id") == self.flow_id and (
            entry.get("window_start"),
            entry.get("window_end"),
        ) == (self.window.start, self.window.end)


class _Sequence:
    """Where this try stands in its sequence of tries, and what that sequence already did.

    ``entry`` is the sequence's task_state_store entry (Airflow 3.3+), None when there is no store
    or no entry written by this sequence; ``started_at`` (epoch seconds) is the DAG run's start,
    the time cutoff used without an entry. (A plain class: a dataclass costs every DAG parse.)
    """

    def __init__(
        self, first_try: int, retry: bool, max_tries: int | None = None, try_number: int = 1
    ) -> None:
        self.first_try = first_try
        self.retry = retry
        self.max_tries = max_tries
        self.try_number = try_number
        self.store: Any | None = None
        self.entry: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.seen: list[str] = []


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
    :param emit_asset_events: on success, emit an asset event (2.11: dataset event) for the
        flow's target dataset, ``aep://<org>/<sandbox>/datasets/<id>``, with the run's counts in
        its extra, through the task's asset aliases (default: ``flow_alias(flow_id)``). Costs
        ``GET /flows/{id}`` and ``GET /targetConnections/{id}`` once per task. Default False.
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
        emit_asset_events: bool = False,
        **kwargs: Any,
    ) -> None:
        if emit_asset_events:
            kwargs["outlets"] = outlets_with_alias(flow_id, kwargs.get("outlets"), who=type(self).__name__)
        super().__init__(**kwargs)
        self.emit_asset_events = emit_asset_events
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
        setattr(self, KNOWN_RUN_URL_ATTR, "")  # no run yet: the link has nothing to read
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
        publish_run_url(ti, run_id, run_url, self.log)
        setattr(self, KNOWN_RUN_URL_ATTR, run_url)
        if self.do_xcom_push:  # at once, so downstream tasks can read it while this one waits
            ti.xcom_push(key="return_value", value=run_id)
        # The URL ends the line: a character after it would be taken into the clickable link.
        self.log.info("Flow run id: %s; the dataflow's runs in Experience Platform: %s", run_id, run_url)

        if not self.wait_for_completion:
            self.log.info("wait_for_completion=False: not waiting for flow run %s.", run_id)
            return run_id
        if existing is not None and existing.status.is_terminal:
            self._finish(existing, window, run_url)
            self._emit_asset_event(context)
            return run_id
        if self.deferrable:
            defer_wait(
                self, context, hook, run_id, flow_id, poll_interval=self.poll_interval, timeout=timeout
            )
        run = self._wait(hook, run_id, timeout)
        self._finish(run, window, run_url)
        self._emit_asset_event(context)
        return run_id

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> str:
        """Resume after the trigger fired: apply the same outcome rules as the blocking wait."""
        run_id = str(event.get("run_id"))
        self._run_id = run_id
        status = event.get("status")
        summary = event.get("summary")
        if status == EVENT_TERMINAL and summary:
            self.log.info("%s", format_summary(summary))
            self.flow_lineage.finished(summary)
            apply_outcome(
                summary,
                allow_partial_success=self.allow_partial_success,
                logger=self.log,
                run_url=pushed_run_url(context.get("ti"), self.log),
            )
            self._emit_asset_event(context)
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

    # ----------------------------------------------------------------- lineage (docs/lineage.md)

    @cached_property
    def flow_lineage(self) -> LineageRecorder:
        """This task's lineage: the finished run, and the flow's source and target read at most once."""
        from airflow_provider_flowservice._lineage import LineageRecorder

        return LineageRecorder()

    def _emit_asset_event(self, context: Context) -> None:
        if self.emit_asset_events:
            self.flow_lineage.emit_asset_event(context, self.outlets, self.hook, self.log)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the source read, the dataset written (with counts), the flow run (never raises)."""
        return self.flow_lineage.openlineage(
            self.hook, self.log, flow_id=self.flow_id, run_id=self._run_id, failed=False
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage for a failed task: what is known of the flow and its run (never raises)."""
        return self.flow_lineage.openlineage(
            self.hook, self.log, flow_id=self.flow_id, run_id=self._run_id, failed=True
        )

    # ----------------------------------------------------------------- helpers

    def _finish(self, run: FlowRun, window: Window, run_url: str | None) -> None:
        self.log.info("%s", format_summary(run, window=window))
        self.flow_lineage.finished(run)
        apply_outcome(run, allow_partial_success=self.allow_partial_success, logger=self.log, run_url=run_url)

    def _wait(self, hook: FlowServiceHook, run_id: str, timeout: float) -> FlowRun:
        """Poll until the run ends or the timeout passes (runs in a worker: sleeping is fine)."""
        deadline = time.monotonic() + timeout
        watch = RunWatch(run_id, self.log)
        while True:
            try:
                run = hook.get_run(run_id)
            except FlowServiceError as exc:
                hold_off = watch.hold_off(exc)  # a Retry-After beyond the hook's budget: wait what was asked
                if hold_off is None:
                    raise
            else:
                hold_off = 0.0
                if watch.ended(run):
                    return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FlowServiceTimeoutError(
                    f"Flow run {run_id} did not finish within the timeout of {timeout:.0f} s (last status "
                    f"{watch.last_status!r}). The run continues in Experience Platform. "
                    "Raise timeout=... (or execution_timeout) on the operator to wait longer; a retry of "
                    "this task reattaches to the same run.",
                    run_id=run_id,
                    last_status=watch.last_status,
                )
            time.sleep(min(max(self.poll_interval, hold_off), remaining))

    def _accepts(self, run: FlowRun) -> bool:
        return run.status is FlowRunStatus.SUCCESS or (
            run.status is FlowRunStatus.PARTIAL_SUCCESS and self.allow_partial_success
        )

    # ----------------------------------------------------------------- reuse rule

    def _select_run(
        self, context: Context, hook: FlowServiceHook, request: _RunRequest
    ) -> tuple[str, FlowRun | None]:
        """Pick the run to wait on: reattach, adopt, or create. Returns (run id, known run or None).

        The rule (README, "No duplicate runs on retry"): a run of the window that is still running
        is always waited on; an automatic retry adopts a finished, accepted run only if this
        sequence of tries created it (never one from before the last clear); otherwise create.
        """
        flow_id, window = request.flow_id, request.window
        if not self.reuse_existing_run:
            return self._create(hook, request, None), None

        seq = self._sequence(context, request)
        entry = seq.entry
        if seq.retry and entry is not None and entry.get("run_id"):
            stored = self._stored_run(hook, str(entry["run_id"]))
            if stored is not None:
                return stored.id, stored

        runs = hook.find_runs_for_window(flow_id, window.start, window.end)
        seq.seen = [run.id for run in runs]
        newest = runs[0] if runs else None
        if newest is not None:
            if newest.status.state is RunState.RUNNING:
                self.log.info(
                    "Flow run %s for this flow and window is still running (status %s); waiting on it "
                    "instead of starting a second run for the same window.",
                    newest.id,
                    newest.raw_status,
                )
                self._save(seq, request, run_id=newest.id)
                return newest.id, newest
            if seq.retry and self._accepts(newest):
                if self._created_in_sequence(newest, seq):
                    self.log.info(
                        "Adopting run %s created by an earlier try for this flow and window (status %s); "
                        "this try is an automatic retry, so no new run is created.",
                        newest.id,
                        newest.raw_status,
                    )
                    self._save(seq, request, run_id=newest.id)
                    return newest.id, newest
                self.log.info(
                    "Latest run %s for this window ended with status %s, but it is older than this "
                    "sequence of tries (it existed before the task was last cleared, or before this DAG "
                    "run started): creating a new run.",
                    newest.id,
                    newest.raw_status,
                )
            elif seq.retry:
                self.log.info(
                    "Latest run %s for this window ended with status %s; it is not reusable: creating a "
                    "new run.",
                    newest.id,
                    newest.raw_status,
                )
            else:
                self.log.warning(
                    "Re-ingesting window %s of flow %s: the previous run %s ended with status %s, and this "
                    "is a first try (a new DAG run or a clear), so a new run is created. (A retry would "
                    "have adopted an accepted run of its own.)",
                    window.describe(),
                    flow_id,
                    newest.id,
                    newest.raw_status,
                )
        return self._create(hook, request, seq), None

    def _sequence(self, context: Context, request: _RunRequest) -> _Sequence:
        """Tell a first try from an automatic retry; find (3.3+) or start this sequence's stored entry.

        ``max_tries`` identifies a sequence: Airflow sets it when the task instance is created and
        again on every clear, never on an automatic retry. So a retry is told by values Airflow
        recorded (the stored entry's ``max_tries`` on 3.3+, the previous try's in the task instance
        history on 2.x), not by the operator's ``retries``, which may have changed since the clear;
        only where neither exists (Airflow 3.0 to 3.2) ``max_tries - retries + 1`` decides.
        """
        ti = context.get("ti")
        store = get_task_state_store(context)
        stored = self._read_store(store) if store is not None else None
        if ti is None:
            seq = _Sequence(first_try=1, retry=False)
        else:
            try_number = int(ti.try_number or 1)
            max_tries = int(ti.max_tries or 0)
            first_try = first_try_of_sequence(max_tries, int(self.retries or 0))
            retry = self._is_automatic_retry(ti, try_number, max_tries, stored)
            seq = _Sequence(first_try, retry, max_tries, try_number)
        dag_run = context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        seq.started_at = started.timestamp() if started is not None else None

        seq.store = store
        if store is None:
            return seq
        if not seq.retry:
            # A first try starts a new sequence: whatever an earlier one stored is no longer trusted.
            self._save(seq, request, run_id=None)
            return seq
        if stored and self._same_sequence(stored, seq) and request.matches(stored):
            seq.entry = stored
            if isinstance(stored.get("first_try"), int):
                seq.first_try = stored["first_try"]
        elif stored:
            self.log.info(
                "Not reusing flow run %s from task_state_store: %s.",
                stored.get("run_id"),
                "it is for another flow or window"
                if not request.matches(stored)
                else "an earlier sequence of tries stored it (the task was cleared since)",
            )
        return seq

    def _is_automatic_retry(
        self, ti: Any, try_number: int, max_tries: int, stored: Mapping[str, Any] | None
    ) -> bool:
        """True when this try is an automatic retry of the sequence an earlier try began."""
        if try_number <= 1:
            return False
        stored_max, stored_try = (stored or {}).get("max_tries"), (stored or {}).get("try_number")
        if isinstance(stored_max, int) and isinstance(stored_try, int) and stored_try < try_number:
            return stored_max == max_tries
        previous = previous_try_max_tries(ti)
        if previous is not None:
            return previous == max_tries
        return is_automatic_retry(try_number, max_tries, int(self.retries or 0))

    @staticmethod
    def _same_sequence(stored: Mapping[str, Any], seq: _Sequence) -> bool:
        """Whether a stored entry was written by this sequence (entries of older versions: by first try)."""
        if isinstance(stored.get("max_tries"), int) and seq.max_tries is not None:
            return bool(stored["max_tries"] == seq.max_tries)
        return bool(stored.get("first_try") == seq.first_try)

    def _stored_run(self, hook: FlowServiceHook, run_id: str) -> FlowRun | None:
        """The run this sequence stored, if it is still running or ended accepted; else None."""
        try:
            run = hook.get_run(run_id)
        except FlowServiceError as exc:
            self.log.warning(
                "Could not read flow run %s stored by an earlier try (%s); looking up runs of the window "
                "instead.",
                run_id,
                exc,
            )
            return None
        if run.status.state is RunState.RUNNING:
            self.log.info(
                "Reattaching to flow run %s created by an earlier try of this task (status %s).",
                run.id,
                run.raw_status,
            )
            return run
        if self._accepts(run):
            self.log.info(
                "Adopting flow run %s created by an earlier try of this task: it already ended with status "
                "%s; no new run is created.",
                run.id,
                run.raw_status,
            )
            return run
        self.log.info(
            "Flow run %s created by an earlier try ended with status %s; creating a new run.",
            run.id,
            run.raw_status,
        )
        return None

    def _created_in_sequence(self, run: FlowRun, seq: _Sequence) -> bool:
        """Whether a finished run was created by this sequence of tries (so a retry may adopt it).

        With this sequence's stored entry (3.3+) the answer is exact: a create was attempted and the
        run was not among those that existed before it. Without one, the run must be created at or
        after the DAG run's start, which clearing a finished DAG run resets; with no start date to
        compare, the answer is no (a new run rather than adopting one of unknown origin).
        """
        if seq.entry is not None:
            pre_existing = set(seq.entry.get("pre_existing") or ())
            return bool(seq.entry.get("create_attempted")) and run.id not in pre_existing
        if seq.started_at is None:
            self.log.warning(
                "Not adopting flow run %s: the DAG run has no start date, so this provider cannot tell "
                "whether this sequence of tries created it; creating a new run.",
                run.id,
            )
            return False
        return run.created_at is not None and run.created_at >= seq.started_at * 1000

    def _create(self, hook: FlowServiceHook, request: _RunRequest, seq: _Sequence | None) -> str:
        flow_id, window = request.flow_id, request.window
        if seq is not None and seq.store is not None and not (seq.entry or {}).get("create_attempted"):
            # Before the first create of the sequence: remember which runs existed already.
            self._save(
                seq, request, run_id=None, create_attempted=True, pre_existing=seq.seen[:MAX_PRE_EXISTING_IDS]
            )
        created = hook.create_run(
            flow_id,
            window.start,
            window.end,
            start_time=request.start_time,
            delta_column=request.delta_column,
            # Runs this try's look-up saw predate this create: its safe retry must never adopt them.
            exclude_run_ids=list(seq.seen) if seq is not None else (),
        )
        if created.adopted:
            self.log.info(
                "Flow run %s: an earlier attempt of this request had created it; using it.", created.run_id
            )
        else:
            self.log.info("Created flow run %s.", created.run_id)
        if seq is not None:
            self._save(seq, request, run_id=created.run_id)
        return created.run_id

    def _read_store(self, store: Any) -> dict[str, Any] | None:
        try:
            value = store.get(TASK_STATE_KEY)
        except Exception as exc:  # the store is a convenience: never fail the task for it
            self.log.warning("Could not read task_state_store key %r: %s", TASK_STATE_KEY, exc)
            return None
        return value if isinstance(value, dict) else None

    def _save(self, seq: _Sequence, request: _RunRequest, *, run_id: str | None, **changes: Any) -> None:
        """Write this sequence's entry (3.3+; no-op without a store), keeping what it already holds."""
        if seq.store is None:
            return
        entry: dict[str, Any] = {
            "create_attempted": False,
            "pre_existing": [],
            **(seq.entry or {}),
            **changes,
            "run_id": run_id if run_id is not None else (seq.entry or {}).get("run_id"),
            "flow_id": request.flow_id,
            "window_start": request.window.start,
            "window_end": request.window.end,
            "first_try": seq.first_try,
            # What Airflow recorded for this sequence (a clear changes max_tries), and who wrote it.
            "max_tries": seq.max_tries,
            "try_number": seq.try_number,
        }
        seq.entry = entry
        try:
            seq.store.set(TASK_STATE_KEY, entry, retention=TASK_STATE_RETENTION)
        except Exception as exc:
            self.log.warning("Could not save flow run %s in task_state_store: %s", entry["run_id"], exc)


__all__ = ["FlowServiceCreateRunOperator"]
