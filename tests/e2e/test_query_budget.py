"""Test whether the query budget holds for an address, not only for each of
its sessions. One connection may greet many sessions behind made-up relay
hops, and one address may hold --max-sessions-per-address of them (1000):
with a budget per session only, a review greeted 20 behind hops on one
connection and each spent its own 16 MiB on pages it never read (+329 MB
of broker memory within a second). Every query is now charged to its
session's address too, whose budget is four times a session's, and is
refused with 429 and a retry time when either is short. And whether a
TOPIC read, a store lookup for a room not loaded, is charged to the query
budget like the other queries rather than to nothing."""

import time

from harness import (Broker, RawDealer, check, decode, encode, new_id, raw_session, T,
                     ACK, ERROR, HELLO, HISTORY, JOIN, JOINED, PAGE, SAY, TOPIC, TOPICIS,
                     WELCOME, WHO, MEMBERS)

COST = 8

#  --query-budget 16:256: a session may take 256 KiB at once, its address
#  four times that, 1 MiB. A page of the 25 messages below is ~100 KB, so
#  a session gets 3 pages (the third into debt) and an address 11.
BUDGET = ("--query-budget", "16:256")
SESSION_PAGES = 3
ADDRESS_PAGES = 11
#  The address refills at 64 KiB a second: what a slow run may add
SLACK_PAGES = 3


class _Hop:
    """A session behind a made-up relay hop on a shared connection."""

    def __init__(self, d, hop):
        self.d = d
        self.hop = hop

    def request(self, mtype, **fields):
        rid = new_id()
        self.d.send_frames([self.hop, b"", encode(mtype, rid, **fields)])
        while True:
            frames = self.d.recv_frames(T(5))
            check(frames is not None, "no reply to %d behind %r" % (mtype, self.hop))
            check(len(frames) == 3 and frames[0] == self.hop and frames[1] == b"",
                  "relayed reply envelope: %r" % [f[:40] for f in frames[:2]])
            m = decode(frames[2])
            if m["id"] == rid:
                return m


def _fill(b, room):
    """A room of 25 messages of 4,000 bytes: one page of ~100 KB."""
    writer = raw_session(b, "writer", [room])
    for i in range(25):
        writer.send(encode(SAY, 100 + i, room=room, kind=0, text="x" * 4000))
    for i in range(25):
        m = writer.recv(T(5))
        check(m is not None and m["type"] == ACK, "SAY %d acknowledged: %r" % (i, m))


def _pages(session, room):
    """Ask for the room's history again and again until refused: the
    number of pages served, and the refusal (a 429 with a retry time)."""
    pages = 0
    while True:
        m = session.request(HISTORY, room=room, from_seq=1, to_seq=0, limit=0)
        if m["type"] != PAGE:
            check(m["type"] == ERROR and m["code"] == 429 and m["retry_ms"] > 0,
                  "HISTORY past the budget should be 429 with a retry time: %r" % m)
            return pages, m
        pages += 1
        check(pages <= SESSION_PAGES + SLACK_PAGES, "a session's own budget never ran out")


def _spend(sessions, room):
    """Each session in turn asks for pages until refused: the pages each
    was served, and each one's refusal."""
    counts, refusals = [], []
    for s in sessions:
        pages, refusal = _pages(s, room)
        counts.append(pages)
        refusals.append(refusal)
    return counts, refusals


def _check_shared(counts, refusals, what):
    total = sum(counts)
    print("%s: pages per session %r" % (what, counts))
    check(total <= ADDRESS_PAGES + SLACK_PAGES,
          "%s: %d pages of ~100 KB for one address, whose budget is ~%d: %r"
          % (what, total, ADDRESS_PAGES, counts))
    check(counts[0] == SESSION_PAGES, "%s: the first session's own budget: %r" % (what, counts))
    #  The last sessions had their own budgets whole: the address refused them
    check(counts[-1] == 0 and "address" in refusals[-1]["reason"],
          "%s: the last session should be refused for its address: %d pages, %r"
          % (what, counts[-1], refusals[-1]))


def test_sessions_behind_relay_hops_share_the_address_budget():
    """Ten sessions greeted behind made-up relay hops on one connection get
    the address's budget between them, not ten times a session's."""
    b = Broker(*BUDGET)
    _fill(b, "h")
    d = RawDealer(b.router)
    sessions = []
    for i in range(10):
        s = _Hop(d, b"hop%d" % i)
        m = s.request(HELLO, version=1, nick="relayed%d" % i, token="")
        check(m["type"] == WELCOME, "relayed HELLO %d: %r" % (i, m))
        check(s.request(JOIN, room="h")["type"] == JOINED, "relayed JOIN %d" % i)
        sessions.append(s)
    counts, refusals = _spend(sessions, "h")
    _check_shared(counts, refusals, "behind relay hops")

    #  Waiting as told is enough: the address is out of debt then
    time.sleep(refusals[-1]["retry_ms"] / 1000.0)
    m = sessions[-1].request(WHO, room="h")
    check(m["type"] == MEMBERS, "WHO after the retry time: %r" % m)
    b.check_alive()


def test_sessions_on_several_connections_share_the_address_budget():
    """Eight clients on connections of their own from one address share its
    budget the same way."""
    b = Broker(*BUDGET)
    _fill(b, "h")
    sessions = [raw_session(b, "client%d" % i, ["h"]) for i in range(8)]
    counts, refusals = _spend(sessions, "h")
    _check_shared(counts, refusals, "on several connections")
    b.check_alive()


def test_topic_reads_are_charged():
    """A flood of TOPIC reads of a room that is not loaded (each a store
    lookup) runs into the query budget: 429 with a retry time."""
    b = Broker("--query-budget", "1:4")
    setter = raw_session(b, "setter", ["quiet"])
    m = setter.request(TOPIC, room="quiet", set=1, topic="nothing to see")
    check(m["type"] == TOPICIS, "TOPIC set: %r" % m)
    setter.bye()                    # the room is no longer loaded
    d = raw_session(b, "reader")
    m = d.request(TOPIC, room="quiet", set=0, topic="")
    check(m["type"] == TOPICIS and m["topic"] == "nothing to see",
          "a TOPIC read of a room not loaded: %r" % m)
    count = 200
    for i in range(count):
        d.send(encode(TOPIC, 1000 + i, room="quiet", set=0, topic=""))
    answers = {}
    while len(answers) < count:
        m = d.recv(T(5))
        check(m is not None, "only %d of %d TOPIC reads answered" % (len(answers), count))
        answers[m["id"]] = m
    read = [m for m in answers.values() if m["type"] == TOPICIS]
    refused = [m for m in answers.values() if m["type"] == ERROR]
    check(all(m["code"] == 429 and m["retry_ms"] > 0 for m in refused),
          "TOPIC reads should be refused with 429 and a retry time: %r" % refused[:3])
    #  4 KiB at ~300 bytes a read, and 1 KiB a second more
    check(len(refused) >= count - 40,
          "a 4 KiB query budget let %d of %d TOPIC reads through" % (len(read), count))
    b.check_alive()
