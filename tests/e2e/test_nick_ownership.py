"""Test whether, with CURVE, a nickname belongs to the first key that used
it: another key is refused (403, exit 4) while the owner is online, after it
has gone, and across a broker restart; one key may own several nicknames;
a rename onto a nick owned by another key is refused too."""

import os
import signal

from harness import (TMP, Broker, check, json_client, keygen, listener, one_stderr_line,
                     zchat, T)

COST = 10


def test_nick_bound_to_key():
    d = os.path.join(TMP, "keys")
    os.makedirs(d)
    k = {n: keygen(os.path.join(d, n)) for n in ("server", "alice", "bob")}

    def args(who):
        return ["--cert", k[who] + "_secret", "--server-key", k["server"]]

    b = Broker("--cert", k["server"] + "_secret", "--allow-any")
    ear = listener(b, "ear", ["own"], args=args("bob"))

    def say(nick, key, text):
        return zchat(b, nick, "--send", text, "--timeout", str(T(5)), *args(key), rooms=["own"])

    r = say("alice", "alice", "alice claims her nick")
    check(r.rc == 0, "first use of 'alice' failed: %r" % r)
    r = say("alicebot", "alice", "one key, two nicks")
    check(r.rc == 0, "a key should be able to own a second nick: %r" % r)

    #  Owner offline: bob's key may not take 'alice'.
    r = say("alice", "bob", "bob pretends")
    check(r.rc == 4, "another key claiming 'alice' should exit 4: %r" % r)
    line = one_stderr_line(r)
    check("403" in line or "forbid" in line.lower() or "owned" in line.lower()
          or "belongs" in line.lower() or "another key" in line.lower(),
          "the refusal should say the nick is owned: %r" % line)

    #  Owner online: still refused; rename onto it refused too.
    alice = json_client(b, "alice", ["own"], args=args("alice"))
    r = say("alice", "bob", "bob pretends again")
    check(r.rc == 4, "claiming a live owned nick should exit 4: %r" % r)
    bob = json_client(b, "bob", ["own"], args=args("bob"))
    bob.write({"cmd": "nick", "nick": "alicebot", "id": "n1"})
    ev = bob.wait_for(lambda e: e.get("id") == "n1", desc="answer to rename onto alicebot")
    check(ev.get("type") == "error" and ev.get("code") == 403,
          "renaming onto another key's nick should be 403: %r" % ev)
    for c in (alice, bob):
        c.signal(signal.SIGINT)
        check(c.wait(T(10)) == 130, "%s did not exit 130 on SIGINT" % c.name)

    #  Across a restart the binding holds.
    b.stop()
    b.restart()
    r = say("alice", "bob", "after restart bob pretends")
    check(r.rc == 4, "after a restart another key claiming 'alice' should exit 4: %r" % r)
    r = say("alice", "alice", "after restart alice is back")
    check(r.rc == 0, "after a restart the owner should get her nick: %r" % r)
    r = say("fresh", "bob", "new nicks are still free")
    check(r.rc == 0, "a new nick for bob failed: %r" % r)

    ear.wait_text("new nicks are still free", timeout=T(20))
    texts = [m["text"] for m in ear.messages()]
    check(not [t for t in texts if "pretends" in t],
          "an impostor's message got through: %r" % texts)
