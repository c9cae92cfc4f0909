"""Test whether the JSON-lines mode passes text through intact (quotes,
backslashes, unicode, newlines, control characters) in both directions,
echoes command ids, answers invalid input with error lines without dying,
and at end of stdin waits for pending acknowledgements then exits 0."""

import json

from harness import Broker, check, json_client, listener, T

COST = 6

TEXTS = [
    'he said "hi" and left',
    "back\\slash \\n not a newline, {\"json\": [1,2]}",
    "caf\u00e9 \u00fcber \u65e5\u672c\u8a9e \u0410\u0411\u0412 \U0001f600\U0001f680 \u200d",
    "line one\nline two\r\nthird\tcolumn",
    "ctrl \x01\x02\x1b[31m red \x7f end",
    "  leading and trailing spaces  ",
    "x" * 4000,
]


def test_json_round_trip():
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    alice = json_client(b, "alice", ["ops"])
    for i, text in enumerate(TEXTS):
        alice.write({"cmd": "say", "room": "ops", "text": text, "id": "say-%d" % i})
    for i, text in enumerate(TEXTS):
        ack = alice.wait_for(lambda e, i=i: e.get("id") == "say-%d" % i,
                             desc="answer to say-%d" % i)
        check(ack.get("type") == "ack" and ack.get("room") == "ops"
              and isinstance(ack.get("seq"), int), "say-%d answered %r" % (i, ack))
    msgs = bob.wait_messages(len(TEXTS))
    for text, m in zip(TEXTS, msgs):
        check(m.get("text") == text, "text mangled: sent %r got %r" % (text, m.get("text")))
        check(m.get("from") == "alice", "wrong sender: %r" % m)

    #  A plain line is said to the current room; a DM keeps its text too.
    alice.write("plain line with \"quotes\" and \u00fcml\u00e4uts")
    bob.wait_text("plain line with \"quotes\" and \u00fcml\u00e4uts")
    alice.write({"cmd": "dm", "to": "bob", "text": TEXTS[3], "id": 42})
    dm = bob.wait_text(TEXTS[3], type_="dm")
    check(dm.get("from") == "alice", "dm sender: %r" % dm)
    ack = alice.wait_for(lambda e: e.get("id") == 42, desc="answer to dm id 42")
    check(ack.get("type") == "ack", "numeric id should be echoed on the ack: %r" % ack)

    #  Output is one JSON object per line, and raw: every line parses.
    alice.check_clean()
    bob.check_clean()
    for line in bob.lines:
        check("\n" not in line and json.loads(line) is not None, "bad output line %r" % line)

    alice.close_stdin()
    check(alice.wait(T(10)) == 0, "alice should exit 0 at end of stdin")
    bob.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "alice",
                 desc="alice's quit")


def test_json_invalid_input():
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    alice = json_client(b, "alice", ["ops"])
    bad = [
        '{"cmd": "say", "room": "ops", "text": "unterminated',
        '{"cmd": "fly", "id": "b1"}',
        '{"cmd": "say", "id": "b2"}',
        '{"cmd": "say", "room": "ops", "text": 17, "id": "b3"}',
        '{"cmd": "join", "room": "bad room!", "id": "b4"}',
        '{"cmd": "say", "room": "not_joined", "text": "x", "id": "b5"}',
        '[1, 2, 3]',
        '{"cmd": "say", "room": "ops", "text": "' + "y" * 5000 + '", "id": "b6"}',
        '{"cmd": "say", "room": "ops", "text": "", "id": "b7"}',
        '{"cmd": "say", "room": "ops", "text": "x", "action": "yes", "id": "b8"}',
        '{"cmd": "dm", "to": "bob", "text": "", "id": "b9"}',
        '{"cmd": "say", "room": "ops", "text": "tail"} {"cmd": "say"}',
    ]
    for line in bad:
        alice.write(line)
    errors = alice.wait_count(lambda e: e.get("type") == "error", len(bad), timeout=T(10),
                              desc="error lines for invalid input")
    for cid, code in (("b4", 422), ("b5", 404), ("b6", 413), ("b7", 422), ("b8", 422),
                      ("b9", 422)):
        #  The broker's code, or a negative one if the client refused it
        #  itself before sending.
        ev = [e for e in errors if e.get("id") == cid]
        check(ev and isinstance(ev[0].get("code"), int)
              and (ev[0]["code"] == code or ev[0]["code"] < 0),
              "%s should be error %d: %r" % (cid, code, errors))
    for e in errors:
        check(isinstance(e.get("message"), str) and e["message"],
              "error without a message: %r" % e)
    #  Still alive and working.
    alice.write({"cmd": "say", "room": "ops", "text": "still here", "id": "ok"})
    bob.wait_text("still here")
    check(alice.alive(), "the client died on invalid input")
    check([m["text"] for m in bob.messages()] == ["still here"],
          "invalid commands produced messages: %r" % bob.messages())
    alice.close_stdin()
    rc = alice.wait(T(10))
    check(rc is not None, "alice did not exit")


def test_json_pending_acks_at_eof():
    b = Broker()
    bob = listener(b, "bob", ["ops"], count=200)
    alice = json_client(b, "alice", ["ops"])
    for i in range(200):
        alice.write({"cmd": "say", "room": "ops", "text": "burst %d" % i})
    alice.close_stdin()
    check(alice.wait(T(20)) == 0, "alice should exit 0 once all 200 are acknowledged")
    acks = [e for e in alice.snapshot() if e.get("type") == "ack"]
    check(len(acks) == 200, "alice printed %d acks for 200 says" % len(acks))
    check(bob.wait(T(20)) == 0, "bob did not get 200 messages: %s" % bob._describe())
    check([m["text"] for m in bob.messages()] == ["burst %d" % i for i in range(200)],
          "burst arrived out of order or incomplete")


def test_json_history_count_zero_is_refused():
    #  "count" is how many of the last messages to fetch: 0 must not
    #  quietly mean a whole page of them.
    b = Broker()
    alice = json_client(b, "alice", ["ops"])
    for i in range(30):
        alice.write({"cmd": "say", "room": "ops", "text": "m%d" % i, "id": "s%d" % i})
    alice.wait_for(lambda e: e.get("id") == "s29", desc="the last ack")
    alice.write({"cmd": "history", "room": "ops", "count": 0, "id": "h0"})
    answer = alice.wait_for(lambda e: e.get("id") == "h0", desc="answer to history h0")
    check(answer.get("type") == "error" and answer.get("code") == 422,
          "history with count 0 should be refused with 422: %r" % answer)
    replayed = [e for e in alice.messages("ops") if e.get("history")]
    check(not replayed, "history with count 0 replayed %d messages" % len(replayed))
    alice.close_stdin()
    check(alice.wait(T(10)) == 0, "alice should exit 0 at end of stdin")


def test_json_join_left_at_once_is_answered():
    #  A leave right behind its join: the join is answered all the same
    #  (joined, or an error saying it was cancelled), never left hanging.
    b = Broker()
    alice = json_client(b, "alice", ["ops"])
    for i in range(5):
        alice.write('{"cmd":"join","room":"r%d","id":"j%d"}\n{"cmd":"leave","room":"r%d"}'
                    % (i, i, i))
    for i in range(5):
        answer = alice.wait_for(lambda e, i=i: e.get("id") == "j%d" % i,
                                desc="an answer to join j%d" % i)
        check(answer.get("type") in ("joined", "error"),
              "join j%d answered with %r" % (i, answer))
    alice.close_stdin()
    check(alice.wait(T(10)) == 0, "alice should exit 0 at end of stdin")
