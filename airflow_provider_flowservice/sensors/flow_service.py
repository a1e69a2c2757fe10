"""Wait for a flow run that already exists (e.g. created with ``wait_for_completion=False``).

The sensor works in ``poke``, ``reschedule`` and deferrable modes with the same rules as the
operator: a ``failed`` run fails the sensor as soon as it is seen, with the run's errors, instead
of waiting for the timeout; ``partialSuccess`` fails unless ``allow_partial_success=True``. With
``soft_fail=True`` those outcomes, and a timeout, skip the task instead, on Airflow 2.11 and 3.x
alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_flowservice._outcome import (
    EVENT_TERMINAL,
    EVENT_TIMEOUT,
    apply_outcome,
    as_summary,
    format_summary,
)
from airflow_provider_flowservice._watch import RunWatch, defer_wait
from airflow_provider_flowservice._window import validate_duration
from airflow_provider_flowservice.assets import outlets_with_alias
from airflow_provider_flowservice.exceptions import (
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRunError,
)
from airflow_provider_flowservice.links.flow_service import (
    KNOWN_RUN_URL_ATTR,
    FlowServiceRunLink,
    publish_run_url,
    pushed_run_url,
)
from airflow_provider_flowservice.version_compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

if TYPE_CHECKING:
    from airflow_provider_flowservice._lineage import LineageRecorder
    from airflow_provider_flowservice._retry import RetryPolicy
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.models import FlowRun
    from airflow_provider_flowservice.version_compat import Context

#: Seconds between polls when neither ``poll_interval`` nor ``poke_interval`` is given.
DEFAULT_POLL_INTERVAL = 30.0

_NOT_A_RUN_ID = {"", "none", "null"}


class FlowServiceRunOutcomeError(FlowServiceRunError, AirflowFailException):
    """The watched run ended ``failed`` (or ``partialSuccess`` when not allowed).

    A finished run never changes, so the sensor fails without retries (``AirflowFailException``);
    it is still a :class:`FlowServiceRunError` with the run id, status and errors.
    """


class FlowServiceRunSensor(BaseSensorOperator):
    """Wait until a Flow Service run ends; succeed, warn or fail by its final status.

    Returns the run's summary (``FlowRun.summary()``: status, errors, window, record and file
    counts) as XCom, and pushes the run's UI URL to XCom ``run_url`` for the extra link.

    :param run_id: the flow run to watch. Templated, e.g.
        ``"{{ ti.xcom_pull(task_ids='create_run') }}"``.
    :param flow_service_conn_id: the Airflow connection (type ``adobe_flow_service``).
    :param allow_partial_success: succeed (with a warning) when the run ends ``partialSuccess``.
    :param deferrable: wait in the triggerer instead of the worker. Default:
        ``[operators] default_deferrable``.
    :param poll_interval: seconds (or timedelta) between status polls; the sensor's
        ``poke_interval``. Default 30 s.
    :param retry: HTTP retry settings for the hook and the trigger.
    :param emit_asset_events: when the run is accepted, emit an asset event for its flow's target
        dataset through the task's outlets, which must hold an asset alias (e.g.
        ``outlets=[flow_alias(flow_id)]``) or the dataset's ``aep://`` asset. Default False.
    :param timeout: (BaseSensorOperator) longest wait; in deferrable mode the trigger's deadline.
    :param soft_fail: (BaseSensorOperator) skip instead of failing on a failed run, a refused
        ``partialSuccess`` or a timeout (``never_fail`` too).
    """

    template_fields: Sequence[str] = ("run_id",)
    operator_extra_links = (FlowServiceRunLink(),)
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        run_id: str,
        flow_service_conn_id: str = "flow_service_default",
        allow_partial_success: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        emit_asset_events: bool = False,
        **kwargs: Any,
    ) -> None:
        if emit_asset_events:
            kwargs["outlets"] = outlets_with_alias(None, kwargs.get("outlets"), who=type(self).__name__)
        if poll_interval is not None:
            if kwargs.get("poke_interval") is not None:
                raise FlowServiceConfigError(
                    f"Both poll_interval={poll_interval!r} and poke_interval={kwargs['poke_interval']!r} "
                    "were given to FlowServiceRunSensor; they are the same setting: pass only poll_interval."
                )
            kwargs["poke_interval"] = validate_duration(poll_interval, "poll_interval")
        elif kwargs.get("poke_interval") is None:
            kwargs["poke_interval"] = DEFAULT_POLL_INTERVAL
        super().__init__(**kwargs)
        self.run_id = run_id
        self.flow_service_conn_id = flow_service_conn_id
        self.allow_partial_success = allow_partial_success
        self.deferrable = deferrable
        self.retry = retry
        self.emit_asset_events = emit_asset_events
        self._watch: RunWatch | None = None
        self._run_url: str | None = None

    @cached_property
    def hook(self) -> FlowServiceHook:
        """The sync hook, created on first use (never while the DAG is parsed)."""
        from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

        return FlowServiceHook(self.flow_service_conn_id, retry=self.retry)

    # ----------------------------------------------------------------- execute

    def execute(self, context: Context) -> Any:
        """Check the run id, then poke / reschedule (base class loop) or defer to the trigger."""
        run_id = self._checked_run_id()
        watch = self._watch = RunWatch(run_id, self.log)
        self._run_url = None
        mode = "deferrable" if self.deferrable else self.mode
        self.log.info(
            "Waiting for flow run %s (%s mode, polling every %s s, timeout %s s).",
            run_id, mode, self.poke_interval, self.timeout,
        )
        if self.deferrable:
            return self._emit_asset_event(context, self._execute_deferrable(context, run_id))
        try:
            return self._emit_asset_event(context, super().execute(context))
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(
                f"{exc} Flow run {run_id} was still {watch.last_status or 'not readable'!r}. The run "
                "continues in Experience Platform; raise timeout=... on the sensor to wait longer."
            ) from None  # the message already holds exc's: a chained traceback would repeat it

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One status poll: False while running, the summary when done; raises on a failed run."""
        run = self._poll(context, self._checked_run_id())
        if run is None or not run.status.is_terminal:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._complete(run))

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: same outcome rules as poke mode."""
        run_id = str(event.get("run_id") or self.run_id)
        status = event.get("status")
        summary = event.get("summary")
        if status == EVENT_TERMINAL and summary:
            if self._run_url is None:
                self._run_url = pushed_run_url(context.get("ti"), self.log)
            return self._emit_asset_event(context, self._complete(summary))
        if status == EVENT_TIMEOUT:
            message = (
                f"{event.get('message')} Sensor timeout: {self.timeout:.0f} s "
                "(timeout=... on the sensor)."
            )
            self._skip_if_soft(message)
            raise AirflowSensorTimeout(message)
        raise FlowServiceError(event.get("message") or f"Waiting for flow run {run_id} failed: {event!r}")

    # ----------------------------------------------------------------- helpers

    def _execute_deferrable(self, context: Context, run_id: str) -> Any:
        """Look once (a finished run needs no trigger), then hand the wait to the triggerer."""
        run = self._poll(context, run_id)
        if run is not None and run.status.is_terminal:
            return self._complete(run)
        flow_id = run.flow_id if run is not None else None
        defer_wait(
            self, context, self.hook, run_id, flow_id, poll_interval=self.poke_interval, timeout=self.timeout
        )

    def _checked_run_id(self) -> str:
        run_id = self.run_id.strip() if isinstance(self.run_id, str) else self.run_id
        if not isinstance(run_id, str) or run_id.lower() in _NOT_A_RUN_ID or "/" in run_id:
            raise FlowServiceConfigError(
                f"run_id {self.run_id!r} is not a flow run id. If it comes from XCom, check that the "
                "upstream task pushed one: e.g. run_id=\"{{ ti.xcom_pull(task_ids='create_run') }}\" "
                "with the task id of the FlowServiceCreateRunOperator, which must run before this sensor."
            )
        return run_id

    def _poll(self, context: Context, run_id: str) -> FlowRun | None:
        """Read the run; None after a transient error (logged; no hold-off: Airflow schedules pokes)."""
        watch = self._watch = self._watch or RunWatch(run_id, self.log)
        try:
            run = self.hook.get_run(run_id)
        except FlowServiceError as exc:
            if watch.hold_off(exc) is None:
                raise
            return None
        watch.ended(run)
        if self._run_url is None and run.flow_id:
            self._run_url = self.hook.run_ui_url(run.flow_id, run_id)
            if not self._published_earlier_in_try(context, self._run_url):
                publish_run_url(context["ti"], run_id, self._run_url, self.log)
            setattr(self, KNOWN_RUN_URL_ATTR, self._run_url)
        return run

    def _published_earlier_in_try(self, context: Context, run_url: str) -> bool:
        """Whether an earlier poke of this try already pushed ``run_url`` (reschedule mode).

        In reschedule mode every poke is a new process; the URL never changes within a try, so it is
        published once. ``task_reschedule_count`` (Airflow 3) is 0 on the first poke: nothing to
        read then (reading a missing XCom logs an error there); later pokes, and Airflow 2, read it.
        """
        if not self.reschedule or context.get("task_reschedule_count") == 0:
            return False
        return pushed_run_url(context.get("ti"), self.log) == run_url

    def _complete(self, run: FlowRun | Mapping[str, Any]) -> dict[str, Any]:
        """Log the summary and apply the outcome rules; return the summary for XCom."""
        self.log.info("%s", format_summary(run))
        try:
            apply_outcome(
                run, allow_partial_success=self.allow_partial_success, logger=self.log, run_url=self._run_url
            )
        except FlowServiceRunError as exc:
            self._fail(exc)
        self.flow_lineage.finished(run)
        return as_summary(run)

    @cached_property
    def flow_lineage(self) -> LineageRecorder:
        """The accepted run, and its flow's target read at most once (docs/lineage.md)."""
        from airflow_provider_flowservice._lineage import LineageRecorder

        return LineageRecorder()

    def _emit_asset_event(self, context: Context, result: Any) -> Any:
        """Emit the run's dataset event when asked and the run was accepted; pass ``result`` through."""
        if self.emit_asset_events:
            self.flow_lineage.emit_asset_event(context, self.outlets, self.hook, self.log)
        return result

    def _skip_if_soft(self, message: str) -> None:
        """Under soft_fail (or never_fail) skip, keeping the reason, on Airflow 2.11 and 3.x alike.

        Airflow's own handling differs by line and mode (a generic "Skipping due to soft_fail"
        message, no never_fail in 2.11's deferred path), so the sensor decides itself.
        """
        flag = "soft_fail" if self.soft_fail else "never_fail" if getattr(self, "never_fail", False) else None
        if flag:
            self.log.warning("%s Skipping: %s=True.", message, flag)
            raise AirflowSkipException(f"{message} Skipping: {flag}=True.")

    def _fail(self, exc: FlowServiceRunError) -> NoReturn:
        """Fail without retries (the run is final), or skip under soft_fail; the message is kept."""
        try:
            self._skip_if_soft(str(exc))
        except AirflowSkipException as skip:
            raise skip from None
        # from None: the cause has the same message, and a chained traceback would print it twice.
        raise FlowServiceRunOutcomeError(
            str(exc), run_id=exc.run_id, status=exc.status, errors=exc.errors
        ) from None


__all__ = ["FlowServiceRunOutcomeError", "FlowServiceRunSensor"]
