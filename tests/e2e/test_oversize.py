"""Test whether an oversize sender is cut off at the transport (a frame over
1 MiB disconnects that peer) while other clients keep streaming unharmed,
and whether a text over --max-text is refused with 413."""

import os
import tempfile

import zmq
from zmq.utils.monitor import recv_monitor_message

from harness import (TMP, Broker, Proc, RawDealer, check, check_contiguous, fail, listener,
                     one_stderr_line, raw_session, zchat, zchat_argv, T, ERROR, SAY)

COST = 8


def test_oversize_cut_off():
    b = Broker("--max-text", "1000")
    ear = listener(b, "ear", ["big"], count=1000, timeout=T(60))
    fd, path = tempfile.mkstemp(dir=TMP)
    with os.fdopen(fd, "w") as f:
        for i in range(1000):
            f.write("steady %04d\n" % i)
    with open(path, "rb") as stdin:
        steady = Proc(zchat_argv(b, "steady", ["big"], ["--send", "-"]), "steady",
                      stdin_file=stdin)

    #  Several peers each send a 2 MiB frame: each is disconnected.
    for i in range(4):
        d = RawDealer(b.router)
        d.hello("huge%d" % i)
        d.join("big")
        mon = d.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        d.send(b"ZC" + bytes([SAY]) + b"\x00" * 8 + b"\x03big\x00"
               + (2 * 1024 * 1024).to_bytes(4, "big") + b"A" * (2 * 1024 * 1024))
        if not mon.poll(int(T(5) * 1000)):
            fail("a peer sending a 2 MiB frame was not disconnected")
        ev = recv_monitor_message(mon)
        check(ev["event"] == zmq.EVENT_DISCONNECTED, "monitor event %r" % ev)
        d.sock.disable_monitor()
        mon.close(0)
        check(d.recv_frames(0.2) is None, "the oversize frame got an answer")
        d.close()
        b.check_alive()

    rc = steady.wait(T(60))
    check(rc == 0, "the steady sender failed meanwhile: %s" % steady._describe())
    check(ear.wait(T(30)) == 0, "the listener did not get all 1000: %s" % ear._describe())
    check_contiguous(ear.messages("big"), 1, 1000, "listener beside oversize senders")

    #  Over --max-text but within the wire limit: 413, nothing stored.
    d = raw_session(b, "wordy", ["big"])
    m = d.say("big", "w" * 1001)
    check(m["type"] == ERROR and m["code"] == 413, "a 1001-byte text should be 413: %r" % m)
    m = d.say("big", "w" * 1000)
    check(m["type"] != ERROR and m["seq"] == 1001, "a 1000-byte text should be stored: %r" % m)
    #  The welcome tells the limit, and the CLI refuses cleanly.
    check(d.welcome["max_text"] == 1000, "WELCOME max_text: %r" % d.welcome)
    r = zchat(b, "wordy2", "--send", "v" * 1001, "--timeout", str(T(5)), rooms=["big"])
    check(r.rc not in (0, 3), "a too long --send should fail: %r" % r)
    one_stderr_line(r)
