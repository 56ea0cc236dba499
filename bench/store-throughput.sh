#!/usr/bin/env bash
# Benchmark 2: PUT then GET of a 1 GiB object through the built-in store of `gomodel serve`
# (release build) vs through `rclone serve s3`, with the same client (rclone copyto) in the same run.
# Prints MiB/s for each, the ratios (goal >= 1.0) and the peak RSS of gomodel serve (goal < 150 MiB).
source "$(dirname "$0")/common.sh"
SIZE_MIB=${SIZE_MIB:-1024}; RUNS=${RUNS:-3}
build_release gomodel
work=$(mktemp -d /tmp/bench-store.XXXXXX)
trap 'kill $gm $rc 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/object.bin"

gm_port=$(free_port)
env -u DATABASE_URL -u R2_BUCKET "$RELEASE/release/gomodel" serve --port "$gm_port" --data-dir "$work/gm" >"$work/gm.log" 2>&1 &
gm=$!
wait_for_port "$gm_port"
eval "$("$RELEASE/release/gomodel" storage credentials --port "$gm_port" --data-dir "$work/gm")"
export RCLONE_CONFIG_GM_TYPE=s3 RCLONE_CONFIG_GM_PROVIDER=Other RCLONE_CONFIG_GM_ENDPOINT="$AWS_ENDPOINT_URL" \
  RCLONE_CONFIG_GM_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_GM_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" RCLONE_CONFIG_GM_FORCE_PATH_STYLE=true

rc_port=$(free_port)
mkdir -p "$work/rc/bench"
rclone serve s3 --auth-key "BENCHKEY,BENCHSECRET" --addr "127.0.0.1:$rc_port" --log-level ERROR "$work/rc" &
rc=$!
wait_for_port "$rc_port"
export RCLONE_CONFIG_RC_TYPE=s3 RCLONE_CONFIG_RC_PROVIDER=Other RCLONE_CONFIG_RC_ENDPOINT="http://127.0.0.1:$rc_port" \
  RCLONE_CONFIG_RC_ACCESS_KEY_ID=BENCHKEY RCLONE_CONFIG_RC_SECRET_ACCESS_KEY=BENCHSECRET RCLONE_CONFIG_RC_FORCE_PATH_STYLE=true

# Same client settings for both servers: 4 concurrent 64 MiB parts up, one stream down.
flags=(-q --s3-upload-concurrency 4 --s3-chunk-size 64M --s3-upload-cutoff 200M --multi-thread-streams 0 --ignore-times)
declare -A put get
for target in GM:gomodel RC:bench; do put[$target]=""; get[$target]=""; done
for run in $(seq 1 "$RUNS"); do
  for target in GM:gomodel RC:bench; do
    rm -f "$work/back.bin"
    put[$target]+=" $(seconds rclone copyto "$work/object.bin" "${target}/object.bin" "${flags[@]}")"
    get[$target]+=" $(seconds rclone copyto "${target}/object.bin" "$work/back.bin" "${flags[@]}")"
    cmp -s "$work/object.bin" "$work/back.bin" || { echo "bytes differ through $target" >&2; exit 1; }
  done
done
rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$gm/status)
gm_put=$(median ${put[GM:gomodel]}); rc_put=$(median ${put[RC:bench]})
gm_get=$(median ${get[GM:gomodel]}); rc_get=$(median ${get[RC:bench]})
python3 - <<PY
size = $SIZE_MIB
print(f"{size} MiB object, {$RUNS} runs, client rclone copyto (medians)")
print(f"PUT: built-in store {size/$gm_put:.0f} MiB/s, rclone serve s3 {size/$rc_put:.0f} MiB/s, ratio {$rc_put/$gm_put:.2f} (goal >= 1.0)")
print(f"GET: built-in store {size/$gm_get:.0f} MiB/s, rclone serve s3 {size/$rc_get:.0f} MiB/s, ratio {$rc_get/$gm_get:.2f} (goal >= 1.0)")
print(f"gomodel serve peak RSS: {$rss_kib/1024:.0f} MiB (goal < 150 MiB)")
PY
