#!/usr/bin/env bash
# Idle-connection benchmark: one gateway (2 workers, echo endpoint) on a
# free loopback port, `parley-load idle` opens N WebSocket connections and
# holds them; we sum VmRSS of the gateway's master and workers before the
# connections and while all N are open, and report gateway memory per idle
# connection (target: <= 2 KiB) and handshakes/s. With --auth the
# connections go to /ws and authenticate (a redis-server is started for the
# gateway), so the figure is per authenticated idle connection.
#
#   tests/bench/idle.sh [-n N] [--hold S] [--runs R] [--auth] [--build-dir DIR]
#
# Everything runs on 127.0.0.1, is bounded in time and is stopped on exit.
# The load generator shares the machine's CPUs with the gateway.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$SRC}
N=10000
HOLD=35
RUNS=1
WORKERS=2
AUTH=0
while [ $# -gt 0 ]; do
    case "$1" in
    -n) N=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --auth) AUTH=1; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "idle.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

. "$SRC/tests/bench/lib.sh"

GW=$BUILD/gateway/parley-gateway
LOAD=$BUILD/tests/bench/parley-load
bench_build idle.sh gateway/parley-gateway tests/bench/parley-load

TMP=$(mktemp -d /tmp/parley-idle.XXXXXX)
GW_PID=
LOAD_PID=
REDIS_PID=
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
    stop_pids $GW_PID
    GW_PID=
    LOAD_PID=
}
trap 'cleanup; stop_pids $REDIS_PID; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# Chat-side options for --auth: a Redis for the gateway and a token secret.
GW_EXTRA=()
LOAD_EXTRA=()
URL_PATH=/echo
if [ "$AUTH" = 1 ]; then
    need_cmd idle.sh redis-server
    start_redis "$TMP"
    GW_EXTRA=(--token-secret "idle-secret-$$" --redis-url "redis://127.0.0.1:$REDIS_PORT/0")
    LOAD_EXTRA=(--auth -s "idle-secret-$$")
    URL_PATH=/ws
fi

PER_CONN=()
HS=()
for run in $(seq "$RUNS"); do
    PORT=$(free_port)
    "$GW" --listen "127.0.0.1:$PORT" --workers "$WORKERS" --echo-path /echo --log-level warn "${GW_EXTRA[@]}" \
        >"$TMP/gateway.log" 2>&1 &
    GW_PID=$!
    wait_healthz "$PORT" || { echo "idle.sh: gateway did not come up" >&2; cat "$TMP/gateway.log" >&2; exit 1; }
    sleep 0.5
    BEFORE=$(rss_kib "$GW_PID")
    rm -f "$TMP/ready"
    timeout $((HOLD + 180)) "$LOAD" idle -u "ws://127.0.0.1:$PORT$URL_PATH" -n "$N" --hold "$HOLD" "${LOAD_EXTRA[@]}" \
        --src-ips 8 --ready-file "$TMP/ready" >"$TMP/load.out" 2>"$TMP/load.err" &
    LOAD_PID=$!
    for _ in $(seq 1800); do
        [ -f "$TMP/ready" ] && break
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep 2
    LOADED=$(rss_kib "$GW_PID")
    # Again after the gateway's first ping round (ping_interval 25 s).
    if [ "$HOLD" -gt 30 ]; then sleep 26; fi
    LOADED2=$(rss_kib "$GW_PID")
    [ "$LOADED2" -gt "$LOADED" ] && LOADED=$LOADED2
    wait "$LOAD_PID" || true
    LOAD_PID=
    sleep 1
    AFTER=$(rss_kib "$GW_PID")
    cat "$TMP/load.out"
    RESULT=$(grep '^RESULT' "$TMP/load.out" || true)
    READY=$(sed -n 's/.* ready=\([0-9]*\).*/\1/p' <<<"$RESULT")
    HSR=$(sed -n 's/.* handshakes_per_s=\([0-9]*\).*/\1/p' <<<"$RESULT")
    OPEN_END=$(sed -n 's/.* open_at_end=\([0-9]*\).*/\1/p' <<<"$RESULT")
    if [ -z "$READY" ] || [ "$READY" -eq 0 ]; then
        echo "idle.sh: no connection opened" >&2; cat "$TMP/load.err" >&2; exit 1
    fi
    PER=$(((LOADED - BEFORE) * 1024 / READY))
    ALIVE=yes
    kill -0 "$GW_PID" 2>/dev/null || ALIVE=no
    echo "run $run: gateway RSS ${BEFORE} KiB before, ${LOADED} KiB with $READY open" \
        "-> $PER bytes/connection; $HSR handshakes/s; open at end $OPEN_END/$N;" \
        "RSS after all closed ${AFTER} KiB; gateway alive: $ALIVE;" \
        "loadavg $(cut -d' ' -f1 /proc/loadavg)"
    if grep -qiE 'error|fatal' "$TMP/gateway.log"; then
        echo "gateway log (errors):"; grep -iE 'error|fatal' "$TMP/gateway.log" | head -5
    fi
    PER_CONN+=("$PER")
    HS+=("$HSR")
    cleanup
done

MED_PER=$(printf '%s\n' "${PER_CONN[@]}" | median)
MED_HS=$(printf '%s\n' "${HS[@]}" | median)
VERDICT=FAIL
[ "${MED_PER%.*}" -le 2048 ] && VERDICT=PASS
echo "idle: n=$N auth=$AUTH runs=$RUNS median rss_per_conn_bytes=$MED_PER (target <= 2048: $VERDICT)" \
    "median handshakes_per_s=$MED_HS"
echo "IDLE_RESULT n=$N auth=$AUTH runs=$RUNS rss_per_conn_bytes=$MED_PER handshakes_per_s=$MED_HS" \
    "target=$VERDICT all_per_conn=$(IFS=,; echo "${PER_CONN[*]}") all_hs=$(IFS=,; echo "${HS[*]}")"
