#!/usr/bin/env bash
# Benchmark: what `gomodel worker` adds around the real trainer (issue 12). One job of the tiny
# Qwen-Image-Edit-2509 on CPU (the real ai-toolkit, as in Tests/Clients/real_trainer_e2e.py), run
# RUNS times (default 3) by `gomodel worker --test-input` against `gomodel serve`'s built-in store:
# the job's wall time split into prepare (dataset sync, restore, config), trainer and final uploads
# (the result's `timings`), and the worker's peak RSS (VmHWM). The peer is the trainer alone in the
# same run: `python run.py` on the same synced dataset and config (ai-toolkit's caches removed, a
# fresh output folder), so worker wall − trainer-alone wall is all the worker costs.
# Needs the trainer venv: AI_TOOLKIT_DIR (or the pinned archive) and scripts/ai-toolkit-env.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; STEPS=${STEPS:-40}
build_release gomodel
gomodel=$PWD/$RELEASE/release/gomodel
AI_TOOLKIT_DIR=$(scripts/ai-toolkit-source); export AI_TOOLKIT_DIR
python=$(scripts/ai-toolkit-env)/python
export TINY_MODEL_DIR=$PWD/.build-aitk/tiny-qwen-image-edit-2509 HF_HUB_OFFLINE=1
"$python" Tests/Fixtures/tiny_qwen_image_edit.py "$TINY_MODEL_DIR" >&2

work=$(mktemp -d /tmp/bench-worker.XXXXXX)
trap 'kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export GOMODEL_DATA_DIR="$work/data" XDG_CONFIG_HOME="$work/config"
start_server_and_log_in "$gomodel" "$work"
base="http://127.0.0.1:$port"

"$python" - "$work/pairs" <<'PY'
import os, sys
from PIL import Image
root = sys.argv[1]
for sub in ("control", "target"):
    os.makedirs(os.path.join(root, sub))
for i, stem in enumerate(("cat", "dog", "owl")):
    Image.new("RGB", (128, 128), (40 * i, 90, 160)).save(os.path.join(root, "control", stem + ".png"))
    Image.new("RGB", (128, 128), (200, 30, 40 * i)).save(os.path.join(root, "target", stem + ".png"))
    open(os.path.join(root, "target", stem + ".txt"), "w").write(f"paint the {stem} red")
PY
"$gomodel" datasets push "$work/pairs" --name tiny >/dev/null
key=$("$gomodel" workers create-key --name bench)
dataset=$(curl -sf -H "Authorization: Bearer $token" "$base/api/datasets" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["datasets"][0]["id"])')
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"datasetId\": \"$dataset\", \"params\": {\"steps\": $STEPS, \"saveEvery\": 10, \"sampleEvery\": 20, \"resolutions\": [256]}}" "$base/api/jobs" >/dev/null
# The job as a worker receives it, taken from the built-in queue the way workers take it.
curl -sf -H "Authorization: $key" "$base/v2/local/job-take/bench" > "$work/taken.json"
store=$("$gomodel" storage credentials --json --port "$port")

"$python" - "$gomodel" "$work" "$RUNS" "$store" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time
gomodel, work, runs, store = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
taken = json.load(open(os.path.join(work, "taken.json")))
fixtures = os.path.join(os.getcwd(), "Tests", "Fixtures")
trainer = [sys.executable, os.path.join(fixtures, "real-trainer.py")]
env = dict(os.environ, R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
           R2_SECRET_ACCESS_KEY=store["secretAccessKey"], GOMODEL_TRAINER_COMMAND=" ".join(trainer))
env.pop("GOMODEL_DATA_DIR")

def peak_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

rows = []
for run in range(runs):
    root = os.path.join(work, f"run-{run}")
    job = dict(taken["input"], output=dict(taken["input"]["output"], prefix=f"outputs/bench-{run}/"))
    json.dump({"input": job}, open(root + ".json", "w"))
    started = time.time()
    worker = subprocess.Popen([gomodel, "worker", "--test-input", root + ".json"], env=dict(env, GOMODEL_WORKDIR=root),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while worker.poll() is None:
        try:
            peak = max(peak, peak_rss_kib(worker.pid))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.1)
    out, err = worker.communicate()
    worker_wall = time.time() - started
    if worker.returncode != 0:
        sys.exit(f"the worker failed: {err[-2000:]}")
    result = json.loads("\n".join(line for line in out.splitlines() if not line.startswith("progress: ")))
    timings = result["timings"]

    # The peer: the trainer alone, same dataset and config, no caches, a fresh output folder.
    for folder, subfolders, files in os.walk(os.path.join(root, "datasets")):
        for name in subfolders:
            if name.startswith("_"):
                shutil.rmtree(os.path.join(folder, name))
        if ".aitk_size.json" in files:
            os.remove(os.path.join(folder, ".aitk_size.json"))
    shutil.rmtree(os.path.join(root, "output"))
    config = os.path.join(root, "jobs", job["trainer_job_id"], "config.json")
    started = time.time()
    subprocess.run(trainer + [config], cwd=os.environ["AI_TOOLKIT_DIR"], check=True, capture_output=True)
    alone = time.time() - started
    rows.append((worker_wall, timings["prepare_seconds"], timings["trainer_seconds"], timings["upload_seconds"], alone, peak / 1024))
    print(f"run {run + 1}: worker {worker_wall:.2f} s (prepare {timings['prepare_seconds']:.3f} s, trainer {timings['trainer_seconds']:.3f} s, "
          f"uploads {timings['upload_seconds']:.3f} s), trainer alone {alone:.2f} s, worker peak RSS {peak / 1024:.1f} MiB")

med = [statistics.median(column) for column in zip(*rows)]
outside = med[1] + med[3]
print(f"median of {runs}: worker {med[0]:.2f} s; outside the trainer {outside:.3f} s = {100 * outside / med[0]:.2f} % "
      f"(prepare {med[1]:.3f} s, uploads {med[3]:.3f} s); trainer alone {med[4]:.2f} s; worker − alone {med[0] - med[4]:+.2f} s; "
      f"worker peak RSS {med[5]:.1f} MiB")
PY
