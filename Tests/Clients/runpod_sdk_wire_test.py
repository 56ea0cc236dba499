"""Wire comparison: runpod-python 1.12.0's own serverless worker and `gomodel worker` (RunPod mode)
against the same recording fake of RunPod's worker endpoints, job for job.

Usage: python runpod_sdk_wire_test.py path/to/gomodel   (with .venv-tools/bin/python: it needs runpod==1.12.0)

The fake (in process, stdlib) serves GET /v2/ep/job-take/{worker} (the scenario's job once, then 204
after holding ~1 s), POST /v2/ep/job-done/{worker}/{job} (200 {}; a scripted list of statuses for the
result posts), GET /v2/ep/job-stop/{worker} (204, or {"jobsToStop": [id]} once, in the stop scenario,
after a progress post of phase "training" and a ping with the job's id) and GET /v2/ep/ping/{worker} (200), and records every request. Each scenario runs once with a
runpod-python worker (an async handler: progress_update, a cancellable wait, an output dict) and once
with `gomodel worker` and the stand-in trainer on a job contract from a real `gomodel serve`:
  i.   take -> progress -> ping with job_id -> result -> idle pings and takes again;
  ii.  job-stop mid-run: nothing but progress is posted for the job, and the worker takes jobs again;
  iii. the result answered 500 then 404: exactly 2 attempts ~2 s apart, and the worker takes jobs again.
Then the two recordings are compared facet by facet (endpoints, order, methods, paths, query keys and
values, headers, body shapes); a difference fails the test unless KNOWN_DIFFERENCES explains it.
About 40 s. WIRE_VERBOSE=1 also prints both recordings of every scenario.
"""
import fnmatch
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support import check, gomodel_cli, own_environment, push_pairs, sign_in, wait_serving

# Differences between runpod-python's worker and ours that are deliberate or harmless, by facet
# (fnmatch patterns over the facet names printed in the table). Anything else that differs fails.
# The deliberate ones are in docs/architecture.md (the worker against runpod-python); "[judged]": found by
# this test and judged harmless here, not (yet) a documented decision.
KNOWN_DIFFERENCES = {
    "*.header.User-Agent":
        "each client names itself: the SDK sends RunPod-Python-SDK/1.12.0 (…) on its aiohttp session and "
        "python-requests/x on pings; ours sends none (AsyncHTTPClient adds no User-Agent). RunPod does not read it.",
    "take.header.X-Request-ID":
        "SDK bug: _handle_result sets X-Request-ID on the shared aiohttp session (rp_http.py:58), so every "
        "job-take after a finished job carries the last job's id; ours sends it only on job-done.",
    "stop.header.X-Request-ID":
        "the same SDK leak of X-Request-ID from job-done onto the job-stop polls.",
    "take.header.Content-Type":
        "the SDK's session default Content-Type: application/json also goes on bodiless GETs; ours sends no "
        "Content-Type on a GET (there is no body to type).",
    "stop.header.Content-Type":
        "the same session default on the bodiless job-stop GET.",
    "progress.header.charset":
        "the SDK adds a literal `charset: utf-8` request header (not a real header; rp_http.py:39-43); the body "
        "is UTF-8 JSON either way.",
    "result.header.charset":
        "the same literal `charset: utf-8` header on the result post.",
    "*.header.Accept":
        "[judged] aiohttp and requests add `Accept: */*`; ours sends no Accept, which means the same (RFC 9110 §12.5.1).",
    "*.header.Accept-Encoding":
        "[judged] aiohttp (gzip, deflate) and requests (… br, zstd) offer compressed answers; ours offers none, so the "
        "server answers uncompressed, always allowed. The answers are small JSON.",
    "ping.header.Connection":
        "[judged] requests sends `Connection: keep-alive` on pings; ours does not (keep-alive is HTTP/1.1's default).",
    "progress-after-result":
        "SDK race: progress_update posts from a thread of its own, so an update can land after the result "
        "(runpod-python#250); ours sends progress serially and drains it before the result.",
    "progress.body-content":
        "the handlers differ: the SDK's test handler reports a fixed dict, ours the trainer's phases and steps.",
    "result.body-content":
        "the handlers differ: the SDK's test handler returns a fixed dict, ours the training's result "
        "(steps, artifacts, …).",
    "stop.polled-while-idle":
        "[judged] the SDK polls job-stop for its whole life (about once a second here); ours polls it only "
        "while it runs a job (every 2 s), the only time a stop can apply (the SDK ignores ids it does not run).",
}

GOMODEL = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
API_KEY = "rp-key"
# Request headers compared one by one; any other header (but Host) is compared by name (`other-headers`).
HEADERS = ("Authorization", "Content-Type", "X-Request-ID", "charset", "User-Agent", "Accept", "Accept-Encoding", "Connection")

SDK_WORKER = '''
import asyncio, os
import runpod

HOLD = float(os.environ["SDK_HOLD_SECONDS"])
MARKER = os.environ["SDK_MARKER"]


async def handler(job):
    runpod.serverless.progress_update(job, {"phase": "training", "step": 1, "message": "runpod-python handler"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD
    try:
        while not os.path.exists(MARKER) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        print("SDK-HANDLER: cancelled", flush=True)
        raise
    return {"steps": 1, "artifacts": []}


runpod.serverless.start({"handler": handler})
print("SDK-WORKER: start() returned", flush=True)
'''


# ---------------------------------------------------------------- the recording fake of RunPod


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A worker killed with a connection open (a held take) is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Fake:
    """RunPod's worker endpoints for one worker run, recording every request."""

    def __init__(self, job, result_statuses=(), stop_on_progress=False):
        self.job = job
        self.result_statuses = list(result_statuses)
        self.stop_on_progress = stop_on_progress
        self.handed = False
        self.stop_armed = False
        self.saw_training = self.saw_busy_ping = False
        self.stop_delivered = False
        self.records = []
        self.cond = threading.Condition()
        self.closing = threading.Event()
        self.t0 = time.monotonic()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self)

            def do_POST(self):
                fake.handle(self)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def base(self):
        return f"http://127.0.0.1:{self.port}/v2/ep"

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def now(self):
        return time.monotonic() - self.t0

    def handle(self, request):
        t_in = self.now()
        url = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"<not JSON>": raw[:200].decode(errors="replace")}
        parts = url.path.strip("/").split("/")
        kind = "other"
        if len(parts) >= 4 and parts[:2] == ["v2", "ep"]:
            kind = {"job-take": "take", "job-done": "done", "job-stop": "stop", "ping": "ping"}.get(parts[2], "other")
        if kind == "done":
            kind = "progress" if isinstance(body, dict) and body.get("status") == "IN_PROGRESS" else "result"
        record = {
            "t": t_in, "t_out": None, "method": request.command, "path": url.path, "kind": kind,
            "query": urllib.parse.parse_qs(url.query, keep_blank_values=True),
            "headers": {name: request.headers.get(name) for name in HEADERS},
            "all_headers": list(request.headers.items()), "body": body, "raw": raw.decode(errors="replace"),
            "status": None, "note": "",
        }
        with self.cond:
            self.records.append(record)
            # The stop scenario stops the job mid-run: once a progress post says it trains (both handlers report
            # phase "training") and a ping has carried its id.
            if self.stop_on_progress and not self.stop_armed:
                if kind == "progress" and isinstance(body.get("output"), dict) and body["output"].get("phase") == "training":
                    self.saw_training = True
                if kind == "ping" and record["query"].get("job_id") == [self.job["id"]]:
                    self.saw_busy_ping = True
                if self.saw_training and self.saw_busy_ping:
                    self.stop_armed, record["note"] = True, "stop armed"
            self.cond.notify_all()

        status, answer = 200, b"{}"
        if kind == "take":
            with self.cond:
                hand = not self.handed
                self.handed = True
            if hand:
                answer, record["note"] = json.dumps(self.job).encode(), "handed the job"
            else:
                self.closing.wait(1.0)
                status, answer = 204, b""
        elif kind == "result":
            with self.cond:
                if self.result_statuses:
                    status = self.result_statuses.pop(0)
                    answer = b'{"error": "scripted"}'
        elif kind == "stop":
            with self.cond:
                deliver = self.stop_armed and not self.stop_delivered
                self.stop_delivered = self.stop_delivered or deliver
            if deliver:
                answer, record["note"] = json.dumps({"jobsToStop": [self.job["id"]]}).encode(), "stop delivered"
            else:
                status, answer = 204, b""
        elif kind == "ping":
            answer = b'{"status": "pong"}'
        else:
            status, answer = 404, b'{"error": "unknown route"}'
        try:
            request.send_response(status)
            if status != 204:
                request.send_header("Content-Type", "application/json")
                request.send_header("Content-Length", str(len(answer)))
            request.end_headers()
            if status != 204:
                request.wfile.write(answer)
        except OSError:
            pass
        with self.cond:
            record["status"], record["t_out"] = status, self.now()
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return [dict(r) for r in self.records]

    def wait_for(self, what, predicate, timeout, process=None):
        """Waits until predicate(records) is truthy and returns it; fails on the deadline or when `process` ends."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate(self.records)
                if value:
                    return value
                if process is not None and process.poll() is not None:
                    raise AssertionError(f"the worker exited ({process.returncode}) while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self.cond.wait(min(left, 0.2))


def first(records, kind, after=-1.0, where=lambda r: True):
    return next((r for r in records if r["kind"] == kind and r["t"] > after and where(r)), None)


def busy_ping(job_id):
    return lambda r: r["query"].get("job_id") == [job_id]


def idle_ping(r):
    return "job_id" not in r["query"]


# ---------------------------------------------------------------- processes


class Processes:
    """Every process this test starts, each in a session of its own, killed as a group at the end."""

    def __init__(self, work):
        self.work = work
        self.started = []

    def start(self, args, env, log_name):
        log = open(os.path.join(self.work, log_name), "w")
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        process.log_path = log.name
        self.started.append(process)
        return process

    def stop(self, process, timeout=15):
        """SIGTERM (the platform's way), then the group's SIGKILL if it does not exit in time."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(process)
        return process.returncode

    @staticmethod
    def kill(process):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self):
        for process in self.started:
            self.kill(process)
        # Trainers our workers started, should any have left their worker's group: their config is under work/.
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if self.work in cmdline and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass


def tail(path, size=2500):
    try:
        return open(path, errors="replace").read()[-size:]
    except OSError as error:
        return f"({error})"


# ---------------------------------------------------------------- one worker run


SCENARIOS = {
    "i": "take -> progress -> ping -> done",
    "ii": "job-stop mid-run",
    "iii": "result answered 500 then 404",
}


def run_worker(kind, scenario, job, processes, work, gomodel_env):
    """Runs one worker against a fresh fake through one scenario; returns (records, notes) once the worker has exited."""
    fake = Fake(job, result_statuses=[500, 404] if scenario == "iii" else [], stop_on_progress=scenario == "ii")
    base = fake.base()
    pod = "pod-sdk" if kind == "sdk" else "pod-gm"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R2_", "RUNPOD_", "GOMODEL_", "SDK_")) and k != "DATABASE_URL"}
    env.update(
        RUNPOD_WEBHOOK_GET_JOB=base + "/job-take/$ID?gpu=test",
        RUNPOD_WEBHOOK_POST_OUTPUT=base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
        RUNPOD_WEBHOOK_PING=base + "/ping/$RUNPOD_POD_ID?gpu=test",
        RUNPOD_AI_API_KEY=API_KEY, RUNPOD_POD_ID=pod, RUNPOD_PING_INTERVAL="1000",
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true", RUNPOD_SKIP_GPU_CHECK="true",
    )
    marker = os.path.join(work, f"marker-{kind}-{scenario}")
    if kind == "sdk":
        script = os.path.join(work, "runpod_sdk_worker.py")
        env.update(HOME=os.path.join(work, "home"), SDK_MARKER=marker, SDK_HOLD_SECONDS="60", RUNPOD_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        process = processes.start([sys.executable, script], env, f"sdk-{scenario}.log")
    else:
        env.update(gomodel_env, GOMODEL_WORKDIR=os.path.join(work, f"work-gm-{scenario}"), LOG_LEVEL="info")
        process = processes.start([GOMODEL, "worker"], env, f"gm-{scenario}.log")
    job_id = job["id"]
    label = f"[{scenario}/{'runpod-python' if kind == 'sdk' else 'gomodel'}]"
    notes = {}
    try:
        taken = fake.wait_for("the job to be taken", lambda rs: first(rs, "take", where=lambda r: r["note"] == "handed the job"), 60, process)
        fake.wait_for("a progress post", lambda rs: first(rs, "progress", after=taken["t"]), 30, process)
        fake.wait_for("a ping with job_id while the job runs", lambda rs: first(rs, "ping", where=busy_ping(job_id)), 30, process)
        if scenario in ("i", "iii"):
            # The SDK's handler ends when told (a busy ping has been seen); the stand-in ends by itself.
            open(marker, "w").close()
            wanted = 2 if scenario == "iii" else 1
            results = fake.wait_for(f"{wanted} result post(s)", lambda rs: (lambda found: found if len(found) >= wanted else None)(
                [r for r in rs if r["kind"] == "result" and r["status"] is not None]), 60, process)
            end = results[-1]["t"]
        else:
            end = fake.wait_for("the stop to be delivered", lambda rs: first(rs, "stop", where=lambda r: r["note"] == "stop delivered" and r["status"]), 30, process)["t"]
        # The worker goes on: two takes after the job (each held ~1 s: a second of idle life to compare) and an idle ping.
        fake.wait_for("two job-takes after the job", lambda rs: len([r for r in rs if r["kind"] == "take" and r["t"] > end]) >= 2, 60, process)
        fake.wait_for("an idle ping after the job", lambda rs: first(rs, "ping", after=end, where=idle_ping), 30, process)
        notes["exit"] = processes.stop(process)
    except Exception:
        print(f"--- {label} worker log ({process.log_path})", file=sys.stderr)
        print(tail(process.log_path), file=sys.stderr)
        print(f"--- {label} recording", file=sys.stderr)
        print(compact(fake.snapshot()), file=sys.stderr)
        raise
    finally:
        processes.kill(process)
        fake.close()
    notes["log"] = tail(process.log_path, 20000)
    return fake.snapshot(), notes


def compact(records):
    lines = []
    for r in records:
        query = urllib.parse.urlencode([(k, v) for k, vs in r["query"].items() for v in vs])
        xrid = f" [X-Request-ID={r['headers']['X-Request-ID']}]" if r["headers"].get("X-Request-ID") else ""
        body = f" body={json.dumps(r['body'])[:140]}" if r["raw"] else ""
        note = f" ({r['note']})" if r["note"] else ""
        t_out = f"{r['t_out']:7.3f}" if r["t_out"] is not None else "   ... "
        lines.append(f"  {r['t']:7.3f} {t_out} {r['method']:4} {r['path']}?{query} -> {r['status']}{xrid}{body}{note}")
    return "\n".join(lines)


# ---------------------------------------------------------------- per-worker expectations


def expect(kind, scenario, job_id, records, notes):
    who = "runpod-python" if kind == "sdk" else "gomodel worker"
    take = first(records, "take", where=lambda r: r["note"] == "handed the job")
    results = [r for r in records if r["kind"] == "result"]
    progress = [r for r in records if r["kind"] == "progress"]
    check(all(r["headers"]["Authorization"] == API_KEY for r in records), f"{who} ({scenario}): every request carries the raw key in Authorization (no Bearer)")
    check(all(r["kind"] != "other" for r in records), f"{who} ({scenario}): only the four worker endpoints are called")
    check(progress and progress[0]["t"] > take["t"], f"{who} ({scenario}): progress is posted after the take")
    check(any(r["kind"] == "ping" and r["t"] > take["t"] and busy_ping(job_id)(r) for r in records), f"{who} ({scenario}): pings carry job_id while the job runs")
    check(any(r["kind"] == "ping" and idle_ping(r) for r in records), f"{who} ({scenario}): pings while idle too (no job_id)")
    check(all(r["query"].get("runpod_version") == ["1.12.0"] for r in records if r["kind"] == "ping"), f"{who} ({scenario}): every ping has runpod_version=1.12.0")
    if scenario == "i":
        check(len(results) == 1 and results[0]["status"] == 200 and isinstance(results[0]["body"], dict) and set(results[0]["body"]) == {"output"},
              f"{who} (i): one result post, {{\"output\": …}}")
        check(first(records, "take", after=results[0]["t"]) is not None, f"{who} (i): takes jobs again after the result")
    elif scenario == "ii":
        delivered = first(records, "stop", where=lambda r: r["note"] == "stop delivered")
        after = [r for r in records if r["kind"] == "result" and r["t"] > delivered["t"]]
        check(not after and not results, f"{who} (ii): nothing but progress is posted after the stop ({len(after)} result posts after it, {len(results)} in all)")
        check(first(records, "take", after=delivered["t"]) is not None, f"{who} (ii): takes jobs again after the stop")
    else:
        statuses = [r["status"] for r in results]
        check(statuses == [500, 404], f"{who} (iii): exactly 2 result attempts, answered 500 then 404 (got {statuses})")
        gap = results[1]["t"] - results[0]["t"]
        check(abs(gap - 2.0) <= 0.7, f"{who} (iii): the retry came {gap:.2f} s after the 500 (2 s ± 0.7)")
        check(first(records, "take", after=results[1]["t"]) is not None, f"{who} (iii): takes jobs again after giving the result up")
    if scenario == "ii":
        said = "SDK-HANDLER: cancelled" if kind == "sdk" else "job stopped on request"
        check(said in notes["log"], f"{who} (ii): its log shows the job was stopped ({said!r})")
    check(notes["exit"] == 0, f"{who} ({scenario}): exits 0 on SIGTERM while idle (got {notes['exit']})")


# ---------------------------------------------------------------- comparison


KINDS = ("take", "stop", "ping", "progress", "result")


def shape(body):
    """The envelope: its keys, `status` with its value, the others with their JSON type (what is inside
    `output` is the handler's business: body-content)."""
    def kind(value):
        return {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}.get(type(value), "null")

    if not isinstance(body, dict):
        return "(no body)" if body is None else kind(body)
    return "{" + ", ".join(f"{k}: {json.dumps(v) if k == 'status' else kind(v)}" for k, v in sorted(body.items())) + "}"


def facets(records, job_id, pod):
    """The comparable facts of one recording, by facet name; values are short strings."""
    def norm(text):
        return None if text is None else text.replace(job_id, "{job}").replace(pod, "{worker}")

    def values(items):
        return ", ".join(sorted({"(absent)" if v is None else str(v) for v in items})) or "(none)"

    out = {}
    take = first(records, "take", where=lambda r: r["note"] == "handed the job")
    results = [r for r in records if r["kind"] == "result"]
    end = results[-1]["t"] if results else first(records, "stop", where=lambda r: r["note"] == "stop delivered")["t"]
    # Order of the milestones: the job's take, its first progress, its result posts, the stop, the next take.
    milestones = [("take(job)", take["t"])]
    progress = [r for r in records if r["kind"] == "progress"]
    if progress:
        milestones.append(("progress", progress[0]["t"]))
    delivered = first(records, "stop", where=lambda r: r["note"] == "stop delivered")
    if delivered:
        milestones.append(("stop delivered", delivered["t"]))
    for n, r in enumerate(results, 1):
        milestones.append((f"result#{n}:{r['status']}", r["t"]))
    again = first(records, "take", after=end)
    if again:
        milestones.append(("take(again)", again["t"]))
    out["order"] = " < ".join(name for name, _ in sorted(milestones, key=lambda m: m[1]))
    out["progress-after-result"] = str(bool(results and any(r["t"] > results[0]["t"] for r in progress)))
    out["ping.busy(job_id)"] = str(any(r["kind"] == "ping" and busy_ping(job_id)(r) for r in records))
    out["ping.idle-after-job"] = str(any(r["kind"] == "ping" and idle_ping(r) and r["t"] > end for r in records))
    # After the job: between its end and the second take after it (run_worker waits for that take; the SDK polls
    # job-stop about every second).
    second_take = [r for r in records if r["kind"] == "take" and r["t"] > end][1:2]
    out["stop.polled-while-idle"] = str(bool(second_take) and any(r["kind"] == "stop" and end + 0.2 < r["t"] < second_take[0]["t"] for r in records))
    out["stop.polled-while-running"] = str(any(r["kind"] == "stop" and take["t"] < r["t"] <= end for r in records))
    for kind in KINDS:
        mine = [r for r in records if r["kind"] == kind]
        out[f"{kind}.seen"] = str(bool(mine))
        if not mine:
            continue
        out[f"{kind}.method"] = values(r["method"] for r in mine)
        out[f"{kind}.path"] = values(norm(r["path"]) for r in mine)
        out[f"{kind}.query-keys"] = " | ".join(sorted({"&".join(sorted(r["query"])) for r in mine}))
        for key in sorted({k for r in mine for k in r["query"]}):
            out[f"{kind}.query.{key}"] = values(norm(",".join(r["query"][key])) if key in r["query"] else None for r in mine)
        for header in HEADERS:
            out[f"{kind}.header.{header}"] = values(norm(r["headers"].get(header)) for r in mine)
        compared = {h.lower() for h in HEADERS} | {"host"}
        out[f"{kind}.other-headers"] = " | ".join(sorted({", ".join(sorted({name.lower() for name, _ in r["all_headers"]} - compared)) or "(none)" for r in mine}))
        out[f"{kind}.body-shape"] = values(shape(r["body"]) for r in mine)
        if kind in ("progress", "result"):
            out[f"{kind}.body-content"] = values(json.dumps(r["body"], sort_keys=True)[:60] for r in mine)
    return out


def known(facet):
    return next((reason for pattern, reason in KNOWN_DIFFERENCES.items() if fnmatch.fnmatchcase(facet, pattern)), None)


def compare(scenario, sdk, gm):
    """Prints the table; returns the facets that differ without a known reason."""
    unexplained = []
    rows = []
    for facet in sorted(set(sdk) | set(gm), key=lambda f: (f.split(".")[0] not in KINDS, f)):
        a, b = sdk.get(facet, "(not seen)"), gm.get(facet, "(not seen)")
        if a == b:
            verdict = "same"
        elif known(facet):
            verdict = "known"
        else:
            verdict = "DIFFERS"
            unexplained.append((facet, a, b))
        rows.append((facet, a, b, verdict))
    width = max(len(r[0]) for r in rows)

    def cut(text, size=44):
        return text if len(text) <= size else text[:size - 1] + "…"

    print(f"\n  scenario {scenario} ({SCENARIOS[scenario]}): runpod-python vs gomodel worker")
    print(f"  {'facet':{width}}  {'runpod-python 1.12.0':44}  {'gomodel worker':44}  verdict")
    print(f"  {'-' * width}  {'-' * 44}  {'-' * 44}  -------")
    for facet, a, b, verdict in rows:
        print(f"  {facet:{width}}  {cut(a):44}  {cut(b):44}  {verdict}")
    for facet, a, b, verdict in rows:
        if len(a) > 44 or len(b) > 44:
            if verdict == "same":
                print(f"  {facet} (both): {a}")
            else:
                print(f"  {facet}:\n    runpod-python: {a}\n    gomodel:       {b}")
    return unexplained


# ---------------------------------------------------------------- main


def job_contracts(work, processes, steps_per_job):
    """Starts `gomodel serve` for its built-in store and queue, queues one job per entry of `steps_per_job` and takes each from the
    queue as a worker would: returns (the R2_* settings, [job inputs])."""
    env = own_environment()
    env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
    server = processes.start([GOMODEL, "serve", "--port", "0"], dict(env, LOG_LEVEL="info"), "serve.log")
    base = wait_serving(env["GOMODEL_DATA_DIR"])

    cli = gomodel_cli(GOMODEL, env, timeout=60)
    sign_in(cli, base, "wire@example.com")
    push_pairs(cli, work)
    key = cli("workers", "create-key", "--name", "wire").strip()
    store = json.loads(cli("storage", "credentials", "--json"))
    inputs = []
    for n, steps in enumerate(steps_per_job, 1):
        cli("train", "--dataset", "pairs", "--steps", str(steps), "--sample-pairs", "cat")
        request = urllib.request.Request(f"{base}/v2/local/job-take/recorder-{n}?job_in_progress=0", headers={"Authorization": key})
        with urllib.request.urlopen(request, timeout=60) as answer:
            check(answer.status == 200, f"the built-in queue hands out job {n} ({steps} steps)")
            contract = json.load(answer)["input"]
        # A progress channel (ours, with a public URL) would copy each report to the server, off this wire.
        contract.pop("progress_channel", None)
        inputs.append(contract)
    gomodel_env = dict(R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
                       R2_SECRET_ACCESS_KEY=store["secretAccessKey"], GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}",
                       STAND_IN_STEP_SECONDS="0.05")
    return server, gomodel_env, inputs


def main():
    if not GOMODEL or not os.access(GOMODEL, os.X_OK):
        sys.exit("usage: python runpod_sdk_wire_test.py path/to/gomodel")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rp-wire-") as work:
        os.makedirs(os.path.join(work, "home"))
        open(os.path.join(work, "runpod_sdk_worker.py"), "w").write(SDK_WORKER)
        processes = Processes(work)
        unexplained = []
        try:
            print("job contracts from gomodel serve")
            # i and iii: 40 steps (2 s with the stand-in: pings carry the job's id meanwhile); ii: long enough to be stopped mid-run.
            server, gomodel_env, inputs = job_contracts(work, processes, [40, 2000, 40])
            for n, scenario in enumerate(SCENARIOS, 1):
                print(f"\nscenario {scenario}: {SCENARIOS[scenario]}")
                job = {"id": f"job-{n}-u1", "input": inputs[n - 1]}
                recordings = {}
                for kind in ("sdk", "gm"):
                    t = time.monotonic()
                    records, notes = run_worker(kind, scenario, job, processes, work, gomodel_env)
                    print(f"  {'runpod-python' if kind == 'sdk' else 'gomodel worker'}: {len(records)} requests in {time.monotonic() - t:.1f} s")
                    recordings[kind] = records
                    try:
                        expect(kind, scenario, job["id"], records, notes)
                    except AssertionError:
                        print(compact(records), file=sys.stderr)
                        print(notes["log"][-3000:], file=sys.stderr)
                        raise
                sdk = facets(recordings["sdk"], job["id"], "pod-sdk")
                gm = facets(recordings["gm"], job["id"], "pod-gm")
                found = compare(scenario, sdk, gm)
                unexplained += [(scenario, *f) for f in found]
                if found or os.environ.get("WIRE_VERBOSE") == "1":
                    for kind in ("sdk", "gm"):
                        print(f"\n  recording, {kind}:\n{compact(recordings[kind])}", file=sys.stderr)
            processes.stop(server, timeout=20)
        finally:
            processes.kill_all()
        print()
        for scenario, facet, a, b in unexplained:
            print(f"  DIFFERS [{scenario}] {facet}: runpod-python {a!r} / gomodel {b!r}")
        check(not unexplained, f"runpod-python and gomodel worker agree on the wire except for KNOWN_DIFFERENCES ({len(unexplained)} unexplained)")
    print(f"runpod sdk wire comparison: all passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
