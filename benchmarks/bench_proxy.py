"""The gateway as a proxy in front of a real HTTP vendor: its overhead, its time to first byte, its throughput.

One run, one local OpenAI-compatible upstream for every figure
(``vbgateway.testing.upstream.Upstream``, a real HTTP server on loopback,
started in a process of its own so that no client shares its interpreter).
Prints one line per figure as it is measured and, last, one JSON object:

    overhead_p50_ms          one client, sequential requests: p50 of POST /v1/sessions/{id}/messages through
                             `vbgateway serve` minus p50 of the same chat completion sent straight to the
                             upstream, requests alternating                                        (target <= 3)
    stream_ttfb_overhead_ms  the same with ``Accept: text/event-stream`` through the gateway and ``"stream": true``
                             straight to the upstream: time to the first byte of the body          (target <= 3)
    gateway_rps              50 keep-alive clients (closed loop) through `vbgateway serve`         (reported)
    litellm_rps              the same load through a LiteLLM proxy (one worker, no database)       (reported)
    ratio_vs_litellm         gateway_rps / litellm_rps                                             (target >= 5)
    upstream_rps             the same load straight to the upstream: the ceiling of both           (reported)

The gateway is the real CLI: ``vbgateway providers add upstream --kind openai
--base-url ... --api-key-env ...`` stores the provider in a DuckDB file, a
tenant and an agent naming it are created, and ``vbgateway serve`` serves that
file (persistence on: every reply is journaled and stored before it is
answered; its JSON access log goes to a file). The upstream checks the API key.

What each request carries: every sequential request is the second message of
its session, so the gateway sends the upstream the system prompt and three
turns; the direct request is that very body. Under load every client keeps
twenty conversations and sends the next turn of each in turn; the gateway
keeps their history, while LiteLLM and the upstream are sent the whole
conversation by the client, as their clients do (LiteLLM's conversations start
later and stay shorter: that favours it).

The load generator is a separate process of 50 raw HTTP/1.1 keep-alive
connections on one uvloop event loop (as in bench_api.py): an httpx client
needs several times its CPU per request, and on this 2-core machine every
client cycle is taken from the servers. Its cost is measured and printed
(``client_cpu_us``), as is each server's CPU per request (its process tree's
user + system time over the measured seconds).

LiteLLM is looked for at ``--litellm`` (default /tmp/litellm-venv/bin/litellm,
installed with ``python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip
install 'litellm[proxy]'``); it runs offline (its local model cost map). When
it is missing or does not start, the run says why and leaves its figures out.

Usage: python benchmarks/bench_proxy.py [--quick] [--pairs 1000] [--seconds 10] [--clients 50] [--no-litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY_ENV = "VB_BENCH_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-bench-upstream-0123456789"
PROVIDER = "upstream"
MODEL = "upstream-model"
SYSTEM = "You are a benchmark."
FIRST = "Hello, I have a question about my account."
CONTENT = "How do I update my billing address?"
MAX_TOKENS = 1024  # the agent's default max_output_tokens, which the gateway sends as max_tokens
SLOTS_PER_CLIENT = 20
LITELLM = "/tmp/litellm-venv/bin/litellm"
LITELLM_KEY = "sk-bench-litellm-0123456789"  # its master key: it authenticates each request, as the gateway does


def _reply(content: str) -> str:
    return f"Upstream reply: {content}"  # what the upstream answers (vbgateway/testing/upstream.py)


def _chat_body(turns: list[dict[str, str]], stream: bool = False) -> bytes:
    """The chat completion the gateway sends for a session holding ``turns`` (the system prompt first)."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, *turns],
                            "max_tokens": MAX_TOKENS}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


SECOND_TURN = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": _reply(FIRST)},
               {"role": "user", "content": CONTENT}]


# ---------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[Any], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, then SIGKILL after 20 s; to the whole group of a process that leads one (LiteLLM's workers)."""
    if process is None:
        return
    group = os.getpgid(process.pid) == process.pid if process.poll() is None else False

    def signal_it(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig) if group else process.send_signal(sig)

    if process.poll() is None:
        signal_it(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            signal_it(signal.SIGKILL)
            process.wait(timeout=10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


def wait_until_idle(pid: int, limit_s: float = 20.0) -> float:
    """Wait until ``pid`` uses under 5% of a core (its store applied the warm-up's replies); the seconds waited."""
    started = time.perf_counter()
    last = _cpu_seconds(pid)
    while time.perf_counter() - started < limit_s:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        if now - last < 0.025:
            break
        last = now
    return time.perf_counter() - started


def upstream_child() -> None:
    """The upstream's process: its server on a uvloop loop in its own thread; stops when stdin closes."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    from vbgateway.testing.upstream import Upstream

    upstream = Upstream(model=MODEL, api_key=UPSTREAM_KEY).start()
    print(upstream.port, flush=True)
    try:
        while True:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready and not sys.stdin.readline():
                break
            upstream.reset()  # it records every request: keep its memory flat under load
    finally:
        upstream.stop()


# ---------------------------------------------------------------------- the gateway: configured, served
def _cli() -> list[str]:
    script = Path(sys.executable).with_name("vbgateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from vbgateway.cli import main; sys.exit(main())"]


def configure_gateway(db: Path, upstream_url: str, sessions: int, env: dict[str, str]) -> dict[str, Any]:
    """The provider as data (the CLI), then a tenant, an agent naming it and ``sessions`` sessions."""
    subprocess.run([*_cli(), "providers", "add", PROVIDER, "--kind", "openai", "--base-url", upstream_url,
                    "--model", MODEL, "--api-key-env", KEY_ENV, "--usd-per-1m-input", "0.15",
                    "--usd-per-1m-output", "0.6", "--db", str(db)], check=True, env=env, stdout=subprocess.DEVNULL)
    os.environ[KEY_ENV] = UPSTREAM_KEY
    from vbgateway import Gateway

    with Gateway.open(db) as gw:
        _, key = gw.create_tenant("Bench Corp")
        client = gw.connect(key)
        agent = client.create_agent(name="Proxy", primary_provider=PROVIDER, system_prompt=SYSTEM)

        async def create() -> list[str]:
            ids: list[str] = []
            for start in range(0, sessions, 500):
                made = await asyncio.gather(*(client.create_session_async(agent.id)
                                              for _ in range(min(500, sessions - start))))
                ids += [s.id for s in made]
            return ids

        ids = asyncio.run(create())
    return {"key": key, "sessions": ids}


# ---------------------------------------------------------------------- one client, sequential
def _p50(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def sequential(gateway: str, upstream: str, key: str, sessions: list[str], stream: bool) -> dict[str, float]:
    """Each session's second message through the gateway, alternating with the same body sent straight."""
    import httpx

    direct_body = _chat_body(SECOND_TURN, stream)
    up_headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "content-type": "application/json"}
    gw_headers = {"x-api-key": key, "content-type": "application/json"}
    if stream:
        up_headers["accept"] = gw_headers["accept"] = "text/event-stream"
    message = json.dumps({"role": "user", "content": CONTENT}).encode()
    via, direct = [], []
    with httpx.Client(base_url=gateway, timeout=30) as gw, httpx.Client(base_url=upstream, timeout=30) as up:

        def one(client: httpx.Client, path: str, body: bytes, headers: dict[str, str], ok: int) -> float:
            started = time.perf_counter()
            if not stream:
                response = client.post(path, content=body, headers=headers)
                took = time.perf_counter() - started
            else:
                with client.stream("POST", path, content=body, headers=headers) as response:
                    chunks = response.iter_raw()
                    next(chunks)  # the first bytes of the body
                    took = time.perf_counter() - started
                    for _ in chunks:
                        pass
            if response.status_code != ok:
                raise RuntimeError(f"POST {path} answered {response.status_code}: {response.read()[:300]!r}")
            return took

        for i, sid in enumerate(sessions):
            path = f"/v1/sessions/{sid}/messages"
            if i % 2:
                direct.append(one(up, "/chat/completions", direct_body, up_headers, 200))
                via.append(one(gw, path, message, gw_headers, 200 if stream else 201))
            else:
                via.append(one(gw, path, message, gw_headers, 200 if stream else 201))
                direct.append(one(up, "/chat/completions", direct_body, up_headers, 200))
    return {"gateway_p50_ms": _p50(via), "direct_p50_ms": _p50(direct), "overhead_ms": _p50(via) - _p50(direct),
            "gateway_p95_ms": 1000 * sorted(via)[int(len(via) * 0.95)], "requests": len(via)}


def warm_sessions(gateway: str, key: str, sessions: list[str]) -> None:
    """Each session's first message (the server loads a session on first use), 20 at a time."""
    import httpx

    async def main() -> None:
        async with httpx.AsyncClient(base_url=gateway, timeout=60,
                                     headers={"x-api-key": key, "content-type": "application/json"}) as client:
            body = json.dumps({"role": "user", "content": FIRST}).encode()
            queue = list(sessions)

            async def worker() -> None:
                while queue:
                    sid = queue.pop()
                    response = await client.post(f"/v1/sessions/{sid}/messages", content=body)
                    if response.status_code != 201:
                        raise RuntimeError(f"warm-up answered {response.status_code}: {response.text[:300]}")

            await asyncio.gather(*(worker() for _ in range(20)))

    asyncio.run(main())


# ---------------------------------------------------------------------- load generator (its own process)
class _Conversation:
    """One conversation a load client keeps: the request for its next turn, as the target wants it."""

    def __init__(self, target: str, port: int, key: str, session: str | None) -> None:
        self.target, self.key, self.session = target, key, session
        self.turns: list[dict[str, str]] = list(SECOND_TURN[:2])  # every session was warmed with FIRST
        self.host = f"Host: 127.0.0.1:{port}\r\n"

    def request(self) -> bytes:
        self.turns.append({"role": "user", "content": CONTENT})
        if self.target == "gateway":
            body = json.dumps({"role": "user", "content": CONTENT}).encode()
            head = f"POST /v1/sessions/{self.session}/messages HTTP/1.1\r\n{self.host}X-API-Key: {self.key}\r\n"
        else:
            body = _chat_body(self.turns)
            path = "/v1/chat/completions"
            auth = f"Authorization: Bearer {UPSTREAM_KEY if self.target == 'upstream' else LITELLM_KEY}\r\n"
            head = f"POST {path} HTTP/1.1\r\n{self.host}{auth}"
        self.turns.append({"role": "assistant", "content": _reply(CONTENT)})
        return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


def load_child(spec: dict[str, Any]) -> dict[str, Any]:
    """A closed loop of ``clients`` connections for ``warmup`` + ``seconds``; rps, latency, errors, own CPU."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    target, port, clients = spec["target"], spec["port"], spec["clients"]
    sessions: list[str] = spec.get("sessions") or []
    latencies: list[float] = []
    errors: dict[int, int] = {}
    cpu: list[float] = []

    async def client(index: int, measure_from: float, stop_at: float) -> None:
        mine = [_Conversation(target, port, spec.get("key", ""),
                              sessions[(index * SLOTS_PER_CLIENT + j) % len(sessions)] if sessions else None)
                for j in range(SLOTS_PER_CLIENT)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        i = 0
        try:
            while True:
                started = time.perf_counter()
                if started >= stop_at:
                    return
                writer.write(mine[i % SLOTS_PER_CLIENT].request())
                i += 1
                status = await _read_answer(reader)
                if started >= measure_from:
                    latencies.append(time.perf_counter() - started)
                    if status >= 300:
                        errors[status] = errors.get(status, 0) + 1
        finally:
            writer.close()

    async def main() -> None:
        now = time.perf_counter()
        measure_from = now + spec["warmup"]
        stop_at = measure_from + spec["seconds"]

        async def mark() -> None:  # CPU of this process over the measured seconds only
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu.append(time.process_time())
            await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
            cpu.append(time.process_time())

        await asyncio.gather(mark(), *(client(c, measure_from, stop_at) for c in range(clients)))

    asyncio.run(main())
    latencies.sort()
    n = len(latencies)
    return {"rps": n / spec["seconds"], "requests": n, "errors": errors,
            "p50_ms": 1000 * latencies[n // 2] if n else None,
            "p95_ms": 1000 * latencies[min(n - 1, int(n * 0.95))] if n else None,
            "client_cpu_s": cpu[1] - cpu[0] if len(cpu) == 2 else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_load(spec: dict[str, Any], watched: dict[str, int], work: Path) -> dict[str, Any]:
    """``load_child`` in its own process; the CPU each watched process tree used over its measured seconds."""
    spec_file = work / f"load-{spec['target']}.json"
    spec_file.write_text(json.dumps(spec))
    child = subprocess.Popen([sys.executable, __file__, "--load-child", str(spec_file)], stdout=subprocess.PIPE,
                             text=True)
    try:
        time.sleep(spec["warmup"])
        before = {name: _cpu_seconds(pid) for name, pid in watched.items()}
        time.sleep(spec["seconds"])
        after = {name: _cpu_seconds(pid) for name, pid in watched.items()}
        out, _ = child.communicate(timeout=120)
    finally:
        _stop(child)
    if child.returncode != 0:
        raise RuntimeError(f"the load process for {spec['target']} failed ({child.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    n = max(1, result["requests"])
    result["cpu_us_per_request"] = {name: round(1e6 * (after[name] - before[name]) / n)
                                    for name in watched}
    if result["client_cpu_s"] is not None:
        result["cpu_us_per_request"]["client"] = round(1e6 * result["client_cpu_s"] / n)
        result["client_cores"] = round(result["client_cpu_s"] / spec["seconds"], 2)
    return result


def _load_line(name: str, r: dict[str, Any]) -> str:
    cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_request"].items())
    return (f"{name:<14} {r['rps']:8.0f}   p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
            f"({r['requests']} requests, non-2xx {r['errors'] or 0}; CPU us/request: {cpu}; "
            f"client {r.get('client_cores')} cores)")


# ---------------------------------------------------------------------- LiteLLM
def start_litellm(executable: str, upstream_url: str, work: Path) -> tuple[subprocess.Popen[Any] | None, int, str]:
    """A LiteLLM proxy (one worker, no database) in front of the upstream; (process, port, why not) ."""
    if not Path(executable).exists():
        return None, 0, f"{executable} not found (python3 -m venv /tmp/litellm-venv && " \
                        "/tmp/litellm-venv/bin/pip install 'litellm[proxy]')"
    config = work / "litellm.yaml"
    config.write_text(f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n"
                      f"      model: openai/{MODEL}\n      api_base: {upstream_url}\n"
                      f"      api_key: {UPSTREAM_KEY}\n"
                      "litellm_settings:\n  telemetry: false\n"
                      f"general_settings:\n  master_key: {LITELLM_KEY}\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_PROXY="*", no_proxy="*")
    log = (work / "litellm.log").open("w")
    try:
        process = subprocess.Popen([executable, "--config", str(config), "--host", "127.0.0.1", "--port",
                                    str(port), "--num_workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    except OSError as exc:  # a directory, not executable...: say so and go on without it
        return None, 0, f"{executable} cannot be run ({exc.strerror}); --litellm names the litellm executable"
    try:
        _wait_for_port(port, process, "litellm", timeout=180)
        import httpx

        body = _chat_body([{"role": "user", "content": CONTENT}])
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=body,
                            headers={"content-type": "application/json", "authorization": f"Bearer {LITELLM_KEY}"},
                            timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"its first chat completion answered {answer.status_code}: {answer.text[:300]}")
    except RuntimeError as exc:
        _stop(process)
        tail = (work / "litellm.log").read_text()[-600:].strip().replace("\n", " | ")
        return None, 0, f"{exc}; its log ends: {tail}"
    return process, port, ""


# ---------------------------------------------------------------------- orchestration
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 pairs and 2-second loads, for a smoke run")
    parser.add_argument("--pairs", type=int, default=1000, help="sequential request pairs per figure (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--litellm", default=LITELLM, help=f"the litellm executable (default {LITELLM})")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--upstream-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_child:
        upstream_child()
        return
    if args.load_child:
        print(json.dumps(load_child(json.loads(Path(args.load_child).read_text()))))
        return
    pairs = 100 if args.quick else args.pairs
    seconds = 2.0 if args.quick else args.seconds
    warmup = 1.0 if args.quick else args.warmup
    started: list[subprocess.Popen[Any]] = []

    def stop_all(*_: object) -> None:
        for process in reversed(started):
            _stop(process)

    previous: dict[int, Callable[..., Any] | int | None] = {
        sig: signal.signal(sig, lambda *_: sys.exit(1)) for sig in (signal.SIGTERM,)}
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_proxy_") as tmp:
            work = Path(tmp)
            upstream = subprocess.Popen([sys.executable, __file__, "--upstream-child"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
            started.append(upstream)
            assert upstream.stdout is not None
            up_port = int(upstream.stdout.readline())
            upstream_url = f"http://127.0.0.1:{up_port}/v1"
            env = {**os.environ, KEY_ENV: UPSTREAM_KEY}
            db = work / "gateway.duckdb"
            t0 = time.perf_counter()
            config = configure_gateway(db, upstream_url, 2 * pairs + args.clients * SLOTS_PER_CLIENT, env)
            port = _free_port()
            access_log = (work / "access.log").open("w")
            gateway = subprocess.Popen([*_cli(), "serve", "--db", str(db), "--port", str(port)], env=env,
                                       stderr=access_log)
            started.append(gateway)
            _wait_for_port(port, gateway, "vbgateway serve")
            print(f"setup            {time.perf_counter() - t0:.1f} s (provider added by the CLI, "
                  f"{len(config['sessions'])} sessions, upstream {upstream_url}, gateway port {port})", flush=True)
            gateway_url = f"http://127.0.0.1:{port}"
            plain, streamed = config["sessions"][:pairs], config["sessions"][pairs:2 * pairs]
            warm_sessions(gateway_url, config["key"], config["sessions"])
            settled = wait_until_idle(gateway.pid)
            print(f"warm-up          every session's first message; the server settled {settled:.1f} s later",
                  flush=True)

            seq = sequential(gateway_url, upstream_url, config["key"], plain, stream=False)
            print(f"overhead_p50_ms          {seq['overhead_ms']:6.2f}   (gateway p50 {seq['gateway_p50_ms']:.2f} ms, "
                  f"p95 {seq['gateway_p95_ms']:.2f} ms; direct p50 {seq['direct_p50_ms']:.2f} ms; "
                  f"{seq['requests']} pairs)", flush=True)
            ttfb = sequential(gateway_url, upstream_url, config["key"], streamed, stream=True)
            print(f"stream_ttfb_overhead_ms  {ttfb['overhead_ms']:6.2f}   (gateway p50 {ttfb['gateway_p50_ms']:.2f} ms, "
                  f"direct p50 {ttfb['direct_p50_ms']:.2f} ms; {ttfb['requests']} pairs)", flush=True)
            results.update(overhead_p50_ms=round(seq["overhead_ms"], 3),
                           gateway_p50_ms=round(seq["gateway_p50_ms"], 3),
                           direct_p50_ms=round(seq["direct_p50_ms"], 3),
                           stream_ttfb_overhead_ms=round(ttfb["overhead_ms"], 3),
                           gateway_ttfb_p50_ms=round(ttfb["gateway_p50_ms"], 3),
                           direct_ttfb_p50_ms=round(ttfb["direct_p50_ms"], 3))

            base = {"clients": args.clients, "seconds": seconds, "warmup": warmup}
            direct = run_load({**base, "target": "upstream", "port": up_port}, {"upstream": upstream.pid}, work)
            print(_load_line("upstream_rps", direct), flush=True)
            via = run_load({**base, "target": "gateway", "port": port, "key": config["key"],
                            "sessions": config["sessions"][2 * pairs:]},
                           {"gateway": gateway.pid, "upstream": upstream.pid}, work)
            print(_load_line("gateway_rps", via), flush=True)
            results.update(upstream_rps=round(direct["rps"], 1), gateway_rps=round(via["rps"], 1),
                           gateway_load_p50_ms=round(via["p50_ms"], 2), gateway_load_p95_ms=round(via["p95_ms"], 2),
                           gateway_errors=sum(via["errors"].values()),
                           gateway_cpu_us_per_request=via["cpu_us_per_request"].get("gateway"),
                           client_cpu_us_per_request=via["cpu_us_per_request"].get("client"),
                           client_cores=via.get("client_cores"))

            why = "--no-litellm" if args.no_litellm else ""
            litellm = None
            if not why:
                litellm, lite_port, why = start_litellm(args.litellm, upstream_url, work)
            if litellm is not None:
                started.append(litellm)
                lite = run_load({**base, "target": "litellm", "port": lite_port},
                                {"litellm": litellm.pid, "upstream": upstream.pid}, work)
                print(_load_line("litellm_rps", lite), flush=True)
                ratio = via["rps"] / lite["rps"] if lite["rps"] else float("inf")
                print(f"ratio_vs_litellm {ratio:8.2f}   (gateway_rps / litellm_rps; target >= 5)", flush=True)
                results.update(litellm_rps=round(lite["rps"], 1), litellm_load_p50_ms=round(lite["p50_ms"], 2),
                               litellm_errors=sum(lite["errors"].values()),
                               litellm_cpu_us_per_request=lite["cpu_us_per_request"].get("litellm"),
                               ratio_vs_litellm=round(ratio, 2))
            else:
                print(f"litellm          skipped: {why}", flush=True)
                results["litellm_skipped"] = why[:300]
            stop_all()
            access_log.close()
            if upstream.stdin is not None:
                upstream.stdin.close()
            results["access_log_lines"] = sum(1 for _ in (work / "access.log").open())
    finally:
        stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    results.update(pairs=pairs, clients=args.clients, seconds=seconds)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
