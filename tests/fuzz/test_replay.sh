#!/bin/sh
# test_replay.sh — every fuzz target, built as a plain program
# (tests/fuzz/replay.c), runs on its seeds (tests/fuzz/seeds/TARGET) and
# fixed variations of them without a fault: the targets keep building with
# the code they test, and their corpus runs under the sanitizers with the
# rest of the suite. Usage: test_replay.sh [BUILDDIR]
set -eu
BUILDDIR=${1:-${CAPSTAN_BUILDDIR:-.}}
SEEDS="$(cd "$(dirname "$0")" && pwd)/seeds"
status=0
for dir in "$SEEDS"/*/; do
	t=$(basename "$dir")
	bin="$BUILDDIR/tests/fuzz/replay_$t"
	if [ ! -x "$bin" ]; then
		echo "FAIL: $t: $bin was not built"
		status=1
		continue
	fi
	if "$bin" "$dir"seed-*; then
		echo "ok: $t"
	else
		echo "FAIL: $t"
		status=1
	fi
done
exit $status
