#!/usr/bin/env bash
# History latency benchmark: redis-server and mariadbd on free loopback
# ports in a temp dir, `parley-archiver migrate`, one gateway node
# (2 workers, --mysql-url, --history-recent K, no effective rate limit).
# One room is filled with M messages through the gateway (parley-load
# fanout --messages), `parley-archiver drain` copies all of them to MySQL,
# one more message makes the send script trim the recent zset to the newest
# K, then `parley-load history` runs twice with N readers, each in a closed
# loop (one request outstanding; --think adds a pause) for D seconds, limit 50:
#   redis  before drawn so that every page lies in the zset (seqs LOW..LAST)
#   mysql  before <= LOW, so Redis has nothing below it and every page comes
#          entirely from MySQL
# Prints per run: replies/s, p50/p90/p99/max latency, errors (non-ok,
# unanswered, pages with the wrong messages), gateway / Redis / MariaDB
# CPU-seconds; with --runs R the medians. Targets: p99 < 2 ms (Redis),
# < 10 ms (MySQL).
#
#   tests/bench/history.sh [--runs R] [--duration S] [--readers N]
#                          [--messages M] [--recent K] [--think MS]
#                          [--only redis|mysql] [--build-dir DIR]
#                          [--commit LABEL] [--perf PREFIX]
#
# --commit labels the output when SRC is not a git checkout (a `git
# archive` of the commit measured). --perf records the gateway workers with
# `perf record -g` during the first run of each source into PREFIX.<source>.
# Loopback only, bounded in time, everything started is stopped on exit.
# The readers share the machine's 2 CPUs with the gateway and both servers.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$SRC}
RUNS=1
DURATION=10
READERS=100
MESSAGES=20000
RECENT=1000
LIMIT=50
THINK=0
TEXT=64
ONLY=
COMMIT=
PERF=
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --readers) READERS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --recent) RECENT=$2; shift 2 ;;
    --think) THINK=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --commit) COMMIT=$2; shift 2 ;;
    --perf) PERF=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "history.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$MESSAGES" -lt $((RECENT + 2 * LIMIT + 1)) ]; then
    echo "history.sh: --messages must exceed --recent by more than two pages" >&2
    exit 2
fi

. "$SRC/tests/bench/lib.sh"

GW=$BUILD/gateway/parley-gateway
ARCH=$BUILD/archiver/parley-archiver
LOAD=$BUILD/tests/bench/parley-load
bench_build history.sh gateway/parley-gateway archiver/parley-archiver tests/bench/parley-load
need_cmd history.sh redis-server redis-cli mariadbd mariadb-install-db mariadb python3

TMP=$(mktemp -d /tmp/parley-history.XXXXXX)
SECRET=bench-secret-$$
ROOM=hist$$
REDIS_PID=
MYSQL_PID=
GW_PID=
LOAD_PID=
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
    stop_pids $GW_PID $REDIS_PID $MYSQL_PID
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

start_redis "$TMP"
start_mariadb "$TMP" --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2
mariadb --no-defaults -S "$MYSQL_SOCK" -uroot -e 'CREATE DATABASE parley_bench CHARACTER SET utf8mb4'
MYSQL_URL="mysql://root@127.0.0.1:$MYSQL_PORT/parley_bench"
export PARLEY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export PARLEY_MYSQL_URL=$MYSQL_URL
export PARLEY_METRICS_LISTEN=""
export PARLEY_MIGRATIONS_DIR="$SRC/deploy/sql"
"$ARCH" migrate 2>"$TMP/migrate.log" || { cat "$TMP/migrate.log" >&2; exit 1; }

PORT=$(free_port)
"$GW" --listen "127.0.0.1:$PORT" --workers 2 --node-id hist1 --token-secret "$SECRET" \
    --redis-url "$PARLEY_REDIS_URL" --mysql-url "$MYSQL_URL" --history-recent "$RECENT" \
    --rate-limit 1000000 --rate-burst 1000000 --log-level warn >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
wait_healthz "$PORT" || { echo "history.sh: gateway did not come up" >&2; cat "$TMP/gateway.log" >&2; exit 1; }
URL=ws://127.0.0.1:$PORT/ws

[ -n "$COMMIT" ] || COMMIT=$(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null || echo '?')
echo "history.sh: commit $COMMIT, redis :$REDIS_PORT, mariadb :$MYSQL_PORT, gateway :$PORT" \
    "(2 workers, history_recent $RECENT), room $ROOM"

# Fill: one publisher, 64 sends in flight, exactly MESSAGES sends.
timeout 600 "$LOAD" fanout -u "$URL" -s "$SECRET" -m 1 -p 1 -w 64 --messages "$MESSAGES" \
    -d 300 --room "$ROOM" --size "$TEXT" >"$TMP/fill.out" 2>&1 ||
    { echo "history.sh: fill failed" >&2; cat "$TMP/fill.out" >&2; exit 1; }
LAST=$(redis-cli -p "$REDIS_PORT" GET "parley:{$ROOM}:seq")
[ "$LAST" = "$MESSAGES" ] || { echo "history.sh: room seq is $LAST, want $MESSAGES" >&2; cat "$TMP/fill.out" >&2; exit 1; }
t0=$(date +%s.%N)
timeout 300 "$ARCH" drain 2>"$TMP/drain.log" || { tail "$TMP/drain.log" >&2; exit 1; }
t1=$(date +%s.%N)
ROWS=$(mariadb --no-defaults -S "$MYSQL_SOCK" -uroot -N parley_bench \
    -e "SELECT COUNT(*) FROM messages WHERE room='$ROOM'")
[ "$ROWS" = "$MESSAGES" ] || { echo "history.sh: $ROWS rows in MySQL, want $MESSAGES" >&2; exit 1; }
# With MySQL the send script trims the recent zset only below
# min(seq - K, archived marker), and only when it stores a message: the
# fill ran before the archiver, so the zset still holds everything. One
# more message, now that all are archived, trims it to the newest K.
"$LOAD" fanout -u "$URL" -s "$SECRET" -m 1 -p 1 -w 1 --messages 1 -d 10 --room "$ROOM" \
    --size "$TEXT" >"$TMP/fill1.out" 2>&1 || { cat "$TMP/fill1.out" >&2; exit 1; }
LAST=$(redis-cli -p "$REDIS_PORT" GET "parley:{$ROOM}:seq")
KEY="parley:{$ROOM}:recent"
LOW=$(redis-cli -p "$REDIS_PORT" ZRANGE "$KEY" 0 0 WITHSCORES | tail -n 1)
echo "filled: $MESSAGES messages in $(field send_window_s "$(grep '^RESULT' "$TMP/fill.out")") s;" \
    "archived $ROWS rows in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s;" \
    "one more sent: seq $LAST; recent zset holds $(redis-cli -p "$REDIS_PORT" ZCARD "$KEY") (seq $LOW..$LAST)"
[ "$LOW" -gt $((LIMIT + 1)) ] && [ $((LAST - LOW)) -ge "$LIMIT" ] ||
    { echo "history.sh: the recent zset was not trimmed as expected" >&2; exit 1; }

# before ranges: Redis holds seqs LOW .. LAST; a page of seqs < before
# lies entirely in it when before - LIMIT >= LOW, entirely below it when
# before <= LOW.
REDIS_BEFORE=$((LOW + LIMIT)):$((LAST + 1))
MYSQL_BEFORE=$((LIMIT + 1)):$LOW

TCK=$(getconf CLK_TCK)
declare -A ALL
run_one() {
    local src=$1 run=$2 before=$3 g0 g1 r0 r1 m0 m1 rc=0 res
    g0=$(cpu_ticks $(gw_pids "$GW_PID"))
    r0=$(cpu_ticks "$REDIS_PID")
    m0=$(cpu_ticks "$MYSQL_PID")
    local load0
    load0=$(cut -d' ' -f1 /proc/loadavg)
    timeout $((DURATION + 200)) "$LOAD" history -u "$URL" -s "$SECRET" -n "$READERS" \
        -d "$DURATION" --room "$ROOM" --before "$before" --limit "$LIMIT" --think "$THINK" \
        >"$TMP/$src.out" 2>"$TMP/$src.err" &
    LOAD_PID=$!
    if [ -n "$PERF" ] && [ "$run" = 1 ]; then
        sleep 1
        perf record -q -F 499 -g -o "$PERF.$src" \
            -p "$(gw_pids "$GW_PID" | tail -n +2 | paste -sd,)" -- sleep $((DURATION - 2)) \
            >/dev/null 2>&1 || echo "history.sh: perf record failed" >&2
    fi
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    g1=$(cpu_ticks $(gw_pids "$GW_PID"))
    r1=$(cpu_ticks "$REDIS_PID")
    m1=$(cpu_ticks "$MYSQL_PID")
    res=$(grep '^RESULT' "$TMP/$src.out" || true)
    if [ -z "$res" ]; then
        echo "history.sh: $src run $run produced no result (exit $rc)" >&2
        cat "$TMP/$src.out" "$TMP/$src.err" >&2
        return 1
    fi
    [ "$rc" -eq 0 ] || sed -n '/^requests=/,/^errors=/p' "$TMP/$src.out"
    local cpu
    cpu=$(awk -v g=$((g1 - g0)) -v r=$((r1 - r0)) -v m=$((m1 - m0)) -v t="$TCK" \
        'BEGIN {printf "gateway %.2f redis %.2f mariadb %.2f", g / t, r / t, m / t}')
    echo "$src run $run: before=$before replies/s=$(field req_per_s "$res")" \
        "p50=$(field lat_p50_us "$res")us p90=$(field lat_p90_us "$res")us" \
        "p99=$(field lat_p99_us "$res")us max=$(field lat_max_us "$res")us" \
        "requests=$(field requests "$res") errors=$(field errors "$res")" \
        "(rejected $(field rejected "$res"), unanswered $(field unanswered "$res")," \
        "bad pages $(field bad_pages "$res"), empty $(field empty_pages "$res"))" \
        "cpu_s: $cpu, readers $(field gen_cpu_s "$res"); loadavg $load0->$(cut -d' ' -f1 /proc/loadavg)"
    local k
    for k in req_per_s lat_p50_us lat_p90_us lat_p99_us lat_max_us errors; do
        ALL[$src.$k]+="$(field "$k" "$res") "
    done
    kill -0 "$GW_PID" 2>/dev/null || { echo "history.sh: the gateway died" >&2; return 1; }
}

SOURCES=()
[ -z "$ONLY" ] || [ "$ONLY" = redis ] && SOURCES+=(redis)
[ -z "$ONLY" ] || [ "$ONLY" = mysql ] && SOURCES+=(mysql)
for run in $(seq "$RUNS"); do
    for src in "${SOURCES[@]}"; do
        if [ "$src" = redis ]; then b=$REDIS_BEFORE; else b=$MYSQL_BEFORE; fi
        run_one "$src" "$run" "$b" || true
    done
done

for src in "${SOURCES[@]}"; do
    [ -n "${ALL[$src.lat_p99_us]:-}" ] || continue
    med() { tr ' ' '\n' <<<"${ALL[$src.$1]}" | sed '/^$/d' | median; }
    target=2000
    [ "$src" = mysql ] && target=10000
    p99=$(med lat_p99_us)
    verdict=FAIL
    awk -v p="$p99" -v t="$target" 'BEGIN {exit !(p < t)}' && verdict=PASS
    [ "$(med errors)" = 0 ] || verdict=INVALID_ERRORS
    echo "HISTORY_RESULT source=$src commit=$COMMIT runs=$RUNS readers=$READERS think_ms=$THINK" \
        "limit=$LIMIT replies_per_s=$(med req_per_s) lat_p50_us=$(med lat_p50_us)" \
        "lat_p90_us=$(med lat_p90_us) lat_p99_us=$p99 lat_max_us=$(med lat_max_us)" \
        "errors=$(med errors) target_p99_us=$target verdict=$verdict" \
        "(medians; all p99: ${ALL[$src.lat_p99_us]})"
done
if grep -qiE 'level=error|fatal|crash' "$TMP/gateway.log"; then
    echo "gateway log errors:"
    grep -iE 'level=error|fatal|crash' "$TMP/gateway.log" | head -5
fi
