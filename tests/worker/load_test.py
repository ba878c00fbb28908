# Bounded loopback load test of loom-worker (--backend cpu, stories260K): N concurrent streaming
# clients for S seconds with short outputs. Passes when every answer is 200 with a complete stream
# ending in data: [DONE] or a 429 with Retry-After (nothing else), the worker's RSS stays flat after
# warm-up, and afterwards no request runs and every KV block is free. Prints p50/p99 time to the
# first byte and to the first token. Usage: load_test.py [--clients 200] [--seconds 60]
# (LOOM_WORKER_BIN and the model paths come from ctest's environment, as for the other worker tests).
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request

from worker_process import start_worker


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        return json.loads(r.read())


def get_text(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        return r.read().decode()


class Stats:
    def __init__(self):
        self.ok = 0
        self.rejected = 0
        self.failures = []
        self.ttfb = []  # seconds from sending the request to the first body byte of a 200
        self.ttft = []  # to the first chunk holding text


async def one_request(port, body, stats):
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = json.dumps(body).encode()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.decode().partition(":") for line in head.split(b"\r\n")[1:] if line)}
        if status == 429:
            if "retry-after" not in headers:
                stats.failures.append("429 without Retry-After")
            await reader.read()
            stats.rejected += 1
            return float(headers.get("retry-after", "1"))
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            stats.failures.append(f"status {status}: {head[:200]!r} {(await reader.read())[:300]!r}")
            return 0
        body_bytes = b""
        first_byte = first_text = None
        while True:  # chunked framing: size line, data, CRLF; 0 ends
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            now = time.perf_counter()
            if first_byte is None:
                first_byte = now
            body_bytes += data
            if first_text is None and b'"text":"' in data and b'"text":""' not in data:
                first_text = now
        events = [e for e in body_bytes.decode("utf-8").split("\n\n") if e]
        if not events or events[-1] != "data: [DONE]":
            stats.failures.append(f"stream did not end with [DONE]: {events[-2:]}")
            return 0
        for e in events[:-1]:
            chunk = json.loads(e[len("data: "):])
            if "error" in chunk:
                stats.failures.append(f"error chunk: {chunk}")
                return 0
        stats.ok += 1
        stats.ttfb.append(first_byte - t0)
        if first_text is not None:
            stats.ttft.append(first_text - t0)
        return 0
    finally:
        writer.close()


async def client(port, deadline, stats, index):
    prompts = ["Once upon a time", "The cat", "Lily and Tom", "One day", "The dog ran"]
    n = 0
    while time.monotonic() < deadline:
        body = {"prompt": prompts[(index + n) % len(prompts)], "max_tokens": 8 + (index % 9), "stream": True,
                "temperature": 0.8, "seed": index * 1000 + n}
        n += 1
        try:
            wait = await one_request(port, body, stats)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            stats.failures.append(f"client {index}: {type(e).__name__}: {e}")
            wait = 0.1
        if wait:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


async def run_load(port, pid, clients, seconds):
    stats = Stats()
    start = time.monotonic()
    deadline = start + seconds
    rss = []

    async def sample_rss():
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - start, rss_bytes(pid)))
            await asyncio.sleep(1)

    await asyncio.gather(sample_rss(), *(client(port, deadline, stats, i) for i in range(clients)))
    return stats, rss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=int(os.environ.get("LOOM_LOAD_CLIENTS", "200")))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("LOOM_LOAD_SECONDS", "60")))
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc, port = start_worker(log, ["--max-seqs", "16", "--max-queue", "64", "--log", "warn,worker=info"])
        try:
            stats, rss = asyncio.run(run_load(port, proc.pid, args.clients, args.seconds))

            time.sleep(0.5)
            health = get_json(port, "/health")
            metrics = get_text(port, "/metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)

        warm = [b for t, b in rss if t >= args.seconds * 0.25]
        growth = (warm[-1] - warm[0]) if len(warm) >= 2 else 0
        print(f"{args.clients} clients, {args.seconds:.0f} s: {stats.ok} streams completed, {stats.rejected} answered 429, "
              f"{len(stats.failures)} failures")
        print(f"time to first byte: p50 {percentile(stats.ttfb, 50) * 1000:.1f} ms, "
              f"p99 {percentile(stats.ttfb, 99) * 1000:.1f} ms; to the first token: "
              f"p50 {percentile(stats.ttft, 50) * 1000:.1f} ms, p99 {percentile(stats.ttft, 99) * 1000:.1f} ms")
        print(f"worker RSS: {rss[0][1] / 2**20:.1f} MiB at start, {warm[0] / 2**20:.1f} MiB after warm-up, "
              f"{warm[-1] / 2**20:.1f} MiB at the end (growth {growth / 2**20:+.1f} MiB), max "
              f"{max(b for _, b in rss) / 2**20:.1f} MiB")
        print(f"after the run: running {health['sequences_running']}, queued {health['queue_length']}, "
              f"KV blocks free {health['kv_blocks_free']} of {health['kv_blocks_total']}; worker exit {code}")
        for f in stats.failures[:10]:
            print("FAILURE:", f)
        ok = (not stats.failures and stats.ok > 0 and code == 0 and health["sequences_running"] == 0
              and health["queue_length"] == 0 and health["kv_blocks_free"] == health["kv_blocks_total"]
              and growth < 16 * 2**20
              and re.search(r'^vllm:num_requests_running\{[^}]*\} 0$', metrics, re.M) is not None)
        print("PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
