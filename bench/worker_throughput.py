# Aggregate decode throughput of loom-worker over HTTP: N concurrent greedy streams of T tokens each
# (ignore_eos), for each N given, against the rate of one stream. Tokens are the usage counts the
# worker reports; the rate is tokens generated after the first token of each stream over the time
# from the first stream's first token to the last stream's end (prefill excluded).
# Usage: worker_throughput.py --model GGUF [--backend cuda] [--streams 1,32] [--tokens 256] [--via-orchestrator]
# (LOOM_WORKER_BIN names the binary, as in ctest's environment). --via-orchestrator also measures
# each N through a loom-orchestrator in front of the same worker (LOOM_ORCHESTRATOR_BIN, or the one
# in the worker's build tree), right after the direct run, and prints the ratio.
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "worker"))
from worker_process import start_worker  # noqa: E402


def stream_one(port, prompt, tokens, out):
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                 {"Content-Type": "application/json"})
    first = None
    usage = None
    with urllib.request.urlopen(req) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                first = time.perf_counter()
            if chunk.get("usage"):
                usage = chunk["usage"]
    out.append((first, time.perf_counter(), usage["completion_tokens"]))


def run(port, n, tokens):
    results = []
    threads = [threading.Thread(target=stream_one, args=(port, f"Story {i}: once upon a time", tokens, results))
               for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n, f"{n - len(results)} streams failed"
    first = min(r[0] for r in results)
    end = max(r[1] for r in results)
    decoded = sum(r[2] - 1 for r in results)
    return decoded / (end - first), sum(r[2] for r in results) / (end - t0)


def median(runs):
    """The run with the median decode rate."""
    return sorted(runs)[len(runs) // 2]


def start_orchestrator(log, worker_port):
    """loom-orchestrator on a free port in front of the worker; returns (process, port) once it calls the
    worker ready."""
    binary = os.environ.get("LOOM_ORCHESTRATOR_BIN") or os.path.join(
        os.path.dirname(os.environ["LOOM_WORKER_BIN"]), "..", "orchestrator", "loom-orchestrator")
    proc = subprocess.Popen([binary, "--port", "0", "--worker", f"http://127.0.0.1:{worker_port}", "--log", "info"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, open(log.name).read()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/health") as r:
                    if r.status == 200:
                        return proc, int(m.group(1))
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the orchestrator did not become ready:\n" + open(log.name).read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--streams", default="1,32")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--via-orchestrator", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each N (direct and via alternating); the median is reported")
    args = ap.parse_args()
    counts = [int(x) for x in args.streams.split(",")]
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log, \
            tempfile.NamedTemporaryFile("w+", suffix=".log") as orch_log:
        proc, port = start_worker(log, ["--max-seqs", str(max(counts)), "--ctx", "2048"], model=args.model,
                                  backend=args.backend)
        orch = None
        try:
            if args.via_orchestrator:
                orch, orch_port = start_orchestrator(orch_log, port)
            run(port, 1, 16)  # warm-up
            rates = {}
            for n in counts:
                direct, via = [], []
                for _ in range(args.repeat):  # alternating, so drift in the machine hits both alike
                    direct.append(run(port, n, args.tokens))
                    if orch:
                        via.append(run(orch_port, n, args.tokens))
                rates[n] = median(direct)
                print(f"streams {n:3d}: decode {rates[n][0]:9.1f} tok/s aggregate "
                      f"({rates[n][0] / n:7.1f} per stream), with prefill {rates[n][1]:9.1f} tok/s", flush=True)
                if orch:
                    v = median(via)
                    print(f"streams {n:3d} via orchestrator: decode {v[0]:9.1f} tok/s aggregate, with prefill "
                          f"{v[1]:9.1f} tok/s: {v[0] / rates[n][0]:6.3f}x the direct rate "
                          f"(runs: direct {[round(r[0]) for r in direct]}, via {[round(r[0]) for r in via]})",
                          flush=True)
            if 1 in rates:
                for n in counts:
                    print(f"streams {n:3d}: {rates[n][0] / rates[1][0]:5.2f}x the batch-1 rate")
        finally:
            for p in (orch, proc):
                if p:
                    p.terminate()
                    p.wait(timeout=30)

if __name__ == "__main__":
    main()
