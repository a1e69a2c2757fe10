"""The wait policy of the operator's blocking wait, the sensor and the trigger, decided once.

After each poll a waiter asks :class:`RunWatch` whether the run has ended (``ENDED_UNKNOWN``
included) and, after a failed poll, whether to poll again and after how long. How long to wait in
all, how often to poll and what a timeout says stay with each waiter: those really differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_flowservice._retry import is_transient

if TYPE_CHECKING:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.models import FlowRun
    from airflow_provider_flowservice.version_compat import BaseOperator, Context


class RunWatch:
    """One waiter's view of one run: the last run seen, and what to do after each poll.

    :param run_id: the run polled.
    :param log: the waiter's own logger (the lines belong in its task log); Airflow's logger types differ.
    :param what: how messages name the run; default ``flow run <id>``.
    :param plan: said once, on the first status line (how the waiter goes on polling), so that the
        plan costs no log line of its own: in a triggerer every line is a write to the task's log.
    :param log_end: False when the end is logged anyway: a trigger's event is, by the triggerer,
        and the task logs the outcome when it resumes.
    """

    def __init__(
        self, run_id: str, log: Any, what: str | None = None, plan: str | None = None, log_end: bool = True
    ) -> None:
        self.run_id = run_id
        self.log = log
        self.what = what or f"flow run {run_id}"
        self.plan = plan
        self.log_end = log_end
        self.last: FlowRun | None = None
        self.polls = 0  # successful ones

    @property
    def last_status(self) -> str | None:
        """The raw status of the last successful poll (None before one)."""
        return self.last.raw_status if self.last is not None else None

    def ended(self, run: FlowRun) -> bool:
        """Record a successful poll, logging the status when it changed; True once the run has ended."""
        ended = run.status.is_terminal
        if (self.last is None or run.raw_status != self.last.raw_status) and (self.log_end or not ended):
            if self.last is None and self.plan:
                self.log.info("Flow run %s status: %s; %s", self.run_id, run.raw_status, self.plan)
            else:
                self.log.info("Flow run %s status: %s", self.run_id, run.raw_status)
        self.last = run
        self.polls += 1
        return ended

    def hold_off(self, exc: BaseException) -> float | None:
        """After a failed poll: seconds to wait before the next one, or None when polling cannot help.

        A transient error (see :func:`~airflow_provider_flowservice._retry.is_transient`) is logged
        and polled through: at once, or after the server's ``Retry-After`` when the hook's retry
        budget could not wait that long. Anything else is None: the caller raises or reports it.
        """
        if not is_transient(exc):
            return None
        self.log.warning(
            "Transient error polling %s (will keep polling): %s: %s", self.what, type(exc).__name__, exc
        )
        return float(getattr(exc, "retry_after", None) or 0.0)


def defer_wait(
    task: BaseOperator,
    context: Context,
    hook: FlowServiceHook,
    run_id: str,
    flow_id: str | None,
    *,
    poll_interval: float,
    timeout: float,
) -> NoReturn:
    """Hand the wait for ``run_id`` to the triggerer; the operator or sensor resumes in ``execute_complete``.

    The trigger's deadline is ``timeout`` from now, ahead of the task's ``execution_timeout``
    (:func:`~airflow_provider_flowservice.triggers.flow_service.deferral_end_time`); it polls
    through ``hook``'s connection with its effective retry policy, as values.
    """
    task.log.info(
        "Deferring: the triggerer polls flow run %s every %s s for up to %s s.",
        run_id, poll_interval, timeout
    )
    # Imported here: it pulls in airflow.triggers.base, which a DAG file being parsed does not need.
    from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger, deferral_end_time

    ti = context.get("ti")
    task.defer(
        trigger=FlowServiceRunTrigger(
            run_id=run_id,
            flow_service_conn_id=hook.flow_service_conn_id,
            poll_interval=poll_interval,
            end_time=deferral_end_time(
                timeout, execution_timeout=task.execution_timeout, started_at=getattr(ti, "start_date", None)
            ),
            retry=hook.retry_policy.to_dict(),
            flow_id=flow_id,
        ),
        method_name="execute_complete",
    )
