"""
parley-archiver when things break: kill -9 in the middle of a stream,
MariaDB stopped during a run, Redis restarted, and two archivers sharing
one consumer group. Every message must end up stored exactly once.
"""
import signal
import threading
import time

from lib import archutil as au
from lib import pl


def opts(db, stream, **kw):
    o = {"mysql_url": db.url, "stream": stream, "migrations_dir": au.MIGRATIONS,
         "block_ms": "200ms"}
    o.update(kw)
    return o


def test_kill9_mid_stream_then_restart_exactly_once(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-kill")
    au.migrate(archiver, db)
    entries = au.messages(50000)
    au.xadd_many(redis, stream, entries)
    a = archiver("run", **opts(db, stream))
    au.wait_rows(db, 5000, proc=a)
    a.expect_crash = True
    a.send_signal(signal.SIGKILL)
    assert a.wait(10) == -signal.SIGKILL
    n = au.count(db)
    assert n < 50000, "the archiver finished before it could be killed"
    # the dead consumer left entries pending (delivered, maybe written, never acked)
    assert au.group_pending(redis, stream, "archiver") > 0
    # a new archiver (another consumer name) claims them once idle for 1 s
    b = archiver("drain", claim_idle="1s", **opts(db, stream))
    assert b.wait(120) == 0, b.log_text()
    au.check_exactly(db, entries)
    assert au.group_pending(redis, stream, "archiver") == 0
    assert "claimed entries" in b.log_text()
    assert "conflicts=0" in b.log_text() and "dead-lettered" not in b.log_text()


def test_restart_with_same_consumer_rereads_own_pending(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-same")
    au.migrate(archiver, db)
    entries = au.messages(20000)
    au.xadd_many(redis, stream, entries)
    a = archiver("run", consumer="fixed", **opts(db, stream))
    au.wait_rows(db, 3000, proc=a)
    a.expect_crash = True
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    # same name: its own pending entries come first (ID 0), no claim_idle wait
    b = archiver("drain", consumer="fixed", claim_idle="1h", **opts(db, stream))
    assert b.wait(120) == 0, b.log_text()
    au.check_exactly(db, entries)


def test_mariadb_down_10s_during_run_loses_nothing(archiver, fresh_database, mariadb, redis):
    db = fresh_database
    stream = au.unique("arch-mysqldown")
    au.migrate(archiver, db)
    entries = au.messages(20000)
    au.xadd_many(redis, stream, entries[:5000])
    a = archiver("run", **opts(db, stream))
    au.wait_rows(db, 5000, proc=a)
    try:
        mariadb.stop()
        au.xadd_many(redis, stream, entries[5000:15000])
        time.sleep(10)
        assert a.running()
        # nothing was acked that was not committed
        assert au.group_pending(redis, stream, "archiver") > 0 or \
            int(redis.cli("XINFO", "GROUPS", stream).split("\n")[-1]) > 0
    finally:
        mariadb.start()
    au.xadd_many(redis, stream, entries[15000:])
    au.wait_rows(db, 20000, timeout=90, proc=a)
    log = a.log_text()
    assert "mysql write failed, retrying" in log
    assert au.metrics(a)['parley_archiver_errors_total{kind="mysql"}'] >= 1
    assert a.stop() == 0
    b = archiver("drain", **opts(db, stream))
    assert b.wait(60) == 0
    au.check_exactly(db, entries)


def test_sigterm_during_mysql_backoff_exits_promptly(archiver, fresh_database, mariadb, redis):
    db = fresh_database
    stream = au.unique("arch-backoff")
    au.migrate(archiver, db)
    a = archiver("run", **opts(db, stream))
    try:
        mariadb.stop()
        au.xadd_many(redis, stream, au.messages(100))
        pl.wait_for(lambda: "mysql write failed" in a.log_text(), timeout=20,
                    what="a failed write")
        time.sleep(1)
        t0 = time.monotonic()
        assert a.stop(signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - t0 < 3
        assert "uncommitted batch" in a.log_text()
        # nothing was acked
        assert au.group_pending(redis, stream, "archiver") == 100
    finally:
        mariadb.start()
    b = archiver("drain", claim_idle="100ms", **opts(db, stream))
    assert b.wait(60) == 0
    assert au.count(db) == 100


def test_redis_restart_during_run(archiver, fresh_database, fresh_redis):
    db = fresh_database
    r = fresh_redis
    stream = "parley:archive"
    au.migrate(archiver, db)
    a = archiver("run", redis_url=r.url, **opts(db, stream))
    first = au.messages(3000)
    au.xadd_many(r, stream, first)
    au.wait_rows(db, 3000, proc=a)
    r.stop()
    time.sleep(2)
    assert a.running()
    r.start()  # no persistence: the stream and the group are gone
    more = [au.entry("after", i) for i in range(1, 2001)]
    pl.wait_for(lambda: "redis connection restored" in a.log_text(), timeout=20,
                what="reconnect")
    au.xadd_many(r, stream, more)
    au.wait_rows(db, 5000, proc=a)
    au.check_exactly(db, first + more)
    assert au.metrics(a)['parley_archiver_errors_total{kind="redis"}'] >= 1
    assert a.stop() == 0


def test_two_archivers_share_one_group(archiver, fresh_database, redis):
    db = fresh_database
    stream = au.unique("arch-two")
    au.migrate(archiver, db)
    a = archiver("run", batch_size=200, **opts(db, stream))
    b = archiver("run", batch_size=200, **opts(db, stream))
    entries = au.messages(40000)
    t = threading.Thread(target=lambda: [au.xadd_many(redis, stream, entries[i:i + 4000])
                                         for i in range(0, 40000, 4000)])
    t.start()
    t.join()
    au.wait_rows(db, 40000, timeout=120, proc=a)
    pl.wait_for(lambda: au.group_pending(redis, stream, "archiver") == 0, timeout=20,
                what="nothing pending")
    ma, mb = au.metrics(a), au.metrics(b)
    written = ma["parley_archiver_rows_written_total"] + mb["parley_archiver_rows_written_total"]
    assert written == 40000
    assert ma["parley_archiver_rows_written_total"] > 0
    assert mb["parley_archiver_rows_written_total"] > 0
    assert ma["parley_archiver_conflicts_total"] + mb["parley_archiver_conflicts_total"] == 0
    au.check_exactly(db, entries)
    assert a.stop() == 0 and b.stop() == 0


def test_redis_restart_with_persistence_mid_stream(archiver, fresh_database, workdir):
    # Redis with an AOF, stopped while batches are in flight and started
    # again: the stream and the group's pending list come back, the
    # archiver reconnects, re-reads what it had pending and nothing is lost
    # or stored twice.
    import os
    r = pl.Redis(os.path.join(workdir, "redis-aof"), appendonly=True).start()
    try:
        db = fresh_database
        stream = "parley:archive"
        au.migrate(archiver, db)
        entries = au.messages(30000)
        au.xadd_many(r, stream, entries)
        a = archiver("run", redis_url=r.url, **opts(db, stream))
        au.wait_rows(db, 3000, proc=a)
        r.stop()
        time.sleep(1.5)
        r.start()
        au.wait_rows(db, 30000, timeout=90, proc=a)
        pl.wait_for(lambda: au.group_pending(r, stream, "archiver") == 0, timeout=20,
                    what="nothing pending")
        au.check_exactly(db, entries)
        assert "redis connection restored" in a.log_text()
        assert au.metrics(a)["parley_archiver_conflicts_total"] == 0
        assert a.stop() == 0
    finally:
        r.kill()
