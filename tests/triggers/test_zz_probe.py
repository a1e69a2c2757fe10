import asyncio, time
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.triggers.test_flow_service import FAST_RETRY, gets_of

async def test_probe(flow_service_conn):
    emu = flow_service_conn
    flow = emu.add_flow(seconds_to_finish=30)
    hook = FlowServiceHook(retry=FAST_RETRY)
    t0 = time.monotonic()
    run_ids = [hook.create_run(flow, 1704067200 + i * 3600, 1704067200 + (i + 1) * 3600).run_id for i in range(50)]
    t1 = time.monotonic()
    triggers = [FlowServiceRunTrigger(r, poll_interval=0.05, end_time=time.time() + 30, retry=FAST_RETRY.to_dict()) for r in run_ids]
    tasks = [asyncio.ensure_future(t.run().__anext__()) for t in triggers]
    for _ in range(1000):
        if all(gets_of(emu, r) >= 1 for r in run_ids): break
        await asyncio.sleep(0.01)
    t2 = time.monotonic()
    print("CREATE", t1 - t0, "FIRSTPOLLS", t2 - t1)
    for t in tasks: t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
