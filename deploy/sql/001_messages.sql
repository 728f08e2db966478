-- Archived chat messages, written by parley-archiver from the parley:archive
-- stream and read by the gateway for older history.
--
-- (room, seq) is the identity of a message: the archiver inserts with
-- INSERT IGNORE, so a re-delivered stream entry never makes a second row.
-- Strings compare byte for byte (utf8mb4_nopad_bin: no case folding and no
-- trailing-space padding), so 'a' and 'a ' are different rooms.
-- created_at is UTC with millisecond precision (from the entry's ts).
CREATE TABLE IF NOT EXISTS messages (
    room       VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    seq        BIGINT UNSIGNED NOT NULL,
    msg_id     VARBINARY(64) NOT NULL,
    sender     VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    text       TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at DATETIME(3) NOT NULL,
    PRIMARY KEY (room, seq),
    KEY messages_sender_time (sender, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
