"""
parley-archiver against a real Redis and MariaDB: schema migrations,
draining a stream exactly once, binary-safe round trips, conflicts,
malformed entries, trimming, metrics, signals and configuration errors.
Each test uses its own stream, group and database.
"""
import signal
import subprocess
import time

from lib import archutil as au
from lib import pl


def opts(db, stream, **kw):
    o = {"mysql_url": db.url, "stream": stream, "migrations_dir": au.MIGRATIONS,
         "block_ms": "200ms"}
    o.update(kw)
    return o


def test_migrate_creates_schema_and_is_idempotent(archiver, fresh_database):
    db = fresh_database
    log = archiver.ok("migrate", mysql_url=db.url, migrations_dir=au.MIGRATIONS)
    assert "applying migration" in log and "001_messages.sql" in log
    cols = {r[0]: r for r in db.query(
        "SELECT column_name, column_type, character_set_name FROM information_schema.columns "
        f"WHERE table_schema = '{db.name}' AND table_name = 'messages'")}
    assert set(cols) == {"room", "seq", "msg_id", "sender", "text", "created_at"}
    assert cols["seq"][1] == "bigint(20) unsigned"
    assert cols["created_at"][1] == "datetime(3)"
    assert cols["text"][2] == "utf8mb4"
    pk = db.query("SELECT column_name FROM information_schema.statistics WHERE table_schema = "
                  f"'{db.name}' AND table_name = 'messages' AND index_name = 'PRIMARY' "
                  "ORDER BY seq_in_index")
    assert [r[0] for r in pk] == ["room", "seq"]
    idx = db.query("SELECT column_name FROM information_schema.statistics WHERE table_schema = "
                   f"'{db.name}' AND table_name = 'messages' AND index_name <> 'PRIMARY' "
                   "ORDER BY index_name, seq_in_index")
    # by index name: messages_room_sender, messages_room_time (002),
    # messages_sender_time (001)
    assert [r[0] for r in idx] == ["room", "sender", "seq", "room", "created_at",
                                   "sender", "created_at"]
    assert db.query("SELECT version FROM schema_migrations ORDER BY version") == [("1",), ("2",)]

    log = archiver.ok("migrate", mysql_url=db.url, migrations_dir=au.MIGRATIONS)
    assert "applying migration" not in log and "applied=0" in log
    assert db.scalar("SELECT COUNT(*) FROM schema_migrations") == "2"


def test_migrate_applies_only_missing_in_order(archiver, fresh_database, workdir):
    db = fresh_database
    import os
    import shutil
    d = os.path.join(workdir, "sql")
    os.makedirs(d)
    shutil.copy(os.path.join(au.MIGRATIONS, "001_messages.sql"), d)
    archiver.ok("migrate", mysql_url=db.url, migrations_dir=d)
    with open(os.path.join(d, "010_b.sql"), "w") as f:
        f.write("INSERT INTO t2 VALUES (2);\n")
    with open(os.path.join(d, "002_a.sql"), "w") as f:
        f.write("CREATE TABLE t2 (x INT);\nINSERT INTO t2 VALUES (1);\n")
    log = archiver.ok("migrate", mysql_url=db.url, migrations_dir=d)
    assert log.index("002_a.sql") < log.index("010_b.sql")
    assert "001_messages.sql" not in log.split("migrating")[1].split("schema up to date")[0]
    assert db.query("SELECT x FROM t2 ORDER BY x") == [("1",), ("2",)]
    assert [r[0] for r in db.query("SELECT version FROM schema_migrations ORDER BY version")] == \
        ["1", "2", "10"]
    # a broken migration fails with exit 1 and is not recorded
    with open(os.path.join(d, "011_bad.sql"), "w") as f:
        f.write("THIS IS NOT SQL;\n")
    a = archiver("migrate", mysql_url=db.url, migrations_dir=d)
    assert a.wait(30) == 1
    assert "011_bad.sql" in a.log_text()
    assert db.scalar("SELECT MAX(version) FROM schema_migrations") == "10"


def test_drain_5000_exactly_once(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-drain")
    au.migrate(archiver, db)
    entries = au.messages(5000)
    assert au.xadd_many(redis, stream, entries) == 5000
    a = archiver("drain", **opts(db, stream))
    assert a.wait(60) == 0, a.log_text()
    au.check_exactly(db, entries)
    assert "caught up" in a.log_text()
    assert au.group_pending(redis, stream, "archiver") == 0
    # it left the group on exit (nothing pending under its host-pid name)
    assert redis.cli("XINFO", "CONSUMERS", stream, "archiver") == ""
    # created_at is ts in UTC with milliseconds
    assert db.scalar("SELECT created_at FROM messages WHERE room = 'room-0' AND seq = 1") == \
        "2025-11-24 16:00:00.001"
    # a second drain finds nothing to do and exits 0 at once
    a = archiver("drain", **opts(db, stream))
    assert a.wait(30) == 0
    assert au.count(db) == 5000


def test_hostile_text_and_rooms_round_trip(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-hostile")
    au.migrate(archiver, db)
    nasty = "'\"\\\x00\n\r\t\x1a%_`;--😀𝄞é"
    big = (nasty * 400).encode()[:4096]
    while True:  # cut at a character boundary
        try:
            big.decode()
            break
        except UnicodeDecodeError:
            big = big[:-1]
    entries = [
        au.entry("r'1", 1, text=nasty),
        au.entry("r\\\"2\x00", 2, text="\x00" * 10, sender="b'o\\b😀"),
        au.entry("😀" * 128, 3, text=big, msg_id="id'\\\x00x"),
        au.entry("room ", 4, text=""),     # trailing space: not the same room as "room"
        au.entry("room", 4, text="   "),   # trailing spaces in text survive
        au.entry("line\nbreak", 5, text="a\r\nb\n"),
    ]
    entries = [{k: (v.encode() if isinstance(v, str) else v) for k, v in e.items()}
               for e in entries]
    au.xadd_many(redis, stream, entries)
    a = archiver("drain", **opts(db, stream))
    assert a.wait(60) == 0, a.log_text()
    rows = db.query("SELECT HEX(room), seq, HEX(msg_id), HEX(sender), HEX(text), "
                    "LENGTH(text) FROM messages")
    got = {(bytes.fromhex(r[0]), int(r[1])): r for r in rows}
    assert len(got) == len(entries)
    for e in entries:
        r = got[(e["room"], int(e["seq"]))]
        assert bytes.fromhex(r[2]) == e["msg_id"]
        assert bytes.fromhex(r[3]) == e["from"]
        assert bytes.fromhex(r[4]) == e["text"], e["room"]
        assert int(r[5]) == len(e["text"])


def test_conflicting_duplicate_is_a_conflict_not_a_success(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-conflict")
    au.migrate(archiver, db)
    au.xadd_many(redis, stream, [au.entry("r", 1, msg_id="A"), au.entry("r", 2, msg_id="B")])
    a = archiver("run", **opts(db, stream))
    au.wait_rows(db, 2, proc=a)
    # a re-delivery (same key, same msg_id), a conflict (same key, other msg_id), a new one
    au.xadd_many(redis, stream, [au.entry("r", 1, msg_id="A"), au.entry("r", 2, msg_id="EVIL"),
                                 au.entry("r", 3, msg_id="C")])
    pl.wait_for(lambda: au.metrics(a).get("parley_archiver_conflicts_total") == 1, timeout=20,
                what="conflict counted")
    pl.wait_for(lambda: au.group_pending(redis, stream, "archiver") == 0, timeout=10,
                what="nothing pending")
    m = au.metrics(a)
    assert m["parley_archiver_rows_written_total"] == 3
    assert m["parley_archiver_duplicates_total"] == 1
    assert m['parley_archiver_errors_total{kind="conflict"}'] == 1
    assert db.query("SELECT seq, msg_id FROM messages ORDER BY seq") == \
        [("1", "A"), ("2", "B"), ("3", "C")]
    assert "conflict" in a.log_text() and "level=error" in a.log_text()
    dead = redis.cli("XRANGE", stream + ":dead", "-", "+")
    assert "EVIL" in dead and "conflict" in dead
    assert a.stop() == 0


def test_malformed_entries_are_dead_lettered_and_acked(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-malformed")
    au.migrate(archiver, db)
    bad_seq = au.entry("r", 1)
    bad_seq["seq"] = "12x"
    no_text = au.entry("r", 2)
    del no_text["text"]
    bad_utf8 = au.entry("r", 3)
    bad_utf8["text"] = b"\xff\xfe"
    good = au.entry("r", 4)
    au.xadd_many(redis, stream, [bad_seq, no_text, bad_utf8, good])
    a = archiver("run", **opts(db, stream))
    au.wait_rows(db, 1, proc=a)
    pl.wait_for(lambda: au.group_pending(redis, stream, "archiver") == 0, timeout=10,
                what="nothing pending")
    pl.wait_for(lambda: au.metrics(a).get('parley_archiver_errors_total{kind="malformed"}') == 3,
                timeout=10, what="3 malformed counted")
    assert redis.cli("XLEN", stream + ":dead") == "3"
    dead = au.cli_raw(redis, "XRANGE", stream + ":dead", "-", "+")
    assert b"bad seq" in dead and b"missing field text" in dead and b"\xff\xfe" in dead
    assert db.query("SELECT seq FROM messages") == [("4",)]
    assert a.stop() == 0


def test_acked_entries_are_trimmed_unacked_are_not(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-trim")
    au.migrate(archiver, db)
    au.xadd_many(redis, stream, au.messages(50))
    a = archiver("run", trim_interval="100ms", **opts(db, stream))
    au.wait_rows(db, 50, proc=a)
    pl.wait_for(lambda: redis.cli("XLEN", stream) == "0", timeout=10, what="stream trimmed")
    assert a.stop() == 0

    # another consumer of the group holds 10 entries unacked
    later = [au.entry("late", i) for i in range(1, 51)]
    au.xadd_many(redis, stream, later[:10])
    held = redis.cli("XREADGROUP", "GROUP", "archiver", "other", "COUNT", "10", "STREAMS",
                     stream, ">")
    ids = [line for line in held.split("\n") if "-" in line and line[0].isdigit()]
    assert len(ids) == 10
    au.xadd_many(redis, stream, later[10:])
    a = archiver("run", trim_interval="100ms", claim_idle="1h", **opts(db, stream))
    au.wait_rows(db, 90, proc=a)
    time.sleep(0.5)
    # the 40 acked ones after the held ones cannot go before them: all 50 stay
    assert redis.cli("XLEN", stream) == "50"
    assert au.group_pending(redis, stream, "archiver") == 10
    assert redis.cli("XRANGE", stream, "-", "+", "COUNT", "1").split("\n")[0] == ids[0]
    # once the other consumer acks, everything goes
    redis.cli("XACK", stream, "archiver", *ids)
    pl.wait_for(lambda: redis.cli("XLEN", stream) == "0", timeout=10, what="stream trimmed")
    assert au.metrics(a)["parley_archiver_trimmed_total"] >= 50
    assert a.stop() == 0


def test_metrics_and_healthz(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-metrics")
    au.migrate(archiver, db)
    a = archiver("run", **opts(db, stream))
    assert a.http_get("/healthz")[0] == 200
    assert a.http_get("/nope")[0] == 404
    au.xadd_many(redis, stream, au.messages(1234))
    au.wait_rows(db, 1234, proc=a)
    pl.wait_for(lambda: au.metrics(a)["parley_archiver_rows_written_total"] == 1234, timeout=5,
                what="rows_written 1234")
    m = au.metrics(a)
    assert m["parley_archiver_batches_total"] >= 2
    assert m["parley_archiver_duplicates_total"] == 0
    assert m["parley_archiver_conflicts_total"] == 0
    assert m["parley_archiver_batch_seconds_count"] == m["parley_archiver_batches_total"]
    assert m["parley_archiver_batch_seconds_sum"] > 0
    assert 'parley_archiver_errors_total{kind="mysql"}' in m
    pl.wait_for(lambda: au.metrics(a)["parley_archiver_stream_pending"] == 0, timeout=5,
                what="pending gauge 0")
    assert au.metrics(a)["parley_archiver_stream_lag"] == 0
    assert a.stop() == 0


def test_sigterm_exits_0_and_commits_in_flight(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-sigterm")
    au.migrate(archiver, db)
    entries = au.messages(30000)
    au.xadd_many(redis, stream, entries)
    a = archiver("run", **opts(db, stream))
    au.wait_rows(db, 2000, proc=a)
    assert a.stop(signal.SIGTERM, timeout=10) == 0
    log = a.log_text()
    assert "stopped" in log
    n = au.count(db)
    # whatever was written is acked: nothing of ours is left pending
    assert au.group_pending(redis, stream, "archiver") == 0
    # and the rest comes later, exactly once
    a = archiver("drain", **opts(db, stream))
    assert a.wait(120) == 0
    au.check_exactly(db, entries)
    assert n <= 30000


def test_sigterm_when_idle_is_prompt(archiver, fresh_database):
    db = fresh_database
    au.migrate(archiver, db)
    a = archiver("run", **opts(db, au.unique("arch-idle"), block_ms="5s"))
    time.sleep(0.3)
    t0 = time.monotonic()
    assert a.stop(signal.SIGINT, timeout=10) == 0
    # a blocked XREADGROUP is waited out, but no longer than block_ms
    assert time.monotonic() - t0 < 6.5


def test_bad_config_exits_2(archiver, workdir):
    import os
    bin_ = pl.binary("archiver")
    cfg = os.path.join(workdir, "arch.conf")
    with open(cfg, "w") as f:
        f.write("# archiver\nbatch_size = 500\nbogus_key = 1\n")
    r = subprocess.run([bin_, "-c", cfg, "run"], capture_output=True, text=True,
                       env=pl.clean_env())
    assert r.returncode == 2
    assert "bogus_key" in r.stderr and f"{cfg}:3" in r.stderr
    with open(cfg, "w") as f:
        f.write("batch_size = lots\n")
    r = subprocess.run([bin_, "-c", cfg, "drain"], capture_output=True, text=True,
                       env=pl.clean_env())
    assert r.returncode == 2 and "batch_size" in r.stderr and ":1)" in r.stderr
    r = subprocess.run([bin_, "run", "--mysql_url", "mysql://u@h"], capture_output=True,
                       text=True, env=pl.clean_env())
    assert r.returncode == 2 and "mysql_url" in r.stderr
    r = subprocess.run([bin_, "run"], capture_output=True, text=True,
                       env=pl.clean_env({"PARLEY_CLAIM_IDLE": "soon"}))
    assert r.returncode == 2 and "PARLEY_CLAIM_IDLE" in r.stderr
    r = subprocess.run([bin_, "frobnicate"], capture_output=True, text=True, env=pl.clean_env())
    assert r.returncode == 2
    r = subprocess.run([bin_, "--help"], capture_output=True, text=True, env=pl.clean_env())
    assert r.returncode == 0 and "--claim_idle" in r.stdout and "drain" in r.stdout


def test_missing_schema_exits_1_and_acks_nothing(archiver, fresh_database, redis):
    db = fresh_database  # no migrate: there is no messages table
    stream = au.unique("arch-noschema")
    au.xadd_many(redis, stream, au.messages(10))
    a = archiver("drain", **opts(db, stream))
    assert a.wait(30) == 1
    assert "giving up" in a.log_text() and "doesn't exist" in a.log_text()
    assert au.group_pending(redis, stream, "archiver") == 10
    # after migrate, another archiver claims and stores them
    au.migrate(archiver, db)
    a = archiver("drain", claim_idle="100ms", **opts(db, stream))
    assert a.wait(30) == 0
    au.check_exactly(db, au.messages(10))


def test_redelivered_rows_count_as_duplicates(archiver, fresh_database, redis):
    # As after a crash between COMMIT and XACK: some rows are already stored.
    db = fresh_database
    stream = au.unique("arch-dup")
    au.migrate(archiver, db)
    entries = au.messages(100)
    values = ",".join(f"('{e['room']}',{e['seq']},'{e['msg_id']}','{e['from']}','old text',"
                      "'2020-01-01 00:00:00')" for e in entries[:40])
    db.query("INSERT INTO messages (room, seq, msg_id, sender, text, created_at) VALUES " + values)
    au.xadd_many(redis, stream, entries)
    a = archiver("run", **opts(db, stream))
    pl.wait_for(lambda: au.metrics(a)["parley_archiver_rows_written_total"] == 60, timeout=20,
                what="60 new rows")
    m = au.metrics(a)
    assert m["parley_archiver_duplicates_total"] == 40
    assert m["parley_archiver_conflicts_total"] == 0
    au.check_exactly(db, entries)
    # the stored rows were not rewritten
    assert db.scalar("SELECT COUNT(*) FROM messages WHERE text = 'old text'") == "40"
    pl.wait_for(lambda: au.group_pending(redis, stream, "archiver") == 0, timeout=10,
                what="nothing pending")
    assert a.stop() == 0
