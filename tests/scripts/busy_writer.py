"""A gateway process that keeps serving traffic until its stdin closes.

Prints "ready" once set up, then one line per acknowledged reply: its message
id. Used by the test that runs a report while this process writes.
"""

import asyncio
import sys
import threading

from vbgateway import Gateway
from vbgateway.providers import VendorA, VendorB


def main(db: str) -> None:
    providers = {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1),
                 "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with Gateway.open(db, providers=providers) as gw:
        tenant, _ = gw.create_tenant("Busy Corp")
        client = gw.as_tenant(tenant.id)
        agent = client.create_agent(name="Busy", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are busy.")
        session = client.create_session(agent.id)
        print("ready", flush=True)

        async def serve() -> None:
            while not stop.is_set():
                reply = await client.send_message(session.id, "Are you still there?")
                print(reply.message.id, flush=True)
                await asyncio.sleep(0.002)

        gw.clock.run(serve())


if __name__ == "__main__":
    main(sys.argv[1])
