"""Test whether no acknowledged message is lost or duplicated when the broker
is killed (kill -9, or stopped with SIGTERM) while several senders stream
thousands of messages: after a restart on the same data every message is
stored exactly once in order, the senders finish by themselves and the
listeners end with the complete, contiguous sequence. Also whether a room's
seqs go on after the last acknowledged one, with no hole and no seq given
twice, after kill -9 right after a one-message commit, after retention
removed every message of the room, and on a store written by the broker of
schema version 2 (built here as that broker wrote it)."""

import os
import sqlite3
import struct
import threading
import time

from harness import (ACK, Broker, Proc, RawDealer, check, check_contiguous, fail, listener,
                     new_id, raw_session, wait_until, zchat_argv, T)

COST = 30
TIMEOUT = 240

SENDERS = 3
PER_SENDER = 4000
ROOM = "stream"


def _feed(proc, sender, stop):
    """Write the sender's lines at a steady pace, so the crash comes
    mid-stream; the pipe buffers whatever the sender cannot take."""
    try:
        for i in range(0, PER_SENDER, 25):
            if stop.is_set():
                return
            chunk = "".join("s%d-%05d\n" % (sender, j) for j in range(i, min(i + 25, PER_SENDER)))
            proc.p.stdin.write(chunk.encode())
            proc.p.stdin.flush()
            time.sleep(0.01)
        proc.p.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _crash_and_recover(how):
    b = Broker()
    total = SENDERS * PER_SENDER
    listeners = [listener(b, "ear%d" % i, [ROOM], count=total, timeout=T(150))
                 for i in range(2)]
    stop = threading.Event()
    senders = []
    feeders = []
    try:
        for s in range(SENDERS):
            p = Proc(zchat_argv(b, "sender%d" % s, [ROOM], ["--send", "-", "--timeout", "60"]),
                     "sender%d" % s)
            senders.append(p)
        for s, p in enumerate(senders):
            t = threading.Thread(target=_feed, args=(p, s, stop), daemon=True)
            t.start()
            feeders.append(t)

        #  Crash once a quarter of the stream has gone through (kill -9:
        #  again at 60 %, while the clients are still recovering).
        for fraction in ((0.25, 0.6) if how == "kill9" else (0.25,)):
            listeners[0].wait_count(lambda e: e.get("type") == "message", int(total * fraction),
                                    timeout=T(60), desc="%d%% of the stream" % (fraction * 100))
            seen_at_crash = listeners[0].count(lambda e: e.get("type") == "message")
            if how == "kill9":
                b.kill9()
            else:
                b.stop()
            check(seen_at_crash < total,
                  "the stream was over before the crash; the test proves nothing")
            time.sleep(0.5)
            b.restart()

        for p in senders:
            rc = p.wait(T(120))
            check(rc == 0, "%s did not finish by itself with 0: %s" % (p.name, p._describe()))
    finally:
        stop.set()

    #  The store: every line exactly once, seq 1..total, each sender's lines
    #  in the order they were written.
    auditor = raw_session(b, "auditor", [ROOM])
    info, items = auditor.history(ROOM, from_seq=1)
    check_contiguous(items, 1, total, "history after the crash")
    texts = [m["text"] for m in items]
    check(len(set(texts)) == total, "history holds duplicates: %d distinct of %d"
          % (len(set(texts)), len(texts)))
    for s in range(SENDERS):
        mine = [m for m in items if m["nick"] == "sender%d" % s]
        want = ["s%d-%05d" % (s, j) for j in range(PER_SENDER)]
        if [m["text"] for m in mine] != want:
            got = [m["text"] for m in mine]
            missing = sorted(set(want) - set(got))
            fail("sender%d: history has %d of its %d lines, missing %s, in order: %s"
                 % (s, len(got), PER_SENDER, missing[:10], got == sorted(got)))

    #  Every listener ends with the whole sequence, exactly once, in order.
    for L in listeners:
        rc = L.wait(T(120))
        check(rc == 0, "%s exited %s: %s" % (L.name, rc, L._describe()))
        msgs = L.messages(ROOM)
        check_contiguous(msgs, 1, total, L.name)
        check([m["text"] for m in msgs] == texts, "%s: texts differ from history" % L.name)
    b.stop()


def test_kill9_broker_mid_stream():
    _crash_and_recover("kill9")


def test_sigterm_broker_mid_stream():
    _crash_and_recover("sigterm")


def _ack(d, room, text, mid=None):
    m = d.say(room, text, id=mid)
    check(m["type"] == ACK and m["room"] == room, "SAY %r answered %r" % (text, m))
    return m


def _session(b, nick, room):
    d = RawDealer(b.router)
    d.hello(nick)
    d.join(room)
    return d


def test_seqs_after_kill9():
    """kill -9 right after an acknowledged one-message commit, three times:
    the next message gets the next seq. Then with retention that removes
    every message of the room: after kill -9 the room's seqs still go on
    from the newest one ever acknowledged."""
    b = Broker()
    expect = 0
    for round_ in range(3):
        d = _session(b, "steady", "one")
        for i in range(5):
            m = _ack(d, "one", "round %d message %d" % (round_, i))
            expect += 1
            check(m["seq"] == expect, "seq %d after %d restarts: %r" % (expect, round_, m))
        d.close()
        b.kill9()
        b.restart()
    d = _session(b, "steady", "one")
    info, items = d.history("one", from_seq=1)
    check_contiguous(items, 1, expect, "history after kill -9")
    d.close()
    b.stop()

    #  0.00003 days is about 2.6 s.
    b = Broker("--retain-days", "0.00003")
    d = _session(b, "fading", "fades")
    for i in range(10):
        check(_ack(d, "fades", "fading %d" % i)["seq"] == i + 1, "seqs from 1")

    def emptied():
        info, items = d.history("fades", from_seq=1)
        return info if not items else None
    info = wait_until(emptied, T(15), "retention to remove every message", 0.2)
    check(info["seq"] == 10, "the newest seq is still 10 once all are gone: %r" % info)
    d.close()
    b.kill9()
    b.restart()
    d = _session(b, "fading", "fades")
    m = _ack(d, "fades", "after the crash")
    check(m["seq"] == 11, "after kill -9 on an emptied room the next seq is 11: %r" % m)
    d.close()
    b.kill9()
    b.restart()
    d = _session(b, "fading", "fades")
    m = _ack(d, "fades", "and again")
    check(m["seq"] == 12, "and then 12: %r" % m)
    b.stop()


#  A store as the broker of schema version 2 wrote it: its schema, chunks
#  encoded as broker/STORAGE.md ("Chunk encoding") says, and rooms.last_seq
#  holding each room's newest seq, which that broker wrote at every commit.
SCHEMA_V2 = """
CREATE TABLE chunks (id INTEGER PRIMARY KEY, room TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, count INTEGER NOT NULL,
  min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, data BLOB NOT NULL);
CREATE UNIQUE INDEX chunks_room_seq ON chunks (room, last_seq);
CREATE INDEX chunks_min_ts ON chunks (min_ts);
CREATE TABLE rooms (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
  floor_seq INTEGER NOT NULL DEFAULT 0, topic TEXT, topic_by TEXT, topic_ts INTEGER)
  WITHOUT ROWID;
CREATE TABLE nick_keys (nick TEXT PRIMARY KEY, key TEXT NOT NULL, ts INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE INDEX nick_keys_key ON nick_keys (key);
PRAGMA user_version = 2;
"""


def _varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _chunk(messages):
    """The blob of a chunk: texts, head, trailer. messages: (seq, ts, nick,
    msg_id, text) in seq and ts order (a ts delta is zigzag-encoded: a
    delta d >= 0 is 2d)."""
    texts = b""
    head = b""
    seq0 = ts0 = 0
    for seq, ts, nick, msg_id, text in messages:
        t = text.encode()
        check(seq > seq0 and ts >= ts0, "the fixture's messages are in order")
        head += (_varint(seq - seq0) + _varint((ts - ts0) << 1) + bytes([0, len(nick)])
                 + nick.encode() + _varint(msg_id) + _varint(len(t)))
        texts += t
        seq0, ts0 = seq, ts
    return texts + head + struct.pack(">IIB", len(messages), len(head), 1)


def test_store_of_schema_2():
    """A data directory written by the broker of schema version 2 opens
    (upgraded in place), serves its history, recognises a resend of a
    message it acknowledged, and numbers on from its newest seq, also after
    kill -9."""
    data = os.path.join(os.environ.get("ZCHAT_TEST_TMP", "/tmp"), "data-schema2-%d" % new_id())
    os.makedirs(data, mode=0o700)
    now = int(time.time() * 1000)
    db = sqlite3.connect(os.path.join(data, "zchat.db"))
    db.executescript(SCHEMA_V2)
    chunk_id = 0
    #  "legacy": 30 messages in chunks of 1 to 4; "gone": 6 messages that
    #  retention removed (floor 7); "topical": a topic and nothing else.
    seq = 0
    while seq < 30:
        n = min(1 + chunk_id % 4, 30 - seq)
        msgs = [(s, now - 60000 + s, "oldtimer", 1000 + s, "legacy %d" % s)
                for s in range(seq + 1, seq + n + 1)]
        chunk_id += 1
        db.execute("INSERT INTO chunks VALUES (?, 'legacy', ?, ?, ?, ?, ?, ?)",
                   (chunk_id, seq + 1, seq + n, n, msgs[0][1], msgs[-1][1], _chunk(msgs)))
        seq += n
    db.execute("INSERT INTO rooms (name, last_seq) VALUES ('legacy', 30)")
    db.execute("INSERT INTO rooms (name, last_seq, floor_seq) VALUES ('gone', 6, 7)")
    db.execute("INSERT INTO rooms (name, last_seq, topic, topic_by, topic_ts)"
               " VALUES ('topical', 0, 'from before', 'oldtimer', ?)", (now,))
    db.commit()
    db.close()

    b = Broker(data=data)
    check("upgraded from schema version 2" in b.stderr(), "no upgrade logged: %s" % b.stderr())
    d = _session(b, "oldtimer", "legacy")
    info, items = d.history("legacy", from_seq=1)
    check_contiguous(items, 1, 30, "history of a schema 2 store")
    check([m["text"] for m in items] == ["legacy %d" % s for s in range(1, 31)],
          "texts of a schema 2 store: %r" % items[:3])
    #  A resend of message 17 (its id 1017) gets the original ACK
    m = _ack(d, "legacy", "legacy 17", mid=1017)
    check(m["seq"] == 17 and m["ts"] == now - 60000 + 17, "resend of 17: %r" % m)
    check(_ack(d, "legacy", "new 31")["seq"] == 31, "the next seq after a schema 2 store")
    d.join("gone")
    check(_ack(d, "gone", "gone 7")["seq"] == 7, "a room emptied under schema 2 goes on at 7")
    joined = d.join("topical")
    check(joined["seq"] == 0, "a room with only a topic has no seq: %r" % joined)
    d.close()
    b.kill9()
    b.restart()
    check("upgraded" not in b.stderr(), "upgraded twice: %s" % b.stderr())
    d = _session(b, "oldtimer", "legacy")
    check(_ack(d, "legacy", "new 32")["seq"] == 32, "after kill -9: 32")
    d.join("gone")
    check(_ack(d, "gone", "gone 8")["seq"] == 8, "after kill -9: gone 8")
    info, items = d.history("legacy", from_seq=1)
    check_contiguous(items, 1, 32, "history after the upgrade and kill -9")
    b.stop()
