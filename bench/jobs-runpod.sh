#!/usr/bin/env bash
# Benchmark 4: JOBS concurrent jobs through `gomodel serve` (release) against a fake RunPod
# (bench/fake_runpod.py: 5–15 s in the queue, RUN_SECONDS running, no webhooks), twice in one run:
# `poll`, where all tracking is by polling RunPod, and `channel`, where the fake's workers also
# report through each job's progress channel as `gomodel worker` does. Prints, per mode, RunPod
# calls per job-minute, the staleness of the status the API shows (from the fake's state change to
# the API showing it; the API is read every 0.25 s), and the latency from POST /api/jobs to /run
# arriving at the fake (median, p99).
source "$(dirname "$0")/common.sh"
JOBS=${JOBS:-200}
export FAKE_RUN_SECONDS=${RUN_SECONDS:-120,180}
build_release gomodel
gomodel=$PWD/$RELEASE/release/gomodel
fake_pid= server_pid=
trap 'kill $fake_pid $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf /tmp/bench-jobs.*' EXIT

for mode in poll channel; do
echo "== $mode"
work=$(mktemp -d /tmp/bench-jobs.XXXXXX)
unset port
fake_port=$(free_port)
python3 bench/fake_runpod.py "$fake_port" bench-key "$mode" &
fake_pid=$!
wait_for_port "$fake_port"
port=$(free_port)
export GOMODEL_DATA_DIR="$work/data" XDG_CONFIG_HOME="$work/config" GOMODEL_PUBLIC_URL="http://127.0.0.1:$port" \
  RUNPOD_ENDPOINT_ID=bench RUNPOD_API_KEY=bench-key RUNPOD_BASE_URL="http://127.0.0.1:$fake_port/v2"
unset DATABASE_URL R2_BUCKET
start_server_and_log_in "$gomodel" "$work"
python3 - "$work/pairs" <<'PY'
import os, struct, sys, zlib
def png(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + os.urandom(4096)
for sub in ("control", "target"):
    os.makedirs(os.path.join(sys.argv[1], sub), exist_ok=True)
for name in ("a", "b"):
    open(os.path.join(sys.argv[1], "control", name + ".png"), "wb").write(png(768, 768))
    open(os.path.join(sys.argv[1], "target", name + ".png"), "wb").write(png(768, 768))
    open(os.path.join(sys.argv[1], "target", name + ".txt"), "w").write("make it a watercolour")
PY
"$gomodel" datasets push "$work/pairs" --name bench >/dev/null 2>&1
dataset=$("$gomodel" datasets list | awk '{print $1; exit}')
cpu_before=$(cpu_of "$server_pid")
python3 - "$port" "$token" "$dataset" "$JOBS" "$fake_port" "$server_pid" "$cpu_before" <<'PY'
import json, os, statistics, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, token, dataset, count, fake_port, pid, cpu_before = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], float(sys.argv[7])
def call(method, path, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))
posted, durations = {}, []
def create(_):
    before = time.time()
    job = call("POST", "/api/jobs", {"datasetId": dataset, "params": {"steps": 100}})
    posted[job["id"].lower()] = before
    durations.append(time.time() - before)
shown = {}
start = time.time()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(create, range(count)))
while time.time() - start < 900:
    now = time.time()
    listing = call("GET", "/api/jobs")["jobs"]
    for job in listing:
        seen = shown.setdefault(job["id"].lower(), {})
        seen.setdefault(job["status"], now)
    if len(listing) >= count and all(job["status"] == "completed" for job in listing):
        break
    time.sleep(0.25)
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/bench/stats"))
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") - cpu_before
latency = sorted(stats["arrivals"][job] - posted[job] for job in posted)
def percentile(values, p): return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
staleness = {"running": [], "completed": []}
for job, changes in stats["changes"].items():
    for state in staleness:
        if state in shown.get(job, {}):
            staleness[state].append(shown[job][state] - changes[state])
job_minutes = sum((c["completed"] - c["submitted"]) / 60 for c in stats["changes"].values())
api_calls = sum(stats["calls"].values())
completed = sum(1 for job in shown.values() if "completed" in job)
print(f"{count} jobs, {completed} seen completed in {time.time() - start:.0f} s; RunPod calls {stats['calls']}")
print(f"  RunPod calls per job-minute: {api_calls / job_minutes:.1f} ({api_calls} calls over {job_minutes:.0f} job-minutes)")
for state, values in staleness.items():
    values.sort()
    print(f"  staleness of '{state}': median {statistics.median(values):.2f} s, worst {values[-1]:.2f} s")
print(f"  POST /api/jobs -> /run at the fake: median {statistics.median(latency) * 1000:.0f} ms, p99 {percentile(latency, 99) * 1000:.0f} ms")
print(f"  (POST /api/jobs itself, 16 at a time: median {statistics.median(durations) * 1000:.0f} ms)")
print(f"  server CPU over the run: {cpu:.1f} s")
PY
kill $fake_pid $server_pid 2>/dev/null; wait 2>/dev/null || true
fake_pid= server_pid=
done
