#!/usr/bin/env bash
# Chat benchmark: redis-server and two gateway nodes (2 workers each) on
# free loopback ports, then parley-load in two scenarios:
#   fanout  1 room x 1,000 members, 10 publishers, window 64, 10 s
#   rooms   500 rooms x 10 members, 5,000 messages/s in total, 10 s
# Members are spread round-robin over the two nodes, so every message
# crosses Redis pub/sub. Reports deliveries/s, loss, latency p50/p99,
# gateway CPU-seconds per million deliveries (utime+stime of both masters,
# their workers and reaped children, before/after) and gateway RSS per
# joined idle connection (measured between setup and the first send).
#
#   tests/bench/chat.sh [--runs R] [--duration S] [--only fanout|rooms]
#                       [--build-dir DIR]
#
# Loopback only, bounded in time, everything started is stopped on exit.
# The load generator shares the machine's CPUs with the gateways and Redis.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$SRC}
RUNS=1
DURATION=10
ONLY=
MEMBERS=1000
PUBLISHERS=10
WINDOW=64
ROOMS=500
PER_ROOM=10
RATE=5000
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    --publishers) PUBLISHERS=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --rooms) ROOMS=$2; shift 2 ;;
    --per-room) PER_ROOM=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "chat.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

. "$SRC/tests/bench/lib.sh"

GW=$BUILD/gateway/parley-gateway
LOAD=$BUILD/tests/bench/parley-load
bench_build chat.sh gateway/parley-gateway tests/bench/parley-load
need_cmd chat.sh redis-server python3

TMP=$(mktemp -d /tmp/parley-chat.XXXXXX)
SECRET=bench-secret-$$
REDIS_PID=
GW_PIDS=()
LOAD_PID=
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
    stop_pids "${GW_PIDS[@]}" $REDIS_PID
    GW_PIDS=()
    REDIS_PID=
    LOAD_PID=
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

start_redis "$TMP"

# Fresh gateway nodes for every scenario run, so memory retained by one
# run's allocator does not hide the next run's growth.
start_gateways() {
    local node port
    URLS=
    GW_PIDS=()
    for node in 1 2; do
        port=$(free_port)
        "$GW" --listen "127.0.0.1:$port" --workers 2 --node-id "bench$node" \
            --token-secret "$SECRET" --redis-url "redis://127.0.0.1:$REDIS_PORT/0" \
            --rate-limit 1000000 --rate-burst 1000000 --send-buffer-limit 64m \
            --log-level warn >>"$TMP/gateway$node.log" 2>&1 &
        GW_PIDS+=($!)
        wait_healthz "$port" || { echo "chat.sh: gateway $node did not come up" >&2; cat "$TMP/gateway$node.log" >&2; exit 1; }
        URLS=${URLS:+$URLS,}ws://127.0.0.1:$port/ws
    done
    sleep 0.5
}

stop_gateways() {
    stop_pids "${GW_PIDS[@]}"
    GW_PIDS=()
}

TCK=$(getconf CLK_TCK)
echo "chat.sh: redis :$REDIS_PORT, 2 gateway nodes x 2 workers (fresh per scenario run)," \
    "generator on the same 2 CPUs"

declare -A ALL
run_scenario() {
    local name=$1 run=$2
    shift 2
    local before_rss ready_rss cpu0 cpu1 rcpu0 rcpu1
    start_gateways
    rm -f "$TMP/ready"
    before_rss=$(rss_kib "${GW_PIDS[@]}")
    timeout $((DURATION + 200)) "$LOAD" "$name" -u "$URLS" -s "$SECRET" -d "$DURATION" \
        --src-ips 8 --start-delay 3 --drain 20 --ready-file "$TMP/ready" --room-prefix "b$$-$name-$run" \
        "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LOAD_PID=$!
    for _ in $(seq 1800); do
        [ -f "$TMP/ready" ] && break
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    ready_rss=$(rss_kib "${GW_PIDS[@]}")
    sleep 1.5 # the generator starts sending 3 s after setup
    cpu0=$(cpu_ticks $(gw_pids "${GW_PIDS[@]}"))
    local load0
    load0=$(cut -d' ' -f1 /proc/loadavg)
    rcpu0=$(cpu_ticks "$REDIS_PID")
    local rc=0
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    cpu1=$(cpu_ticks $(gw_pids "${GW_PIDS[@]}"))
    rcpu1=$(cpu_ticks "$REDIS_PID")
    cat "$TMP/$name.out"
    if [ "$rc" -ne 0 ]; then
        # Keep the evidence: the temp dir goes away on exit.
        local keep=/tmp/parley-chat-keep.$$/$name-$run
        mkdir -p "$keep"
        cp "$TMP"/gateway*.log "$TMP/redis.log" "$TMP/$name.out" "$TMP/$name.err" "$keep/" 2>/dev/null || true
        echo "chat.sh: $name run $run exited $rc; logs kept in $keep"
    fi
    [ -s "$TMP/$name.err" ] && head -5 "$TMP/$name.err"
    local res
    res=$(grep '^RESULT' "$TMP/$name.out" || true)
    if [ -z "$res" ]; then
        echo "chat.sh: $name run $run produced no result (exit $rc)" >&2
        stop_gateways
        return 1
    fi
    local ready deliv rate loss p50 p99 cpu_per_m rss_per rcpu_per_m
    ready=$(field ready "$res")
    deliv=$(field deliveries "$res")
    rate=$(field deliveries_per_s "$res")
    loss=$(field loss "$res")
    p50=$(field lat_p50_us "$res")
    p99=$(field lat_p99_us "$res")
    local gen_cpu
    gen_cpu=$(field gen_cpu_s "$res")
    cpu_per_m=$(awk -v c=$((cpu1 - cpu0)) -v t="$TCK" -v d="$deliv" \
        'BEGIN {printf "%.2f", (d > 0 ? c / t / d * 1e6 : 0)}')
    rcpu_per_m=$(awk -v c=$((rcpu1 - rcpu0)) -v t="$TCK" -v d="$deliv" \
        'BEGIN {printf "%.2f", (d > 0 ? c / t / d * 1e6 : 0)}')
    rss_per=$(((ready_rss - before_rss) * 1024 / (ready > 0 ? ready : 1)))
    local alive=yes p
    for p in "${GW_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || alive=no; done
    echo "$name run $run: deliveries/s=$rate loss=$loss p50=${p50}us p99=${p99}us" \
        "gateway_cpu_s_per_M_deliveries=$cpu_per_m (redis $rcpu_per_m)" \
        "gateway_rss_per_joined_conn=${rss_per}B (${before_rss}->${ready_rss} KiB)" \
        "gateway_cpu_s=$(awk -v c=$((cpu1 - cpu0)) -v t="$TCK" 'BEGIN {printf "%.2f", c / t}')" \
        "generator_cpu_s=$gen_cpu gateways_alive=$alive" \
        "loadavg=$load0->$(cut -d' ' -f1 /proc/loadavg)"
    ALL[$name.rate]+="$rate "
    ALL[$name.loss]+="$loss "
    ALL[$name.p50]+="$p50 "
    ALL[$name.p99]+="$p99 "
    ALL[$name.cpu]+="$cpu_per_m "
    ALL[$name.rss]+="$rss_per "
    stop_gateways
}

for run in $(seq "$RUNS"); do
    if [ -z "$ONLY" ] || [ "$ONLY" = fanout ]; then
        run_scenario fanout "$run" -m "$MEMBERS" -p "$PUBLISHERS" -w "$WINDOW" || true
    fi
    if [ -z "$ONLY" ] || [ "$ONLY" = rooms ]; then
        run_scenario rooms "$run" -r "$ROOMS" -k "$PER_ROOM" -t "$RATE" -w "$WINDOW" || true
    fi
done

for name in fanout rooms; do
    [ -n "${ALL[$name.rate]:-}" ] || continue
    med() { tr ' ' '\n' <<<"${ALL[$name.$1]}" | sed '/^$/d' | median; }
    echo "CHAT_RESULT scenario=$name runs=$RUNS deliveries_per_s=$(med rate) loss=$(med loss)" \
        "lat_p50_us=$(med p50) lat_p99_us=$(med p99) gateway_cpu_s_per_M=$(med cpu)" \
        "rss_per_joined_conn_bytes=$(med rss) (medians; all rates: ${ALL[$name.rate]})"
done
for n in 1 2; do
    if grep -qiE 'level=error|fatal|crash' "$TMP/gateway$n.log"; then
        echo "gateway $n log errors:"; grep -iE 'level=error|fatal|crash' "$TMP/gateway$n.log" | head -5
    fi
done
