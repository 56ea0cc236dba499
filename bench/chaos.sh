#!/usr/bin/env bash
# Benchmark (long chaos run, issue 14): Tests/Clients/chaos_test.py with more jobs and a longer
# stretch of SIGKILLs — two `gomodel serve` processes (release build) on one throwaway PostgreSQL,
# a fake RunPod injecting 25 % 429/5xx and 5 % 35 s hangs on /run and /status, workers that claim
# each attempt as `gomodel worker` does — RUNS times (default 3) with seeds 1..RUNS. Prints, per
# run: kills, faults, runs at RunPod, trainings, duplicates ended untrained, and the checks.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}; export CHAOS_JOBS=${CHAOS_JOBS:-200} CHAOS_SECONDS=${CHAOS_SECONDS:-240}
build_release gomodel
for seed in $(seq 1 "$RUNS"); do
  CHAOS_SEED=$seed scripts/with-postgres "$TOOLS/python" Tests/Clients/chaos_test.py "$PWD/$RELEASE/release/gomodel" \
    | grep -E "^chaos|servers killed|runs at RunPod|ok: 0|passed in"
done
