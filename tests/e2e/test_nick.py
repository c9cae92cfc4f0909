"""Test whether nicknames are unique among live sessions (a clash exits 4),
validated, and can be changed with the change announced to the room."""

from harness import (Broker, check, json_client, listener, one_stderr_line,
                     send, zchat, T)

COST = 6


def test_nick_clash():
    b = Broker()
    alice = json_client(b, "alice", ["hall"])
    r = zchat(b, "alice", "--send", "impostor", "--timeout", str(T(5)), rooms=["hall"])
    check(r.rc == 4, "a second 'alice' should be refused with exit 4: %r" % r)
    one_stderr_line(r)
    #  The listener variant is refused the same way.
    r = zchat(b, "alice", "--listen", "--timeout", str(T(5)), rooms=["hall"])
    check(r.rc == 4, "a listener as 'alice' should be refused with exit 4: %r" % r)
    #  The refused clients said nothing in the room.
    watcher = listener(b, "watcher", ["hall"], history=10)
    send(b, "zed", "hall", "sentinel")
    watcher.wait_text("sentinel")
    check([m["text"] for m in watcher.messages()] == ["sentinel"],
          "refused clients got a message through: %r" % watcher.messages())
    check(alice.alive(), "the clashes disturbed the nick's owner")


def test_nick_invalid():
    b = Broker()
    for bad in ["9starts_with_digit", "-dash", "has space", "x" * 33, "semi;colon",
                "caf\u00e9"]:
        r = zchat(b, bad, "--send", "hi", "--timeout", str(T(5)), rooms=["hall"])
        check(r.rc in (2, 4), "invalid nick %r should exit 2 or 4: %r" % (bad, r))
        one_stderr_line(r)
    r = zchat(b, "ok_nick", "--send", "hi", "--timeout", str(T(5)), rooms=["hall"])
    check(r.rc == 0, "valid nick refused: %r" % r)
    #  Every allowed character, 32 bytes long.
    r = zchat(b, "A_z-9[]{}|^`" + "q" * 20, "--send", "hi", "--timeout", str(T(5)),
              rooms=["hall"])
    check(r.rc == 0, "a 32-byte nick of allowed characters was refused: %r" % r)


def test_nick_rename():
    b = Broker()
    watcher = listener(b, "watcher", ["hall"])
    alice = json_client(b, "alice", ["hall"])
    bob = json_client(b, "bob", ["hall"])
    alice.write({"cmd": "nick", "nick": "alice2", "id": "n1"})
    ev = watcher.wait_for(lambda e: e.get("type") == "nick", desc="nick event")
    check(ev.get("old") == "alice" and ev.get("new") == "alice2",
          "nick event should say alice -> alice2: %r" % ev)
    alice.wait_for(lambda e: e.get("type") == "nick" and e.get("new") == "alice2",
                   desc="own nick change confirmed")
    alice.write({"cmd": "say", "room": "hall", "text": "now I am alice2", "id": "s1"})
    m = watcher.wait_text("now I am alice2")
    check(m.get("from") == "alice2", "message after rename has from %r" % m.get("from"))

    #  Renaming onto a live nick is refused (409) and changes nothing.
    bob.write({"cmd": "nick", "nick": "alice2", "id": "n2"})
    err = bob.wait_for(lambda e: e.get("id") == "n2", desc="answer to clashing rename")
    check(err.get("type") == "error" and err.get("code") == 409,
          "rename onto a live nick should be error 409: %r" % err)
    #  An invalid new nick is refused too.
    bob.write({"cmd": "nick", "nick": "9bad", "id": "n3"})
    err = bob.wait_for(lambda e: e.get("id") == "n3", desc="answer to invalid rename")
    check(err.get("type") == "error" and err.get("code") in (422,),
          "rename to an invalid nick should be error 422: %r" % err)
    bob.write({"cmd": "say", "room": "hall", "text": "still bob", "id": "s2"})
    m = watcher.wait_text("still bob")
    check(m.get("from") == "bob", "bob's nick changed after refused renames: %r" % m)

    #  The old nick is free now, the new one is taken.
    send(b, "alice", "hall", "a new alice")
    r = zchat(b, "alice2", "--send", "clash", "--timeout", str(T(5)), rooms=["hall"])
    check(r.rc == 4, "alice2 is live: a second alice2 should exit 4: %r" % r)


def test_three_sends_in_a_row():
    b = Broker()
    watcher = listener(b, "watcher", ["hall"])
    for i in range(3):
        r = zchat(b, "same", "--send", "run %d" % i, rooms=["hall"])
        check(r.rc == 0, "zchat --send run %d by the same nick failed: %r" % (i, r))
    msgs = watcher.wait_messages(3)
    check([m["text"] for m in msgs] == ["run 0", "run 1", "run 2"],
          "three sends should arrive in order, once each: %r" % msgs)
    check([m["seq"] for m in msgs] == [1, 2, 3] and all(m["from"] == "same" for m in msgs),
          "three sends: wrong seq or sender: %r" % msgs)
