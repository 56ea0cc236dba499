"""Exactly-once training under RunPod faults and SIGKILL, with two real `gomodel serve` processes on
one PostgreSQL (issue 14).

Usage: scripts/with-postgres python chaos_test.py path/to/gomodel   (in .venv-tools: boto3)
Env: CHAOS_JOBS (default 50), CHAOS_SECONDS (how long servers are killed and restarted, default 60),
CHAOS_SEED (default: random, printed).

A fake RunPod (in this file) answers 25 % of `/run` and `/status` calls with 429/500/502/503 —
half of the failed `/run`s after creating the job, so the answer is lost — and hangs 5 % of them
for 35 s (after creating the job, for `/run`). Its workers do what `gomodel worker` does before
training: claim the attempt in the bucket with a conditional write (`If-None-Match: *`, through
either server's built-in store), end untrained naming the holder when the claim is taken, and stop
when a cancel mark is there; a run that wins trains for a few seconds, then completes. Meanwhile
both servers are SIGKILLed and restarted at random moments, and some jobs are cancelled.

Checks, from the fake's own record: every job reaches its right final state (0 lost); no attempt
is trained twice; every run that trained is the run the server shows for its job (0 runs unknown
to the server); a cancel reaches its job's run (no cancelled job's run trains to completion).
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from support import check, free_port, gomodel_cli, own_environment, push_pairs, sign_in, wait_ready

GOMODEL = os.path.abspath(sys.argv[1])
JOBS = int(os.environ.get("CHAOS_JOBS", "50"))
CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
ENDPOINT, KEY = "chaos", "chaos-key"


class FakeRunPod:
    """RunPod's queue API with faults, and workers that claim attempts as `gomodel worker` does."""

    def __init__(self, store_urls, credentials, bucket, rng):
        self.store_urls, self.credentials, self.bucket, self.rng = store_urls, credentials, bucket, rng
        self.lock = threading.Lock()
        self.jobs = {}            # run id -> {"input", "status", "output"}
        self.trained = {}         # (trainer job id, attempt) -> [run ids that won the claim and trained]
        self.completed_training = {}  # (trainer job id, attempt) -> run id that trained to the end
        self.faults = {"run": 0, "status": 0, "hang": 0}
        self.stopped = threading.Event()

    # -- the API --
    def fault(self, kind):
        roll = self.rng.random()
        if roll < 0.05:
            return "hang"
        if roll < 0.30:
            return self.rng.choice([429, 500, 502, 503])
        return None

    def run(self, body):
        fault = self.fault("run")
        create = fault is None or fault == "hang" or (fault in (500, 502, 503) and self.rng.random() < 0.5)
        run_id = None
        if create:
            run_id = "run-" + uuid.uuid4().hex[:12]
            with self.lock:
                self.jobs[run_id] = {"input": body["input"], "status": "IN_QUEUE", "output": None}
            threading.Thread(target=self.worker, args=(run_id,), daemon=True).start()
        if fault == "hang":
            with self.lock:
                self.faults["hang"] += 1
            time.sleep(35)
            return 200, {"id": run_id, "status": "IN_QUEUE"}
        if fault:
            with self.lock:
                self.faults["run"] += 1
            return fault, {"error": f"injected {fault}"}
        return 200, {"id": run_id, "status": "IN_QUEUE"}

    def status(self, run_id):
        fault = self.fault("status")
        if fault == "hang":
            with self.lock:
                self.faults["hang"] += 1
            time.sleep(35)
        elif fault:
            with self.lock:
                self.faults["status"] += 1
            return fault, {"error": f"injected {fault}"}
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None:
                return 404, {"error": "job not found"}
            answer = {"id": run_id, "status": job["status"]}
            if job["output"] is not None:
                answer["output"] = job["output"]
            return 200, answer

    def cancel(self, run_id):
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None:
                return 404, {"error": "job not found"}
            if job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                job["status"] = "CANCELLED"
            return 200, {"id": run_id, "status": job["status"]}

    # -- the workers --
    def s3(self):
        url = self.rng.choice(self.store_urls)
        return boto3.client("s3", endpoint_url=url, aws_access_key_id=self.credentials[0], aws_secret_access_key=self.credentials[1],
                            region_name="auto", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))

    def store(self, operation):
        """`operation(client)` against whichever server's store answers (servers are being killed)."""
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                return operation(self.s3())
            except ClientError:
                raise
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("no store answered for 60 s")

    def worker(self, run_id):
        # Waiting for a GPU: mostly seconds, sometimes longer than the server waits for a run whose
        # answer was lost before it submits again; that run and the new one then race for the claim.
        time.sleep(self.rng.uniform(1, 3) if self.rng.random() < 0.85 else self.rng.uniform(32, 40))
        with self.lock:
            job = self.jobs[run_id]
            if job["status"] != "IN_QUEUE":
                return
            job["status"] = "IN_PROGRESS"
            contract = job["input"]
        trainer_job, attempt, prefix = contract["trainer_job_id"], contract.get("attempt", 1), contract["output"]["prefix"]
        claim_key = f"{prefix}claims/attempt-{attempt}.json"
        body = json.dumps({"runpod_job_id": run_id, "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        try:
            self.store(lambda s3: s3.put_object(Bucket=self.bucket, Key=claim_key, Body=body, IfNoneMatch="*"))
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("PreconditionFailed", "412"):
                raise
            holder = json.loads(self.store(lambda s3: s3.get_object(Bucket=self.bucket, Key=claim_key))["Body"].read())["runpod_job_id"]
            if holder != run_id:
                self.finish(run_id, "COMPLETED", {"duplicate_of": holder})
                return
        try:
            self.store(lambda s3: s3.head_object(Bucket=self.bucket, Key=f"{prefix}claims/attempt-{attempt}.cancelled"))
            self.finish(run_id, "COMPLETED", {"cancelled_before_start": True})
            return
        except ClientError:
            pass
        with self.lock:
            self.trained.setdefault((trainer_job, attempt), []).append(run_id)
        steps = 40
        for step in range(1, steps + 1):
            time.sleep(self.rng.uniform(0.05, 0.15))
            with self.lock:
                if self.jobs[run_id]["status"] != "IN_PROGRESS":
                    return  # cancelled: the worker stops
                self.jobs[run_id]["output"] = {"phase": "training", "step": step, "total_steps": steps}
        with self.lock:
            self.completed_training[(trainer_job, attempt)] = run_id
        self.finish(run_id, "COMPLETED", {"steps": steps, "final_loss": 0.01, "artifacts": []})

    def finish(self, run_id, status, output):
        with self.lock:
            if self.jobs[run_id]["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                self.jobs[run_id]["status"] = status
                self.jobs[run_id]["output"] = output

    def serve(self, port):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server gave up on the call (its timeout, or it was killed)

            def handle_call(self):
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self.answer(401, {"error": "unauthorized"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 3 and parts[0] == "v2" and parts[1] == ENDPOINT:
                    if parts[2] == "run":
                        return self.answer(*fake.run(body))
                    if parts[2] == "status" and len(parts) == 4:
                        return self.answer(*fake.status(parts[3]))
                    if parts[2] == "cancel" and len(parts) == 4:
                        return self.answer(*fake.cancel(parts[3]))
                self.answer(404, {"error": "not found"})

            do_GET = handle_call
            do_POST = handle_call

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def main():
    started = time.time()
    rng = random.Random(SEED)
    print(f"chaos: {JOBS} jobs, {CHAOS_SECONDS:.0f} s of kills and restarts, seed {SEED}")
    postgres = os.environ.get("TEST_POSTGRES_URL")
    check(postgres is not None, "a PostgreSQL cluster is given (scripts/with-postgres)")
    with tempfile.TemporaryDirectory() as work:
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        fake_port = free_port()
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"), DATABASE_URL=postgres,
                   RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=KEY, RUNPOD_BASE_URL=f"http://127.0.0.1:{fake_port}/v2",
                   GOMODEL_PUBLIC_URL=bases[0])
        logs = [open(os.path.join(work, f"serve-{i}.log"), "a") for i in range(2)]
        servers = [None, None]

        def start(i):
            servers[i] = subprocess.Popen([GOMODEL, "serve", "--port", str(ports[i])], env=env, stdout=logs[i], stderr=subprocess.STDOUT)

        fake = None
        try:
            start(0)
            wait_ready(bases[0], 60)
            start(1)
            wait_ready(bases[1], 60)
            cli = gomodel_cli(GOMODEL, env)
            token = sign_in(cli, bases[0], "chaos@example.com")
            push_pairs(cli, work)
            store = json.loads(cli("storage", "credentials", "--json", "--port", str(ports[0])))
            fake = FakeRunPod([b + "/s3" for b in bases], (store["accessKeyId"], store["secretAccessKey"]), store["bucket"], rng)
            fake.serve(fake_port)

            def api(method, path, body=None, base=None):
                for _ in range(100):
                    target = base or rng.choice(bases)
                    request = urllib.request.Request(target + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                    try:
                        return json.load(urllib.request.urlopen(request, timeout=10))
                    except urllib.error.HTTPError as error:
                        if error.code < 500:
                            raise
                    except (urllib.error.URLError, ConnectionError, TimeoutError):
                        pass  # that server is down right now: the other one answers
                    time.sleep(0.2)
                raise AssertionError(f"{method} {path}: no server answered")

            dataset = api("GET", "/api/datasets")["datasets"][0]["id"]
            jobs = []
            chaos_until = time.time() + CHAOS_SECONDS
            kills = [0, 0]

            def chaos():
                while time.time() < chaos_until:
                    time.sleep(rng.uniform(3, 8))
                    victim = rng.randrange(2)
                    servers[victim].send_signal(signal.SIGKILL)
                    servers[victim].wait()
                    kills[victim] += 1
                    time.sleep(rng.uniform(0.5, 2))
                    start(victim)

            chaos_thread = threading.Thread(target=chaos, daemon=True)
            chaos_thread.start()
            # Jobs arrive over the first half of the chaos; one in ten is cancelled a moment later,
            # wherever it is by then (queued, its answer lost, waiting for a GPU, training).
            cancelled, cancels = [], []

            def cancel_later(job, after):
                time.sleep(after)
                try:
                    api("POST", f"/api/jobs/{job}/cancel")
                except urllib.error.HTTPError as error:
                    if error.code != 409:  # 409: it had ended already
                        raise

            for index in range(JOBS):
                job = api("POST", "/api/jobs", {"datasetId": dataset, "params": {"steps": 40, "saveEvery": 20, "sampleEvery": 0}})["id"].lower()
                jobs.append(job)
                if index % 10 == 5:
                    cancelled.append(job)
                    cancels.append(threading.Thread(target=cancel_later, args=(job, rng.uniform(0.2, 6)), daemon=True))
                    cancels[-1].start()
                time.sleep(CHAOS_SECONDS * 0.5 / JOBS)
            for thread in cancels:
                thread.join()
            chaos_thread.join()
            for i in range(2):
                wait_ready(bases[i], 60)
            print(f"  servers killed {kills[0]} and {kills[1]} times; faults injected: {fake.faults}")

            final = {}
            deadline = time.time() + 180
            while time.time() < deadline:
                shown = {j["id"].lower(): j for j in api("GET", "/api/jobs", base=bases[0])["jobs"]}
                if all(shown[job]["status"] in ("completed", "failed", "cancelled", "timed_out") for job in jobs):
                    final = shown
                    break
                time.sleep(1)
            if not final:
                pending = [job for job in jobs if shown[job]["status"] not in ("completed", "failed", "cancelled", "timed_out")]
                for job in pending[:3]:
                    detail = api("GET", f"/api/jobs/{job}", base=bases[0])
                    print(f"--- job {job} {detail['status']} run {detail.get('runpodJobId')} runner {detail.get('runnerStatus')}", file=sys.stderr)
                    for event in detail.get("events", []):
                        print(f"    {event.get('at')} {event.get('status')}: {event.get('message')}", file=sys.stderr)
                    with fake.lock:
                        runs = [(run, j["status"], j["output"]) for run, j in fake.jobs.items() if j["input"]["trainer_job_id"] == job]
                    print(f"    runs at the fake: {runs}", file=sys.stderr)
                raise AssertionError(f"{len(pending)} jobs never ended: {pending[:5]}")

            lost = [job for job in jobs if job not in cancelled and final[job]["status"] != "completed"]
            check(not lost, f"0 jobs lost: all {JOBS - len(cancelled)} uncancelled jobs completed ({[(j, final[j]['status'], final[j].get('error')) for j in lost][:3]})")
            check(all(final[job]["status"] in ("cancelled", "completed") for job in cancelled),
                  f"the {len(cancelled)} cancelled jobs ended cancelled (or had completed before the cancel)")
            twice = {key: runs for key, runs in fake.trained.items() if len(runs) > 1}
            check(not twice, f"0 attempts trained twice ({len(fake.trained)} attempts trained; {twice})")
            unknown = [(job, attempt, run) for (job, attempt), run in fake.completed_training.items()
                       if final.get(job, {}).get("runpodJobId") != run and final.get(job, {}).get("status") == "completed"]
            check(not unknown, f"0 runs unknown to the server: each completed job shows the run that trained it ({unknown[:3]})")
            reached = [job for job in cancelled if final[job]["status"] == "cancelled" and any(
                key[0] == job for key in fake.completed_training)]
            check(not reached, f"every cancel reached its run: no cancelled job's run trained to the end ({reached})")
            # Nothing trains on for nobody: every run at the fake ends (duplicates end at once).
            deadline = time.time() + 30
            while True:
                with fake.lock:
                    running = [run for run, job in fake.jobs.items() if job["status"] in ("IN_QUEUE", "IN_PROGRESS")]
                if not running or time.time() > deadline:
                    break
                time.sleep(0.2)
            check(not running, f"no run is still training at RunPod ({len(fake.jobs)} runs in all; {running[:3]})")
            with fake.lock:
                outputs = [job["output"] or {} for job in fake.jobs.values()]
            duplicates = sum(1 for output in outputs if "duplicate_of" in output)
            stopped = sum(1 for output in outputs if output.get("cancelled_before_start"))
            print(f"  {len(outputs)} runs at RunPod for {JOBS} jobs: {len(fake.trained)} trained, {duplicates} found their attempt claimed "
                  f"and ended untrained, {stopped} read a cancel mark and stopped")
            print(f"chaos test passed in {time.time() - started:.0f} s (seed {SEED})")
        except Exception:
            for i in range(2):
                logs[i].flush()
                print(f"--- serve-{i}.log (tail)", file=sys.stderr)
                print(open(os.path.join(work, f"serve-{i}.log")).read()[-3000:], file=sys.stderr)
            raise
        finally:
            for server in servers:
                if server and server.poll() is None:
                    server.kill()
                    server.wait()


if __name__ == "__main__":
    main()
