#!/usr/bin/env bash
# Run a memory test sweep through tools/sweep.py and check its records (the incident's
# integration test, rebuilt on gpusweep's records):
#
#   ./test_memory_cleanup.sh [SWEEP_FILE]     (default: sweeps/sweep_memory_test.yaml)
#
# The sweep runs into a temporary log dir. Then every trial must have a memory.yaml, have
# ended normally (finished, stopped by Hyperband, or an OOM that was retried), have
# cleanup.clean true, and have left no process behind. Prints the per-trial peak memory
# table. Exit 0 pass, 1 fail, 2 bad usage. The sweep is stopped (Ctrl-C, a clean stop)
# after TIMEOUT_S seconds (default 600). The log dir is removed on success unless
# KEEP_LOG=1, and kept (its path printed) on failure. On a machine without a GPU the GPU
# columns are empty and everything else is checked.
set -uo pipefail
cd "$(dirname "$0")"

SWEEP_FILE="${1:-sweeps/sweep_memory_test.yaml}"
TIMEOUT_S="${TIMEOUT_S:-600}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ ! -f "$SWEEP_FILE" ]; then
    echo "error: $SWEEP_FILE: no such sweep file (usage: $0 [SWEEP_FILE])" >&2
    exit 2
fi

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gpusweep-memtest.XXXXXX")"
echo "sweep $SWEEP_FILE into $LOG_DIR (stopped after ${TIMEOUT_S} s)"
timeout --signal=INT --kill-after=60 "$TIMEOUT_S" \
    "$PYTHON" tools/sweep.py --sweep-config "$SWEEP_FILE" --log-dir "$LOG_DIR" --quiet
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "FAIL: tools/sweep.py exited $rc (124 or 130: it ran past ${TIMEOUT_S} s)"
    echo "records kept in $LOG_DIR"
    exit 1
fi

shopt -s nullglob
sweep_dirs=("$LOG_DIR"/*/)
if [ "${#sweep_dirs[@]}" -ne 1 ]; then
    echo "FAIL: expected one sweep directory in $LOG_DIR, found ${#sweep_dirs[@]}"
    exit 1
fi

PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m gpusweep.report.check "${sweep_dirs[0]}"
rc=$?
if [ "$rc" -ne 0 ] || [ "${KEEP_LOG:-0}" = "1" ]; then
    echo "records kept in ${sweep_dirs[0]}"
else
    rm -rf "$LOG_DIR"
fi
exit "$rc"
