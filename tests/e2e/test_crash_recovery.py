"""Test whether no acknowledged message is lost or duplicated when the broker
is killed (kill -9, or stopped with SIGTERM) while several senders stream
thousands of messages: after a restart on the same data every message is
stored exactly once in order, the senders finish by themselves and the
listeners end with the complete, contiguous sequence. Also whether a room's
seqs go on after the last acknowledged one, with no hole and no seq given
twice, after kill -9 right after a one-message commit, after retention
removed every message of the room, and on a store written by the broker of
schema version 2 (built here as that broker wrote it). And whether, with
--durable off, where a group is acknowledged and published before its
commit, kill -9 during that commit (several times, while raw senders
pipeline SAYS) never gets a seq that a subscriber or a sender has seen
given to another message: the room's seqs go on above every seq seen
before the kill, nothing in history contradicts what was seen, and every
message acknowledged after the last restart is in history."""

import os
import random
import sqlite3
import struct
import threading
import time

import zmq

from harness import (ACK, ACKRUNS, HISTORY, MESSAGE, MESSAGES, PAGE, SAYS, Broker, Proc,
                     RawDealer, RawSub, check, check_contiguous, decode, fail, listener,
                     new_id, raw_session, wait_sub_live, wait_until, zchat_argv, T, store_chunk)

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
        msgs = [(s, now - 60000 + s, "oldtimer", 0, 1000 + s, b"legacy %d" % s)
                for s in range(seq + 1, seq + n + 1)]
        chunk_id += 1
        db.execute("INSERT INTO chunks VALUES (?, 'legacy', ?, ?, ?, ?, ?, ?)",
                   (chunk_id, seq + 1, seq + n, n, msgs[0][1], msgs[-1][1], store_chunk(msgs)))
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


#  Durability off, kill -9 while SAYS stream in. Raw senders pipeline SAYS
#  of D_PER_SAYS texts of D_TEXT bytes without waiting for their ACKs (up
#  to D_WINDOW unacknowledged each), so that a group holds thousands of
#  messages, megabytes, and its commit, which with durability off comes
#  after the group is acknowledged and published, takes milliseconds; the
#  broker is killed the moment an ACK comes in, so in that commit most of
#  the time (measured on a broker that reuses the lost seqs: 7 kills in
#  10 exposed it). D_KILLS rounds make a miss of every one unlikely.
D_ROOM = "nodup"
D_SENDERS = 4
D_OBSERVERS = 1
D_TEXT = 4000
D_PER_SAYS = 16
D_WINDOW = 1000
D_KILLS = 5
#  Acknowledged messages (all senders) before a round's kill, and the most
#  a sender sends in a round: the stream must still run at the kill.
D_KILL_AFTER = 1000
D_ROUND_MAX = 10000
#  Messages per sender after the last restart, all of which must be stored
D_FINAL = 600


class _Pipeliner:
    """A version 4 session of nick in D_ROOM that sends up to limit texts
    in SAYS without waiting for their ACKs; ids from base + 1 on."""

    def __init__(self, b, nick, base, limit):
        self.nick = nick
        self.base = base
        self.limit = limit
        self.d = RawDealer(b.router)
        check(self.d.hello(nick, version=4)["version"] == 4, "%s: WELCOME version 4" % nick)
        self.d.join(D_ROOM)
        self.sent = 0
        self.acked = {}                 # id -> seq
        self.errors = []
        self.next = None                # (count, SAYS) the socket did not take yet

    def text(self, mid):
        head = "%s %d " % (self.nick, mid)
        return head + "." * (D_TEXT - len(head))

    def push(self):
        """Send SAYS while the window allows; never blocks (after a kill
        the DEALER has no peer and would)."""
        while True:
            if self.next is None:
                n = min(D_PER_SAYS, self.limit - self.sent,
                        D_WINDOW - (self.sent - len(self.acked)))
                if n <= 0:
                    return
                first = self.base + self.sent + 1
                self.next = (n, _says(D_ROOM, [(i, self.text(i))
                                               for i in range(first, first + n)]))
            try:
                self.d.sock.send_multipart([b"", self.next[1]], zmq.NOBLOCK)
            except zmq.Again:
                return
            self.sent += self.next[0]
            self.next = None

    def take(self):
        """Record every reply waiting on the socket; how many messages
        they acknowledged."""
        before = len(self.acked)
        while True:
            try:
                frames = self.d.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return len(self.acked) - before
            m = decode(frames[-1])
            if m["type"] == ACK:
                self.acked[m["id"]] = m["seq"]
            elif m["type"] == ACKRUNS:
                for r in m["items"]:
                    for k in range(r["count"]):
                        self.acked[r["id"] + k] = r["seq"] + k
            else:
                self.errors.append(m)

    def seen(self):
        """(seq, message) of every acknowledged message (see _message)."""
        return [(seq, _message(self.nick, self.text(mid))) for mid, seq in self.acked.items()]


def _message(nick, text):
    """What tells a message from another, kept small: its nick, the head
    of its text (for failure reports) and a hash of its text."""
    return (nick, text[:24], hash(text))


def _says(room, items):
    """A SAYS of (id, text) items; harness.encode, unrolled for speed."""
    r = room.encode()
    head = struct.pack(">B", len(r)) + r + b"\0"
    parts = [b"ZC", struct.pack(">BQH", SAYS, 0, len(items))]
    for mid, text in items:
        t = text.encode()
        parts += [struct.pack(">Q", mid), head, struct.pack(">I", len(t)), t]
    return b"".join(parts)


def _pipeline_round(b, round_, limit, kill):
    """One round of the stream on a running broker: fresh observers and
    sessions, every sender sending up to limit messages; with kill, the
    broker is killed mid-stream, the moment an acknowledgement comes in
    (with durability off the group's commit has then only begun; with it
    on, it is over). Returns every (seq, message, where) the observers'
    SUBs and the senders' ACKs carried (see _message), and the senders."""
    subs = []
    for i in range(D_OBSERVERS):
        sub = RawSub(b.pub, topics=[(D_ROOM + ":").encode()])
        wait_sub_live(sub, b, D_ROOM, "probe%d" % i).close()
        subs.append(sub)
    senders = [_Pipeliner(b, "pipe%d" % s, (round_ + 1) << 32, limit) for s in range(D_SENDERS)]
    poller = zmq.Poller()
    for x in senders:
        poller.register(x.d.sock, zmq.POLLIN)
    stop = threading.Event()
    armed = threading.Event()
    killed = threading.Event()          # set by the pump, once
    failed = []

    def observe(sub):
        #  A thread each, that only stores frames: an observer that lags
        #  misses what the broker had not written out when it died
        try:
            while not stop.is_set():
                if sub.sock.poll(5):
                    sub.got.append(sub.sock.recv_multipart())
        except Exception as e:      # reported below, not lost
            failed.append(repr(e))

    def pump():
        #  Until armed, keep every window full. Armed: fill them once more
        #  and take the ACKs that came meanwhile, then send nothing and
        #  kill at the next ACK, at once (or fill them again if none is
        #  awaited any more)
        try:
            waiting = False
            while not stop.is_set():
                if not waiting:
                    for x in senders:
                        x.push()
                poller.poll(5)
                acks = [x.take() for x in senders]
                if waiting and any(acks):
                    b.proc.kill()
                    killed.set()
                    return
                waiting = armed.is_set() and any(x.sent > len(x.acked) for x in senders)
        except Exception as e:      # reported below, not lost
            failed.append(repr(e))

    threads = [threading.Thread(target=observe, args=(sub,), daemon=True) for sub in subs]
    threads.append(threading.Thread(target=pump, daemon=True))
    for t in threads:
        t.start()
    try:
        def acked():
            check(not failed, "the pump failed: %r" % failed)
            return sum(len(x.acked) for x in senders)
        if kill:
            wait_until(lambda: acked() >= D_KILL_AFTER, T(20),
                       "%d acknowledged messages in round %d" % (D_KILL_AFTER, round_))
            time.sleep(random.uniform(0, 0.05))
            armed.set()
            check(killed.wait(T(10)), "round %d: no acknowledgement came to kill at" % round_)
            left = sum(x.limit - x.sent for x in senders)
            b.kill9()
            check(left > 0, "round %d: the stream was over before the kill; the test proves"
                  " nothing" % round_)
            #  What the broker wrote before it died is still on its way
            time.sleep(0.2)
        else:
            wait_until(lambda: acked() == D_SENDERS * limit, T(30),
                       "every message acknowledged in round %d" % round_)
    finally:
        stop.set()
        for t in threads:
            t.join(T(10))
    check(not any(t.is_alive() for t in threads) and not failed,
          "round %d: the pump or an observer failed: %r" % (round_, failed))
    #  What the observers saw first, so that a seq reused is reported as
    #  a subscriber saw it, when one did
    seen = []
    for i, sub in enumerate(subs):
        sub.drain(0.05)
        for m in sub.decoded():
            items = m["items"] if m["type"] == MESSAGES else [m] if m["type"] == MESSAGE else []
            seen += [(it["seq"], _message(it["nick"], it["text"]), "PUB to observer %d" % i)
                     for it in items]
        sub.close()
        sub.got = []            # the harness keeps the socket for its cleanup
    check(seen, "round %d: the observers saw nothing" % round_)
    for x in senders:
        x.take()
        check(not x.errors, "%s in round %d got %r" % (x.nick, round_, x.errors[:3]))
        seen += [(seq, m, "ACK to %s" % x.nick) for seq, m in x.seen()]
        x.d.close()
    return seen, senders


def test_durable_off_kill9_never_reuses_a_seq():
    """--durable off, kill -9 mid-stream, D_KILLS times: no seq is ever
    carried by two different messages, whether seen on PUB, in an ACK or
    in history; after each restart the room's seqs go on above every seq
    seen before the kill; every message acknowledged after the last
    restart is in history. A group goes out before its commit, so a kill
    during the commit loses messages that were published: allowed with
    durability off, but their seqs must not be given out again."""
    #  Without the fair share, which would refuse (429) one of four senders
    #  that go flat out by turns; with a query budget for the auditor,
    #  which reads back a hundred megabytes of history or more
    b = Broker("--durable", "off", "--fair-share", "0", "--query-budget", "1000000:1000000")
    carried = {}                        # seq -> (message, where, round)
    reused = []
    below = []

    def carry(seq, message, where, round_):
        first = carried.setdefault(seq, (message, where, round_))
        if first[0] != message:
            reused.append((seq, first, (message, where, round_)))

    newest = 0
    for round_ in range(D_KILLS + 1):
        final = round_ == D_KILLS
        seen, senders = _pipeline_round(b, round_, D_FINAL if final else D_ROUND_MAX,
                                        kill=not final)
        if round_ > 0:
            low = min(seq for seq, *_ in seen)
            if low <= newest:
                below.append("round %d starts at seq %d, at or below %d seen before the kill"
                             % (round_, low, newest))
        for seq, message, where in seen:
            carry(seq, message, where, round_)
        newest = max([newest] + [seq for seq, *_ in seen])
        del seen
        if not final:
            b.restart()

    #  History, page by page: every message acknowledged after the last
    #  restart, with its seq, and nothing that contradicts what was seen
    auditor = raw_session(b, "auditor", [D_ROOM])
    final_acks = {seq: (x.nick, x.text(mid)) for x in senders for mid, seq in x.acked.items()}
    from_seq = 1
    while True:
        page = auditor.request(HISTORY, room=D_ROOM, from_seq=from_seq, to_seq=0, limit=500)
        check(page["type"] == PAGE, "HISTORY answered %r" % page)
        for m in page["items"]:
            carry(m["seq"], _message(m["nick"], m["text"]), "history", D_KILLS)
            if final_acks.get(m["seq"]) == (m["nick"], m["text"]):
                del final_acks[m["seq"]]
        if not page["more"] or not page["items"]:
            break
        from_seq = page["items"][-1]["seq"] + 1
    b.stop()

    def show(c):
        return "%s %r... (%s, round %d)" % (c[0][0], c[0][1], c[1], c[2])
    #  Examples: first those a subscriber saw before the seq was reused
    by_sub = [r for r in reused if r[1][1].startswith("PUB")]
    examples = (by_sub[:3] + [r for r in reused if r not in by_sub[:3]])[:5]
    check(not reused and not below and not final_acks,
          "after %d kills with --durable off: %d seqs carried two different messages"
          " (%d of them seen by a subscriber first)%s;"
          " %s; %d messages acknowledged after the last restart not in history%s"
          % (D_KILLS, len(set(s for s, *_ in reused)), len(set(s for s, *_ in by_sub)),
             "".join("\n  seq %d: %s, then %s" % (s, show(a), show(c))
                     for s, a, c in examples),
             "; ".join(below) or "every round's seqs above the ones before",
             len(final_acks), (": seqs %r" % sorted(final_acks)[:5]) if final_acks else ""))
