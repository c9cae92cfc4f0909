"""Test whether history works: a late joiner with --history gets the whole
range in order (paged), sequence numbers continue across restarts, and the
retention limits (--retain-messages, --retain-days) hold, with the lost
range reported as a gap rather than hidden. Also whether a damaged store's
unreadable messages cost only their own seqs: the readable ones after them
are served and only the damaged seqs are reported gone."""

import os
import sqlite3
import time

from harness import (Broker, check, check_contiguous, listener, raw_session, run, send,
                     wait_until, zchat, zchat_argv, T, HISTORY, PAGE, store_chunk)

COST = 15


def _send_lines(b, nick, room, lines):
    r = run(zchat_argv(b, nick, [room], ["--send", "-"]), input="".join(l + "\n" for l in lines),
            timeout=T(60), name=nick)
    check(r.rc == 0, "--send - failed: %r" % r)


def test_late_joiner_gets_everything():
    #  A small page size makes the client page through several replies.
    b = Broker("--history-page", "100")
    lines = ["history line %d" % i for i in range(350)]
    _send_lines(b, "writer", "past", lines)

    late = listener(b, "late", ["past"], history=350, count=350, timeout=T(30),
                    wait_joined=False)
    check(late.wait(T(30)) == 0, "late joiner did not get 350 messages: %s" % late._describe())
    msgs = late.messages("past")
    check_contiguous(msgs, 1, 350, "late joiner")
    check([m["text"] for m in msgs] == lines, "late joiner's texts differ")
    check(all(m.get("from") == "writer" for m in msgs), "history lost the sender")
    check(all(m.get("history", True) is True for m in msgs),
          "replayed messages should not be marked otherwise than history: %r" % msgs[0])

    #  Asking for more than exists gives what exists, then live traffic.
    more = listener(b, "more", ["past"], history=1000, count=351, timeout=T(30))
    send(b, "writer", "past", "live after history")
    check(more.wait(T(30)) == 0, "history 1000 + 1 live: %s" % more._describe())
    msgs = more.messages("past")
    check_contiguous(msgs, 1, 351, "history then live")
    check(msgs[-1]["text"] == "live after history" and not msgs[-1].get("history"),
          "the live message came last and is not marked history: %r" % msgs[-1])

    #  --history N gives exactly the last N.
    r = zchat(b, "last5", "--listen", "--json", "--history", "5", "--count", "5",
              "--timeout", str(T(20)), rooms=["past"])
    check(r.rc == 0, "--history 5 --count 5: %r" % r)
    msgs = [e for e in r.events() if e.get("type") == "message"]
    check_contiguous(msgs, 347, 351, "--history 5")

    #  Sequence numbers continue across a restart.
    b.stop()
    b.restart()
    send(b, "writer", "past", "after restart")
    auditor = raw_session(b, "auditor", ["past"])
    info, items = auditor.history("past", from_seq=1)
    check_contiguous(items, 1, 352, "history after restart")
    check(items[-1]["text"] == "after restart", "last stored message: %r" % items[-1])
    #  The last-N form (from_seq 0) and a bounded range.
    m = auditor.request(HISTORY, room="past", from_seq=0, to_seq=0, limit=3)
    check(m["type"] == PAGE and [i["seq"] for i in m["items"]] == [350, 351, 352],
          "HISTORY from_seq 0 limit 3 should give 350..352: %r" % m)
    m = auditor.request(HISTORY, room="past", from_seq=10, to_seq=14, limit=100)
    check([i["seq"] for i in m["items"]] == [10, 11, 12, 13, 14] and m["first_seq"] == 1
          and m["seq"] == 352, "HISTORY 10..14: %r" % m)


def test_retain_messages():
    b = Broker("--retain-messages", "100")
    lines = ["keep %d" % i for i in range(300)]
    _send_lines(b, "writer", "short", lines)
    auditor = raw_session(b, "auditor", ["short"])

    def pruned():
        info, items = auditor.history("short", from_seq=1)
        return (info, items) if len(items) <= 100 else None
    #  Enforcement may lag a little behind the writes, never by much.
    info, items = wait_until(pruned, T(10), "retention to keep at most 100 messages")
    check_contiguous(items, 201, 300, "retained history")
    check(info["first_seq"] == 201, "first_seq should be 201: %r" % info)

    #  A late joiner asking for everything is told what is gone.
    r = zchat(b, "late", "--listen", "--json", "--history", "300", "--count", "100",
              "--timeout", str(T(20)), rooms=["short"])
    check(r.rc == 0, "late joiner on a pruned room: %r" % r)
    evs = r.events()
    msgs = [e for e in evs if e.get("type") == "message"]
    check_contiguous(msgs, 201, 300, "late joiner on a pruned room")
    gaps = [e for e in evs if e.get("type") == "gap"]
    check(len(gaps) == 1 and gaps[0].get("room") == "short" and gaps[0].get("from") == 1
          and gaps[0].get("to") == 200, "expected one gap event 1..200: %r" % gaps)
    check(evs.index(gaps[0]) < evs.index(msgs[0]), "the gap should be told before message 201")

    #  The limit holds across a restart, and seqs go on.
    b.stop()
    b.restart()
    send(b, "writer", "short", "one more")
    auditor = raw_session(b, "auditor2", ["short"])
    info, items = wait_until(lambda: (lambda r: r if len(r[1]) <= 100 else None)(
        auditor.history("short", from_seq=1)), T(10), "retention after restart")
    check_contiguous(items, 202, 301, "retained history after restart")


def test_retain_days():
    #  0.00003 days is about 2.6 s.
    b = Broker("--retain-days", "0.00003")
    _send_lines(b, "writer", "aging", ["old %d" % i for i in range(20)])
    auditor = raw_session(b, "auditor", ["aging"])
    info, items = auditor.history("aging", from_seq=1)
    check(len(items) == 20, "fresh messages should all be held: %r" % info)

    def pruned():
        info, items = auditor.history("aging", from_seq=1)
        return (info, items) if not items else None
    info, items = wait_until(pruned, T(15), "messages older than --retain-days to go", 0.2)
    check(info["first_seq"] in (0, 21), "first_seq after aging out: %r" % info)
    send(b, "writer", "aging", "fresh")
    info, items = auditor.history("aging", from_seq=1)
    check([(m["seq"], m["text"]) for m in items] == [(21, "fresh")],
          "after aging, history should hold only the new message 21: %r" % items)


def test_damaged_rows():
    """A store holding messages no client could read (a kind the protocol
    does not know, a text that is not UTF-8; written here past the broker,
    which never stores them): each is left out as gone, the first of a
    page and a run longer than a page included, and the readable ones after
    them are served. The broker used to end the page at such a message, so
    a damaged first row gave an empty page without more: the client then
    took the whole range as gone."""
    b = Broker("--history-page", "4")
    b.stop()
    #  40 messages in chunks of 8. Damaged: 1 (the first of the first
    #  page), 10..15 (a run longer than a page), 25 (not UTF-8), 39.
    bad_kind = {1: 9, 39: 5}
    bad_kind.update((s, 7) for s in range(10, 16))
    now = int(time.time() * 1000)
    messages = []
    for s in range(1, 41):
        text = b"bad \xff %d" % s if s == 25 else b"line %d" % s
        messages.append((s, now - 60000 + s, "writer", bad_kind.get(s, 0), 0, text))
    db = sqlite3.connect(os.path.join(b.data, "zchat.db"))
    for first in range(0, 40, 8):
        part = messages[first:first + 8]
        db.execute("INSERT INTO chunks (room, first_seq, last_seq, count, min_ts, max_ts, data)"
                   " VALUES ('scarred', ?, ?, ?, ?, ?, ?)",
                   (part[0][0], part[-1][0], len(part), part[0][1], part[-1][1], store_chunk(part)))
    db.commit()
    db.close()
    b.restart()
    damaged = sorted(set(bad_kind) | {25})
    readable = [s for s in range(1, 41) if s not in damaged]

    #  The protocol: the first page holds the 4 after the damaged first
    #  row, with more; paging through gives every readable message.
    auditor = raw_session(b, "auditor", ["scarred"])
    m = auditor.request(HISTORY, room="scarred", from_seq=1, to_seq=0, limit=100)
    check(m["type"] == PAGE and [i["seq"] for i in m["items"]] == [2, 3, 4, 5] and m["more"],
          "HISTORY from 1 over a damaged first row should give 2..5 and more: %r" % m)
    info, items = auditor.history("scarred", from_seq=1)
    check([i["seq"] for i in items] == readable,
          "paging over damaged rows: got %r" % [i["seq"] for i in items])
    check(all(i["text"] == "line %d" % i["seq"] for i in items), "texts: %r" % items[:3])
    check("unreadable message" in b.stderr(), "no warning about the damaged rows logged")

    #  The client library: every readable message, and a gap for exactly
    #  each damaged seq or run.
    r = zchat(b, "late", "--listen", "--json", "--history", "40", "--count", str(len(readable)),
              "--timeout", str(T(20)), rooms=["scarred"])
    check(r.rc == 0, "late joiner over a damaged store: %r" % r)
    evs = r.events()
    msgs = [e for e in evs if e.get("type") == "message"]
    check([e["seq"] for e in msgs] == readable,
          "late joiner over a damaged store got %r" % [e["seq"] for e in msgs])
    gaps = [(e.get("from"), e.get("to")) for e in evs if e.get("type") == "gap"]
    check(gaps == [(1, 1), (10, 15), (25, 25), (39, 39)],
          "the gaps should be exactly the damaged seqs: %r" % gaps)
    b.stop()
