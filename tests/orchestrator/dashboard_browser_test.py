#!/usr/bin/env python3
"""The dashboard in a real headless Chromium (Selenium): loom-orchestrator spawning one CPU worker on
stories260K, with one more model configured to load on demand; the page lists the worker, its chart's
data and drawing change while streams run, its chat box streams a reply equal to the same request
made directly with urllib, and its admin buttons (disabled until an admin key is typed) drain a
worker and load and unload the configured model.

Environment (set by ctest): LOOM_ORCHESTRATOR_BIN, LOOM_WORKER_BIN, LOOM_MODEL_CACHE, LOOM_SHARED_DIR;
LOOM_DASHBOARD_SCREENSHOT=FILE.png saves the page as it looks after the chat (an artifact to look at).
Exit 77 (skipped) with the reason when the model, chromium, chromedriver or selenium is missing."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77
ADMIN_KEY = "dashboard-admin-key"
ON_DEMAND = "tiny"  # the configured model the load/unload buttons act on


def skip(why):
    print("SKIPPED: " + why, flush=True)
    sys.exit(SKIP)


def find_model():
    if os.environ.get("LOOM_STORIES260K"):
        return os.environ["LOOM_STORIES260K"]
    for d in (os.environ.get("LOOM_MODEL_CACHE", ""), os.path.join(os.environ.get("LOOM_SHARED_DIR", ""), "test-models")):
        path = os.path.join(d, "stories260K.gguf")
        if d and os.path.exists(path):
            return path
    skip("missing stories260K.gguf (test-models/fetch, or ../shared beside the checkout)")


def wait_for(what, pred, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


class Orchestrator:
    """loom-orchestrator --spawn (one CPU worker) on a free port, read from its log."""

    def __init__(self, model):
        self.log = tempfile.NamedTemporaryFile(prefix="dashboard-orchestrator-", suffix=".log", delete=False)
        args = [os.environ["LOOM_ORCHESTRATOR_BIN"], "--port", "0", "--spawn", model, "--backend", "cpu",
                "--worker-bin", os.environ["LOOM_WORKER_BIN"], "--admin-key", ADMIN_KEY,
                "--registry-model", json.dumps({"name": ON_DEMAND, "model": model, "context": 256, "max_seqs": 2})]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = wait_for("the orchestrator's port", self._port)
        self.base = "http://127.0.0.1:%d" % self.port
        wait_for("a ready worker", lambda: self._ready())

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError("loom-orchestrator exited:\n" + self.text())
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.text())
        return int(m.group(1)) if m else None

    def _ready(self):
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                return any(w["state"] == "ready" for w in json.load(r)["workers"])
        except OSError:
            return False

    def stop(self):
        """SIGTERM; its exit code (0 after a clean drain; a sanitizer's report makes it another)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def post(base, path, body, stream=False):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=60)


def stream_text(base, body):
    """A streamed chat answer read to [DONE]: its text."""
    text = ""
    with post(base, "/v1/chat/completions", dict(body, stream=True)) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for c in json.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    return text


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil_which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=shutil_which("chromedriver")), options=options)


def shutil_which(name):
    import shutil
    path = shutil.which(name)
    if not path:
        skip(name + " is not installed (Debian: apt-get install chromium chromium-driver)")
    return path


def worker_rows(driver):
    """The workers table as the page shows it: each row's cells' text, read at one moment."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#workers tr[data-worker]'))"
                                 ".map((tr) => Array.from(tr.cells).map((td) => td.textContent))")


def worker_row(driver):
    return worker_rows(driver)[0]


def check_workers(driver, base):
    """The worker's row: id, ready, cpu, stories260K, as text in the table; its memory cell names every
    purpose of the worker's vram_bytes in /health (host RAM on a CPU worker)."""
    rows = wait_for("the worker's row", lambda: worker_rows(driver))
    assert len(rows) == 1, rows
    cells = rows[0]
    assert cells[2] == "ready" and cells[3] == "stories260K" and cells[4] == "cpu", cells
    with urllib.request.urlopen(base + "/health", timeout=5) as r:
        vram_bytes = json.load(r)["workers"][0]["vram_bytes"]
    assert vram_bytes, "the CPU worker reports no vram_bytes"
    memory = wait_for("the memory cell", lambda: [c for c in [worker_row(driver)[6]] if c.startswith("host RAM")],
                      timeout=10)[0]
    for purpose in vram_bytes:
        assert re.search(re.escape(purpose) + r": [0-9.]+ [KMGT]?i?B used / [0-9.]+ [KMGT]?i?B reserved", memory), (
            purpose, memory)
    print("page shows worker:", cells[:6], "memory:", memory, flush=True)


def check_chart(driver, base):
    """Streams in a loop until the page's chart holds their tokens and the canvas drawing changed."""
    chart = lambda: driver.execute_script("return window.loomDashboard.chart")
    picture = lambda: driver.execute_script("return document.getElementById('chart').toDataURL()")
    wait_for("the first chart", chart)
    before_sum, before_picture = sum(chart()["cluster"]), picture()
    stop, streamed = threading.Event(), []

    def streams():
        body = {"model": "stories260K", "messages": [{"role": "user", "content": "Once upon a time"}],
                "max_tokens": 200, "temperature": 0.8}
        while not stop.is_set():
            streamed.append(len(stream_text(base, body)))

    t = threading.Thread(target=streams, daemon=True)
    t.start()
    try:
        wait_for("tokens in the chart's data", lambda: sum(chart()["cluster"]) > before_sum, timeout=20)
        wait_for("the chart redrawn", lambda: picture() != before_picture, timeout=10)
        running = t.is_alive() and not stop.is_set()
    finally:
        stop.set()
        t.join(timeout=60)
    assert running, "the streams ended before the chart changed"
    print("chart: %d tokens in its data after %d streams (was %d)" % (sum(chart()["cluster"]), len(streamed), before_sum),
          flush=True)


def check_chat(driver, base):
    """The chat box's streamed reply equals the same request made directly."""
    from selenium.webdriver.support.ui import Select
    prompt, max_tokens = "Tell me about a <b>cat</b> <img src=x onerror=alert(1)>", 40
    Select(driver.find_element("id", "chat-model")).select_by_value("stories260K")
    for field, value in (("chat-max", str(max_tokens)), ("chat-temp", "0")):
        driver.find_element("id", field).clear()
        driver.find_element("id", field).send_keys(value)
    driver.find_element("id", "chat-in").send_keys(prompt)
    driver.find_element("id", "chat-send").click()
    reply = wait_for("the reply to end", lambda: driver.find_elements(
        "css selector", "#chat-out .assistant[data-done='true']"), timeout=30)[0]
    shown = driver.execute_script("return arguments[0].textContent", reply)
    errors = [e.text for e in driver.find_elements("css selector", "#chat-out .error")]
    assert not errors, errors
    body = {"model": "stories260K", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0}
    with post(base, "/v1/chat/completions", body) as r:
        direct = json.load(r)["choices"][0]["message"]["content"]
    assert shown, "the chat box shows no reply"
    assert shown == direct, "chat box %r != direct %r" % (shown, direct)
    # The prompt's markup is shown as text, never parsed into elements.
    assert not driver.find_elements("css selector", "#chat-out b, #chat-out img")
    assert prompt in driver.find_element("id", "chat-out").text
    print("chat box reply equals the direct request (%d characters)" % len(shown), flush=True)




def admin_get(base, path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + ADMIN_KEY})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def model_state(base):
    return [m for m in admin_get(base, "/admin/models")["models"] if m["name"] == ON_DEMAND][0]["state"]


def set_admin_key(driver, key):
    field = driver.find_element("id", "admin-key")
    field.clear()
    field.send_keys(key)


def check_admin_buttons(driver, base):
    """Without an admin key every admin button is disabled; a wrong key's 401 is shown; with the right one
    the worker is drained and undrained, and the configured model loaded and unloaded."""
    buttons = lambda: driver.find_elements("css selector", "button.admin")
    wait_for("the model's row", lambda: driver.find_elements("css selector", "#models tr[data-model='%s']" % ON_DEMAND))
    assert len(buttons()) == 3 and all(not b.is_enabled() for b in buttons()), [b.text for b in buttons()]
    drain = lambda: driver.find_element("css selector", "#workers tr[data-worker] button").click()
    model_button = lambda action: driver.find_element(
        "css selector", "#models tr[data-model='%s'] button[data-action='%s']" % (ON_DEMAND, action)).click()
    admin_msg = lambda: driver.find_element("id", "admin-msg").text
    model_msg = lambda: driver.find_element("id", "model-msg").text

    set_admin_key(driver, "not-the-key")
    wait_for("enabled buttons", lambda: all(b.is_enabled() for b in buttons()), timeout=5)
    model_button("load")
    wait_for("the refusal", lambda: "HTTP 401" in model_msg(), timeout=10)
    assert model_state(base) == "unloaded"

    set_admin_key(driver, ADMIN_KEY)
    drain()
    wait_for("the drained row", lambda: worker_row(driver)[2] == "ready (drained)", timeout=10)
    assert admin_get(base, "/admin/workers")["workers"][0]["drained"] is True
    wait_for("the undrain button", lambda: worker_row(driver)[9] == "undrain", timeout=10)
    drain()
    wait_for("the undrained row", lambda: worker_row(driver)[2] == "ready", timeout=10)

    started = time.monotonic()
    model_button("load")
    wait_for("the model loaded", lambda: model_state(base) == "ready", timeout=30)
    loaded_s = time.monotonic() - started
    model_row = lambda: driver.execute_script(
        "return Array.from(document.querySelector(\"#models tr[data-model='%s']\").cells).map((td) => td.textContent)"
        % ON_DEMAND)
    wait_for("the page showing it ready", lambda: model_row()[1] == "ready", timeout=10)
    model_button("unload")
    wait_for("the model unloaded", lambda: model_state(base) == "unloaded", timeout=30)
    wait_for("the page showing it unloaded", lambda: model_row()[1] == "unloaded", timeout=10)
    assert "model %s: unloading" % ON_DEMAND in model_msg() or "model %s: unloaded" % ON_DEMAND in model_msg(), model_msg()
    print("admin buttons: disabled without a key, 401 shown for a wrong one; drained and undrained the worker; "
          "loaded %s in %.1f s and unloaded it" % (ON_DEMAND, loaded_s), flush=True)


def main():
    model = find_model()
    try:
        import selenium  # noqa: F401
    except ImportError:
        skip("the Python package selenium is not installed (python3 -m pip install selenium)")
    shutil_which("chromium")
    shutil_which("chromedriver")
    started = time.monotonic()
    orch = Orchestrator(model)
    driver = None
    passed = False
    try:
        driver = browser()
        driver.get(orch.base + "/")
        assert driver.title == "loom orchestrator", driver.title
        check_workers(driver, orch.base)
        check_chart(driver, orch.base)
        check_chat(driver, orch.base)
        if os.environ.get("LOOM_DASHBOARD_SCREENSHOT"):
            driver.save_screenshot(os.environ["LOOM_DASHBOARD_SCREENSHOT"])
        check_admin_buttons(driver, orch.base)
        # The refused load's 401 is the one error the page met on purpose.
        logs = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE" and "/admin/models/" not in e["message"]]
        assert not logs, logs
        passed = True
    except Exception:
        print(orch.text()[-4000:], file=sys.stderr)
        raise
    finally:
        if driver:
            driver.quit()
        rc = orch.stop()
    if passed and rc != 0:
        print(orch.text()[-4000:], file=sys.stderr)
        raise AssertionError("loom-orchestrator exited %d after SIGTERM" % rc)
    print("dashboard browser test passed in %.1f s" % (time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
