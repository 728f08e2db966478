#!/usr/bin/env bash
# Archiver throughput benchmark: starts a throwaway redis-server and
# mariadbd on free loopback ports in a temp dir, applies the migrations,
# XADDs N entries shaped like the gateway's (redis-cli --pipe), then times
# `parley-archiver drain` from start to exit and reports rows/s and the
# archiver's peak RSS (/usr/bin/time -v). Repeats --runs times on an empty
# table and stream and prints the median.
#
#   tests/bench/archiver_bench.sh [-n N] [--runs R] [--batch-size B] [--writers W]
#                                 [--text-bytes T] [--flush 1|2] [--baseline]
#                                 [--build-dir DIR]
#
# --baseline also times the same rows as a bare loop of batch-size-row
# INSERT IGNORE transactions piped into the mariadb client (no Redis, no
# archiver): the server's own ceiling for this table and data shape.
# --flush sets innodb_flush_log_at_trx_commit (1 = MariaDB's default,
# fsync per commit; 2 = what the integration tests use). Everything runs on
# 127.0.0.1, is bounded in time and is stopped on exit.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$SRC}
N=500000
RUNS=3
BATCH=1000
TEXT=64
FLUSH=1
WRITERS=2
BASELINE=0
while [ $# -gt 0 ]; do
    case "$1" in
    -n) N=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    --text-bytes) TEXT=$2; shift 2 ;;
    --flush) FLUSH=$2; shift 2 ;;
    --writers) WRITERS=$2; shift 2 ;;
    --baseline) BASELINE=1; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "archiver_bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

. "$SRC/tests/bench/lib.sh"

ARCH=$BUILD/archiver/parley-archiver
bench_build archiver_bench.sh archiver/parley-archiver
need_cmd archiver_bench.sh redis-server redis-cli mariadbd mariadb-install-db mariadb /usr/bin/time python3

TMP=$(mktemp -d /tmp/parley-archbench.XXXXXX)
REDIS_PID=
MYSQL_PID=
cleanup() {
    stop_pids $REDIS_PID $MYSQL_PID
    rm -rf "$TMP"
}
trap cleanup EXIT

start_redis "$TMP"
start_mariadb "$TMP" --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit="$FLUSH"
RPORT=$REDIS_PORT
MPORT=$MYSQL_PORT
mariadb --no-defaults -S "$TMP/my.sock" -uroot -e 'CREATE DATABASE parley_bench CHARACTER SET utf8mb4'

export PARLEY_REDIS_URL="redis://127.0.0.1:$RPORT/0"
export PARLEY_MYSQL_URL="mysql://root@127.0.0.1:$MPORT/parley_bench"
export PARLEY_METRICS_LISTEN=""
export PARLEY_MIGRATIONS_DIR="$SRC/deploy/sql"
"$ARCH" migrate 2>"$TMP/migrate.log" || { cat "$TMP/migrate.log"; exit 1; }

# N XADDs as RESP, like the gateway's: 1000 rooms, 5000 senders, TEXT bytes of text.
gen() {
    python3 - "$N" "$TEXT" <<'EOF'
import sys
n, tl = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def cmd(*a):
    b = [b"*%d\r\n" % len(a)]
    for x in a:
        b.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(b)
pad = (b"lorem ipsum dolor sit amet, " * (tl // 28 + 1))[:tl]
buf = []
for i in range(n):
    room = b"room-%d" % (i % 1000)
    buf.append(cmd(b"XADD", b"parley:archive", b"*", b"room", room, b"seq", b"%d" % (i // 1000 + 1),
                   b"msg_id", b"01J%023d" % i, b"from", b"user-%d" % (i % 5000), b"text", pad,
                   b"ts", b"%d" % (1764000000000 + i)))
    if len(buf) == 20000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
EOF
}
gen >"$TMP/xadd.resp"

echo "archiver_bench: N=$N batch_size=$BATCH writers=$WRITERS text_bytes=$TEXT innodb_flush_log_at_trx_commit=$FLUSH runs=$RUNS"
echo "archiver: $ARCH ($(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
RATES=()
for run in $(seq 1 "$RUNS"); do
    mariadb --no-defaults -S "$TMP/my.sock" -uroot parley_bench -e 'TRUNCATE messages'
    redis-cli -p "$RPORT" DEL parley:archive >/dev/null
    t0=$(date +%s.%N)
    redis-cli -p "$RPORT" --pipe <"$TMP/xadd.resp" >"$TMP/pipe.log"
    t1=$(date +%s.%N)
    [ "$(redis-cli -p "$RPORT" XLEN parley:archive)" = "$N" ] || { cat "$TMP/pipe.log"; exit 1; }
    /usr/bin/time -v -o "$TMP/time.txt" timeout 600 "$ARCH" drain --batch_size "$BATCH" --writers "$WRITERS" \
        2>"$TMP/drain.log" || { tail "$TMP/drain.log"; exit 1; }
    rows=$(mariadb --no-defaults -S "$TMP/my.sock" -uroot -N parley_bench -e 'SELECT COUNT(*) FROM messages')
    [ "$rows" = "$N" ] || { echo "expected $N rows, found $rows" >&2; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$TMP/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/time.txt")
    cpu=$(awk -F': ' '/Percent of CPU/ {print $2}' "$TMP/time.txt")
    rate=$(awk -v n="$N" -v s="$wall" 'BEGIN {printf "%d", n / s}')
    xadd=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%d", n / (b - a)}')
    printf 'run %d: drain %.2f s = %d rows/s, archiver peak RSS %d KiB, CPU %s (XADD %d/s), stream left %s\n' \
        "$run" "$wall" "$rate" "$rss" "$cpu" "$xadd" "$(redis-cli -p "$RPORT" XLEN parley:archive)"
    RATES+=("$rate")
done
median=$(printf '%s\n' "${RATES[@]}" | median)
echo "median: $median rows/s"

if [ "$BASELINE" = 1 ]; then
    python3 - "$N" "$TEXT" "$BATCH" >"$TMP/bare.sql" <<'EOF'
import sys
n, tl, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pad = ("lorem ipsum dolor sit amet, " * (tl // 28 + 1))[:tl]
out = sys.stdout
out.write("SET time_zone = '+00:00';\n")
for start in range(0, n, batch):
    rows = ",".join(
        "('room-%d',%d,'01J%023d','user-%d','%s','2025-11-24 16:00:00.%03d')"
        % (i % 1000, i // 1000 + 1, i, i % 5000, pad, i % 1000)
        for i in range(start, min(n, start + batch)))
    out.write("START TRANSACTION;\nINSERT IGNORE INTO messages "
              "(room, seq, msg_id, sender, text, created_at) VALUES %s;\nCOMMIT;\n" % rows)
EOF
    mariadb --no-defaults -S "$TMP/my.sock" -uroot parley_bench -e 'TRUNCATE messages'
    t0=$(date +%s.%N)
    mariadb --no-defaults -S "$TMP/my.sock" -uroot parley_bench <"$TMP/bare.sql"
    t1=$(date +%s.%N)
    awk -v n="$N" -v a="$t0" -v b="$t1" \
        'BEGIN {printf "baseline (bare INSERT IGNORE loop, one connection): %.2f s = %d rows/s\n", b - a, n / (b - a)}'
fi
