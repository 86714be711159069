"""HTTP API throughput and latency: one uvicorn server process, load from a second process.

Prints one line per figure and, last, one JSON object:

    post_message_rps   POST /v1/sessions/{id}/messages at 50 concurrent clients   (target >= 1000)
    p95_ms             95th percentile latency of those POSTs, client side        (target <= 60)
    p50_ms             median latency of those POSTs
    get_rollup_rps     GET /v1/usage/rollup at 50 concurrent clients (after the POSTs: a month of rows)
    client_seq_msgs_per_s         the Python client (vbgateway.connect), one send at a time  (target >= 400)
    client_concurrent_msgs_per_s  the same client, 50 concurrent sends on one event loop  (target >= 1000)

The server is ``vbgateway.api.create_app`` over a file database with
zero-latency vendors, run by ``vbgateway.commands.serve.run_app`` exactly as
``vbgateway serve`` runs it (uvicorn, uvloop + httptools when installed, its
GC tuning), with the JSON access log written to a file. The load generator
is a separate process: 50 keep-alive HTTP/1.1 connections on loopback, each
sending its next request as soon as the last answer arrived (a closed loop),
written on raw asyncio streams because an httpx client would itself need
more than a core for this rate.

The client figures are measured in a process of their own too, with
``vbgateway.connect`` exactly as a notebook or script uses it: each send
carries an idempotency key (the client makes one) and is answered as a
``Reply`` model.

Usage: python benchmarks/bench_api.py [--seconds 8] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SESSIONS = 500


def _providers() -> dict[str, object]:
    from vbgateway.providers import VendorA, VendorB

    return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1),
            "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}


def setup(db: Path) -> dict[str, object]:
    """A tenant, an agent and SESSIONS sessions, written before the server opens the file."""
    from vbgateway import Gateway

    with Gateway.open(db, providers=_providers()) as gw:
        _, key = gw.create_tenant("Bench Corp")
        client = gw.connect(key)
        agent = client.create_agent(name="Bench", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are a benchmark.")
        sessions = [client.create_session(agent.id).id for _ in range(SESSIONS)]
    return {"key": key, "sessions": sessions}


def serve(db: str, port: int, log_file: str) -> None:
    """The server process: what `vbgateway serve` does (its ``run_app``), with zero-latency vendors."""
    from vbgateway import Gateway
    from vbgateway.api import create_app
    from vbgateway.commands.serve import run_app

    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("vbgateway.api")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    with Gateway.open(db, providers=_providers()) as gw:
        run_app(create_app(gw), host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------------- load generator (second process)
async def _client(port: int, requests: list[bytes], stop_at: float, measure_from: float,
                  latencies: list[float], errors: list[int], once: bool = False) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at or (once and i >= len(requests)):
                return
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            if started >= measure_from:
                latencies.append(done - started)
                if status >= 300:  # a new reply is 201 Created, a rollup 200
                    errors.append(status)
    finally:
        writer.close()


def load(port: int, config: dict[str, object], kind: str, clients: int, seconds: float, warmup: float) -> dict:
    """Run a closed-loop load of ``kind`` and return rps and latency figures."""
    key = config["key"]
    if kind == "message":
        body = json.dumps({"role": "user", "content": "How do I update my billing address?"}).encode()
        requests = [(f"POST /v1/sessions/{sid}/messages HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
                    for sid in config["sessions"]]  # type: ignore[union-attr]
    else:
        requests = [(f"GET /v1/usage/rollup?from=2020-01-01&to=2030-01-01 HTTP/1.1\r\nHost: bench\r\n"
                     f"X-API-Key: {key}\r\n\r\n").encode()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        share = max(1, len(requests) // clients)
        shares = [requests[c * share:(c + 1) * share] or requests for c in range(clients)]
        # Warm-up: every session once (the server loads a session's history on first use), then `warmup` seconds.
        await asyncio.gather(*(_client(port, part, time.perf_counter() + 60, float("inf"), [], [], once=True)
                               for part in shares))
        now = time.perf_counter()
        await asyncio.gather(*(_client(port, part, now + warmup + seconds, now + warmup, latencies, errors)
                               for part in shares))

    asyncio.run(main())
    latencies.sort()
    n = len(latencies)
    return {"rps": n / seconds, "requests": n, "errors": len(errors),
            "p50_ms": 1000 * latencies[n // 2] if n else None,
            "p95_ms": 1000 * latencies[min(n - 1, int(n * 0.95))] if n else None,
            "mean_ms": 1000 * statistics.fmean(latencies) if n else None}


def client_load(port: int, config: dict[str, object], concurrency: int, seconds: float, warmup: float) -> dict:
    """Sends through ``vbgateway.connect``'s client, ``concurrency`` at a time, each as soon as the last returned."""
    import vbgateway
    from vbgateway import GatewayError

    sessions: list[str] = config["sessions"]  # type: ignore[assignment]
    client = vbgateway.connect(f"http://127.0.0.1:{port}", str(config["key"]))
    latencies: list[float] = []
    errors: list[str] = []

    async def sender(mine: list[str], stop_at: float, measure_from: float, record: bool) -> None:
        i = 0
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            try:
                await client.send_message(mine[i % len(mine)], "How do I update my billing address?")
            except GatewayError as exc:
                errors.append(exc.code)
            i += 1
            if record and started >= measure_from:
                latencies.append(time.perf_counter() - started)

    async def main() -> None:
        share = max(1, len(sessions) // concurrency)
        shares = [sessions[c * share:(c + 1) * share] or sessions for c in range(concurrency)]
        now = time.perf_counter()
        await asyncio.gather(*(sender(part, now + warmup, now, False) for part in shares))
        now = time.perf_counter()
        await asyncio.gather(*(sender(part, now + seconds, now, True) for part in shares))
        await client.aclose()

    asyncio.run(main())
    client.close()
    latencies.sort()
    n = len(latencies)
    return {"rps": n / seconds, "requests": n, "errors": len(errors),
            "p50_ms": 1000 * latencies[n // 2] if n else None,
            "p95_ms": 1000 * latencies[min(n - 1, int(n * 0.95))] if n else None}


# ---------------------------------------------------------------------- orchestration (parent process)
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server process died")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _run_load(port: int, config_file: Path, kind: str, clients: int, seconds: float, warmup: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--load", kind, "--port", str(port), "--config", str(config_file),
                          "--clients", str(clients), "--seconds", str(seconds), "--warmup", str(warmup)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per figure (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "LOG"), help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=["message", "rollup", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if args.load:
        config = json.loads(Path(args.config).read_text())
        if args.load == "client":
            print(json.dumps(client_load(args.port, config, args.clients, args.seconds, args.warmup)))
        else:
            print(json.dumps(load(args.port, config, args.load, args.clients, args.seconds, args.warmup)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        work = Path(tmp)
        config_file = work / "config.json"
        config_file.write_text(json.dumps(setup(work / "bench.duckdb")))
        port = _free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "bench.duckdb"), str(port),
                                   str(work / "access.log")])
        try:
            _wait_for(port, server)
            post = _run_load(port, config_file, "message", args.clients, args.seconds, args.warmup)
            print(f"post_message_rps  {post['rps']:8.0f}   p50 {post['p50_ms']:.1f} ms  p95 {post['p95_ms']:.1f} ms  "
                  f"({post['requests']} requests, {post['errors']} non-2xx)", flush=True)
            rollup = _run_load(port, config_file, "rollup", args.clients, max(3.0, args.seconds / 2), 1.0)
            print(f"get_rollup_rps    {rollup['rps']:8.0f}   p50 {rollup['p50_ms']:.1f} ms  p95 {rollup['p95_ms']:.1f} ms  "
                  f"({rollup['requests']} requests, {rollup['errors']} non-2xx)", flush=True)
            client_seconds = max(3.0, args.seconds / 2)
            seq = _run_load(port, config_file, "client", 1, client_seconds, 1.0)
            print(f"client_seq_msgs_per_s         {seq['rps']:6.0f}   p50 {seq['p50_ms']:.2f} ms  "
                  f"({seq['requests']} replies, {seq['errors']} errors)", flush=True)
            many = _run_load(port, config_file, "client", args.clients, client_seconds, 1.0)
            print(f"client_concurrent_msgs_per_s  {many['rps']:6.0f}   p50 {many['p50_ms']:.1f} ms  "
                  f"p95 {many['p95_ms']:.1f} ms  ({many['requests']} replies, {many['errors']} errors)", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        log_lines = sum(1 for _ in (work / "access.log").open())
    print(f"access log lines  {log_lines}")
    print(json.dumps({"post_message_rps": round(post["rps"], 1), "p95_ms": round(post["p95_ms"], 2),
                      "p50_ms": round(post["p50_ms"], 2), "post_errors": post["errors"],
                      "get_rollup_rps": round(rollup["rps"], 1), "rollup_p95_ms": round(rollup["p95_ms"], 2),
                      "client_seq_msgs_per_s": round(seq["rps"], 1),
                      "client_concurrent_msgs_per_s": round(many["rps"], 1),
                      "client_errors": seq["errors"] + many["errors"],
                      "clients": args.clients, "seconds": args.seconds}))


if __name__ == "__main__":
    main()
