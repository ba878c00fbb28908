"""Shared by the Python worker tests: find stories260K, start loom-worker --backend cpu on a free port
and wait until /health says 200 (exit 77, "SKIPPED: ...", when the model or the binary is missing)."""
import os
import re
import subprocess
import sys
import time
import urllib.request


def model_path():
    for candidate in (
        os.environ.get("LOOM_STORIES260K", ""),
        os.path.join(os.environ.get("LOOM_MODEL_CACHE", ""), "stories260K.gguf"),
        os.path.join(os.environ.get("LOOM_SHARED_DIR", ""), "test-models", "stories260K.gguf"),
    ):
        if candidate and os.path.isfile(candidate):
            return candidate
    print("SKIPPED: stories260K.gguf not found (test-models/fetch stories260k)")
    sys.exit(77)


def start_worker(log, extra_args=(), model=None, backend="cpu"):
    """Starts the worker (stories260K and --backend cpu unless named) with its output in the open file
    `log`; returns (process, port) once healthy."""
    binary = os.environ.get("LOOM_WORKER_BIN")
    if not binary:
        print("SKIPPED: LOOM_WORKER_BIN is not set (run through ctest)")
        sys.exit(77)
    proc = subprocess.Popen([binary, "--model", model or model_path(), "--backend", backend, "--port", "0", *extra_args],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, open(log.name).read()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            port = int(m.group(1))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return proc, port
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the worker did not become healthy:\n" + open(log.name).read())
