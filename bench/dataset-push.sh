#!/usr/bin/env bash
# Benchmark 3: `gomodel datasets push` of 500 samples (1000 images of 1 MiB plus 500 captions) to a
# server whose R2/S3 store is `rclone serve s3`, vs `rclone copy` of the same folder to the same
# rclone server, same concurrency (8), same run. Our push includes hashing every file, the API
# calls (sign, complete, validation) and the server's HEAD and header checks of each object.
# Then the server's CPU time per signed URL: SIGNS requests of 500 files each, measured from
# /proc/<pid>/stat (request parsing, database rows and signing together).
# Prints the medians of RUNS runs (default 3) and ours / rclone (goal <= 1.3).
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; SAMPLES=${SAMPLES:-500}; CONCURRENCY=${CONCURRENCY:-8}; SIGNS=${SIGNS:-20}
build_release gomodel
gomodel=$PWD/$RELEASE/release/gomodel
work=$(mktemp -d /tmp/bench-push.XXXXXX)
trap 'kill $rclone_pid $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

python3 - "$work/pairs" "$SAMPLES" <<'PY'
import os, struct, sys, zlib
root, count = sys.argv[1], int(sys.argv[2])
def png(w, h, size):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return head + os.urandom(size - len(head))
for sub in ("control", "target"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
for i in range(count):
    open(os.path.join(root, "control", f"{i:04d}.png"), "wb").write(png(1024, 1024, 1 << 20))
    open(os.path.join(root, "target", f"{i:04d}.png"), "wb").write(png(1024, 1024, 1 << 20))
    open(os.path.join(root, "target", f"{i:04d}.txt"), "w").write(f"turn sample {i} into a watercolour painting")
PY

key=BENCHKEY0000000000001 secret=BENCHSECRET
rclone_port=$(free_port)
mkdir -p "$work/bucket/trainer"
rclone serve s3 --auth-key "$key,$secret" --addr "127.0.0.1:$rclone_port" --log-level ERROR "$work/bucket" &
rclone_pid=$!
wait_for_port "$rclone_port"

port=$(free_port)
export GOMODEL_DATA_DIR="$work/data" XDG_CONFIG_HOME="$work/config" R2_BUCKET=trainer R2_ENDPOINT="http://127.0.0.1:$rclone_port" \
  R2_ACCESS_KEY_ID=$key R2_SECRET_ACCESS_KEY=$secret
unset DATABASE_URL RUNPOD_ENDPOINT_ID RUNPOD_API_KEY
start_server_and_log_in "$gomodel" "$work"
export RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT="http://127.0.0.1:$rclone_port" \
  RCLONE_CONFIG_B_ACCESS_KEY_ID=$key RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$secret RCLONE_CONFIG_B_FORCE_PATH_STYLE=true

files=$((SAMPLES * 3))
ours=(); theirs=(); cpu_lines=()
for run in $(seq 1 "$RUNS"); do
  # Each run writes to a fresh prefix; nothing is deleted meanwhile (rclone serve s3 stumbles over
  # directories deleted while others are written).
  s0=$(cpu_of "$server_pid"); r0=$(cpu_of "$rclone_pid")
  ours+=("$(seconds /usr/bin/time -f "%U %S" -o "$work/cli-cpu" "$gomodel" datasets push "$work/pairs" --name "run $run" --concurrency "$CONCURRENCY")")
  s1=$(cpu_of "$server_pid"); r1=$(cpu_of "$rclone_pid")
  theirs+=("$(seconds /usr/bin/time -f "%U %S" -o "$work/copy-cpu" rclone copy "$work/pairs" "B:trainer/copy-$run" --transfers "$CONCURRENCY" --checkers "$CONCURRENCY" -q)")
  r2=$(cpu_of "$rclone_pid")
  cpu_lines+=("$(python3 -c "import sys; c=[float(x) for x in open('$work/cli-cpu').read().split()]; d=[float(x) for x in open('$work/copy-cpu').read().split()]
print(f'  run $run CPU s: push: cli {sum(c):.1f}, server {$s1-$s0:.1f}, rclone serve {$r1-$r0:.1f} | copy: rclone copy {sum(d):.1f}, rclone serve {$r2-$r1:.1f}')")")
done
for run in $(seq 1 "$RUNS"); do
  dataset_files=$(find "$work/bucket/trainer/datasets" -path "*/$(printf '%s' "$("$gomodel" datasets show "run $run" | head -1 | sed 's/.*(\(.*\))/\1/')")/*" -type f | wc -l)
  copied=$(find "$work/bucket/trainer/copy-$run" -type f | wc -l)
  [ "$dataset_files" = "$files" ] && [ "$copied" = "$files" ] || { echo "run $run stored $dataset_files (push) and $copied (copy) of $files files" >&2; exit 1; }
done
o=$(median "${ours[@]}"); t=$(median "${theirs[@]}")
echo "push $SAMPLES samples ($files files, $((SAMPLES * 2)) MiB), concurrency $CONCURRENCY, $RUNS runs:"
echo "  gomodel datasets push ${ours[*]} s (median $o), rclone copy ${theirs[*]} s (median $t)"
python3 -c "print(f'  ours / rclone = {$o / $t:.2f} (goal <= 1.3)')"
printf '%s\n' "${cpu_lines[@]}"

# Server CPU per signed URL.
python3 - "$port" "$token" "$SIGNS" "$server_pid" <<'PY'
import json, os, sys, time, urllib.request
port, token, rounds, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def call(method, path, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
dataset = call("POST", "/api/datasets", {"name": "cpu"})["id"]
batch = {"files": [{"path": f"target/{i:04d}.png", "size": 1 << 20, "contentType": "image/png", "sha256": f"{i:064x}"} for i in range(500)]}
call("POST", f"/api/datasets/{dataset}/uploads", batch)  # warm up
before, start = cpu(), time.time()
for _ in range(rounds):
    assert len(call("POST", f"/api/datasets/{dataset}/uploads", batch)["uploads"]) == 500
used, wall = cpu() - before, time.time() - start
print(f"signing: {rounds} requests x 500 files: server CPU {used:.2f} s = {used / rounds / 500 * 1e6:.0f} µs per signed URL "
      f"(wall {wall / rounds * 1000:.0f} ms per 500-file request)")
PY
