#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c, listed in Makefile.am's
# fuzz block) in a build dir configured with --enable-fuzz (clang, ASan,
# UBSan) and runs each for a bounded time on its committed seeds. Prints
# one line per target; exits non-zero if any target fails to build,
# crashes, leaks, hangs or fails one of its checks.
#
# Usage: scripts/fuzz.sh [BUILD_DIR] [TARGET...]
#   BUILD_DIR  the build dir (default build-fuzz/ in the repo; a relative one
#              is taken from the repo root). Configured there with
#              --enable-fuzz when it is not yet; binaries, working corpora
#              and crash files stay in it.
#   TARGET     e.g. fuzz_ws; default: every tests/fuzz/fuzz_*.c
# Environment: FUZZ_SECONDS (default 20) per target; CC to name a clang
#              other than `clang`; FUZZ_BUILD_ONLY=1 to build without running;
#              JOBS for make -j (default: nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-build-fuzz}
shift || true
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for f in tests/fuzz/fuzz_*.c; do
    [ -e "$f" ] && TARGETS+=("$(basename "$f" .c)")
  done
fi
[ ${#TARGETS[@]} -gt 0 ] || { echo "fuzz.sh: no targets in tests/fuzz/" >&2; exit 1; }

# ---- configure BUILD with --enable-fuzz (once; make reruns automake and
# config.status itself when Makefile.am or configure.ac change)
if [ ! -x configure ]; then
  ./autogen.sh >"$BUILD/autogen.log" 2>&1 ||
    { echo "fuzz.sh: ./autogen.sh failed (see $BUILD/autogen.log)" >&2; exit 1; }
fi
if [ ! -f "$BUILD/Makefile" ] || ! "$BUILD/config.status" --config 2>/dev/null | grep -q -- --enable-fuzz; then
  if ! (cd "$BUILD" && "$ROOT/configure" --enable-fuzz) >"$BUILD/configure.log" 2>&1; then
    echo "fuzz.sh: configure --enable-fuzz failed in $BUILD (log $BUILD/configure.log):" >&2
    grep -E '^configure: error' "$BUILD/configure.log" | sed 's/^/    /' >&2 || true
    exit 1
  fi
fi

mkdir -p "$BUILD/fuzz"
failed=0
for t in "${TARGETS[@]}"; do
  bin=$BUILD/tests/fuzz/$t
  blog=$BUILD/fuzz/$t.build.log
  if ! make -C "$BUILD" -j"$JOBS" "tests/fuzz/$t" >"$blog" 2>&1; then
    if grep -q "No rule to make target 'tests/fuzz/$t'" "$blog"; then
      echo "$t: BUILD FAILED (not in Makefile.am: add it to the tests/fuzz block)"
    else
      echo "$t: BUILD FAILED (see $blog)"
      grep -m 3 -E 'error' "$blog" | sed 's/^/    /' || true
    fi
    failed=1
    continue
  fi
  [ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && { echo "$t: built $bin"; continue; }

  # libFuzzer adds new inputs to the first corpus directory only, so the
  # committed seeds (tests/fuzz/corpus/<name>/) are passed second, read-only.
  work=$BUILD/fuzz/corpus/$t
  art=$BUILD/fuzz/artifacts/$t
  mkdir -p "$work" "$art"
  seeds=()
  [ -d "tests/fuzz/corpus/${t#fuzz_}" ] && seeds=("$ROOT/tests/fuzz/corpus/${t#fuzz_}")
  log=$BUILD/fuzz/$t.log
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
    grep -m 3 -E 'ERROR|SUMMARY|check failed|runtime error|Assertion' "$log" | sed 's/^/    /' || true
    failed=1
  fi
done
exit $failed
