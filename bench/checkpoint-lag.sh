#!/usr/bin/env bash
# Benchmark: how soon a checkpoint is safe in the bucket after the trainer saves it (issue 14.3).
# `gomodel worker --test-input` runs one job with the stand-in trainer (STEPS steps at STEP_SECONDS
# each, a save every SAVE_EVERY steps, each checkpoint CHECKPOINT_MIB MiB) against `gomodel serve`'s
# built-in store, RUNS times; the result's `checkpoint_upload_lag_seconds` is the time from the
# trainer's "Saved checkpoint" line to the end of that checkpoint's upload. The peer is the worker's
# earlier design in the same numbers: uploads on a 5 s scan, so a checkpoint waited up to 5 s (2.5 s
# on average) before its upload even began.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; STEPS=${STEPS:-300}; SAVE_EVERY=${SAVE_EVERY:-30}; STEP_SECONDS=${STEP_SECONDS:-0.05}; CHECKPOINT_MIB=${CHECKPOINT_MIB:-64}
build_release gomodel
gomodel=$PWD/$RELEASE/release/gomodel

work=$(mktemp -d /tmp/bench-lag.XXXXXX)
trap 'kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export GOMODEL_DATA_DIR="$work/data" XDG_CONFIG_HOME="$work/config"
start_server_and_log_in "$gomodel" "$work"
base="http://127.0.0.1:$port"

python3 - "$work/pairs" <<'PY'
import os, struct, sys, zlib
def png(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
for sub in ("control", "target"):
    os.makedirs(os.path.join(sys.argv[1], sub))
for stem in ("cat", "dog"):
    for sub in ("control", "target"):
        open(os.path.join(sys.argv[1], sub, stem + ".png"), "wb").write(png(640, 640))
    open(os.path.join(sys.argv[1], "target", stem + ".txt"), "w").write(f"make the {stem} a watercolour")
PY
"$gomodel" datasets push "$work/pairs" --name pairs >/dev/null
key=$("$gomodel" workers create-key --name bench)
dataset=$(curl -sf -H "Authorization: Bearer $token" "$base/api/datasets" | python3 -c 'import json,sys; print(json.load(sys.stdin)["datasets"][0]["id"])')
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"datasetId\": \"$dataset\", \"params\": {\"steps\": $STEPS, \"saveEvery\": $SAVE_EVERY, \"sampleEvery\": 0, \"keepCheckpoints\": 50}}" "$base/api/jobs" >/dev/null
curl -sf -H "Authorization: $key" "$base/v2/local/job-take/bench" > "$work/taken.json"
store=$("$gomodel" storage credentials --json --port "$port")

python3 - "$gomodel" "$work" "$RUNS" "$store" "$STEP_SECONDS" "$CHECKPOINT_MIB" <<'PY'
import json, os, statistics, subprocess, sys
gomodel, work, runs, store, step_seconds, mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5], int(sys.argv[6])
taken = json.load(open(os.path.join(work, "taken.json")))
env = dict(os.environ, R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
           R2_SECRET_ACCESS_KEY=store["secretAccessKey"], GOMODEL_TRAINER_COMMAND="python3 " + os.path.join(os.getcwd(), "Tests", "Fixtures", "stand-in-trainer.py"),
           STAND_IN_STEP_SECONDS=step_seconds, STAND_IN_CHECKPOINT_BYTES=str(mib << 20))
env.pop("GOMODEL_DATA_DIR")
medians, maxima, counts = [], [], []
for run in range(runs):
    job = dict(taken["input"], trainer_job_id=f"lag-{run}", output={"bucket": store["bucket"], "prefix": f"outputs/lag-{run}/"})
    path = os.path.join(work, f"job-{run}.json")
    json.dump({"input": job}, open(path, "w"))
    result = subprocess.run([gomodel, "worker", "--test-input", path], env=dict(env, GOMODEL_WORKDIR=os.path.join(work, f"w{run}")),
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"run {run} failed: {result.stderr[-2000:]}")
    output = json.loads("\n".join(line for line in result.stdout.splitlines() if not line.startswith("progress: ")))
    lag = output["checkpoint_upload_lag_seconds"]
    medians.append(lag["median"]); maxima.append(lag["max"]); counts.append(lag["count"])
    print(f"run {run + 1}: {lag['count']} checkpoints of {mib} MiB, lag median {lag['median']:.3f} s, max {lag['max']:.3f} s")
print(f"checkpoint upload lag over {runs} runs ({mib} MiB each): median of medians {statistics.median(medians):.3f} s, worst {max(maxima):.3f} s")
PY
