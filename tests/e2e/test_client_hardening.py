"""Test whether the client stands up to a hostile broker and to hostile input:
a frame far over the protocol's limit is refused by the transport before it
is read (on the request and the subscription socket alike); an input line
over 1 MiB is discarded whole, with one error, in --json, pipe and --send -
modes (no piece of it is said or run); names and reasons from a broker are
never printed raw to a terminal; and a text over the broker's max_text is
refused in --json mode with 413 by size, not by matching an error text."""

import json
import socket
import struct
import subprocess
import threading
import time

from harness import (ERROR, EVENT, MEMBERS, MESSAGE, SAY, T, TOPICIS, TOPIC, WHO, Broker,
                     FakeBroker, Proc, add_cleanup, check, encode, fail, json_client,
                     listener, one_stderr_line, proc_rss_kb, run, zchat, zchat_argv,
                     zmtp_greeting)

COST = 12

MAX_LINE = 1024 * 1024                      # ZCHAT_CLI_MAX_LINE
HUGE_FRAME = 600 * 1024 * 1024              # what the review's fake broker sent
EVIL = "x\x1b]0;owned\x07\x1b[2J"           # retitles and clears a terminal
#  Bytes a terminal obeys: ESC, BEL, and the C1 CSI (U+009B, as UTF-8).
RAW_CONTROLS = (b"\x1b", b"\x07", b"\xc2\x9b")


# ---------------------------------------------------------------------------
#  A peer that speaks ZMTP by hand, to announce a frame nobody should read

class RawZmtpServer:
    """A TCP listener on a free loopback port that greets each connection
    as a ZMTP socket of socket_type and then announces one HUGE_FRAME."""

    def __init__(self, socket_type):
        self.socket_type = socket_type
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(T(5))
        self.port = self.listener.getsockname()[1]
        add_cleanup(self.listener.close)

    def accept(self, timeout):
        self.listener.settimeout(timeout)
        try:
            conn, _ = self.listener.accept()
        except socket.timeout:
            return None
        add_cleanup(conn.close)
        return conn

    def attack(self, conn):
        """Greet, then send the header of a HUGE_FRAME and a little of it."""
        conn.sendall(zmtp_greeting(self.socket_type))
        #  The peer's greeting and READY (read so that its side is done)
        conn.settimeout(T(5))
        got = b""
        while len(got) < 64:
            chunk = conn.recv(4096)
            if not chunk:
                fail("the client closed before its ZMTP greeting")
            got += chunk
        conn.sendall(bytes([0x02]) + struct.pack(">Q", HUGE_FRAME) + b"A" * 65536)

    def closed_within(self, conn, timeout):
        """True if the peer closes the connection within timeout seconds
        (anything it sends meanwhile is read and dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            conn.settimeout(left)
            try:
                if not conn.recv(65536):
                    return True
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True


def _check_frame_refused(server, proc, what):
    conn = server.accept(T(10))
    check(conn is not None, "%s: the client never connected" % what)
    server.attack(conn)
    check(server.closed_within(conn, T(3)),
          "%s: the client kept reading a %d-byte frame instead of refusing it"
          % (what, HUGE_FRAME))
    #  The transport refused it (libzmq 4.3.4 treats it as a protocol
    #  error and does not connect to that peer again); the client lives on.
    time.sleep(0.2)
    check(proc.alive(), "%s: the client died instead of dropping the connection" % what)
    check(proc_rss_kb(proc.pid) < 100 * 1024,
          "%s: the client holds %d kB after refusing the frame" % (what, proc_rss_kb(proc.pid)))


# ---------------------------------------------------------------------------
#  A fake broker on real ZeroMQ sockets, scripted per test

def _no_raw_controls(data, what):
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    for c in RAW_CONTROLS:
        check(c not in raw, "%s holds a raw terminal control %r: %r" % (what, c, raw[-600:]))


def _run_bytes(argv, stdin_bytes, timeout):
    """Run argv with stdin_bytes; (rc, stdout bytes, stderr bytes)."""
    p = subprocess.run(argv, input=stdin_bytes, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------
#  9: frames over the limit

def test_huge_frame_on_dealer_refused():
    server = RawZmtpServer(b"ROUTER")
    p = Proc(zchat_argv("tcp://127.0.0.1:%d" % server.port, "alice", ["ops"],
                        ["--send", "hi", "--timeout", str(T(20))]),
             "zchat-dealer", stdin=False)
    _check_frame_refused(server, p, "DEALER")
    p.kill9()


def test_huge_frame_on_sub_refused():
    server = RawZmtpServer(b"PUB")
    fake = FakeBroker(pub_port=server.port)
    p = Proc(zchat_argv(fake.endpoint, "watcher", ["ops"],
                        ["--listen", "--json", "--timeout", str(T(20))]),
             "zchat-sub", stdin=False)
    _check_frame_refused(server, p, "SUB")
    p.kill9()
    fake.check_ok()


# ---------------------------------------------------------------------------
#  10: input lines over 1 MiB

def test_long_line_json_discarded_whole():
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    alice = json_client(b, "alice", ["ops"])
    #  A DM carrying a secret over 1 MiB: neither a JSON error for a piece
    #  nor its tail said in public.
    secret = "S" * (MAX_LINE + 4000) + " TAIL-OF-SECRET"
    alice.write(json.dumps({"cmd": "dm", "to": "bob", "text": secret, "id": "long"}))
    #  A plain line whose piece after 1 MiB would be a command.
    alice.write("A" * MAX_LINE + '{"cmd":"say","room":"ops","text":"tail-as-command"}')
    #  A line of exactly 1 MiB is a line: parsed, then refused by size.
    exact = '{"cmd":"say","room":"ops","id":"exact","text":"'
    exact += "E" * (MAX_LINE - len(exact) - 2) + '"}'
    check(len(exact) == MAX_LINE, "exact line is %d bytes" % len(exact))
    alice.write(exact)
    alice.write({"cmd": "say", "room": "ops", "text": "after", "id": "after"})
    bob.wait_text("after")
    ack = alice.wait_for(lambda e: e.get("id") == "after", desc="answer to 'after'")
    check(ack.get("type") == "ack", "'after' should be acknowledged: %r" % ack)
    errors = [e for e in alice.snapshot() if e.get("type") == "error"]
    too_long = [e for e in errors if "discarded" in e.get("message", "")]
    check(len(too_long) == 2 and all(e.get("code") == 413 and "id" not in e
                                     for e in too_long),
          "each overlong line should get exactly one 413 error without id: %r" % errors)
    check(not [e for e in errors if e.get("code") == 400],
          "a piece of an overlong line was parsed as JSON: %r" % errors)
    ex = [e for e in errors if e.get("id") == "exact"]
    check(len(ex) == 1 and ex[0].get("code") == 413
          and "text too long" in ex[0].get("message", ""),
          "a 1 MiB line is a line: its text should be refused by size: %r" % errors)
    check(len(errors) == 3, "expected 3 errors, got %r" % errors)
    texts = [m.get("text") for m in bob.messages()]
    check(texts == ["after"], "pieces of overlong lines reached the room: %r"
          % [t[:60] for t in texts])
    check(not [e for e in bob.snapshot() if e.get("type") == "dm"],
          "the overlong DM was delivered in part")
    alice.check_clean()
    alice.close_stdin()
    rc = alice.wait(T(10))
    check(rc == 1, "messages not sent should end --json with exit 1, got %s" % rc)
    lines = [l for l in alice.stderr().splitlines() if l.strip()]
    check(len(lines) == 1, "expected one stderr line: %r" % lines)
    line = lines[0]
    check("not sent" in line, "stderr should say messages were not sent: %r" % line)


def test_long_line_pipe_discarded_whole():
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    #  A piece after 1 MiB starting with '/' would run as a command.
    data = ("first\n" + "A" * MAX_LINE + "/leave ops\n" + "B" * (3 * MAX_LINE) + "\nlast\n")
    r = zchat(b, "alice", "--timeout", str(T(10)), rooms=["ops"], input=data,
              timeout=T(30))
    check(r.rc == 1, "pipe mode with a discarded line should exit 1: %r" % r)
    line = one_stderr_line(r)
    check("2 lines over" in line and "discarded" in line,
          "the stderr line should count the discarded lines: %r" % line)
    check("!! line 2 longer than" in r.out and "!! line 3 longer than" in r.out,
          "each discarded line should be reported where it was: %r" % r.out[-500:])
    bob.wait_text("last")
    texts = [m.get("text") for m in bob.messages()]
    check(texts == ["first", "last"], "bob got pieces of overlong lines: %r"
          % [t[:40] for t in texts])
    check(not [e for e in bob.snapshot() if e.get("type") == "leave"],
          "a piece of an overlong line ran as /leave")


def test_long_line_send_stdin_fails_at_end():
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    data = "one\n" + "X" * (MAX_LINE + 1) + "\nthree\n"
    r = zchat(b, "alice", "--send", "-", "--timeout", str(T(10)), rooms=["ops"], input=data,
              timeout=T(30))
    check(r.rc == 1, "--send - with a discarded line should exit 1: %r" % r)
    line = one_stderr_line(r)
    check("line 2 not sent" in line, "stderr should name line 2: %r" % line)
    bob.wait_text("three")
    texts = [m.get("text") for m in bob.messages()]
    check(texts == ["one", "three"], "--send - sent pieces or lost lines: %r"
          % [t[:40] for t in texts])


def test_pipe_line_said_in_no_room_fails_the_run():
    #  A line that cannot be said (no current room any more) is a message
    #  not sent, like one the broker refused: the run must not exit 0.
    b = Broker()
    r = zchat(b, "alice", "--timeout", str(T(10)), rooms=["ops"],
              input="/leave\nlost line\n", timeout=T(30))
    check(r.rc == 1, "pipe mode with a line said in no room should exit 1: %r" % r)
    line = one_stderr_line(r)
    check("1 message not sent" in line, "stderr should count the line: %r" % line)


def test_pipe_join_of_two_words_is_refused():
    #  "/join bad room" is not a join of #bad: the lines after it stay in
    #  the room the user was in.
    b = Broker()
    bob = listener(b, "bob", ["ops"])
    r = zchat(b, "alice", "--timeout", str(T(10)), rooms=["ops"],
              input="/join bad room\n/leave ops now\nstill in ops\n", timeout=T(30))
    check("one name, no spaces" in r.out + r.err, "no usage error shown: %r" % r)
    bob.wait_text("still in ops")
    check(r.rc == 0, "the line after should have been said in #ops: %r" % r)


def test_pipe_room_commands_in_no_room_say_how_to_get_one():
    #  /topic and /history take no room name: "name one" told the user to
    #  do what they cannot.
    b = Broker()
    r = zchat(b, "alice", "--timeout", str(T(10)), rooms=["ops"],
              input="/leave\n/topic\n/history 5\n", timeout=T(30))
    said = r.out + r.err
    check(said.count("you are in no room: /join ROOM first") == 2,
          "/topic and /history in no room should say to join one: %r" % said)
    check("name one" not in said, "a hint the commands cannot follow: %r" % said)


def test_send_stdin_line_over_max_text_does_not_stop_the_rest():
    #  One log line over the broker's max_text must not end a log bot:
    #  it is skipped like a line over 1 MiB, the rest still go.
    b = Broker("--max-text", "100")
    bob = listener(b, "bob", ["ops"])
    data = "one\n" + "X" * 200 + "\nthree\n"
    r = zchat(b, "alice", "--send", "-", "--timeout", str(T(10)), rooms=["ops"], input=data,
              timeout=T(30))
    check(r.rc == 1, "--send - with a line over max_text should exit 1: %r" % r)
    line = one_stderr_line(r)
    check("line 2 not sent" in line and "too long" in line,
          "stderr should name line 2 and why: %r" % line)
    bob.wait_text("three")
    texts = [m.get("text") for m in bob.messages()]
    check(texts == ["one", "three"], "--send - lost the lines after a long one: %r"
          % [t[:40] for t in texts])


# ---------------------------------------------------------------------------
#  15: names and reasons from a hostile broker

def test_hostile_names_never_reach_the_terminal():
    def script(fake, msg):
        if msg["type"] == WHO:
            fake.reply(msg, MEMBERS, room="ops", items=[{"nick": EVIL}, {"nick": "bob"}])
            return True
        return False

    fake = FakeBroker(on_request=script)
    r_holder = {}

    def run_listener():
        r_holder["r"] = run(zchat_argv(fake.endpoint, "watcher", ["ops"],
                                       ["--listen", "--count", "1",
                                        "--timeout", str(T(15))]),
                            timeout=T(25), name="zchat-listen-plain")

    t = threading.Thread(target=run_listener, daemon=True)
    t.start()
    check(fake.live.wait(T(10)), "the client's join never went live")
    topic = ("ops:").encode()
    for body in [
        encode(EVENT, 0, room="ops", ts=1, event=1, nick=EVIL, detail=""),
        encode(EVENT, 0, room="ops", ts=1, event=4, nick="bob", detail=EVIL),
        encode(EVENT, 0, room="ops", ts=1, event=5, nick="carol",
               detail="topic \x1b[31mred\x1b[0m \u009b6n"),
        encode(EVENT, 0, room="ops", ts=1, event=2, nick="dave", detail=""),
        encode(MESSAGE, 0, room="ops", seq=1, ts=1, nick=EVIL, kind=0, text="from-evil"),
        encode(MESSAGE, 0, room="ops", seq=2, ts=1, nick="bob", kind=0,
               text="hi \x1b]0;t\x07 there"),
    ]:
        fake.publish("ops", body)
    t.join(T(25))
    check("r" in r_holder, "the listener did not finish")
    r = r_holder["r"]
    check(r.rc == 0, "the listener should exit 0 after bob's message: %r" % r)
    _no_raw_controls(r.out, "listener stdout")
    _no_raw_controls(r.err, "listener stderr")
    check("from-evil" not in r.out, "a message from an invalid nick was shown: %r" % r.out)
    check("owned" not in r.out, "an invalid name was shown: %r" % r.out)
    check("<bob> hi ^[]0;t^G there" in r.out, "bob's message missing or raw: %r" % r.out)
    check("carol set the topic of #ops: topic ^[[31mred^[[0m \ufffd6n" in r.out,
          "the topic should be shown made safe: %r" % r.out)
    check("-- dave left #ops" in r.out, "a valid presence event was lost: %r" % r.out)
    fake.check_ok()


def test_hostile_reasons_never_reach_the_terminal():
    reason = "no \x1b]0;owned\x07\x1b[2J\nsecond line \u009b6n"

    def script(fake, msg):
        if msg["type"] == SAY:
            fake.reply(msg, ERROR, code=403, retry_ms=0, reason=reason)
            return True
        if msg["type"] == WHO:
            fake.reply(msg, MEMBERS, room="ops", items=[{"nick": EVIL}, {"nick": "bob"}])
            return True
        if msg["type"] == TOPIC:
            fake.reply(msg, TOPICIS, room="ops", topic="t", nick=EVIL, ts=1)
            return True
        return False

    fake = FakeBroker(on_request=script)
    #  Pipe mode: the same commands and error lines as a terminal.
    rc, out, err = _run_bytes(zchat_argv(fake.endpoint, "watcher", ["ops"],
                                         ["--timeout", str(T(5))]),
                              b"/who\n/topic\nhello\n", T(20))
    _no_raw_controls(out, "pipe-mode stdout")
    _no_raw_controls(err, "pipe-mode stderr")
    text = out.decode("utf-8", "replace")
    check("-- #ops (1): bob" in text, "members should list bob only: %r" % text)
    check("!! not sent to #ops: no ^[]0;owned^G^[[2J^Jsecond line \ufffd6n (403)" in text,
          "the refusal should be shown on one line, made safe: %r" % text)
    check("x^[]0;owned" not in text, "a hostile name was shown: %r" % text)
    check("-- topic of #ops: t\n" in text,
          "the topic answer should come without its invalid setter: %r" % text)
    check(rc == 1, "a refused send should end pipe mode with exit 1 (%s): %r" % (rc, err))
    fake.check_ok()

    #  A refused greeting: its reason goes to stderr, made safe, on one line.
    refuser = FakeBroker(hello_reply=((ERROR,), dict(code=409, retry_ms=0, reason=reason)))
    r = zchat(refuser.endpoint, "watcher", "--send", "x", "--timeout", str(T(5)),
              rooms=["ops"], timeout=T(15))
    check(r.rc == 4, "a refused greeting should exit 4: %r" % r)
    line = one_stderr_line(r)
    _no_raw_controls(r.err, "refusal stderr")
    check("no ^[]0;owned^G^[[2J^Jsecond line" in line, "refusal reason not made safe: %r" % line)

    #  JSON output stays byte-exact: cJSON escapes, nothing is rewritten.
    fake2 = FakeBroker(on_request=script)
    rc, out, err = _run_bytes(zchat_argv(fake2.endpoint, "watcher", ["ops"],
                                         ["--json", "--timeout", str(T(5))]),
                              b'{"cmd":"say","text":"hello","id":1}\n', T(20))
    #  C1 characters are valid text and stay as they are in JSON; C0
    #  controls are escaped by cJSON
    check(b"\x1b" not in out and b"\x07" not in out, "--json printed raw controls: %r" % out)
    events = [json.loads(l) for l in out.decode().splitlines() if l.strip()]
    errs = [e for e in events if e.get("type") == "error" and e.get("id") == 1]
    check(len(errs) == 1 and errs[0].get("message") == reason and errs[0].get("code") == 403,
          "--json should carry the broker's reason exactly: %r" % events)


# ---------------------------------------------------------------------------
#  max_text in --json mode, by size

def test_json_text_over_max_text_is_413():
    b = Broker("--max-text", "100")
    bob = listener(b, "bob", ["ops"])
    alice = json_client(b, "alice", ["ops"])
    alice.write({"cmd": "say", "room": "ops", "text": "y" * 100, "id": "fits"})
    alice.write({"cmd": "say", "room": "ops", "text": "y" * 101, "id": "over"})
    alice.write({"cmd": "dm", "to": "bob", "text": "z" * 101, "id": "dm-over"})
    alice.write("w" * 101)
    ack = alice.wait_for(lambda e: e.get("id") == "fits", desc="answer to 'fits'")
    check(ack.get("type") == "ack", "100 bytes fit max_text 100: %r" % ack)
    for cid in ("over", "dm-over"):
        e = alice.wait_for(lambda e, cid=cid: e.get("id") == cid, desc="answer to " + cid)
        check(e.get("type") == "error" and e.get("code") == 413
              and "at most 100" in e.get("message", ""),
              "%s should be refused 413 naming the limit: %r" % (cid, e))
    plain = alice.wait_for(lambda e: e.get("type") == "error" and "id" not in e,
                           desc="error for the plain over-long line")
    check(plain.get("code") == 413, "a plain line over max_text should be 413: %r" % plain)
    bob.wait_text("y" * 100)
    alice.close_stdin()
    check(alice.wait(T(10)) == 1, "refused sends should end --json with exit 1")
    check([m["text"] for m in bob.messages()] == ["y" * 100],
          "something over max_text got through: %r" % bob.messages())
