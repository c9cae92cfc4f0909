"""Test whether a client can reset its rate limit or its query budget by
starting its session over: greeting again on the same connection, or BYE
then HELLO. Each new session used to start with full buckets, so that
--rate-limit 1:1 let through a message per greeting, and the 16 MiB
query budget was 16 MiB per greeting."""

from harness import (Broker, check, encode, raw_session, ACK, ERROR, HISTORY, PAGE,
                     SAY)


def _refused(m, what):
    check(m["type"] == ERROR and m["code"] == 429 and m["retry_ms"] > 0,
          "%s after starting over should be 429 with a retry time, got %r" % (what, m))


def test_greeting_again_keeps_the_rate_limit():
    #  1 a second, bursts of 3: three joins and three messages in all,
    #  for the next second or so
    b = Broker("--rate-limit", "1:3")
    d = raw_session(b, "again", ["r"])
    for i in range(3):
        check(d.say("r", "m%d" % i)["type"] == ACK, "SAY %d within the burst" % i)
    _refused(d.say("r", "over"), "the 4th SAY")

    d.hello("again")                                # a re-greeting: a new session
    d.join("r")
    _refused(d.say("r", "after hello"), "a SAY after HELLO again")

    d.bye()
    d.hello("again")
    d.join("r")
    _refused(d.say("r", "after bye"), "a SAY after BYE and HELLO")
    b.check_alive()


def test_greeting_again_keeps_the_query_budget():
    #  Bursts of 256 KiB, 16 KiB a second: a page of ~100 KB is two or
    #  three pages from the full budget, then refills in six seconds
    b = Broker("--query-budget", "16:256")
    d = raw_session(b, "reader", ["h"])
    for i in range(25):
        d.send(encode(SAY, 100 + i, room="h", kind=0, text="x" * 4000))
    for i in range(25):
        check(d.recv()["type"] == ACK, "SAY %d acknowledged" % i)
    pages = 0
    while True:
        m = d.request(HISTORY, room="h", from_seq=1, to_seq=0, limit=0)
        if m["type"] != PAGE:
            _refused(m, "HISTORY past the budget")
            break
        pages += 1
        check(pages < 10, "the query budget never ran out")

    d.bye()
    d.hello("reader")
    d.join("h")
    _refused(d.request(HISTORY, room="h", from_seq=1, to_seq=0, limit=0),
             "HISTORY after BYE and HELLO")
    d.hello("other")                                # another nick, same address
    d.join("h")
    _refused(d.request(HISTORY, room="h", from_seq=1, to_seq=0, limit=0),
             "HISTORY after greeting again as another nick")
    b.check_alive()
