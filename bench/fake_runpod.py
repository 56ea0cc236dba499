"""A RunPod queue API for benchmarks (reference/runpod.md §1): /run, /status, /cancel, /health.

Usage: fake_runpod.py PORT KEY [poll|channel]
Each job waits IN_QUEUE for QUEUE_S seconds (env FAKE_QUEUE_SECONDS="min,max"), runs IN_PROGRESS
for RUN_S seconds (FAKE_RUN_SECONDS) with its step advancing, then is COMPLETED. No webhooks are
sent. In `poll` mode everything the server shows comes from polling (the worst case for
staleness); in `channel` mode the fake's workers also do what `gomodel worker` does with a job's
progress channel (`progress_channel.url` in its input): a report when the job starts, one every
3 s while it runs, and the result when it ends. GET /bench/stats returns the calls made, the time
each /run arrived (by trainer_job_id) and the time of every state change.
"""
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
import json
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, KEY = int(sys.argv[1]), sys.argv[2]
CHANNEL = len(sys.argv) > 3 and sys.argv[3] == "channel"


def seconds(name, default):
    return tuple(float(x) for x in os.environ.get(name, default).split(","))


QUEUE_S, RUN_S, STEPS = seconds("FAKE_QUEUE_SECONDS", "5,15"), seconds("FAKE_RUN_SECONDS", "30,50"), 100
REPORT_EVERY = 3
lock = threading.Lock()
jobs, calls, arrivals = {}, {}, {}


def state(job, now):
    queued_until = job["submitted"] + job["queue"]
    done_at = queued_until + job["run"]
    if now < queued_until:
        return "IN_QUEUE", None
    if now < done_at:
        step = int((now - queued_until) / job["run"] * STEPS)
        return "IN_PROGRESS", {"phase": "training", "step": step, "total_steps": STEPS, "loss": round(0.5 / (1 + step), 4)}
    return "COMPLETED", {"steps": STEPS, "final_loss": 0.004, "artifacts": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        now = time.time()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["bench", "stats"]:
            with lock:
                changes = {}
                for job in jobs.values():
                    start = job["submitted"] + job["queue"]
                    changes[job["trainer_job_id"]] = {"submitted": job["submitted"], "running": start, "completed": start + job["run"]}
                return self.answer(200, {"calls": calls, "arrivals": arrivals, "changes": changes})
        if self.headers.get("Authorization") != "Bearer " + KEY:
            return self.answer(401, {"error": "Unauthorized"})
        operation = parts[2] if len(parts) > 2 else ""
        with lock:
            calls[operation] = calls.get(operation, 0) + 1
        if operation == "run" and method == "POST":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            job_id = "bench-" + uuid.uuid4().hex
            trainer_id = body["input"]["trainer_job_id"]
            with lock:
                arrivals[trainer_id] = now
                jobs[job_id] = {"submitted": now, "queue": random.uniform(*QUEUE_S), "run": random.uniform(*RUN_S), "trainer_job_id": trainer_id,
                                "channel": (body["input"].get("progress_channel") or {}).get("url"), "reported": None, "ended": False}
            return self.answer(200, {"id": job_id, "status": "IN_QUEUE"})
        if operation == "status":
            with lock:
                job = jobs.get(parts[3])
            if job is None:
                return self.answer(404, {"error": "job not found"})
            status, output = state(job, now)
            body = {"id": parts[3], "status": status, "delayTime": 0}
            if output is not None:
                body["output"] = output
            return self.answer(200, body)
        if operation == "health":
            return self.answer(200, {"jobs": {}, "workers": {}})
        return self.answer(404, {"error": "unknown operation"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")


def post(url, body):
    try:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
    except Exception as error:
        print("channel post failed:", error, file=sys.stderr)


def workers():
    """The workers' side of the progress channel, as WorkerRuntime does it."""
    pool = ThreadPoolExecutor(8)
    while True:
        now = time.time()
        with lock:
            due = []
            for job in jobs.values():
                if not job["channel"] or job["ended"]:
                    continue
                status, output = state(job, now)
                if status == "COMPLETED":
                    job["ended"] = True
                    due.append((job["channel"], {"output": output}))
                elif status == "IN_PROGRESS" and (job["reported"] is None or now - job["reported"] >= REPORT_EVERY):
                    job["reported"] = now
                    due.append((job["channel"], {"status": "IN_PROGRESS", "output": output}))
        for url, body in due:
            pool.submit(post, url, body)
        time.sleep(0.05)


if CHANNEL:
    threading.Thread(target=workers, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
