#!/usr/bin/env bash
# Benchmark (issue 17 part 3): a zip of SAMPLES pairs (default 1000: 2000 small PNGs of SIZE bytes,
# default 32 KiB, plus 1000 captions, in one wrapping folder as macOS's "Compress" makes it) imported
# by (a) `gomodel datasets push pairs.zip` (one presigned PUT of the zip, then the server unpacks it
# into the dataset; the command returns once the import is done and the report printed) against
# (b) `unzip` + `gomodel datasets push FOLDER` of the same content (what a user does without the zip
# import: unpack locally, then hash, sign and PUT each file). Same server, same run, fresh dataset
# names each run. Prints each run, the medians, (a) / (b), the server's CPU seconds for each, and a
# row for docs/benchmarks.md.
# STORE=builtin (default: the built-in store of `gomodel serve`) or STORE=rclone (`rclone serve s3`
# as the R2/S3 store, as bench/dataset-push.sh). RUNS (default 3), CONCURRENCY (default 8).
# GOMODEL=path/to/gomodel uses that binary instead of building the release one (to try the script
# with a debug build; its figures are not the release's).
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; SAMPLES=${SAMPLES:-1000}; SIZE=${SIZE:-32768}; CONCURRENCY=${CONCURRENCY:-8}; STORE=${STORE:-builtin}
if [ -n "${GOMODEL:-}" ]; then
  gomodel=$(realpath "$GOMODEL")
else
  build_release gomodel
  gomodel=$PWD/$RELEASE/release/gomodel
fi
command -v unzip >/dev/null && command -v zip >/dev/null || { echo "zip and unzip are needed (apt-get install zip unzip)" >&2; exit 1; }
work=$(mktemp -d /tmp/bench-zip.XXXXXX)
rclone_pid= server_pid=
trap 'kill $rclone_pid $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

python3 - "$work/pairs" "$SAMPLES" "$SIZE" <<'PY'
import os, struct, sys, zlib
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def png(w, h, size):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return head + os.urandom(size - len(head))
for sub in ("control", "target"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
for i in range(count):
    open(os.path.join(root, "control", f"{i:04d}.png"), "wb").write(png(512, 512, size))
    open(os.path.join(root, "target", f"{i:04d}.png"), "wb").write(png(512, 512, size))
    open(os.path.join(root, "target", f"{i:04d}.txt"), "w").write(f"turn sample {i} into a watercolour painting")
PY
# Info-ZIP stores what does not compress (the PNGs) and deflates the captions, as users' zips are.
(cd "$work" && zip -qr pairs.zip pairs)
zip_bytes=$(stat -c %s "$work/pairs.zip")
files=$((SAMPLES * 3))

export GOMODEL_DATA_DIR="$work/data" XDG_CONFIG_HOME="$work/config"
unset DATABASE_URL RUNPOD_ENDPOINT_ID RUNPOD_API_KEY R2_BUCKET R2_ENDPOINT R2_ACCESS_KEY_ID R2_SECRET_ACCESS_KEY
if [ "$STORE" = rclone ]; then
  key=BENCHKEY0000000000001 secret=BENCHSECRET
  rclone_port=$(free_port)
  mkdir -p "$work/bucket/trainer"
  rclone serve s3 --auth-key "$key,$secret" --addr "127.0.0.1:$rclone_port" --log-level ERROR "$work/bucket" &
  rclone_pid=$!
  wait_for_port "$rclone_port"
  export R2_BUCKET=trainer R2_ENDPOINT="http://127.0.0.1:$rclone_port" R2_ACCESS_KEY_ID=$key R2_SECRET_ACCESS_KEY=$secret
elif [ "$STORE" != builtin ]; then
  echo "STORE must be builtin or rclone, not '$STORE'" >&2; exit 1
fi
start_server_and_log_in "$gomodel" "$work"

# The dataset NAME holds all $files files and is ready (checked after the timed runs).
check_dataset() { # name
  "$gomodel" datasets show "$1" >"$work/show" || { cat "$work/show" >&2; exit 1; }
  grep -q "^$SAMPLES samples, $files files" "$work/show" && grep -q "Ready to train" "$work/show" \
    || { echo "dataset '$1' is not complete:" >&2; cat "$work/show" >&2; exit 1; }
}

zipped=(); unzipped=(); unzip_only=(); cpu_lines=()
for run in $(seq 1 "$RUNS"); do
  s0=$(cpu_of "$server_pid")
  zipped+=("$(seconds "$gomodel" datasets push "$work/pairs.zip" --name "zip $run")")
  s1=$(cpu_of "$server_pid")
  start=$(date +%s.%N)
  unzip -q "$work/pairs.zip" -d "$work/unzipped-$run"
  middle=$(date +%s.%N)
  "$gomodel" datasets push "$work/unzipped-$run/pairs" --name "folder $run" --concurrency "$CONCURRENCY" >/dev/null
  end=$(date +%s.%N)
  s2=$(cpu_of "$server_pid")
  unzipped+=("$(python3 -c "print(f'{$end - $start:.3f}')")")
  unzip_only+=("$(python3 -c "print(f'{$middle - $start:.3f}')")")
  cpu_lines+=("$(python3 -c "print(f'  run $run server CPU s: zip import {$s1 - $s0:.1f}, folder push {$s2 - $s1:.1f}')")")
  rm -rf "$work/unzipped-$run"
done
for run in $(seq 1 "$RUNS"); do check_dataset "zip $run"; check_dataset "folder $run"; done

a=$(median "${zipped[@]}"); b=$(median "${unzipped[@]}"); u=$(median "${unzip_only[@]}")
echo "zip import of $SAMPLES samples ($files files, $((SAMPLES * 2)) PNGs of $SIZE bytes; zip $zip_bytes bytes), $STORE store, $RUNS runs:"
echo "  gomodel datasets push pairs.zip: ${zipped[*]} s (median $a)"
echo "  unzip + gomodel datasets push FOLDER (concurrency $CONCURRENCY): ${unzipped[*]} s (median $b; unzip alone median $u)"
python3 -c "print(f'  zip import / (unzip + folder push) = {$a / $b:.2f}')"
printf '%s\n' "${cpu_lines[@]}"
echo
echo "Row for docs/benchmarks.md:"
echo "| date | content | zip import: push pairs.zip (median of $RUNS) | unzip + folder push (median of $RUNS) | zip / unzip + push |"
echo "| --- | --- | --- | --- | --- |"
python3 -c "
import datetime
print(f'| {datetime.date.today()} | $SAMPLES samples, $((SAMPLES * 2)) PNGs of $((SIZE / 1024)) KiB + captions ({$zip_bytes / 1048576:.0f} MiB zip), $STORE store | {$a:.2f} s | {$b:.2f} s (unzip {$u:.2f} s) | **{$a / $b:.2f}** |')"
