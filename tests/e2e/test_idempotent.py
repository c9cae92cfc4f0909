"""Test whether a SAY retried with the same id is stored once and answered
with the original acknowledgement, also across a broker restart (SIGTERM
and kill -9), while a new id with the same text is a new message."""

from harness import Broker, RawDealer, check, new_id, ACK, ERROR

COST = 6


def _say(d, room, text, mid):
    m = d.say(room, text, id=mid)
    check(m["type"] == ACK and m["room"] == room, "SAY answered %r" % m)
    return m


def _stored(b, room):
    d = RawDealer(b.router)
    d.hello("auditor%d" % new_id())
    d.join(room)
    info, items = d.history(room, from_seq=1)
    d.bye()
    d.close()
    return [(m["seq"], m["nick"], m["text"]) for m in items]


def test_retried_say_stored_once():
    b = Broker()
    d = RawDealer(b.router)
    d.hello("idem")
    d.join("r")
    mid = new_id()
    first = _say(d, "r", "only once", mid)
    check(first["seq"] == 1, "first message of a room should be seq 1: %r" % first)
    again = _say(d, "r", "only once", mid)
    check((again["seq"], again["ts"]) == (first["seq"], first["ts"]),
          "a retry should get the original ACK: %r vs %r" % (again, first))
    #  Same text, new id: a new message. Same id, other nick: not a retry.
    other = _say(d, "r", "only once", new_id())
    check(other["seq"] == 2, "a new id is a new message: %r" % other)
    e = RawDealer(b.router)
    e.hello("other")
    e.join("r")
    theirs = _say(e, "r", "only once", mid)
    check(theirs["seq"] == 3, "the same id from another nick is not a retry: %r" % theirs)
    check(_stored(b, "r") == [(1, "idem", "only once"), (2, "idem", "only once"),
                              (3, "other", "only once")],
          "history: %r" % _stored(b, "r"))

    for how in ("sigterm", "kill9"):
        #  The session is gone with the broker; the client greets again
        #  (as after 440) and resends with the original id.
        mid2 = new_id()
        before = _say(d, "r", "retry across " + how, mid2)
        if how == "sigterm":
            b.stop()
        else:
            b.kill9()
        b.restart()
        d.close()
        d = RawDealer(b.router)
        m = d.say("r", "retry across " + how, id=mid2)
        check(m["type"] == ERROR and m["code"] == 440,
              "SAY from an unknown peer after restart should be 440: %r" % m)
        d.hello("idem")
        d.join("r")
        after = _say(d, "r", "retry across " + how, mid2)
        check((after["seq"], after["ts"]) == (before["seq"], before["ts"]),
              "retry after %s: ACK %r, original %r" % (how, after, before))
        #  And the original id from the very first message, too.
        old = _say(d, "r", "only once", mid)
        check(old["seq"] == 1, "the first id after %s: %r" % (how, old))

    stored = _stored(b, "r")
    check(stored == [(1, "idem", "only once"), (2, "idem", "only once"),
                     (3, "other", "only once"), (4, "idem", "retry across sigterm"),
                     (5, "idem", "retry across kill9")],
          "history after retries and restarts: %r" % stored)
    b.stop()
