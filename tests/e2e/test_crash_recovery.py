"""Test whether no acknowledged message is lost or duplicated when the broker
is killed (kill -9, or stopped with SIGTERM) while several senders stream
thousands of messages: after a restart on the same data every message is
stored exactly once in order, the senders finish by themselves and the
listeners end with the complete, contiguous sequence."""

import threading
import time

from harness import (Broker, Proc, check, check_contiguous, fail, listener, raw_session,
                     zchat_argv, T)

COST = 25
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
