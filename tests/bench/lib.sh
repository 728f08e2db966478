# Shell helpers shared by the benchmark scripts (idle.sh, chat.sh,
# archiver_bench.sh, history.sh): build check, free loopback ports, starting
# and waiting for redis-server / mariadbd in a temp dir, process sampling
# from /proc, medians. Source it after setting SRC (source tree) and BUILD
# (build tree); nothing here runs on its own or leaves a process behind:
# the caller's EXIT trap stops what start_* started (their PIDs are in
# REDIS_PID / MYSQL_PID).

# bench_build NAME TARGET...: make the targets (paths relative to $BUILD)
# unless they are all there already; configures $BUILD if needed.
bench_build() {
    local name=$1 t missing=0
    shift
    for t in "$@"; do [ -x "$BUILD/$t" ] || missing=1; done
    [ "$missing" = 0 ] && return 0
    echo "$name: building in $BUILD"
    [ -f "$BUILD/Makefile" ] || (cd "$BUILD" && "$SRC/configure" -q CFLAGS="-O2 -g")
    make -C "$BUILD" -j2 "$@" >/dev/null
}

# need_cmd NAME CMD...: fail unless every CMD is on PATH.
need_cmd() {
    local name=$1 c
    shift
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "$name: $c not found" >&2; exit 1; }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_healthz PORT: up to 10 s for a gateway's GET /healthz to answer 200.
wait_healthz() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 &&
            timeout 2 cat <&3) 2>/dev/null | grep -q ' 200'; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# wait_redis PORT: up to 10 s for PING to answer PONG.
wait_redis() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 &&
            timeout 1 head -c 5 <&3) 2>/dev/null | grep -q PONG; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_redis DIR [ARG...]: redis-server without persistence on a free
# port, data and redis.log in DIR; sets REDIS_PORT and REDIS_PID.
start_redis() {
    local dir=$1
    shift
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        "$@" >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_redis "$REDIS_PORT" || { echo "redis-server did not come up:" >&2; cat "$dir/redis.log" >&2; exit 1; }
}

# start_mariadb DIR [ARG...]: a fresh mariadbd (root without password) in
# DIR/db on a free port, socket DIR/my.sock, log DIR/mariadb.log; extra
# arguments go to mariadbd. Sets MYSQL_PORT, MYSQL_PID and MYSQL_SOCK and
# waits up to 30 s for it to answer.
start_mariadb() {
    local dir=$1
    shift
    MYSQL_PORT=$(free_port)
    MYSQL_SOCK=$dir/my.sock
    mariadb-install-db --no-defaults --datadir="$dir/db" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
        { echo "mariadb-install-db failed:" >&2; tail "$dir/install.log" >&2; exit 1; }
    mariadbd --no-defaults --datadir="$dir/db" --socket="$MYSQL_SOCK" --port="$MYSQL_PORT" \
        --bind-address=127.0.0.1 --user=root --skip-log-bin --skip-name-resolve \
        --log-error="$dir/mariadb.log" "$@" >"$dir/mariadbd.out" 2>&1 &
    MYSQL_PID=$!
    for _ in $(seq 300); do
        mariadb --no-defaults -S "$MYSQL_SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "mariadbd did not come up:" >&2
    tail "$dir/mariadb.log" >&2
    exit 1
}

# stop_pids PID...: SIGTERM, up to 10 s each to exit, then SIGKILL; reaps
# children of this shell.
stop_pids() {
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# gw_pids MASTER...: the gateway masters and their worker children.
gw_pids() {
    local m
    for m in "$@"; do
        echo "$m"
        cat "/proc/$m/task/$m/children" 2>/dev/null | tr ' ' '\n' | sed '/^$/d'
    done
}

# rss_kib MASTER...: VmRSS of the masters and their workers, summed, in KiB.
rss_kib() {
    local sum=0 p v
    for p in $(gw_pids "$@"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# cpu_ticks PID...: utime+stime+cutime+cstime in clock ticks (fields 14-17
# of /proc/PID/stat, counted after the command name, which may contain
# spaces), summed.
cpu_ticks() {
    local sum=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        sum=$((sum + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}')))
    done
    echo "$sum"
}

# Median of the numbers on stdin (one a line; the mean of the middle two
# for an even count).
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# field KEY LINE: the value of KEY=value in a RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
