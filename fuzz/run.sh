#!/bin/sh
# Runs each fuzz target (or those named) for SECONDS, one after the other.
# Usage: fuzz/run.sh SECONDS [TARGET...]
# New inputs the fuzzer finds go to fuzz/runs/<target>/ (not committed), the seeds in
# fuzz/corpus/<target>/ are read but never written; crashes go to fuzz/artifacts/<target>/.
# Each target's log is fuzz/runs/<target>.log; its last lines give executions and time.
set -eu
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
[ $# -gt 0 ] || set -- frames message connection shm_ring grpc_request
for t in "$@"; do
    mkdir -p "runs/$t"
    echo "== $t for ${secs}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "runs/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"runs/$t.log" 2>&1 || {
        echo "$t FAILED: see fuzz/runs/$t.log and fuzz/artifacts/$t/"
        tail -40 "runs/$t.log"
        exit 1
    }
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done )' "runs/$t.log" || true
done
