"""Test whether 50 concurrent clients in one room each receive every message
of that room, exactly once and in order."""

from harness import Broker, check, check_contiguous, listener, run, zchat_argv, T

COST = 25
TIMEOUT = 180

CLIENTS = 50
SENDERS = 2
PER_SENDER = 10


def test_fifty_clients():
    b = Broker()
    total = SENDERS * PER_SENDER
    clients = [listener(b, "c%02d" % i, ["crowd"], count=total, timeout=T(90),
                        wait_joined=False) for i in range(CLIENTS)]
    for c in clients:
        c.joined(["crowd"], timeout=T(60))
    senders = []
    for s in range(SENDERS):
        lines = "".join("sender %d line %d\n" % (s, i) for i in range(PER_SENDER))
        senders.append(run(zchat_argv(b, "sender%d" % s, ["crowd"], ["--send", "-"]),
                           input=lines, timeout=T(60), name="sender%d" % s))
    for r in senders:
        check(r.rc == 0, "sender failed: %r" % r)
    for c in clients:
        rc = c.wait(T(60))
        check(rc == 0, "%s exited %s: %s" % (c.name, rc, c._describe()))
        msgs = c.messages("crowd")
        check_contiguous(msgs, 1, total, c.name)
        for s in range(SENDERS):
            mine = [m["text"] for m in msgs if m.get("from") == "sender%d" % s]
            check(mine == ["sender %d line %d" % (s, i) for i in range(PER_SENDER)],
                  "%s: sender%d's lines wrong: %r" % (c.name, s, mine))
        c.check_clean()
