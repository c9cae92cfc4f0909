"""Test whether a room message reaches every member of its room and nobody
else, also when one room's name is a prefix of another's (lob / lobby)."""

import os

from harness import (Broker, RawSub, check, check_ts, listener, send,
                     wait_sub_live, MESSAGE)

COST = 8


def test_fanout_rooms_and_prefix():
    b = Broker()
    lob = listener(b, "l_lob", ["lob"])
    lobby = listener(b, "l_lobby", ["lobby"])
    both = listener(b, "l_both", ["lob", "lobby"])
    other = listener(b, "l_other", ["other"])
    #  A raw subscriber to exactly "lob:" must never see lobby's traffic.
    sub = RawSub(b.pub, topics=[b"lob:"])
    wait_sub_live(sub, b, "lob", "probe_lob")

    send(b, "alice", "lob", "to lob 1")
    send(b, "bob", "lobby", "to lobby 1")
    send(b, "alice", "lob", "to lob 2")
    send(b, "bob", "lobby", "to lobby 2")
    #  Sentinels last: once a listener has its room's sentinel, anything
    #  wrongly published to it earlier has arrived too (one PUB, in order).
    send(b, "carol", "other", "sentinel other")
    send(b, "carol", "lob", "sentinel lob")
    send(b, "carol", "lobby", "sentinel lobby")

    lob.wait_text("sentinel lob")
    lobby.wait_text("sentinel lobby")
    both.wait_text("sentinel lob")
    both.wait_text("sentinel lobby")
    other.wait_text("sentinel other")

    def texts(p, room=None):
        return [m["text"] for m in p.messages(room)]

    check(texts(lob) == ["to lob 1", "to lob 2", "sentinel lob"],
          "lob listener got %r" % texts(lob))
    check(texts(lobby) == ["to lobby 1", "to lobby 2", "sentinel lobby"],
          "lobby listener got %r" % texts(lobby))
    check(texts(both, "lob") == ["to lob 1", "to lob 2", "sentinel lob"],
          "lob+lobby listener got in lob %r" % texts(both, "lob"))
    check(texts(both, "lobby") == ["to lobby 1", "to lobby 2", "sentinel lobby"],
          "lob+lobby listener got in lobby %r" % texts(both, "lobby"))
    check(texts(other) == ["sentinel other"], "other listener got %r" % texts(other))

    #  Every message carries sender, per-room sequence and broker time.
    for m, sender, seq in zip(lob.messages(), ["alice", "alice", "carol"], [1, 2, 3]):
        check(m.get("from") == sender and m.get("room") == "lob" and m.get("seq") == seq,
              "lob message has wrong from/room/seq: %r" % m)
        check_ts(m.get("ts"), "lob message")
    for m, seq in zip(lobby.messages(), [1, 2, 3]):
        check(m.get("seq") == seq, "lobby seq should count from 1 by itself: %r" % m)

    sub.drain(0.3)
    msgs = [m for m in sub.decoded() if m["type"] == MESSAGE]
    check([m["text"] for m in msgs] == ["to lob 1", "to lob 2", "sentinel lob"],
          "raw SUB on 'lob:' got %r" % [(m["room"], m["text"]) for m in msgs])
    for frames in sub.got:
        check(frames[0] == b"lob:", "raw SUB on 'lob:' got topic %r" % frames[0])
    for p in (lob, lobby, both, other):
        p.check_clean()


def _io_threads(pid):
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sum(1 for n in names if n.startswith("ZMQbg/IO/"))


def test_io_threads():
    """The broker runs two I/O threads (ROUTER and PUB each on its own, so
    that ACKs do not queue behind a big fan-out); an operator's
    ZSYS_IO_THREADS=1 puts both on one, and the broker still works."""
    for expected, env in ((2, None), (1, {"ZSYS_IO_THREADS": "1"})):
        b = Broker(env=env)
        check(_io_threads(b.pid) == expected,
              "broker with env %r has %d I/O threads, expected %d"
              % (env, _io_threads(b.pid), expected))
        p = listener(b, "l_io%d" % expected, ["io"])
        send(b, "alice", "io", "over %d I/O threads" % expected)
        p.wait_text("over %d I/O threads" % expected)
        p.check_clean()
        b.stop()
