"""A RunPod queue API for benchmarks (reference/runpod.md §1): /run, /status, /cancel, /health.

Each job waits IN_QUEUE for QUEUE_S seconds, runs IN_PROGRESS for RUN_S seconds with its step
advancing, then is COMPLETED. No webhooks are sent, so everything the server shows comes from
polling (the worst case for staleness). GET /bench/stats returns the calls made, the time each
/run arrived (by trainer_job_id) and the time of every state change.
"""
import json
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, KEY = int(sys.argv[1]), sys.argv[2]
QUEUE_S, RUN_S, STEPS = (5, 15), (30, 50), 100
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
                jobs[job_id] = {"submitted": now, "queue": random.uniform(*QUEUE_S), "run": random.uniform(*RUN_S), "trainer_job_id": trainer_id}
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


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
