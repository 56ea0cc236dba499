"""Retention and per-user storage quotas end to end, with the real binaries: `gomodel serve`
(built-in store and queue, GOMODEL_STORAGE_QUOTA=100KiB, GOMODEL_RETENTION_DAYS=30), a `gomodel
worker` with the stand-in trainer, and the CLI; the bucket listed with boto3.

Usage: python storage_e2e.py path/to/gomodel   (in .venv-tools: boto3)
Checks:
- bad settings: GOMODEL_RETENTION_DAYS=0 or abc, GOMODEL_STORAGE_QUOTA=lots make `gomodel serve`
  exit non-zero at start, naming the variable and the value;
- usage: GET /api/usage and `gomodel usage` (the quota line, the retention line, and at or past
  the quota only, the line saying uploads are refused until you delete datasets (`gomodel datasets
  rm`) or ended jobs (`gomodel jobs rm`)) for a user's datasets, and with job outputs (the
  artifacts' bytes) once jobs have run; each user's own;
- the quota: replacing a file counts only the difference (a replacement that fits by its growth
  but not by its size is taken); signing uploads one byte past the room is a 422 quota_exceeded
  naming GOMODEL_STORAGE_QUOTA and what to delete (`gomodel jobs rm`, DELETE /api/jobs/{id}),
  exactly the room is signed; uploads signed and not completed in one dataset count when signing
  in another (A signed and left pending, B's file that fits only if A's is ignored is refused,
  quota_exceeded; what A leaves is signed; A completed keeps usage within the quota); `gomodel
  datasets push FOLDER` and `push X.zip` past the room exit non-zero printing the server's message
  and leave no dataset behind (GET /api/datasets, `gomodel datasets list`); a zip that fits but
  unpacks past the room ends a failed import with code too_large, its message naming
  GOMODEL_STORAGE_QUOTA, through the API and the CLI; after every refusal usage is unchanged and the
  bucket holds exactly what it held;
- retention: the server is stopped, a finished job and its dataset aged 31 days in the database,
  another job and its dataset (changed 40 days ago, trained 25 days ago) left with 5 days, and the
  server started again: its start-up sweep deletes the old job's outputs (the job stays, with
  outputsDeletedAt, no artifacts, no result and the event saying why) and the old dataset (404),
  and the bucket holds nothing under their prefixes; the young job, its dataset, another user's
  fresh dataset and every one of their objects remain; outputsExpireAt/expiresAt are finish (or
  last change or training) + 30 days; the job and dataset pages show the retention note, as a
  warning where less than 7 days remain; usage and the gomodel_storage_bytes gauges follow; job
  outputs count (a user past the quota by them is refused uploads until retention frees room);
- deleting jobs (alice past her quota by a new job's outputs): DELETE /api/jobs/{id} of a queued
  job is a 409 job_active and `gomodel jobs rm ID --yes` exits non-zero; once the job ended, bob's
  DELETE is a 404 and `gomodel jobs rm ID` without --yes nor a terminal refuses (job, record and
  objects stay); `gomodel jobs rm ID --yes` deletes it: GET and its record 404, not in `gomodel jobs
  list`, nothing left under outputs/{jobId}/ (every other object stays), usage down by its outputs'
  bytes, and the upload refused before is accepted;
- a dataset's own limit: the server restarted with GOMODEL_DATASET_MAX_BYTES=90KiB, a zip
  unpacking past it into a new dataset of bob's (whose quota leaves more) fails too_large saying
  "the dataset has room for", not naming GOMODEL_STORAGE_QUOTA.
"""
import datetime
import http.cookiejar
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

import boto3
from botocore.config import Config

from support import api_call, check, own_environment, png, wait_for, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
QUOTA = 100 * 1024
DAYS = 30
DAY = 86400
PASSWORD = "correct horse battery"


def when(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def near(seconds, expected, slack=5):
    return abs(seconds - expected) <= slack


def write_folder(folder, files):
    """Writes `files` (relative path → bytes) under `folder`."""
    for relative, data in files.items():
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(data)
    return folder


def pair_files(stems, control_filler=2048, target_filler=2048):
    files = {}
    for stem in stems:
        files[f"control/{stem}.png"] = png(640, 640, control_filler)
        files[f"target/{stem}.png"] = png(640, 640, target_filler)
        files[f"target/{stem}.txt"] = f"make the {stem} a watercolour".encode()
    return files


class Server:
    """`gomodel serve` on a data folder; stopped with SIGTERM and started again on the same one."""

    def __init__(self, work, env):
        self.work, self.env = work, env
        self.log = open(os.path.join(work, "serve.log"), "a")
        self.process = None

    def start(self):
        address = os.path.join(self.env["GOMODEL_DATA_DIR"], "serve-address")
        if os.path.exists(address):
            os.remove(address)  # so that waiting for it waits for this start
        self.log.write("\n--- gomodel serve starts\n")
        self.log.flush()
        self.process = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(self.env, LOG_LEVEL="info"), stdout=self.log, stderr=subprocess.STDOUT)
        self.base = wait_serving(self.env["GOMODEL_DATA_DIR"])
        return self.base

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        return self.process.returncode if self.process else None

    def metrics(self):
        text = urllib.request.urlopen(self.base + "/metrics", timeout=10).read().decode()
        return {kind: float(value) for kind, value in re.findall(r'^gomodel_storage_bytes\{kind="(\w+)"\} (\S+)$', text, re.M)}

    def store(self, cli_env):
        """A boto3 client of the built-in store and its bucket, from `gomodel storage credentials --json`."""
        result = subprocess.run([GOMODEL, "storage", "credentials", "--json"], env=cli_env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        store = json.loads(result.stdout)
        client = boto3.client("s3", endpoint_url=store["endpoint"], aws_access_key_id=store["accessKeyId"], aws_secret_access_key=store["secretAccessKey"],
                              region_name=store["region"], config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        return client, store["bucket"]

    def objects(self, cli_env):
        """Every object in the bucket: key → size, listed with boto3."""
        client, bucket = self.store(cli_env)
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found


class User:
    """An account made with the CLI, with its own CLI config folder (its own `gomodel login`)."""

    def __init__(self, server, work, email):
        self.server, self.email = server, email
        self.env = dict(server.cli_env, XDG_CONFIG_HOME=os.path.join(work, "config-" + email.split("@")[0]))
        self.must("users", "create", "--email", email, "--password", PASSWORD)
        self.token = self.must("tokens", "create", "--email", email).strip()
        self.login()

    def login(self):
        self.must("login", "--server", self.server.base, "--token", self.token)

    def gomodel(self, *args, timeout=300):
        return subprocess.run([GOMODEL, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def must(self, *args):
        result = self.gomodel(*args)
        if result.returncode != 0:
            raise AssertionError(f"gomodel {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def api(self, method, path, body=None):
        """(status, JSON body or None) of an API call with the user's token."""
        return api_call(self.server.base, self.token, method, path, body)

    def get(self, path):
        status, body = self.api("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def usage(self):
        return self.get("/api/usage")

    def dataset_id(self, name):
        return next(d["id"] for d in self.get("/api/datasets")["datasets"] if d["name"] == name)

    def dataset_names(self):
        return sorted(d["name"] for d in self.get("/api/datasets")["datasets"])

    def page(self, path):
        """A web page's HTML, signed in the browser's way (POST /api/auth/login, the session cookie)."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = urllib.request.Request(self.server.base + "/api/auth/login", data=json.dumps({"email": self.email, "password": PASSWORD}).encode(),
                                       headers={"Content-Type": "application/json"}, method="POST")
        opener.open(login, timeout=10).read()
        return opener.open(self.server.base + path, timeout=10).read().decode()


def sizes_in(text):
    """The sizes `gomodel usage` prints ("8.1 KiB", "0 B"), in bytes (approximately)."""
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    return [float(number) * units[unit] for number, unit in re.findall(r"([\d.]+) (B|KiB|MiB|GiB)\b", text)]


def check_usage_line(user, label):
    """`gomodel usage` agrees with GET /api/usage; returns the API's answer."""
    usage = user.usage()
    printed = user.must("usage")
    line = next((line for line in printed.splitlines() if line.startswith("Using ")), "")
    shown = sizes_in(line)
    match = re.fullmatch(r"Using [\d.]+ \S+ of your 100 KiB quota: datasets [\d.]+ \S+, job outputs [\d.]+ \S+\.", line)
    expected = [usage["usedBytes"], QUOTA, usage["datasetBytes"], usage["outputBytes"]]
    check(match and len(shown) == 4 and all(abs(a - b) <= max(0.06 * b, 1) for a, b in zip(shown, expected)),
          f"{label}: gomodel usage says what GET /api/usage does: {line!r} ({expected})")
    check(f"Job outputs are deleted {DAYS} days after the job ends" in printed and f"datasets {DAYS} days after they last changed or trained" in printed,
          f"{label}: gomodel usage says how long the server keeps outputs and datasets")
    over = usage["usedBytes"] >= QUOTA
    warned = "uploads are refused until you delete datasets (`gomodel datasets rm`) or ended jobs (`gomodel jobs rm`)" in printed
    check(warned == over, f"{label}: gomodel usage {'says' if over else 'does not say'} that uploads are refused until datasets or ended jobs are deleted "
          f"({usage['usedBytes']} of {QUOTA} bytes used)")
    return usage


# MARK: Bad settings


def bad_settings(work, env):
    print("bad settings: gomodel serve refuses to start")
    for name, value in [("GOMODEL_RETENTION_DAYS", "0"), ("GOMODEL_RETENTION_DAYS", "abc"), ("GOMODEL_STORAGE_QUOTA", "lots")]:
        data = os.path.join(work, f"bad-{name}-{value}")
        process = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, GOMODEL_DATA_DIR=data, **{name: value}),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError(f"{name}={value}: gomodel serve did not exit (it serves?): {output[-500:]}")
        check(process.returncode != 0 and name in output and f"'{value}'" in output,
              f"{name}={value}: gomodel serve exits {process.returncode}, naming the variable and the value: {output.strip().splitlines()[-1:]}")


# MARK: Quota


def put(upload, data):
    """Makes a signed upload (a presigned PUT with exactly its headers)."""
    request = urllib.request.Request(upload["url"], data=data, method=upload.get("method") or "PUT", headers=dict(upload["headers"]))
    check(urllib.request.urlopen(request, timeout=60).status == 200, f"({len(data)} bytes uploaded to {upload['key']})")


def import_zip(user, dataset_id, path):
    """Imports the zip at `path` through the API (create, PUT, unpack); returns the import once it has ended."""
    status, created = user.api("POST", f"/api/datasets/{dataset_id}/imports", {"fileName": os.path.basename(path), "size": os.path.getsize(path)})
    check(status == 201, f"the import of {os.path.basename(path)} is created ({status})")
    put(created["upload"], open(path, "rb").read())
    import_path = f"/api/datasets/{dataset_id}/imports/{created['import']['id']}"
    status, _ = user.api("POST", import_path + "/unpack")
    check(status == 202, f"unpack: 202 ({status})")
    return wait_for("the import to end", lambda: (lambda i: i if i["state"] in ("done", "failed") else None)(user.get(import_path)), 60)


def unpacks_big_zip(path, stems, filler):
    """A zip of pairs whose images are a PNG header and zeros: small as a zip, `filler` more bytes each unpacked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for stem in stems:
            archive.writestr(f"control/{stem}.png", png(640, 640, 0) + b"\0" * filler)
            archive.writestr(f"target/{stem}.png", png(640, 640, 0) + b"\0" * filler)
            archive.writestr(f"target/{stem}.txt", f"make the {stem} a watercolour")
    return path


def quota(server, work, carol):
    print("the storage quota (carol, who has no jobs)")
    files = pair_files(["cat"], control_filler=20000, target_filler=40000)
    carol.must("datasets", "push", write_folder(os.path.join(work, "carol"), files), "--name", "carol")
    dataset_id = carol.dataset_id("carol")
    dataset = carol.get(f"/api/datasets/{dataset_id}")
    usage = check_usage_line(carol, "carol's first push")
    check(usage["datasetBytes"] == dataset["totalBytes"] == sum(map(len, files.values())) and usage["outputBytes"] == 0
          and usage["usedBytes"] == usage["datasetBytes"] and usage["quotaBytes"] == QUOTA and usage["retentionDays"] == DAYS,
          f"GET /api/usage: the dataset's {dataset['totalBytes']} bytes, no outputs, quota {QUOTA}, retention {DAYS} days ({usage})")

    # Replacing a file counts only the difference: 10000 bytes more fit, the new file's 50033 would not.
    room = QUOTA - usage["usedBytes"]
    bigger = png(640, 640, 50000)
    check(len(bigger) > room > len(bigger) - len(files["target/cat.png"]), f"(the replacement fits by its growth, not by its size: room {room})")
    open(os.path.join(work, "carol", "target", "cat.png"), "wb").write(bigger)
    pushed = carol.gomodel("datasets", "push", os.path.join(work, "carol"), "--name", "carol")
    check(pushed.returncode == 0 and "Uploaded 1 file" in pushed.stdout,
          f"a replaced file is counted by its growth only: the push succeeds ({pushed.returncode}: {(pushed.stdout + pushed.stderr).strip()[-300:]})")
    used = carol.usage()["usedBytes"]
    check(used == usage["usedBytes"] + len(bigger) - len(files["target/cat.png"]), f"usage grew by the difference ({usage['usedBytes']} → {used})")
    room = QUOTA - used

    snapshot = carol.usage(), server.objects(carol.env)

    def unchanged(label):
        check(carol.usage() == snapshot[0], f"{label}: usage unchanged ({snapshot[0]['usedBytes']} bytes)")
        try:
            wait_for(f"{label}: the bucket as before", lambda: server.objects(carol.env) == snapshot[1], 15)
        except AssertionError:
            now = server.objects(carol.env)
            raise AssertionError(f"{label}: the bucket changed: added {sorted(set(now) - set(snapshot[1]))[:6]}, removed {sorted(set(snapshot[1]) - set(now))[:6]}")
        check(True, f"{label}: the bucket holds exactly the objects it held before")

    print("signing uploads past the quota (API)")
    status, body = carol.api("POST", f"/api/datasets/{dataset_id}/uploads", {"files": [{"path": "target/dog.png", "size": room + 1}]})
    error = (body or {}).get("error", {})
    message = error.get("message", "")
    check(status == 422 and error.get("code") == "quota_exceeded", f"one byte past the room: 422 quota_exceeded ({status} {error.get('code')})")
    check("GOMODEL_STORAGE_QUOTA" in message and "Delete" in message and str(used) in message and str(QUOTA) in message,
          f"the message names the variable, the bytes held, the quota and what to delete: {message}")
    check("`gomodel jobs rm`" in message and "DELETE /api/jobs/{id}" in message, "the message names how to delete ended jobs (gomodel jobs rm, DELETE /api/jobs/{id})")
    unchanged("a refused signing")
    scratch = carol.api("POST", "/api/datasets", {"name": "scratch"})[1]["id"]
    status, body = carol.api("POST", f"/api/datasets/{scratch}/uploads", {"files": [{"path": "target/dog.png", "size": room}]})
    check(status == 200 and len(body["uploads"]) == 1, f"exactly the room is signed ({status})")
    check(carol.api("DELETE", f"/api/datasets/{scratch}")[0] == 204, "(the scratch dataset deleted, its upload never made)")
    unchanged("a signed upload never made")

    print("uploads signed and not completed in one dataset count when signing in another")
    first = carol.api("POST", "/api/datasets", {"name": "pending a"})[1]["id"]
    second = carol.api("POST", "/api/datasets", {"name": "pending b"})[1]["id"]
    big, other = room - 10000, 12000
    check(other <= room < big + other, f"(B's file fits the room of {room} alone, not with A's {big} bytes signed)")
    status, body = carol.api("POST", f"/api/datasets/{first}/uploads", {"files": [{"path": "target/big.png", "size": big}]})
    check(status == 200 and len(body["uploads"]) == 1, f"dataset A: {big} bytes signed, not completed ({status})")
    signed = body["uploads"][0]
    status, body = carol.api("POST", f"/api/datasets/{second}/uploads", {"files": [{"path": "target/dog.png", "size": other}]})
    error = (body or {}).get("error", {})
    check(status == 422 and error.get("code") == "quota_exceeded" and str(used + big) in error.get("message", ""),
          f"dataset B: {other} bytes, which only fit if A's pending upload is ignored, are refused: 422 quota_exceeded counting A's ({status} {error})")
    status, body = carol.api("POST", f"/api/datasets/{second}/uploads", {"files": [{"path": "target/dog.png", "size": room - big}]})
    check(status == 200, f"dataset B: what A's pending upload leaves ({room - big} bytes) is signed ({status})")
    put(signed, png(640, 640, big - len(png(640, 640, 0))))
    status, body = carol.api("POST", f"/api/datasets/{first}/uploads/complete", {"paths": ["target/big.png"]})
    check(status == 200 and not body.get("failures") and body["totalBytes"] == big, f"dataset A: its upload completed ({status}, {body.get('failures')})")
    usage = carol.usage()
    check(usage["usedBytes"] == used + big <= QUOTA, f"usage within the quota: {usage['usedBytes']} of {QUOTA} bytes")
    status, body = carol.api("POST", f"/api/datasets/{dataset_id}/uploads", {"files": [{"path": "target/dog.png", "size": 100}]})
    check(status == 422 and (body or {}).get("error", {}).get("code") == "quota_exceeded",
          f"with A completed and B's upload pending the quota is full: 100 bytes more are refused ({status})")
    check(carol.api("DELETE", f"/api/datasets/{first}")[0] == carol.api("DELETE", f"/api/datasets/{second}")[0] == 204, "(datasets A and B deleted)")
    unchanged("datasets A and B deleted")

    print("gomodel datasets push past the quota (folder, zip)")
    more = pair_files(["owl"], control_filler=20000, target_filler=20000)
    check(sum(map(len, more.values())) > room, "(the folder is more than the room)")
    pushed = carol.gomodel("datasets", "push", write_folder(os.path.join(work, "more"), more), "--name", "more")
    output = pushed.stdout + pushed.stderr
    check(pushed.returncode != 0 and "GOMODEL_STORAGE_QUOTA" in output and "Delete datasets you no longer need" in output,
          f"push FOLDER: exits {pushed.returncode}, printing the server's message: {output.strip().splitlines()[-1:]}")
    unchanged("push FOLDER refused")
    listed = [line.split("  ")[1] for line in carol.must("datasets", "list").splitlines() if line.count("  ") >= 2]
    check("more" not in carol.dataset_names() and "more" not in listed and "carol" in listed,
          f"the refused push leaves no dataset behind: GET /api/datasets {carol.dataset_names()}, gomodel datasets list {listed}")
    zipped = os.path.join(work, "more.zip")
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as archive:
        for relative, data in more.items():
            archive.writestr(relative, data)
    pushed = carol.gomodel("datasets", "push", zipped, "--name", "more zip")
    output = pushed.stdout + pushed.stderr
    check(pushed.returncode != 0 and "GOMODEL_STORAGE_QUOTA" in output and "Ready to train" not in output,
          f"push X.zip ({os.path.getsize(zipped)} bytes): exits {pushed.returncode}, printing the server's message: {output.strip().splitlines()[-1:]}")
    check("more zip" not in carol.dataset_names(), "push X.zip removes the dataset it made for the refused zip")
    unchanged("push X.zip refused")

    print("a zip that fits, unpacking past the quota")
    small = unpacks_big_zip(os.path.join(work, "zeros.zip"), ["a", "b", "c"], 15000)
    check(os.path.getsize(small) < room < 6 * 15000, f"(the zip's {os.path.getsize(small)} bytes fit the room of {room}; its entries do not)")
    target = carol.api("POST", "/api/datasets", {"name": "zeros"})[1]["id"]
    final = import_zip(carol, target, small)
    error = final.get("error") or {}
    message = error.get("message") or ""
    check(final["state"] == "failed" and error.get("code") == "too_large" and str(room) in message,
          f"it ends failed, too_large, naming the room: {final['state']} {error.get('code')}: {message}")
    check("GOMODEL_STORAGE_QUOTA" in message and "the dataset has room for" not in message,
          "the message says the storage quota (GOMODEL_STORAGE_QUOTA) is what refused it, not the dataset's limit")
    check(carol.get(f"/api/datasets/{target}")["fileCount"] == 0, "nothing was placed in the dataset")
    check(carol.api("DELETE", f"/api/datasets/{target}")[0] == 204, "(the dataset deleted)")
    unchanged("a zip refused at unpacking (API)")
    pushed = carol.gomodel("datasets", "push", small, "--name", "zeros cli")
    output = pushed.stdout + pushed.stderr
    check(pushed.returncode != 0 and error.get("message") and error["message"] in output and "Ready to train" not in output,
          f"push X.zip of the same zip: exits {pushed.returncode}, printing the refusal: {output.strip().splitlines()[-1:]}")
    check("zeros cli" not in carol.dataset_names(), f"no dataset left from the refused zip ({carol.dataset_names()})")
    unchanged("a zip refused at unpacking (CLI)")


# MARK: Retention


def start_worker(server, work, alice, workers):
    """A `gomodel worker` with the stand-in trainer, on a key of alice's."""
    key = alice.must("workers", "create-key", "--name", f"storage {len(workers) + 1}").strip()
    worker_env = dict(alice.env, GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}", GOMODEL_WORKDIR=os.path.join(work, "worker"), STAND_IN_STEP_SECONDS="0.01")
    worker_env.pop("GOMODEL_DATA_DIR")
    worker_env.pop("HF_TOKEN", None)
    workers.append(subprocess.Popen([GOMODEL, "worker", "--server", server.base, "--key", key, "--name", "box"], env=worker_env,
                                    stdout=open(os.path.join(work, "worker.log"), "a"), stderr=subprocess.STDOUT))


def queue_job(user, dataset):
    return user.must("train", "--dataset", dataset, "--steps", "10").split("Queued job ")[1].split(" ")[0]


def ended(user, job_id):
    """The job once it has ended (else None)."""
    job = user.get(f"/api/jobs/{job_id}")
    return job if job["status"] in ("completed", "failed", "cancelled") else None


def run_jobs(server, work, alice, workers):
    """Two jobs of alice's trained by a worker with the stand-in; returns them, completed."""
    start_worker(server, work, alice, workers)
    ids = [queue_job(alice, name) for name in ("old", "kept")]
    jobs = [wait_for(f"job {job_id} to end", lambda: ended(alice, job_id), 90) for job_id in ids]
    check(all(j["status"] == "completed" and j["artifacts"] for j in jobs), f"two jobs completed with outputs ({[j['status'] for j in jobs]})")
    return jobs


def age(data, old_job, old_dataset, young_job, young_dataset):
    """Moves stored times back in the database of a stopped server: the old job and dataset 31 days,
    the young job 25 days and its dataset 40 days. Fluent stores dates as REAL Unix seconds."""
    db = sqlite3.connect(os.path.join(data, "gomodel.sqlite"))
    try:
        row = db.execute("SELECT finished_at, typeof(finished_at), created_at, typeof(created_at) FROM jobs WHERE upper(id) = upper(?)", (old_job,)).fetchone()
        print(f"  (a job's finished_at, created_at as stored: {row})")
        check(row and row[1] == row[3] == "real" and abs(row[0] - time.time()) < 600, "job times are stored as REAL Unix seconds (written back the same way)")
        row = db.execute("SELECT updated_at, typeof(updated_at) FROM datasets WHERE upper(id) = upper(?)", (old_dataset,)).fetchone()
        print(f"  (a dataset's updated_at as stored: {row})")
        check(row and row[1] == "real" and abs(row[0] - time.time()) < 3600, "dataset times are stored as REAL Unix seconds")
        job_columns = ("created_at", "submitted_at", "started_at", "finished_at", "updated_at")
        for job_id, days in ((old_job, 31), (young_job, 25)):
            changed = db.execute(f"UPDATE jobs SET {', '.join(f'{c} = {c} - ?' for c in job_columns)} WHERE upper(id) = upper(?)",
                                 (*[days * DAY] * len(job_columns), job_id)).rowcount
            assert changed == 1, f"job {job_id} not aged"
        for dataset_id, days in ((old_dataset, 31), (young_dataset, 40)):
            changed = db.execute("UPDATE datasets SET created_at = created_at - ?, updated_at = updated_at - ? WHERE upper(id) = upper(?)",
                                 (days * DAY, days * DAY, dataset_id)).rowcount
            assert changed == 1, f"dataset {dataset_id} not aged"
        db.commit()
    finally:
        db.close()


def note(html):
    """The retention note of a page: (class, text) or None."""
    found = re.search(r'<p class="([^"]*)" id="retention-note">(.*?)</p>', html, re.S)
    return (found.group(1), found.group(2)) if found else None


def retention(server, work, alice, bob, carol, workers):
    print("retention: jobs and datasets, then aged in the database")
    for name in ("old", "kept"):
        alice.must("datasets", "push", write_folder(os.path.join(work, name), pair_files(["cat", "dog"])), "--name", name)
    bob.must("datasets", "push", write_folder(os.path.join(work, "fresh"), pair_files(["fox"])), "--name", "fresh")
    old_job, young_job = run_jobs(server, work, alice, workers)
    old, kept, fresh = alice.dataset_id("old"), alice.dataset_id("kept"), bob.dataset_id("fresh")
    old_bytes, kept_bytes = (alice.get(f"/api/datasets/{d}")["totalBytes"] for d in (old, kept))
    output_bytes = [sum(a.get("bytes") or 0 for a in job["artifacts"]) for job in (old_job, young_job)]

    usage = check_usage_line(alice, "alice with two jobs")
    check(usage["datasetBytes"] == old_bytes + kept_bytes and usage["outputBytes"] == sum(output_bytes) > 0,
          f"alice's usage: her two datasets' bytes and her jobs' artifacts' ({usage['datasetBytes']}, {usage['outputBytes']} = {output_bytes})")
    check(bob.usage()["datasetBytes"] == bob.get(f"/api/datasets/{fresh}")["totalBytes"] and bob.usage()["outputBytes"] == 0,
          "bob's usage: his own dataset only")
    job = alice.get(f"/api/jobs/{old_job['id']}")
    check(near(when(job["outputsExpireAt"]), when(job["finishedAt"]) + DAYS * DAY), f"a finished job's outputsExpireAt is its end + {DAYS} days ({job['outputsExpireAt']})")
    dataset = alice.get(f"/api/datasets/{old}")
    check(near(when(dataset["expiresAt"]), max(when(dataset["updatedAt"]), when(job["createdAt"])) + DAYS * DAY),
          f"a dataset's expiresAt is its last change or training + {DAYS} days ({dataset['expiresAt']})")
    shown = note(alice.page(f"/jobs/{old_job['id']}"))
    check(shown and shown[0] == "hint" and job["outputsExpireAt"].replace("Z", "") in shown[1],
          f"the job's page notes the deletion date, not yet as a warning ({shown[0] if shown else 'no note'})")

    objects = server.objects(alice.env)
    under = {name: {k for k in objects if k.startswith(prefix)} for name, prefix in
             [("old job", f"outputs/{old_job['id'].lower()}/"), ("young job", f"outputs/{young_job['id'].lower()}/"),
              ("old", f"datasets/{old.lower()}/"), ("kept", f"datasets/{kept.lower()}/"), ("fresh", f"datasets/{fresh.lower()}/")]}
    check(all(under.values()), f"the bucket holds every prefix's objects ({ {k: len(v) for k, v in under.items()} })")
    for job, total in zip((old_job, young_job), output_bytes):
        keys = {a["key"] for a in job["artifacts"]}
        prefix = f"outputs/{job['id'].lower()}/"
        check(keys <= set(objects) and all(k.startswith(prefix) for k in keys), f"job {job['id'][:8]}: every artifact is an object under {prefix}")
        # Besides its artifacts, a job's prefix holds the worker's claim marker of each attempt (not counted).
        extra = {k: size for k, size in objects.items() if k.startswith(prefix) and k not in keys}
        held = sum(size for k, size in objects.items() if k in keys)
        check(held == total and all(re.fullmatch(re.escape(prefix) + r"claims/attempt-\d+\.json", k) for k in extra),
              f"job {job['id'][:8]}: its artifacts' objects hold what it counts ({held} = {total} bytes), and nothing else but claims ({extra})")
    status, body = alice.api("POST", f"/api/datasets/{kept}/uploads", {"files": [{"path": "target/owl.png", "size": 1000}]})
    check(status == 422 and (body or {}).get("error", {}).get("code") == "quota_exceeded",
          f"job outputs count: alice, past her quota by them, is refused 1000 bytes more ({status})")

    print("the server stopped, the database aged, the server started again")
    for worker in workers:
        worker.kill()
        worker.wait()
    check(server.stop() == 0, "gomodel serve exits 0 on SIGTERM")
    age(server.env["GOMODEL_DATA_DIR"], old_job["id"], old, young_job["id"], kept)
    # From now on a dataset's own limit (90 KiB) may bind before the quota: for bob, who holds little.
    server.env["GOMODEL_DATASET_MAX_BYTES"] = "90KiB"
    started = time.time()
    server.start()
    for user in (alice, bob, carol):
        user.login()

    gone = wait_for("the old dataset to be deleted", lambda: alice.api("GET", f"/api/datasets/{old}")[0] == 404, 30)
    check(gone, f"the start-up sweep deleted the dataset unchanged and untrained for 31 days (GET → 404, {time.time() - started:.1f} s after the start)")
    job = wait_for("the old job's outputs to be deleted", lambda: (lambda j: j if j.get("outputsDeletedAt") else None)(alice.get(f"/api/jobs/{old_job['id']}")), 30)
    check(job["status"] == "completed" and not job["artifacts"] and not job.get("result") and not job.get("outputsExpireAt"),
          f"the old job stays, completed, with outputsDeletedAt, no artifacts, no result, no expiry ({job['status']}, {len(job['artifacts'])} artifacts, {job.get('result')})")
    said = f"Its outputs were deleted, {DAYS} days after it ended (GOMODEL_RETENTION_DAYS)."
    check(job["events"][-1]["message"] == said, f"its last event says why: {job['events'][-1]['message']}")
    after = server.objects(alice.env)
    check(not {k for k in after if k.startswith(f"outputs/{old_job['id'].lower()}/") or k.startswith(f"datasets/{old.lower()}/")},
          "the bucket holds nothing under the old job's outputs/ nor the old dataset's datasets/ prefix")
    expected = {k: v for k, v in objects.items() if k not in under["old job"] and k not in under["old"]}
    check(after == expected, f"every other object stays, as it was ({len(after)} objects; lost {sorted(set(expected) - set(after))[:4]}, "
          f"new {sorted(set(after) - set(expected))[:4]})")
    check(alice.dataset_names() == ["kept"], f"alice's datasets: kept only ({alice.dataset_names()})")

    young = alice.get(f"/api/jobs/{young_job['id']}")
    check(young["artifacts"] == young_job["artifacts"] and not young.get("outputsDeletedAt"), "the job that ended 25 days ago keeps its outputs")
    left = when(young["outputsExpireAt"]) - time.time()
    check(near(when(young["outputsExpireAt"]), when(young["finishedAt"]) + DAYS * DAY) and 4 * DAY < left < 5 * DAY + 60,
          f"its outputsExpireAt is its (moved) end + {DAYS} days: {left / DAY:.2f} days from now")
    dataset = alice.get(f"/api/datasets/{kept}")
    left = when(dataset["expiresAt"]) - time.time()
    check(near(when(dataset["expiresAt"]), when(young["createdAt"]) + DAYS * DAY) and 4 * DAY < left < 5 * DAY + 60,
          f"the dataset unchanged for 40 days but trained 25 days ago stays, to go {DAYS} days after that training ({left / DAY:.2f} days)")
    fresh_dataset = bob.get(f"/api/datasets/{fresh}")
    check(near(when(fresh_dataset["expiresAt"]), when(fresh_dataset["updatedAt"]) + DAYS * DAY), "bob's fresh dataset stays, to go 30 days after its last change")

    print("the pages' retention notes")
    for user, path, soon, at in [(alice, f"/jobs/{young_job['id']}", True, young["outputsExpireAt"]), (alice, f"/datasets/{kept}", True, dataset["expiresAt"]),
                                 (bob, f"/datasets/{fresh}", False, fresh_dataset["expiresAt"])]:
        shown = note(user.page(path))
        check(shown and ("retention-warning" in shown[0]) == soon and at.replace("Z", "") in shown[1],
              f"{path.split('/')[1][:-1]} page: the note gives the date {at}, {'as a warning' if soon else 'not as a warning'} ({shown[0] if shown else 'no note'})")
    check(note(alice.page(f"/jobs/{old_job['id']}")) is None, "the page of the job whose outputs went has no deletion note")

    print("usage and the gauges after the sweep")
    usage = check_usage_line(alice, "alice after the sweep")
    check(usage["datasetBytes"] == kept_bytes and usage["outputBytes"] == output_bytes[1],
          f"alice's usage: the kept dataset and the young job's outputs only ({usage['datasetBytes']}, {usage['outputBytes']})")
    datasets_total = sum(u.get(f"/api/datasets/{d['id']}")["totalBytes"] for u in (alice, bob, carol) for d in u.get("/api/datasets")["datasets"])
    wanted = {"datasets": float(datasets_total), "job_outputs": float(output_bytes[1])}
    try:
        wait_for("the gauges", lambda: server.metrics() == wanted, 15)
    except AssertionError:
        raise AssertionError(f"gomodel_storage_bytes: {server.metrics()}, wanted {wanted}")
    check(True, f"gomodel_storage_bytes: datasets {datasets_total}, job_outputs {output_bytes[1]} (every user's)")
    status, _ = alice.api("POST", f"/api/datasets/{kept}/uploads", {"files": [{"path": "target/owl.png", "size": 1000}]})
    check(status == 200, f"with the room retention freed, alice may upload again ({status})")


# MARK: Deleting jobs


def delete_jobs(server, work, alice, bob, workers):
    print("deleting an ended job frees its outputs' room (alice, past her quota by them)")
    alice.must("datasets", "push", write_folder(os.path.join(work, "extra"), pair_files(["owl", "bat"])), "--name", "extra")
    kept = alice.dataset_id("kept")
    job_id = queue_job(alice, "extra")  # no worker runs now: it stays queued
    status, body = alice.api("DELETE", f"/api/jobs/{job_id}")
    check(status == 409 and (body or {}).get("error", {}).get("code") == "job_active", f"DELETE of a queued job: 409 job_active ({status} {body})")
    removed = alice.gomodel("jobs", "rm", job_id, "--yes")
    check(removed.returncode != 0 and "cancel" in (removed.stdout + removed.stderr),
          f"gomodel jobs rm of a queued job exits {removed.returncode}: {(removed.stdout + removed.stderr).strip().splitlines()[-1:]}")
    check(alice.get(f"/api/jobs/{job_id}")["status"] == "queued", "the queued job stays")

    start_worker(server, work, alice, workers)
    job = wait_for(f"job {job_id} to end", lambda: ended(alice, job_id), 90)
    check(job["status"] == "completed" and job["artifacts"], f"the job completed, with outputs ({job['status']})")
    job_bytes = sum(a.get("bytes") or 0 for a in job["artifacts"])
    prefix = f"outputs/{job_id.lower()}/"
    before = check_usage_line(alice, "alice with the new job's outputs")
    objects = server.objects(alice.env)
    check(before["usedBytes"] > QUOTA and before["usedBytes"] - job_bytes < QUOTA - 1000 and any(k.startswith(prefix) for k in objects),
          f"alice is past her quota by the job's {job_bytes} bytes of outputs ({before['usedBytes']} of {QUOTA}), held under {prefix}")
    upload = {"files": [{"path": "target/owl.png", "size": 1000}]}
    status, body = alice.api("POST", f"/api/datasets/{kept}/uploads", upload)
    error = (body or {}).get("error", {})
    check(status == 422 and error.get("code") == "quota_exceeded", f"1000 bytes more are refused: 422 quota_exceeded ({status})")
    check("`gomodel jobs rm`" in error.get("message", "") and "DELETE /api/jobs/{id}" in error.get("message", ""),
          f"the refusal names gomodel jobs rm and DELETE /api/jobs/{{id}}: {error.get('message')}")

    check(bob.api("DELETE", f"/api/jobs/{job_id}")[0] == 404, "bob's DELETE of alice's job: 404")
    asked = subprocess.run([GOMODEL, "jobs", "rm", job_id], env=alice.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    said = next((line for line in (asked.stdout + asked.stderr).splitlines() if "Add --yes" in line), "")
    check(asked.returncode != 0 and "without a terminal" in said and "Deleted" not in asked.stdout,
          f"gomodel jobs rm without --yes nor a terminal refuses ({asked.returncode}): {said.strip()}")
    check(alice.api("GET", f"/api/jobs/{job_id}")[0] == 200 and alice.api("GET", f"/api/jobs/{job_id}/record")[0] == 200
          and server.objects(alice.env) == objects, "the job, its record and its outputs are all still there")

    removed = alice.gomodel("jobs", "rm", job_id, "--yes")
    check(removed.returncode == 0 and f"Deleted job {job_id}" in removed.stdout, f"gomodel jobs rm ID --yes: {removed.stdout.strip()} {removed.stderr.strip()}")
    check(alice.api("GET", f"/api/jobs/{job_id}")[0] == 404 and alice.api("GET", f"/api/jobs/{job_id}/record")[0] == 404,
          "the job is gone: GET /api/jobs/{id} and its record 404")
    listed = [line.split()[0] for line in alice.must("jobs", "list").splitlines() if line.strip()]
    check(len(listed) == 2 and job_id.lower() not in listed, f"gomodel jobs list no longer lists it, only her two other jobs ({len(listed)} listed)")
    after = server.objects(alice.env)
    expected = {k: v for k, v in objects.items() if not k.startswith(prefix)}
    check(after == expected, f"the bucket holds nothing under {prefix} and every other object as it was "
          f"(left there {sorted(k for k in after if k.startswith(prefix))}, lost {sorted(set(expected) - set(after))[:4]})")
    usage = check_usage_line(alice, "alice after gomodel jobs rm")
    check(usage["outputBytes"] == before["outputBytes"] - job_bytes and usage["usedBytes"] == before["usedBytes"] - job_bytes,
          f"usage dropped by the job's {job_bytes} bytes of outputs ({before['usedBytes']} → {usage['usedBytes']})")
    status, _ = alice.api("POST", f"/api/datasets/{kept}/uploads", upload)
    check(status == 200, f"the upload refused before is accepted ({status})")
    check(alice.api("DELETE", f"/api/jobs/{job_id}")[0] == 404, "DELETE of the deleted job: 404")


def dataset_limit(work, bob):
    print("a zip refused by the dataset's own limit (bob, far from his quota)")
    room = bob.usage()
    check(QUOTA - room["usedBytes"] > 90 * 1024, f"(bob's quota leaves him more than the dataset limit of 90 KiB: {room['usedBytes']} bytes used)")
    target = bob.api("POST", "/api/datasets", {"name": "limit"})[1]["id"]
    final = import_zip(bob, target, unpacks_big_zip(os.path.join(work, "limit.zip"), ["a", "b", "c"], 15500))
    error = final.get("error") or {}
    message = error.get("message") or ""
    check(final["state"] == "failed" and error.get("code") == "too_large" and f"{90 * 1024} bytes the dataset has room for" in message
          and "GOMODEL_STORAGE_QUOTA" not in message, f"it ends failed, too_large, saying the dataset has room for 90 KiB: {message}")
    check(bob.api("DELETE", f"/api/datasets/{target}")[0] == 204 and bob.usage() == room, "(the dataset deleted; bob's usage as before)")


def main():
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env["XDG_CONFIG_HOME"] = os.path.join(work, "config")
        bad_settings(work, env)

        server_env = dict(env, GOMODEL_DATA_DIR=os.path.join(work, "data"), GOMODEL_STORAGE_QUOTA="100KiB", GOMODEL_RETENTION_DAYS=str(DAYS))
        server = Server(work, server_env)
        server.cli_env = dict(env, GOMODEL_DATA_DIR=server_env["GOMODEL_DATA_DIR"])
        workers = []
        try:
            server.start()
            alice = User(server, work, "alice@example.com")
            bob = User(server, work, "bob@example.com")
            carol = User(server, work, "carol@example.com")
            quota(server, work, carol)
            retention(server, work, alice, bob, carol, workers)
            delete_jobs(server, work, alice, bob, workers)
            dataset_limit(work, bob)
        except Exception:
            server.log.flush()
            print("--- server log", file=sys.stderr)
            print(open(server.log.name).read()[-5000:], file=sys.stderr)
            if os.path.exists(os.path.join(work, "worker.log")):
                print("--- worker log\n" + open(os.path.join(work, "worker.log")).read()[-2000:], file=sys.stderr)
            raise
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            server.stop()
    print(f"storage end to end: all passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
