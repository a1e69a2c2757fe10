"""Say why Flow Service refused to create a run when the reason is the flow itself.

A create refused with a 4xx may be about the flow (deleted, disabled, not usable for on-demand
runs) rather than the request. Adobe's wording does not always say which, so the hook reads the
flow once (``GET /flows/{id}``) and adds its state and the fix to the error. A refusal of an
enabled flow for a reason in the request (a window, a delta column) gets nothing added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceError

if TYPE_CHECKING:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

#: Not about the flow: auth and rate limiting.
_NOT_FLOW_LEVEL = {401, 403, 429}
_ON_DEMAND_WORDS = ("on-demand", "on demand", "ondemand")


def explain_refusal(hook: FlowServiceHook, flow_id: str, exc: FlowServiceApiError) -> None:
    """Add the flow's state and what to do to ``exc`` (a refused create); never raises."""
    status = exc.status_code
    if status is None or not 400 <= status < 500 or status in _NOT_FLOW_LEVEL:
        return
    sandbox = hook.settings.sandbox_name
    try:
        flow = hook.get_flow(flow_id)
    except FlowServiceApiError as read_error:
        if read_error.status_code in (400, 404):
            exc.add_context(
                f"Reading the flow failed too (HTTP {read_error.status_code} {read_error.error_code or ''}"
                f"): flow {flow_id} does not exist in sandbox {sandbox!r}: it was deleted, or it belongs "
                "to another sandbox. Check flow_id against Sources > Dataflows in that sandbox, and the "
                "connection's sandbox_name."
            )
        return
    except FlowServiceError:
        return
    name = f" ({flow.name})" if flow.name else ""
    state = (flow.state or "").lower()
    if state == "deleted":
        exc.add_context(
            f"Flow {flow_id}{name} is deleted: a deleted dataflow cannot run again. Create a new dataflow "
            "for the source and use its id."
        )
    elif state and state != "enabled":
        exc.add_context(
            f"Flow {flow_id}{name} is {flow.state!r}: enable the dataflow in Experience Platform (Sources > "
            "Dataflows) and run the task again; on-demand runs need an enabled flow."
        )
    elif any(word in str(exc).lower() for word in _ON_DEMAND_WORDS):
        exc.add_context(
            f"Flow {flow_id}{name} is enabled (flow spec {flow.flow_spec_id}, schedule frequency "
            f"{flow.schedule_frequency!r}), but it cannot run on demand: on-demand runs are for batch "
            "source dataflows only (not streaming ones). Use a batch dataflow of the source."
        )
