#!/usr/bin/env bash
# Benchmark 5 (issue 6): the worker's dataset sync (TrainerWorker.DatasetSync through
# `s3bench sync`, release build) of COUNT objects of 1 MiB from `rclone serve s3`, against
# `rclone copy` of the same prefix with as many transfers (8), same run: medians of RUNS runs
# and the time ratio (goal <= 1.0). Then the sync's peak RSS while it copies BIG_GIB GiB in
# 128 MiB objects (goal < 100 MiB), with rclone copy's for comparison.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; COUNT=${COUNT:-1000}; BIG_GIB=${BIG_GIB:-2}
build_release s3bench
work=$(mktemp -d /tmp/bench-sync.XXXXXX)
trap 'kill $server 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/root/bench/small" "$work/root/bench/big"
python3 - "$work/root/bench" "$COUNT" "$BIG_GIB" <<'PY'
import os, sys
root, count, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    kind = "control" if i % 2 else "target"
    os.makedirs(os.path.join(root, "small", kind), exist_ok=True)
    with open(os.path.join(root, "small", kind, f"{i:04d}.png"), "wb") as f:
        f.write(os.urandom(1 << 20))
chunk = os.urandom(1 << 20)
for i in range(big * 8):
    with open(os.path.join(root, "big", f"{i:02d}.bin"), "wb") as f:
        for _ in range(128):
            f.write(chunk)
PY
start_rclone_s3 "$work/root"
sync_to() { # prefix destination
  "$RELEASE/release/s3bench" sync --endpoint "http://127.0.0.1:$port" --bucket bench --access-key BENCHKEY \
    --secret-key BENCHSECRET --prefix "$1" --destination "$2"
}
# Peak resident memory (MiB) of a command, from GNU time.
peak_rss() { /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null; python3 -c "print(f'{int(open(\"$work/rss\").read().split()[-1]) / 1024:.1f}')"; }

ours=(); theirs=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$work/ours" "$work/rclone"
  ours+=("$(seconds sync_to small/ "$work/ours")")
  theirs+=("$(seconds rclone copy B:bench/small "$work/rclone" --transfers 8 --checkers 8 -q)")
  [ "$(find "$work/ours" -type f ! -name ".gomodel-sync.json" | wc -l)" = "$COUNT" ] && [ "$(find "$work/rclone" -type f | wc -l)" = "$COUNT" ] || { echo "incomplete sync" >&2; exit 1; }
  cmp -s "$work/ours/target/0000.png" "$work/root/bench/small/target/0000.png" || { echo "wrong bytes" >&2; exit 1; }
done
o=$(median "${ours[@]}"); t=$(median "${theirs[@]}")
echo "sync $COUNT x 1 MiB, 8 at a time, $RUNS runs: worker ${ours[*]} s (median $o), rclone copy ${theirs[*]} s (median $t)"
python3 -c "print(f'worker / rclone = {$o / $t:.2f} (goal <= 1.0)')"
again=$(seconds sync_to small/ "$work/ours")
echo "a second sync of the same prefix (everything present, skipped): $again s"

rm -rf "$work/ours" "$work/rclone"
mine=$(peak_rss "$RELEASE/release/s3bench" sync --endpoint "http://127.0.0.1:$port" --bucket bench --access-key BENCHKEY \
  --secret-key BENCHSECRET --prefix big/ --destination "$work/ours")
cmp -s "$work/ours/00.bin" "$work/root/bench/big/00.bin" || { echo "wrong bytes" >&2; exit 1; }
rm -rf "$work/ours"
theirs_rss=$(peak_rss rclone copy B:bench/big "$work/rclone" --transfers 8 --checkers 8 -q)
echo "sync of $BIG_GIB GiB in 128 MiB objects: worker peak RSS $mine MiB (goal < 100), rclone copy $theirs_rss MiB"
