#!/usr/bin/env bash
# Builds Parley and runs every test there is, on a fresh Debian 12 machine:
#   deps -> autogen -> build/ (--enable-werror) -> unit -> lint -> integration
#   -> build-asan/ (--enable-debug: ASan+UBSan) -> unit -> integration
#   -> fuzz (scripts/fuzz.sh: build-fuzz/, --enable-fuzz) -> distcheck
# Every stage runs even when an earlier one failed (except those needing a
# build that failed); the exit status is non-zero if any failed. Each
# stage's output is shown and kept in build/logs/<stage>.log; a recap with
# the CUnit and integration summaries closes the run.
#
# Usage: scripts/test.sh [--quick] [--no-deps] [--clean]
#   --quick    skip the ASan build, fuzzing and distcheck
#   --no-deps  do not run scripts/deps.sh
#   --clean    remove build/ and build-asan/ first
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0 DEPS=1 CLEAN=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    --no-deps) DEPS=0 ;;
    --clean) CLEAN=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3           # Debian's: has pytest and websockets
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
export FUZZ_SECONDS=${FUZZ_SECONDS:-20}

[ $CLEAN -eq 1 ] && rm -rf build build-asan
mkdir -p build/logs
LOGS=$ROOT/build/logs
rm -f "$LOGS"/*.log

T0=$(date +%s)
RESULTS=()      # "stage status seconds"
FAILED=0
STAGE_FAILS=0   # failed stages that report no test counts of their own

# stage NAME CMD...: runs CMD, output to the terminal and $LOGS/NAME.log.
stage() {
  local name=$1; shift
  local t=$(date +%s) rc
  echo
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t ))
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("$name ok ${dt}s")
  else
    RESULTS+=("$name FAILED(exit=$rc) ${dt}s")
    FAILED=1
    case $name in unit*|integration*) ;; *) STAGE_FAILS=$((STAGE_FAILS + 1)) ;; esac
  fi
  echo "=== $name: exit $rc (${dt}s)"
  return "$rc"
}

skip() {
  RESULTS+=("$1 NOT-RUN ($2)")
  FAILED=1
  STAGE_FAILS=$((STAGE_FAILS + 1))
  echo "=== $1: not run: $2"
}

needs_configure() {  # DIR FLAG: not configured, configure is newer, or configured without FLAG
  [ ! -f "$1/Makefile" ] || [ configure -nt "$1/config.status" ] ||
    ! "$1/config.status" --config | grep -q -- "$2"
}

configure_in() {  # DIR FLAGS...
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && "$ROOT/configure" "$@")
}

unit_in() {  # DIR
  # Direct, not via make check, so CUnit's Run Summary reaches the log.
  # dbcheck is the driver test_db_pool.py runs: build it with the runner.
  make -C "$1" -j"$JOBS" tests/unit/run-unit tests/dbcheck/dbcheck && (cd "$1" && ./tests/unit/run-unit)
}

e2e_deps() {  # playwright-core for the browser test, pinned by package-lock.json
  [ tests/e2e/node_modules/.package-lock.json -nt tests/e2e/package-lock.json ] ||
    npm ci --prefix tests/e2e --no-audit --no-fund
}

integration_in() {  # DIR (no __pycache__: it would end up in the dist tarball)
  PYTHONDONTWRITEBYTECODE=1 PARLEY_BUILD_DIR=$ROOT/$1 "$PY" -m pytest tests/integration
}

# ---- 1. toolchain and libraries
if [ $DEPS -eq 1 ]; then
  stage deps ./scripts/deps.sh
fi

# ---- 2. release-ish build with -Werror
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ $CLEAN -eq 1 ]; then
  stage autogen ./autogen.sh
fi
if [ -x configure ]; then
  if needs_configure build --enable-werror; then
    stage configure configure_in build --enable-werror
  fi
  if [ -f build/Makefile ] && stage build make -C build -j"$JOBS"; then
    stage unit unit_in build
    stage lint make -C build lint
    stage e2e-deps e2e_deps
    stage integration integration_in build
  else
    skip unit "build failed"; skip lint "build failed"; skip integration "build failed"
  fi
else
  skip build "no ./configure"
fi

# ---- 3. ASan + UBSan build, same tests
if [ $QUICK -eq 0 ] && [ -x configure ]; then
  if needs_configure build-asan --enable-debug; then
    stage configure-asan configure_in build-asan --enable-debug
  fi
  if [ -f build-asan/Makefile ] && stage build-asan make -C build-asan -j"$JOBS"; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    stage unit-asan unit_in build-asan
    stage integration-asan integration_in build-asan
    unset ASAN_OPTIONS UBSAN_OPTIONS
  else
    skip unit-asan "build failed"; skip integration-asan "build failed"
  fi
fi

# ---- 4. fuzzing (scripts/fuzz.sh belongs to the fuzz targets' owner)
if [ $QUICK -eq 0 ]; then
  if [ -x scripts/fuzz.sh ]; then
    stage fuzz ./scripts/fuzz.sh
  elif [ -f scripts/fuzz.sh ]; then
    stage fuzz bash scripts/fuzz.sh
  else
    RESULTS+=("fuzz absent (no scripts/fuzz.sh)")
  fi
fi

# ---- 5. the tarball builds and passes make check on its own
if [ $QUICK -eq 0 ] && [ -f build/Makefile ]; then
  stage distcheck make -C build -j"$JOBS" distcheck
fi

# ---- recap
echo
echo "================================ recap ================================"
for r in "${RESULTS[@]}"; do
  read -r n st dt <<<"$r"
  printf '  %-18s %-26s %s\n' "$n" "$st" "$dt"
done
passed=0 failed=0
for f in unit unit-asan; do
  [ -f "$LOGS/$f.log" ] || continue
  echo "--- $f: CUnit"
  if grep -q "Run Summary" "$LOGS/$f.log"; then
    grep -A4 "Run Summary" "$LOGS/$f.log" | sed 's/^/  /'
    read -r ran fl < <(awk '$1 == "tests" { print $3, $5 }' "$LOGS/$f.log" | tail -1)
    passed=$((passed + ${ran:-0} - ${fl:-0})); failed=$((failed + ${fl:-0}))
  else
    echo "  (no CUnit summary: the runner did not run or crashed)"; failed=$((failed + 1))
  fi
done
for f in integration integration-asan; do
  [ -f "$LOGS/$f.log" ] || continue
  line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$LOGS/$f.log" | tail -1)
  if [ -n "$line" ]; then
    echo "--- $f: $line"
    p=$(sed -E 's/^integration: ([0-9]+) passed.*/\1/' <<<"$line")
    q=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    passed=$((passed + p)); failed=$((failed + q))
  else
    echo "--- $f: no summary line (pytest did not get to the end)"; failed=$((failed + 1))
  fi
done
failed=$((failed + STAGE_FAILS))
elapsed=$(( $(date +%s) - T0 ))
if [ $FAILED -eq 0 ]; then
  echo "verdict: PASS (all stages ok, ${elapsed}s; logs in build/logs/)"
else
  echo "verdict: FAIL (see the stages above; logs in build/logs/; ${elapsed}s)"
fi
# One plain closing line: tests of every run, plus each failed stage that
# has no tests of its own (build, lint, fuzz, distcheck...) counted as one.
echo "total: $passed passed, $failed failed"
exit $FAILED
