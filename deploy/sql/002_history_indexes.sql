-- Indexes for the history forms beyond "newest before a seq"
-- (docs/protocol.md 1.5; the queries are built in gateway/store/hquery.c):
--
--   room + time range      WHERE room=? AND created_at BETWEEN ? AND ?
--                          messages_room_time (room, created_at); InnoDB appends
--                          the primary key, so it is (room, created_at, seq)
--   room + sender          WHERE room=? AND sender=? AND seq<? ORDER BY seq DESC
--                          messages_room_sender (room, sender, seq)
--   own messages, all rooms WHERE sender=? [AND created_at ...]
--                          ORDER BY created_at DESC, room DESC, seq DESC:
--                          messages_sender_time (sender, created_at) from
--                          001 already, (sender, created_at, room, seq) with
--                          the appended primary key
--   after / around / plain the primary key (room, seq)
--
-- tests/bench/history_explain.sh prints the plan of each on a million rows.
ALTER TABLE messages
    ADD INDEX IF NOT EXISTS messages_room_time (room, created_at),
    ADD INDEX IF NOT EXISTS messages_room_sender (room, sender, seq);
