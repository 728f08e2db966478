#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer binary (ASan + UBSan) and
# runs each for a bounded time. Prints one line per target; exits non-zero if
# any target fails to build, crashes, leaks or hangs.
#
# Usage: scripts/fuzz.sh [BUILD_DIR] [TARGET...]
#   BUILD_DIR  where binaries, working corpora and crash files go
#              (default /tmp/parley-fuzz); the source tree is never written.
#   TARGET     e.g. fuzz_ws; default: every tests/fuzz/fuzz_*.c
# Environment: FUZZ_SECONDS (default 30) per target, CC (default clang),
#              FUZZ_BUILD_ONLY=1 to compile without running.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-/tmp/parley-fuzz}
shift || true
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
CC=${CC:-clang}
CFLAGS=(-std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -Icommon -Igateway -Igateway/net)

# The sources and libraries each target links besides its own file. A new
# target adds one entry here.
target_deps() {
  case "$1" in
  fuzz_ws)
    SRCS=(common/ws.c common/util.c common/log.c)
    LIBS=(-lcrypto) ;;
  fuzz_http)
    SRCS=(gateway/net/http.c common/ws.c common/util.c common/log.c)
    LIBS=(-lcrypto) ;;
  fuzz_envelope)
    SRCS=(common/envelope.c common/util.c common/log.c)
    LIBS=(-lmsgpackc) ;;
  *)
    echo "fuzz.sh: no source list for $1: add it to target_deps() in scripts/fuzz.sh" >&2
    return 1 ;;
  esac
}

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for f in tests/fuzz/fuzz_*.c; do
    [ -e "$f" ] && TARGETS+=("$(basename "$f" .c)")
  done
fi
[ ${#TARGETS[@]} -gt 0 ] || { echo "fuzz.sh: no targets in tests/fuzz/" >&2; exit 1; }

mkdir -p "$BUILD"
failed=0
for t in "${TARGETS[@]}"; do
  if ! target_deps "$t"; then
    failed=1
    continue
  fi
  bin=$BUILD/$t
  if ! "$CC" "${CFLAGS[@]}" "tests/fuzz/$t.c" "${SRCS[@]}" "${LIBS[@]}" -o "$bin" \
      2>"$BUILD/$t.build.log"; then
    echo "$t: BUILD FAILED (see $BUILD/$t.build.log)"
    failed=1
    continue
  fi
  [ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && { echo "$t: built $bin"; continue; }

  # libFuzzer adds new inputs to the first corpus directory only, so the
  # committed seeds (tests/fuzz/corpus/<name>/) are passed second, read-only.
  work=$BUILD/corpus/$t
  art=$BUILD/artifacts/$t
  mkdir -p "$work" "$art"
  seeds=()
  [ -d "tests/fuzz/corpus/${t#fuzz_}" ] && seeds=("$ROOT/tests/fuzz/corpus/${t#fuzz_}")
  log=$BUILD/$t.log
  rc=0
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/" "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  secs=${secs:-0}
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    rate=$(( runs / (secs > 0 ? secs : 1) ))
    echo "$t: ok, $runs runs in ${secs}s (${rate}/s), corpus $(ls "$work" | wc -l) files"
  else
    echo "$t: FAILED (exit $rc, ${runs:-?} runs); log $log, inputs in $art/"
    grep -m 3 -E 'ERROR|SUMMARY|check failed|runtime error' "$log" | sed 's/^/    /' || true
    failed=1
  fi
done
exit $failed
