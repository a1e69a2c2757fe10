"""The emulator can tell which local process sent a request (used by the deployment test)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")

CLIENT = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/ims/token/v3', data=b'x=1')"


def _post_from_child(url: str) -> int:
    """Send one request from a child process; return the child's PID."""
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, url], stderr=subprocess.DEVNULL)
    proc.wait(timeout=30)
    return proc.pid


def test_identify_peers_records_the_sending_process_pid() -> None:
    with FlowServiceEmulator(identify_peers=True) as emulator:
        child = _post_from_child(emulator.url)
        with contextlib.suppress(urllib.error.HTTPError):  # a bad token request: only the sender matters
            urllib.request.urlopen(emulator.url + "/ims/token/v3", data=b"x=1", timeout=10).close()
    first, second = emulator.requests
    assert first.peer_pid == child
    # Its parents as they were when it sent: this process first, though the child is gone by now.
    assert first.peer_parents[0] == os.getpid() and os.getppid() in first.peer_parents
    # This very process sent the second one: its own PID is skipped on purpose (the emulator's
    # sockets would match too), so it reads as unknown rather than as a wrong process.
    assert second.peer_pid is None
    assert first.peer_port and second.peer_port and first.peer_port != second.peer_port


def test_peers_are_not_looked_up_unless_asked() -> None:
    with FlowServiceEmulator() as emulator:
        _post_from_child(emulator.url)
    (request,) = emulator.requests
    assert request.peer_pid is None
    assert request.peer_port


def test_slow_after_create_creates_the_run_before_the_late_answer() -> None:
    import json
    import threading
    import time

    from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID

    with FlowServiceEmulator() as emulator:
        emulator.add_flow(DEFAULT_FLOW_ID)
        emulator.inject("slow_after_create", method="POST", path="/runs", delay=3)
        token = json.loads(
            urllib.request.urlopen(
                emulator.ims_token_url,
                data=f"grant_type=client_credentials&client_id={emulator.client_id}"
                f"&client_secret={emulator.client_secret}&scope=x".encode(),
                timeout=10,
            ).read()
        )["access_token"]
        params = {"windowStartTime": "1", "windowEndTime": "2"}
        body = json.dumps({"flowId": DEFAULT_FLOW_ID, "params": params})
        request = urllib.request.Request(
            emulator.url + "/data/foundation/flowservice/runs",
            data=body.encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "x-api-key": emulator.client_id,
                "x-gw-ims-org-id": emulator.org_id,
                "x-sandbox-name": emulator.sandbox_name,
                "Content-Type": "application/json",
            },
        )
        answered: list[float] = []
        start = time.monotonic()
        thread = threading.Thread(
            target=lambda: (
                urllib.request.urlopen(request, timeout=10).read(),
                answered.append(time.monotonic() - start),
            )
        )
        thread.start()
        deadline = time.monotonic() + 2
        while not emulator.runs_for_flow(DEFAULT_FLOW_ID) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emulator.runs_for_flow(DEFAULT_FLOW_ID), "the run should exist while the answer waits"
        assert not answered
        thread.join(timeout=10)
    assert answered and answered[0] >= 3
