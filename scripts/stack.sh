#!/usr/bin/env bash
# Runs the whole Parley stack on this machine, on loopback, for trying it
# out: Redis (append-only file on), MariaDB, parley-gateway (2 workers) and,
# once it is built, parley-archiver. State, logs and pid files live in .run/
# (kept between runs: the database and Redis data survive a restart).
#
# Usage: scripts/stack.sh [start]   installs deps, builds into build/, starts
#                                   everything, prints URLs and a sample
#                                   token, and stays in the foreground;
#                                   Ctrl-C stops it all
#        scripts/stack.sh stop      stops a stack started from another shell
#        scripts/stack.sh status    shows what is running
# Environment: NO_DEPS=1 skips scripts/deps.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.run
BUILD=$ROOT/build
GW=$BUILD/gateway/parley-gateway
ARCH=$BUILD/archiver/parley-archiver
PY=/usr/bin/python3
SERVICES="demo gateway archiver mariadb redis"   # stop order

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

alive() {  # NAME -> 0 if its pid file names a live process
  local f=$RUN/$1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {  # PREFERRED -> the preferred port if free, else the next free one
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}

wait_until() {  # SECONDS WHAT CMD...
  local n=$(( $1 * 10 )) what=$2; shift 2
  while ! "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ $n -gt 0 ] || return 1
    sleep 0.1
  done
}

stop_one() {  # NAME: SIGTERM by pid, wait up to 30 s, then SIGKILL
  local name=$1 f=$RUN/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop in 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

stop_all() {
  for s in $SERVICES; do stop_one "$s"; done
  rm -f "$RUN/urls"
}

status() {
  for s in $SERVICES; do
    if alive "$s"; then say "$s: running (pid $(cat "$RUN/$s.pid"))"; else say "$s: not running"; fi
  done
  [ -f "$RUN/urls" ] && cat "$RUN/urls"
  return 0
}

case ${1:-start} in
  stop) stop_all; exit 0 ;;
  status) status; exit 0 ;;
  start) ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown command ${1} (start, stop, status)" ;;
esac

for s in $SERVICES; do
  alive "$s" && die "$s is already running (pid $(cat "$RUN/$s.pid")): scripts/stack.sh stop first"
done

# ---- deps and build
[ "${NO_DEPS:-0}" = 1 ] || ./scripts/deps.sh
if [ ! -f "$BUILD/Makefile" ]; then
  mkdir -p "$BUILD"
  say "configuring build/"
  { [ -x configure ] || ./autogen.sh; (cd "$BUILD" && ../configure); } > "$BUILD/configure.out" 2>&1 \
    || { tail -20 "$BUILD/configure.out"; die "configure failed (build/configure.out)"; }
fi
say "building in build/"
make -C "$BUILD" -j"$(nproc)" > "$BUILD/make.out" 2>&1 || { tail -30 "$BUILD/make.out"; die "build failed (build/make.out)"; }
[ -x "$GW" ] || die "$GW was not built"

mkdir -p "$RUN/logs" "$RUN/redis" "$RUN/mariadb"
chmod 700 "$RUN"
trap 'echo; stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

# ---- Redis, with the append-only file so history survives a restart
REDIS_PORT=$(pick_port 6379)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --save '' \
  --dir "$RUN/redis" --logfile "$RUN/logs/redis.log" --daemonize no </dev/null &
echo $! > "$RUN/redis.pid"
wait_until 10 redis redis-cli -p "$REDIS_PORT" ping || die "redis did not start: $RUN/logs/redis.log"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
say "redis on 127.0.0.1:$REDIS_PORT"

# ---- MariaDB: data dir made once; root logs in through the socket only
MY_PORT=$(pick_port 3306)
MY_DATA=$RUN/mariadb/data
MY_SOCK=$RUN/mariadb/sock
[ -f "$RUN/mysql-password" ] || { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/mysql-password"; chmod 600 "$RUN/mysql-password"; }
MY_PW=$(cat "$RUN/mysql-password")
first=0
if [ ! -d "$MY_DATA/mysql" ]; then
  first=1
  say "creating the MariaDB data dir (first run)"
  mariadb-install-db --no-defaults --datadir="$MY_DATA" --user=root --auth-root-authentication-method=socket \
    --skip-test-db --skip-name-resolve --innodb-log-file-size=16M > "$RUN/logs/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db failed: $RUN/logs/mariadb-install.log"
fi
mariadbd --no-defaults --datadir="$MY_DATA" --socket="$MY_SOCK" --port="$MY_PORT" --bind-address=127.0.0.1 \
  --user=root --skip-log-bin --skip-name-resolve --innodb-buffer-pool-size=128M --innodb-log-file-size=16M \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
  --pid-file="$RUN/mariadb/mariadbd.pid" --log-error="$RUN/logs/mariadb.log" </dev/null >/dev/null 2>&1 &
echo $! > "$RUN/mariadb.pid"
my() { mariadb --no-defaults -S "$MY_SOCK" -uroot -N -B "$@"; }
wait_until 30 mariadb my -e 'SELECT 1' || die "mariadb did not start: $RUN/logs/mariadb.log"
if [ $first = 1 ]; then
  my -e "CREATE DATABASE parley CHARACTER SET utf8mb4;
         CREATE USER 'parley'@'127.0.0.1' IDENTIFIED BY '$MY_PW';
         CREATE USER 'parley'@'localhost' IDENTIFIED BY '$MY_PW';
         GRANT ALL ON parley.* TO 'parley'@'127.0.0.1';
         GRANT ALL ON parley.* TO 'parley'@'localhost';"
fi
MYSQL_URL=mysql://parley:$MY_PW@127.0.0.1:$MY_PORT/parley
say "mariadb on 127.0.0.1:$MY_PORT (database parley, user parley, password in .run/mysql-password)"

# ---- token secret: made once, read by the gateway from a file
[ -f "$RUN/token_secret" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/token_secret"; chmod 600 "$RUN/token_secret"; }

# ---- archiver (before the gateway: it creates the MariaDB tables)
if [ -x "$ARCH" ]; then
  ARCH_METRICS=$(pick_port 9108)
  say "archiver: migrate"
  "$ARCH" migrate --redis_url "$REDIS_URL" --mysql_url "$MYSQL_URL" \
    --metrics_listen "" > "$RUN/logs/archiver-migrate.log" 2>&1 \
    || die "parley-archiver migrate failed: $RUN/logs/archiver-migrate.log"
  "$ARCH" run --redis_url "$REDIS_URL" --mysql_url "$MYSQL_URL" --metrics_listen "127.0.0.1:$ARCH_METRICS" \
    </dev/null > "$RUN/logs/archiver.log" 2>&1 &
  echo $! > "$RUN/archiver.pid"
  sleep 0.5
  alive archiver || die "parley-archiver run exited: $RUN/logs/archiver.log"
  say "archiver running (metrics on http://127.0.0.1:$ARCH_METRICS/metrics)"
else
  say "archiver: $ARCH is not built yet, not started (messages stay in Redis only)"
fi

# ---- gateway
GW_PORT=$(pick_port 8080)
# Older history comes from MariaDB only once the archiver has made its tables.
GW_MYSQL=; [ -x "$ARCH" ] && GW_MYSQL=$MYSQL_URL
"$GW" --listen "127.0.0.1:$GW_PORT" --workers 2 --redis_url "$REDIS_URL" --mysql_url "$GW_MYSQL" \
  --token_secret_file "$RUN/token_secret" </dev/null > "$RUN/logs/gateway.log" 2>&1 &
echo $! > "$RUN/gateway.pid"
if ! wait_until 10 gateway curl -fsS "http://127.0.0.1:$GW_PORT/healthz"; then
  tail -20 "$RUN/logs/gateway.log" >&2
  die "the gateway did not answer /healthz: $RUN/logs/gateway.log"
fi
say "gateway on 127.0.0.1:$GW_PORT (2 workers)"

# ---- demo page, once there is one
DEMO_DIR=
if [ -d demo ]; then DEMO_DIR=demo; elif [ -f docs/demo.html ]; then DEMO_DIR=docs; fi
DEMO_URL=
if [ -n "$DEMO_DIR" ]; then
  DEMO_PORT=$(pick_port 8000)
  "$PY" -m http.server --bind 127.0.0.1 --directory "$DEMO_DIR" "$DEMO_PORT" </dev/null > "$RUN/logs/demo.log" 2>&1 &
  echo $! > "$RUN/demo.pid"
  page=; [ "$DEMO_DIR" = docs ] && page=demo.html
  DEMO_URL="http://127.0.0.1:$DEMO_PORT/$page"
fi

# ---- sample tokens (HS256, valid 24 h)
mktoken() {
  "$PY" - "$1" "$RUN/token_secret" <<'PYEOF'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
now = int(time.time())
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"sub": sys.argv[1], "iat": now, "exp": now + 86400}).encode())
key = open(sys.argv[2]).read().strip().encode()
print(f"{h}.{p}.{b(hmac.new(key, f'{h}.{p}'.encode(), hashlib.sha256).digest())}")
PYEOF
}
ALICE=$(mktoken alice)
BOB=$(mktoken bob)
{
  echo "WebSocket:  ws://127.0.0.1:$GW_PORT/ws"
  echo "health:     http://127.0.0.1:$GW_PORT/healthz"
  if [ -n "$DEMO_URL" ]; then
    # The page reads the WebSocket URL and the token from the fragment.
    echo "open the demo as alice: $DEMO_URL#ws=ws://127.0.0.1:$GW_PORT/ws&token=$ALICE"
    echo "and as bob:             $DEMO_URL#ws=ws://127.0.0.1:$GW_PORT/ws&token=$BOB"
  fi
  echo "token for alice: $ALICE"
  echo "token for bob:   $BOB"
  echo "logs:       .run/logs/    stop: Ctrl-C here, or scripts/stack.sh stop"
} > "$RUN/urls"
echo
cat "$RUN/urls"
echo

# ---- stay up until Ctrl-C, stack.sh stop, or a service dies
while :; do
  for s in redis mariadb gateway archiver demo; do
    if [ -f "$RUN/$s.pid" ] && ! alive "$s"; then
      say "$s exited (see .run/logs/$s.log); stopping the rest"
      exit 1
    fi
  done
  if [ ! -f "$RUN/gateway.pid" ]; then  # `stack.sh stop` from another shell
    trap - EXIT
    exit 0
  fi
  sleep 1
done
