#!/usr/bin/env bash
# history_explain.sh: the MySQL side of each history form (docs/protocol.md
# 1.5, gateway/store/hquery.c) on a table of 1,000,000 messages: EXPLAIN of
# each query as the gateway builds it, and the time of one page (median and
# max of 20 runs in one session, as the server's SHOW PROFILES measures it).
#
# A fresh mariadbd in a temp dir; deploy/sql applied with the mariadb client;
# rows made by INSERT ... SELECT from the sequence engine (seq_1_to_1000000):
#   room 'big'   200,000 messages (seq 1..200000)
#   800 rooms    1,000 messages each ('r0'..'r799')
#   5,000 senders ('u0'..'u4999') round robin, so u42 has 40 messages in
#   'big' and 200 overall; created_at 100 ms apart in seq order.
# Usage: tests/bench/history_explain.sh [--build DIR]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$SRC/build
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "history_explain.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

. "$SRC/tests/bench/lib.sh"
need_cmd history_explain.sh mariadbd mariadb-install-db mariadb

TMP=$(mktemp -d /tmp/parley-hexplain.XXXXXX)
MYSQL_PID=
cleanup() {
    stop_pids $MYSQL_PID
    rm -rf "$TMP"
}
trap cleanup EXIT

start_mariadb "$TMP" --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2
sql() { mariadb --no-defaults -S "$TMP/my.sock" -uroot parley_bench "$@"; }
mariadb --no-defaults -S "$TMP/my.sock" -uroot -e 'CREATE DATABASE parley_bench CHARACTER SET utf8mb4'
for f in "$SRC"/deploy/sql/[0-9]*.sql; do sql <"$f"; done

t0=$(date +%s%N)
sql -e "
INSERT INTO messages (room, seq, msg_id, sender, text, created_at)
SELECT IF(seq <= 200000, 'big', CONCAT('r', (seq - 200001) % 800)),
       IF(seq <= 200000, seq, (seq - 200001) DIV 800 + 1),
       LPAD(HEX(seq), 32, '0'), CONCAT('u', seq % 5000), CONCAT('message ', seq),
       TIMESTAMPADD(MICROSECOND, seq * 100000, '2026-01-01')
FROM seq_1_to_1000000;
ANALYZE TABLE messages;" >/dev/null
echo "loaded $(sql -N -e 'SELECT COUNT(*) FROM messages') rows in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# unix ms of a seq of 'big' (created_at = 2026-01-01 + seq * 100 ms)
T0=$(sql -N -e "SELECT TIMESTAMPDIFF(MICROSECOND,'1970-01-01','2026-01-01') DIV 1000")
ts() { echo $(( T0 + $1 * 100 )); }
at() { echo "TIMESTAMPADD(MICROSECOND,$(ts "$1")000,'1970-01-01')"; }
hex() { printf "_utf8mb4 X'%s'" "$(printf %s "$1" | od -An -tx1 | tr -d ' \n')"; }
COLS="SELECT seq,msg_id,sender,text,TIMESTAMPDIFF(MICROSECOND,'1970-01-01',created_at) DIV 1000"
BIG="room=$(hex big)"
U="sender=$(hex u42)"
M=199000 # the archived marker: the newest 1,000 are "in Redis"

declare -a NAME Q
add() { NAME+=("$1"); Q+=("$2"); }
add "plain (before, db.c)" "$COLS FROM messages WHERE $BIG AND seq<150000 ORDER BY seq DESC LIMIT 51"
add "after" "$COLS FROM messages WHERE $BIG AND seq>1000 AND seq<=$M ORDER BY seq LIMIT 51"
add "around, older half" "$COLS FROM messages WHERE $BIG AND seq<100000 AND seq<=$M ORDER BY seq DESC LIMIT 26"
add "around, newer half" "$COLS FROM messages WHERE $BIG AND seq>99999 AND seq<=$M ORDER BY seq LIMIT 26"
add "from_ts/until_ts (1 h)" "$COLS FROM messages FORCE INDEX (messages_room_time) WHERE $BIG AND seq<=$M AND created_at>=$(at 100000) AND created_at<=$(at 136000) ORDER BY seq DESC LIMIT 51"
add "until_ts, newest first" "$COLS FROM messages WHERE $BIG AND seq<=$M AND created_at<=$(at 50000) ORDER BY seq DESC LIMIT 51"
add "from_ts + after" "$COLS FROM messages WHERE $BIG AND seq>10 AND seq<=$M AND created_at>=$(at 120000) ORDER BY seq LIMIT 51"
add "from_ts + after, time index" "$COLS FROM messages FORCE INDEX (messages_room_time) WHERE $BIG AND seq>10 AND seq<=$M AND created_at>=$(at 120000) ORDER BY seq LIMIT 51"
add "until_ts, time index" "$COLS FROM messages FORCE INDEX (messages_room_time) WHERE $BIG AND seq<=$M AND created_at<=$(at 50000) ORDER BY seq DESC LIMIT 51"
add "from_ts/until_ts (1 h), primary key" "$COLS FROM messages WHERE $BIG AND seq<=$M AND created_at>=$(at 100000) AND created_at<=$(at 136000) ORDER BY seq DESC LIMIT 51"
add "sender in room" "$COLS FROM messages FORCE INDEX (messages_room_sender) WHERE $BIG AND $U AND seq<=$M ORDER BY seq DESC LIMIT 51"
add "sender + after" "$COLS FROM messages FORCE INDEX (messages_room_sender) WHERE $BIG AND $U AND seq>50000 AND seq<=$M ORDER BY seq LIMIT 51"
add "sender + time" "$COLS FROM messages FORCE INDEX (messages_room_sender) WHERE $BIG AND $U AND seq<=$M AND created_at>=$(at 20000) AND created_at<=$(at 180000) ORDER BY seq DESC LIMIT 51"
add "own messages, all rooms" "$COLS,room FROM messages WHERE $U ORDER BY created_at DESC,room DESC,seq DESC LIMIT 51"
add "own, all rooms, cursor" "$COLS,room FROM messages WHERE $U AND created_at<=$(at 600000) AND (created_at<$(at 600000) OR room<$(hex r5) OR (room=$(hex r5) AND seq<100)) ORDER BY created_at DESC,room DESC,seq DESC LIMIT 51"
add "own, all rooms, time" "$COLS,room FROM messages WHERE $U AND created_at>=$(at 100000) AND created_at<=$(at 900000) ORDER BY created_at DESC,room DESC,seq DESC LIMIT 51"

for i in "${!Q[@]}"; do
    echo
    echo "== ${NAME[$i]}"
    echo "${Q[$i]}" | sed 's/^/   /'
    sql -t -e "EXPLAIN ${Q[$i]}"
    rows=$(sql -N -e "${Q[$i]}" | wc -l)
    # 20 runs in one session, timed by the server (SHOW PROFILES): the
    # query's own cost, without the client's start-up
    { echo "SET profiling=1; SET profiling_history_size=25;"
      for _ in $(seq 20); do echo "${Q[$i]};"; done
      echo "SHOW PROFILES;"; } | sql -N 2>/dev/null | awk -F'\t' 'NF==3 && $1 ~ /^[0-9]+$/ {print $2 * 1000000}' |
        sort -n | awk -v r="$rows" '{a[NR]=$1} END {printf "rows=%s page_us_median=%d page_us_max=%d\n", r, a[int((NR+1)/2)], a[NR]}'
done
