"""Test whether presence works: joins and orderly quits are announced, a
client killed with kill -9 is announced as quit within the session timeout
(and, from version 6, the check of its closed connection), and an idle but
live client is kept."""

import signal
import time

from harness import Broker, Proc, check, json_client, listener, send, wait_until, zchat_argv, T

COST = 12


def test_quit_after_kill9():
    timeout = 2.0
    b = Broker("--session-timeout", str(timeout))
    watcher = listener(b, "watcher", ["hall"])
    idle = json_client(b, "idler", ["hall"])
    victim = json_client(b, "victim", ["hall"])
    watcher.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "victim",
                     desc="victim's join event")
    #  Let a heartbeat or two pass so the victim is mid-interval when killed.
    time.sleep(1.0)
    victim.kill9()
    t0 = time.monotonic()
    ev = watcher.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "victim",
                          timeout=timeout + T(3), desc="quit of the killed client")
    took = time.monotonic() - t0
    check(ev.get("room") == "hall", "quit event without its room: %r" % ev)
    #  The broker may only expire it after the timeout has passed since the
    #  victim's last ping, which was at most timeout/3 before the kill.
    #  From version 6 its silence counts only from the check of its closed
    #  connection, a second after the close (ZCHAT_SERVER_CHECK_MS).
    check(took >= timeout - timeout / 3 - 0.3,
          "quit announced after %.2fs, before the %.1fs session timeout" % (took, timeout))
    check(took <= timeout + 1.0 + 1.5 * (T(1)),
          "quit announced %.2fs after kill -9, session timeout is %.1fs" % (took, timeout))

    #  Idle clients (and the listener) are kept while their connections
    #  are up: nobody else is expired, even after several timeouts of
    #  silence.
    time.sleep(2 * timeout + 0.5)
    quits = [e for e in watcher.snapshot() if e.get("type") == "quit"]
    check([e.get("nick") for e in quits] == ["victim"],
          "only the killed client may be announced as quit: %r" % quits)
    idle.write({"cmd": "who", "room": "hall", "id": "w"})
    ev = idle.wait_for(lambda e: e.get("type") == "members", desc="members")
    check(sorted(ev.get("nicks", [])) == ["idler", "watcher"],
          "after the expiry, hall should hold idler and watcher: %r" % ev)


def test_orderly_quit_is_immediate():
    b = Broker("--session-timeout", "30")
    watcher = listener(b, "watcher", ["hall"])
    c = json_client(b, "leaver", ["hall"])
    c.close_stdin()
    check(c.wait(T(10)) == 0, "json client did not exit 0 at end of stdin")
    ev = watcher.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "leaver",
                          timeout=T(3), desc="quit on goodbye (not after the timeout)")
    check(ev.get("room") == "hall", "quit without room: %r" % ev)
    #  An interrupted listener says goodbye too.
    other = listener(b, "other", ["hall"])
    other.signal(signal.SIGINT)
    rc = other.wait(T(10))
    check(rc == 130, "a listener interrupted by SIGINT should exit 130, got %s" % rc)
    watcher.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "other",
                     timeout=T(3), desc="quit of the interrupted listener")


def test_listen_text_says_own_join_once():
    #  In text, --listen says "you joined #lobby" and not, again, its own
    #  presence event as if someone else had come.
    b = Broker()
    ear = Proc(zchat_argv(b, "rl", ["lobby"], ["--listen", "--count", "1", "--timeout", "10"]),
               "listen-text", stdin=False)
    wait_until(lambda: "you joined" in "\n".join(ear.lines), T(10), desc="rl's join")
    send(b, "bob", "lobby", "hey")
    check(ear.wait(T(10)) == 0, "the listener should exit 0 after one message")
    out = "\n".join(ear.lines)
    check("<bob> hey" in out, "the message was not printed: %r" % out)
    check("rl joined" not in out, "the listener's own join printed as presence: %r" % out)
