#!/usr/bin/env bash
# Benchmark 1: download 500 objects of 1 MiB from `rclone serve s3` to disk,
# our S3 client (s3bench download, release build) vs `rclone copy`, same concurrency, same run.
# Prints the medians of RUNS runs (default 3) and our time / rclone's time (goal ≤ 1.0).
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; COUNT=${COUNT:-500}; CONCURRENCY=${CONCURRENCY:-16}
build_release s3bench
work=$(mktemp -d /tmp/bench-download.XXXXXX)
trap 'kill $server 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/root/bench/data"
python3 - "$work/root/bench/data" "$COUNT" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], f"{i:04d}.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
start_rclone_s3 "$work/root"

ours=(); theirs=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$work/ours" "$work/rclone"
  ours+=("$(seconds "$RELEASE/release/s3bench" download --endpoint "http://127.0.0.1:$port" --bucket bench --access-key BENCHKEY \
    --secret-key BENCHSECRET --prefix data/ --destination "$work/ours" --concurrency "$CONCURRENCY")")
  theirs+=("$(seconds rclone copy B:bench/data "$work/rclone" --transfers "$CONCURRENCY" --checkers "$CONCURRENCY" -q)")
  [ "$(ls "$work/ours" | wc -l)" = "$COUNT" ] && [ "$(ls "$work/rclone" | wc -l)" = "$COUNT" ] || { echo "incomplete download" >&2; exit 1; }
  cmp -s "$work/ours/0000.bin" "$work/root/bench/data/0000.bin" || { echo "wrong bytes" >&2; exit 1; }
done
o=$(median "${ours[@]}"); t=$(median "${theirs[@]}")
echo "download $COUNT x 1 MiB, concurrency $CONCURRENCY, $RUNS runs: ours ${ours[*]} s (median $o), rclone copy ${theirs[*]} s (median $t)"
python3 -c "print(f'ours / rclone = {$o / $t:.2f} (goal <= 1.0)')"
