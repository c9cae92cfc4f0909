"""Helpers for the zchat end-to-end tests: real broker and client processes.

Everything a test starts is registered here and killed at the end, whatever
happens (try/finally in run_one.py, atexit, SIGTERM). Every process's stderr
goes to a file in the test's scratch directory (ZCHAT_TEST_TMP, made and
removed by tests/run.py), where the runner scans it for sanitizer reports.
Every wait has a deadline. Ports are only ever chosen by the kernel (the
`*` wildcard); a restarted broker binds the ports it had before.

The wire codec at the bottom is written from proto/PROTOCOL.md alone, apart
from the C codec, so that the raw-socket tests cross-check it.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD") or "build")
SANITIZE = os.environ.get("SANITIZE") == "1"
#  Sanitized binaries run about three times slower: deadlines scale by this.
SLOW = 3.0 if SANITIZE else 1.0

_own_tmp = False
TMP = os.environ.get("ZCHAT_TEST_TMP")
if not TMP:
    TMP = tempfile.mkdtemp(prefix="zchat-e2e-")
    _own_tmp = True


def T(seconds):
    """A deadline in seconds, scaled for sanitized builds."""
    return seconds * SLOW


def binary(name):
    return os.path.join(BUILD, name)


class Skip(Exception):
    """Raised by a test that cannot run here (a tool or binary missing)."""


class TestFailure(AssertionError):
    pass


def require_binary(name, skip=False):
    path = binary(name)
    if not os.access(path, os.X_OK):
        if skip:
            raise Skip("%s is not built" % path)
        raise TestFailure("%s is not built" % path)
    return path


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_until(pred, timeout, desc, interval=0.02):
    """Poll pred until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            fail("timed out after %.1fs waiting for %s" % (timeout, desc))
        time.sleep(interval)


# ---------------------------------------------------------------------------
#  Process registry and cleanup

_procs = []             # every Popen we started
_cleanups = []          # extra callables (tmux servers, sockets)
_lock = threading.Lock()
_counter = [0]


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _log_path(name, suffix):
    with _lock:
        _counter[0] += 1
        n = _counter[0]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    return os.path.join(TMP, "%03d-%s.%s" % (n, safe, suffix))


def _varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def store_chunk(messages):
    """The blob of a store chunk as broker/STORAGE.md ("Chunk encoding")
    says, for tests that write a store past the broker: texts, head,
    trailer. messages: (seq, ts, nick, kind, msg_id, text bytes), in seq and
    ts order (a ts delta is zigzag-encoded: a delta d >= 0 is 2d)."""
    texts = b""
    head = b""
    seq0 = ts0 = 0
    for seq, ts, nick, kind, msg_id, text in messages:
        check(seq > seq0 and ts >= ts0, "the fixture's messages are in order")
        head += (_varint(seq - seq0) + _varint((ts - ts0) << 1) + bytes([kind, len(nick)])
                 + nick.encode() + _varint(msg_id) + _varint(len(text)))
        texts += text
        seq0, ts0 = seq, ts
    return texts + head + struct.pack(">IIB", len(messages), len(head), 1)


def track_pid(pid):
    """Record a pid the runner must kill if we cannot (e.g. a tmux server)."""
    st = _start_time(pid)
    with open(os.path.join(TMP, "pids"), "a") as f:
        f.write("%d %s\n" % (pid, st))


def spawn(argv, name, stdin=None, stdout=None, env=None, cwd=None):
    """Start a process in our process group with stderr into a log file."""
    errpath = _log_path(name, "stderr")
    errf = open(errpath, "wb")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=errf,
                             env=full_env, cwd=cwd)
    finally:
        errf.close()
    p.stderr_path = errpath
    p.name = name
    with _lock:
        _procs.append(p)
    track_pid(p.pid)
    return p


def add_cleanup(fn):
    _cleanups.append(fn)


def cleanup():
    """Kill everything we started; runs on success, failure and timeout."""
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:
            pass
    with _lock:
        procs = list(_procs)
        _procs.clear()
    #  SIGTERM first, so that sanitized binaries run their leak check on
    #  the way out (stopped ones are woken for it); SIGKILL what lingers.
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + T(3)
    for p in procs:
        try:
            p.wait(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            pass
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


def _at_exit():
    cleanup()
    try:
        CTX.destroy(linger=0)
    except Exception:
        pass
    if _own_tmp:
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_at_exit)


def _on_term(signum, frame):
    #  The runner's per-test timeout sends SIGTERM first: turn it into an
    #  exit so that finally blocks and atexit kill our children.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def log_tails(lines=25):
    """The tail of every stderr log, for failure reports."""
    out = []
    for name in sorted(os.listdir(TMP)):
        if not name.endswith(".stderr"):
            continue
        text = read_file(os.path.join(TMP, name)).rstrip("\n")
        if not text:
            continue
        tail = text.split("\n")[-lines:]
        out.append("--- %s (last %d lines)" % (name, len(tail)))
        out.extend(tail)
    return "\n".join(out)


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------
#  Broker

READY_RE = re.compile(r"ready router=(\S+) pub=(\S+)")


class Broker:
    """A zchat-broker process on loopback wildcard ports with its own data dir.

    extra: more command-line arguments. restart() starts it again on the
    same data dir and the same ports, so that clients reconnect by
    themselves.
    """

    def __init__(self, *extra, data=None, name="broker", start=True, env=None):
        self.extra = list(extra)
        self.env = env
        self.data = data or tempfile.mkdtemp(prefix="data-", dir=TMP)
        self.name = name
        self.proc = None
        self.router = None
        self.pub = None
        self.starts = 0
        if start:
            self.start()

    @property
    def pid(self):
        return self.proc.pid

    @property
    def router_port(self):
        return int(self.router.rsplit(":", 1)[1])

    @property
    def pub_port(self):
        return int(self.pub.rsplit(":", 1)[1])

    def start(self, router=None, pub=None, timeout=None):
        exe = require_binary("zchat-broker")
        router = router or "tcp://127.0.0.1:*"
        pub = pub or "tcp://127.0.0.1:*"
        argv = [exe, "--router", router, "--pub", pub, "--data", self.data] + self.extra
        self.argv = argv
        self.proc = spawn(argv, self.name, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, env=self.env)
        self.starts += 1
        deadline = time.monotonic() + (timeout or T(10))
        while True:
            m = READY_RE.search(read_file(self.proc.stderr_path))
            if m:
                self.router, self.pub = m.group(1), m.group(2)
                check("*" not in self.router and "*" not in self.pub,
                      "ready line has unresolved wildcard: %s %s" % m.groups())
                return self
            rc = self.proc.poll()
            if rc is not None:
                fail("broker exited with %s before ready:\n%s"
                     % (rc, read_file(self.proc.stderr_path)))
            if time.monotonic() > deadline:
                fail("broker not ready within %.1fs:\n%s"
                     % (timeout or T(10), read_file(self.proc.stderr_path)))
            time.sleep(0.01)

    def stderr(self):
        return read_file(self.proc.stderr_path)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            fail("broker died (exit %s):\n%s" % (self.proc.returncode, self.stderr()[-3000:]))

    def stop(self, timeout=None, expect=0):
        """SIGTERM; the broker must exit with `expect` (0) in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout or T(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("broker did not exit within %.1fs of SIGTERM" % (timeout or T(10)))
        if expect is not None:
            check(rc == expect, "broker exited %s after SIGTERM, expected %s:\n%s"
                  % (rc, expect, self.stderr()[-3000:]))
        return rc

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self, same_ports=True, timeout=None):
        """Start again on the same data dir (and ports: clients reconnect)."""
        check(self.proc.poll() is not None, "restart() of a running broker")
        if not same_ports:
            return self.start(timeout=timeout)
        router, pub = self.router, self.pub
        #  The old ports were ours a moment ago; a stranger grabbing one in
        #  between is unlikely but possible, so retry briefly.
        deadline = time.monotonic() + T(5)
        while True:
            try:
                self.start(router=router, pub=pub, timeout=timeout)
            except TestFailure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            check(self.router == router and self.pub == pub,
                  "restarted broker bound %s %s instead of %s %s"
                  % (self.router, self.pub, router, pub))
            return self


# ---------------------------------------------------------------------------
#  zchat client processes

class Result:
    def __init__(self, rc, out, err, elapsed, argv):
        self.rc, self.out, self.err, self.elapsed, self.argv = rc, out, err, elapsed, argv

    def events(self):
        return parse_json_lines(self.out)

    def __repr__(self):
        return ("Result(rc=%s, %.2fs, argv=%s)\n  stdout: %s\n  stderr: %s"
                % (self.rc, self.elapsed, " ".join(self.argv),
                   self.out[-2000:], self.err[-2000:]))


def parse_json_lines(text):
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            fail("stdout line is not JSON: %r" % line)
    return events


def zchat_argv(broker=None, nick=None, rooms=(), args=()):
    argv = [require_binary("zchat")]
    if broker is not None:
        argv += ["--server", broker.router if isinstance(broker, Broker) else broker]
    if nick is not None:
        argv += ["--nick", nick]
    for r in rooms:
        argv += ["--room", r]
    return argv + list(args)


def run(argv, input=None, timeout=None, name=None, env=None, pipe=False):
    """Run a command to completion (killed at timeout): a Result.

    input goes to stdin from a file, or through a pipe with pipe=True (as
    in a shell pipeline)."""
    timeout = timeout or T(30)
    name = name or os.path.basename(argv[0])
    outpath = _log_path(name, "stdout")
    data = None
    if input is not None:
        data = input.encode() if isinstance(input, str) else input
    stdin = subprocess.DEVNULL
    if data is not None and not pipe:
        inpath = _log_path(name, "stdin")
        with open(inpath, "wb") as f:
            f.write(data)
        stdin = open(inpath, "rb")
    elif data is not None:
        stdin = subprocess.PIPE
    t0 = time.monotonic()
    with open(outpath, "wb") as outf:
        try:
            p = spawn(argv, name, stdin=stdin, stdout=outf, env=env)
        finally:
            if stdin not in (subprocess.DEVNULL, subprocess.PIPE):
                stdin.close()
        try:
            if pipe and data is not None:
                #  A thread feeds the pipe so a process that stops reading
                #  cannot block us past the deadline.
                def feed():
                    try:
                        p.stdin.write(data)
                        p.stdin.close()
                    except (BrokenPipeError, ValueError, OSError):
                        pass
                threading.Thread(target=feed, daemon=True).start()
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            fail("%s did not finish within %.1fs\nstdout: %s\nstderr: %s"
                 % (" ".join(argv), timeout, read_file(outpath)[-2000:],
                    read_file(p.stderr_path)[-2000:]))
    elapsed = time.monotonic() - t0
    return Result(rc, read_file(outpath), read_file(p.stderr_path), elapsed, argv)


def zchat(broker, nick, *args, rooms=(), input=None, timeout=None, env=None):
    """One zchat run to completion: zchat --server B --nick N --room R... ARGS."""
    return run(zchat_argv(broker, nick, rooms, args), input=input, timeout=timeout,
               name="zchat-" + (nick or "x"), env=env)


def send(broker, nick, room, text, timeout_arg=None, timeout=None):
    """zchat --send TEXT; must succeed."""
    args = ["--send", text]
    if timeout_arg is not None:
        args += ["--timeout", str(timeout_arg)]
    r = zchat(broker, nick, *args, rooms=[room], timeout=timeout)
    check(r.rc == 0, "zchat --send failed: %r" % r)
    return r


def one_stderr_line(r):
    """Every failure prints exactly one clear line to stderr."""
    lines = [l for l in r.err.splitlines() if l.strip()]
    #  Sanitizer noise would be caught elsewhere; zchat itself must say
    #  exactly one thing.
    check(len(lines) == 1, "expected exactly one stderr line, got %d: %r" % (len(lines), r))
    return lines[0]


class Proc:
    """A long-running process whose stdout lines (JSON events) are collected.

    A reader thread appends every stdout line to self.lines / self.events;
    tests wait on them with deadlines. stdin stays open for commands unless
    stdin=False.
    """

    def __init__(self, argv, name, stdin=True, env=None, stdin_file=None):
        self.argv = argv
        self.name = name
        self.lines = []
        self.events = []
        self.bad_lines = []
        self.cond = threading.Condition()
        self.eof = False
        if stdin_file is not None:
            stdin_arg = stdin_file
        else:
            stdin_arg = subprocess.PIPE if stdin else subprocess.DEVNULL
        self.p = spawn(argv, name, stdin=stdin_arg, stdout=subprocess.PIPE, env=env)
        self.pid = self.p.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                if line.strip():
                    try:
                        ev = json.loads(line)
                        if not isinstance(ev, dict):
                            raise ValueError
                        self.events.append(ev)
                    except ValueError:
                        self.bad_lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    # -- input

    def write(self, line):
        if isinstance(line, (dict, list)):
            line = json.dumps(line)
        try:
            self.p.stdin.write((line + "\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            fail("%s: cannot write stdin (%s); stderr:\n%s" % (self.name, e, self.stderr()))

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    # -- output

    def stderr(self):
        return read_file(self.p.stderr_path)

    def snapshot(self):
        with self.cond:
            return list(self.events)

    def _describe(self):
        with self.cond:
            evs = list(self.events)
        shown = [json.dumps(e, ensure_ascii=False)[:200] for e in evs[-15:]]
        return ("%s (pid %d, %s, %d events; last: \n    %s\n  bad lines: %r\n  stderr: %s)"
                % (self.name, self.pid,
                   "exited %s" % self.p.returncode if self.p.poll() is not None else "running",
                   len(evs), "\n    ".join(shown), self.bad_lines[:5],
                   self.stderr()[-1500:]))

    def wait_for(self, pred, timeout=None, desc="event", start=0):
        """The first event (from index start) for which pred holds."""
        timeout = timeout if timeout is not None else T(10)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    i += 1
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.eof:
                    break
                self.cond.wait(min(left, 0.2))
        fail("%s: no %s within %.1fs: %s" % (self.name, desc, timeout, self._describe()))

    def wait_count(self, pred, n, timeout=None, desc="events"):
        """Wait until at least n events satisfy pred; returns all of them."""
        timeout = timeout if timeout is not None else T(10)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [e for e in self.events if pred(e)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    break
                self.cond.wait(min(left, 0.2))
        fail("%s: only %d of %d %s within %.1fs: %s"
             % (self.name, len(got), n, desc, timeout, self._describe()))

    def count(self, pred):
        with self.cond:
            return sum(1 for e in self.events if pred(e))

    def messages(self, room=None):
        return [e for e in self.snapshot() if e.get("type") == "message"
                and (room is None or e.get("room") == room)]

    def wait_messages(self, n, room=None, timeout=None):
        return self.wait_count(lambda e: e.get("type") == "message"
                               and (room is None or e.get("room") == room),
                               n, timeout, desc="message events%s" % (" in " + room if room else ""))

    def wait_text(self, text, timeout=None, type_="message"):
        return self.wait_for(lambda e: e.get("type") == type_ and e.get("text") == text,
                             timeout, desc="%s %r" % (type_, text))

    def joined(self, rooms, timeout=None):
        for r in rooms:
            self.wait_for(lambda e, r=r: e.get("type") == "joined" and e.get("room") == r,
                          timeout if timeout is not None else T(10), desc="joined %s" % r)

    # -- process

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout=None):
        """Wait for the process to exit by itself; its exit code."""
        timeout = timeout if timeout is not None else T(10)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("%s did not exit within %.1fs: %s" % (self.name, timeout, self._describe()))
        self.reader.join(timeout=5)
        return rc

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def kill9(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)

    def check_clean(self):
        check(not self.bad_lines, "%s printed non-JSON lines: %r" % (self.name, self.bad_lines[:5]))


def listener(broker, nick, rooms, count=None, timeout=None, history=None, args=(),
             wait_joined=True):
    """zchat --listen --json in rooms; returns once every room is joined."""
    a = ["--listen", "--json"]
    if count is not None:
        a += ["--count", str(count)]
    a += ["--timeout", str(timeout if timeout is not None else T(60))]
    if history is not None:
        a += ["--history", str(history)]
    a += list(args)
    p = Proc(zchat_argv(broker, nick, rooms, a), "listen-" + nick, stdin=False)
    if wait_joined:
        p.joined(rooms)
    return p


def json_client(broker, nick, rooms=(), args=(), wait_joined=True):
    """zchat --json reading commands on stdin; returns once rooms are joined."""
    p = Proc(zchat_argv(broker, nick, rooms, ["--json"] + list(args)), "json-" + nick)
    if wait_joined:
        p.joined(rooms)
    return p


def check_contiguous(msgs, first, last, what):
    """msgs must be exactly seq first..last, each once, in order."""
    seqs = [m.get("seq") for m in msgs]
    want = list(range(first, last + 1))
    if seqs != want:
        dup = len(seqs) - len(set(seqs))
        missing = sorted(set(want) - set(seqs))
        extra = sorted(set(seqs) - set(want))
        order = all(a < b for a, b in zip(seqs, seqs[1:]))
        fail("%s: expected seq %d..%d once each in order; got %d messages, "
             "%d duplicates, missing %s%s, unexpected %s, in order: %s"
             % (what, first, last, len(seqs), dup, missing[:20],
                "..." if len(missing) > 20 else "", extra[:20], order))


def check_ts(ts, what):
    now = time.time() * 1000
    check(isinstance(ts, int) and abs(now - ts) < 120000,
          "%s: ts %r is not the current epoch time in ms" % (what, ts))


# ---------------------------------------------------------------------------
#  Wire codec, from proto/PROTOCOL.md

HELLO, WELCOME, BYE, PING, PONG, JOIN, JOINED, LEAVE, SAY, ACK, DM, DELIVER, \
    NICK, WHO, MEMBERS, ROOMS, ROOMLIST, TOPIC, TOPICIS, HISTORY, PAGE, PROBE, \
    OK, ERROR, MESSAGE, EVENT, ACKS, MESSAGES, SAYS, ACKRUNS = range(1, 31)

TYPE_NAMES = {v: k for k, v in dict(
    HELLO=1, WELCOME=2, BYE=3, PING=4, PONG=5, JOIN=6, JOINED=7, LEAVE=8, SAY=9,
    ACK=10, DM=11, DELIVER=12, NICK=13, WHO=14, MEMBERS=15, ROOMS=16, ROOMLIST=17,
    TOPIC=18, TOPICIS=19, HISTORY=20, PAGE=21, PROBE=22, OK=23, ERROR=24,
    MESSAGE=25, EVENT=26, ACKS=27, MESSAGES=28, SAYS=29, ACKRUNS=30).items()}

MAX_TEXT = 65536

#  Field layouts. ("items", [...]) is a u16 count of entries.
FIELDS = {
    HELLO: [("version", "u8"), ("nick", "str"), ("token", "str")],
    WELCOME: [("version", "u8"), ("nick", "str"), ("token", "str"), ("pub_port", "u16"),
              ("endpoint", "str"), ("heartbeat_ms", "u32"), ("timeout_ms", "u32"),
              ("max_text", "u32"), ("resumed", "u8")],
    BYE: [], PING: [],
    PONG: [("items", [("room", "str"), ("seq", "u64")])],
    JOIN: [("room", "str")],
    JOINED: [("room", "str"), ("seq", "u64"), ("first_seq", "u64"), ("members", "u32"),
             ("topic", "str")],
    LEAVE: [("room", "str")],
    SAY: [("room", "str"), ("kind", "u8"), ("text", "text")],
    ACK: [("room", "str"), ("seq", "u64"), ("ts", "u64")],
    DM: [("nick", "str"), ("kind", "u8"), ("text", "text")],
    DELIVER: [("nick", "str"), ("kind", "u8"), ("ts", "u64"), ("text", "text")],
    NICK: [("nick", "str")],
    WHO: [("room", "str")],
    MEMBERS: [("room", "str"), ("items", [("nick", "str")])],
    ROOMS: [],
    ROOMLIST: [("items", [("room", "str"), ("members", "u32"), ("seq", "u64"),
                          ("topic", "str")])],
    TOPIC: [("room", "str"), ("set", "u8"), ("topic", "str")],
    TOPICIS: [("room", "str"), ("topic", "str"), ("nick", "str"), ("ts", "u64")],
    HISTORY: [("room", "str"), ("from_seq", "u64"), ("to_seq", "u64"), ("limit", "u16")],
    PAGE: [("room", "str"), ("first_seq", "u64"), ("seq", "u64"), ("more", "u8"),
           ("items", [("seq", "u64"), ("ts", "u64"), ("nick", "str"), ("kind", "u8"),
                      ("text", "text")])],
    PROBE: [("room", "str")],               # C->B [+ tag, version 5]; on PUB + nick
    OK: [],
    ERROR: [("code", "u16"), ("retry_ms", "u32"), ("reason", "str")],
    MESSAGE: [("room", "str"), ("seq", "u64"), ("ts", "u64"), ("nick", "str"),
              ("kind", "u8"), ("text", "text")],
    EVENT: [("room", "str"), ("ts", "u64"), ("event", "u8"), ("nick", "str"),
            ("detail", "str")],
    #  Version 2 batches
    ACKS: [("items", [("id", "u64"), ("room", "str"), ("seq", "u64"), ("ts", "u64")])],
    SAYS: [("items", [("id", "u64"), ("room", "str"), ("kind", "u8"), ("text", "text")])],
    MESSAGES: [("room", "str"),
               ("items", [("seq", "u64"), ("ts", "u64"), ("nick", "str"), ("kind", "u8"),
                          ("text", "text")])],
    #  Version 4
    ACKRUNS: [("items", [("id", "u64"), ("count", "u32"), ("room", "str"), ("seq", "u64"),
                         ("ts", "u64")])],
}
PROBE_PUB = [("room", "str"), ("nick", "str")]
PROBE_TAGGED = [("room", "str"), ("tag", "str")]    # C->B, version 5
PROBE_TOPIC = b"\xff"          # a tagged PROBE is published on this + the tag


def probe_topic(probe):
    """The topic frame a broker of version 5 publishes a decoded PROBE
    request on, for a session of version 5: 0xFF + its tag if it has one,
    else the room's topic."""
    if probe.get("tag"):
        return PROBE_TOPIC + probe["tag"].encode()
    return (probe["room"] + ":").encode()

_INT = {"u8": ">B", "u16": ">H", "u32": ">I", "u64": ">Q"}


class DecodeError(Exception):
    pass


def _b(v):
    return v.encode() if isinstance(v, str) else bytes(v)


def _enc_fields(layout, values, out):
    for name, ftype in layout:
        if isinstance(ftype, list):
            v = values.get(name, [])
        else:
            v = values.get(name, 0 if ftype in _INT else b"")
        if isinstance(ftype, list):
            out += struct.pack(">H", len(v))
            for item in v:
                _enc_fields(ftype, item, out)
        elif ftype in _INT:
            out += struct.pack(_INT[ftype], v)
        elif ftype == "str":
            b = _b(v)
            out += struct.pack(">B", len(b)) + b
        elif ftype == "text":
            b = _b(v)
            out += struct.pack(">I", len(b)) + b


def encode(mtype, id=0, **fields):
    """A message body; bytes values are sent as they are (for bad input)."""
    out = bytearray(b"ZC" + struct.pack(">BQ", mtype, id))
    layout = FIELDS.get(mtype, [])
    if mtype == PROBE and "nick" in fields:
        layout = PROBE_PUB
    elif mtype == PROBE and "tag" in fields:
        layout = PROBE_TAGGED
    _enc_fields(layout, fields, out)
    return bytes(out)


def _utf8(b, what):
    if b"\x00" in b:
        raise DecodeError("NUL in %s" % what)
    try:
        return b.decode("utf-8")        # strict: no overlongs, no surrogates
    except UnicodeDecodeError as e:
        raise DecodeError("bad UTF-8 in %s: %s" % (what, e))


def _dec_fields(layout, buf, pos, out):
    for name, ftype in layout:
        if isinstance(ftype, list):
            if pos + 2 > len(buf):
                raise DecodeError("truncated count")
            (n,) = struct.unpack_from(">H", buf, pos)
            pos += 2
            items = []
            for _ in range(n):
                item = {}
                pos = _dec_fields(ftype, buf, pos, item)
                items.append(item)
            out[name] = items
        elif ftype in _INT:
            size = struct.calcsize(_INT[ftype])
            if pos + size > len(buf):
                raise DecodeError("truncated %s" % name)
            (out[name],) = struct.unpack_from(_INT[ftype], buf, pos)
            pos += size
        else:
            hdr = 1 if ftype == "str" else 4
            if pos + hdr > len(buf):
                raise DecodeError("truncated length of %s" % name)
            n = buf[pos] if hdr == 1 else struct.unpack_from(">I", buf, pos)[0]
            pos += hdr
            if ftype == "text" and n > MAX_TEXT:
                raise DecodeError("text too long")
            if pos + n > len(buf):
                raise DecodeError("truncated %s" % name)
            out[name] = _utf8(bytes(buf[pos:pos + n]), name)
            pos += n
    return pos


def decode(body, pub=False):
    """A dict {"type": int, "name": str, "id": int, fields...}; DecodeError."""
    buf = bytes(body)
    if len(buf) < 11:
        raise DecodeError("short header")
    if buf[0:2] != b"ZC":
        raise DecodeError("bad signature")
    mtype, mid = struct.unpack_from(">BQ", buf, 2)
    if mtype not in FIELDS:
        raise DecodeError("unknown type %d" % mtype)
    msg = {"type": mtype, "name": TYPE_NAMES[mtype], "id": mid}
    layout = PROBE_PUB if (mtype == PROBE and pub) else FIELDS[mtype]
    pos = _dec_fields(layout, buf, 11, msg)
    if mtype == PROBE and not pub and pos < len(buf):
        pos = _dec_fields(PROBE_TAGGED[1:], buf, pos, msg)
    if pos != len(buf):
        raise DecodeError("%d trailing bytes" % (len(buf) - pos))
    for name, val in (("kind", msg.get("kind")), ):
        if val is not None and val not in (0, 1):
            raise DecodeError("bad kind %d" % val)
    if mtype == EVENT and not 1 <= msg["event"] <= 5:
        raise DecodeError("bad event %d" % msg["event"])
    return msg


# ---------------------------------------------------------------------------
#  Raw pyzmq peers

CTX = zmq.Context.instance()


def new_id():
    return random.getrandbits(63) | 1


class RawDealer:
    """A DEALER speaking the wire protocol by hand (codec above)."""

    def __init__(self, endpoint, curve=None, identity=None):
        self.sock = CTX.socket(zmq.DEALER)
        self.sock.linger = 0
        if identity:
            self.sock.identity = identity
        if curve:
            public, secret, server = curve
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
            self.sock.curve_serverkey = server
        self.sock.connect(endpoint)
        add_cleanup(self.close)
        self.endpoint = endpoint
        self.nick = None
        self.token = ""

    def close(self):
        self.sock.close(linger=0)

    def send_frames(self, frames):
        self.sock.send_multipart([_b(f) for f in frames])

    def send(self, body):
        self.send_frames([b"", body])

    def recv_frames(self, timeout=None):
        timeout = timeout if timeout is not None else T(5)
        if self.sock.poll(int(timeout * 1000)):
            return self.sock.recv_multipart()
        return None

    def recv(self, timeout=None):
        """The next reply, decoded and checked for its envelope; None on timeout."""
        frames = self.recv_frames(timeout)
        if frames is None:
            return None
        check(len(frames) == 2 and frames[0] == b"",
              "reply is not [empty, body]: %r" % [f[:40] for f in frames])
        try:
            return decode(frames[1])
        except DecodeError as e:
            fail("broker sent an undecodable body (%s): %r" % (e, frames[1][:80]))

    def request(self, mtype, timeout=None, id=None, skip=(), **fields):
        """Send one request; the reply with the same id (others are skipped)."""
        rid = new_id() if id is None else id
        self.send(encode(mtype, rid, **fields))
        timeout = timeout if timeout is not None else T(5)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            m = self.recv(max(left, 0)) if left > 0 else None
            if m is None:
                fail("no reply to %s (id %d) within %.1fs" % (TYPE_NAMES.get(mtype, mtype), rid, timeout))
            if m["id"] == rid:
                return m
            #  DELIVERs and id-0 errors may come in between.

    def hello(self, nick, token="", version=1, expect_ok=True):
        m = self.request(HELLO, version=version, nick=nick, token=token)
        if expect_ok:
            check(m["type"] == WELCOME, "HELLO %r answered %r" % (nick, m))
            self.nick, self.token = m["nick"], m["token"]
            self.welcome = m
        return m

    def join(self, room):
        m = self.request(JOIN, room=room)
        check(m["type"] == JOINED and m["room"] == room, "JOIN %r answered %r" % (room, m))
        return m

    def say(self, room, text, id=None, kind=0):
        return self.request(SAY, id=id, room=room, kind=kind, text=text)

    def history(self, room, from_seq=1, to_seq=0, limit=500):
        """Every message of room from from_seq (paged): (page-info, items)."""
        items = []
        first = None
        newest = None
        while True:
            m = self.request(HISTORY, room=room, from_seq=from_seq, to_seq=to_seq, limit=limit)
            check(m["type"] == PAGE, "HISTORY answered %r" % m)
            if first is None:
                first = m["first_seq"]
            newest = m["seq"]
            items += m["items"]
            if not m["more"] or not m["items"]:
                break
            from_seq = m["items"][-1]["seq"] + 1
        return {"first_seq": first, "seq": newest}, items

    def bye(self):
        return self.request(BYE)


def raw_session(broker, nick, rooms=()):
    d = RawDealer(broker.router)
    d.hello(nick)
    for r in rooms:
        d.join(r)
    return d


class RawSub:
    """A SUB on the PUB port; records every frame it gets."""

    def __init__(self, endpoint, topics=(b"",), curve=None):
        self.sock = CTX.socket(zmq.SUB)
        self.sock.linger = 0
        if curve:
            public, secret, server = curve
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
            self.sock.curve_serverkey = server
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, _b(t))
        self.sock.connect(endpoint)
        self.got = []
        add_cleanup(self.close)

    def close(self):
        self.sock.close(linger=0)

    def drain(self, timeout=0.0):
        """Collect messages for up to timeout seconds (stops early when idle)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if not self.sock.poll(max(0, int(left * 1000))):
                break
            while True:
                try:
                    self.got.append(self.sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            if time.monotonic() > deadline:
                break
        return self.got

    def wait_for(self, pred, timeout, desc):
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            while i < len(self.got):
                if pred(self.got[i]):
                    return self.got[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                fail("raw SUB: no %s within %.1fs (got %d messages)" % (desc, timeout, len(self.got)))
            if self.sock.poll(int(min(left, 0.2) * 1000)):
                self.got.append(self.sock.recv_multipart())

    def decoded(self):
        out = []
        for frames in self.got:
            check(len(frames) == 2, "PUB message is not [topic, body]: %r" % frames)
            m = decode(frames[1], pub=True)
            if frames[0].startswith(PROBE_TOPIC):
                #  A tagged probe (version 5): to its prober alone
                check(m["type"] == PROBE, "a %s on a probe tag's topic %r" % (m["name"], frames[0]))
                m["tag"] = frames[0][1:].decode()
            else:
                check(frames[0] == (m["room"] + ":").encode(),
                      "topic frame %r does not match room %r" % (frames[0], m["room"]))
            out.append(m)
        return out


def wait_sub_live(sub, broker, room, probe_nick):
    """Make sure a raw SUB's subscription has reached the PUB: a session of
    probe_nick in room sends PROBE until it comes back on sub."""
    d = raw_session(broker, probe_nick, [room])
    deadline = time.monotonic() + T(10)
    topic = (room + ":").encode()
    while time.monotonic() < deadline:
        d.request(PROBE, room=room)
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            if sub.sock.poll(50):
                frames = sub.sock.recv_multipart()
                sub.got.append(frames)
                if frames[0] == topic:
                    try:
                        m = decode(frames[1], pub=True)
                    except DecodeError:
                        continue
                    if m["type"] == PROBE and m.get("nick") == probe_nick:
                        return d
    fail("raw SUB never saw its probe in %s" % room)


# ---------------------------------------------------------------------------
#  Raw TCP and ZMTP by hand (bad input below the ZeroMQ layer)

def tcp_connect(endpoint, timeout=5.0):
    host, port = endpoint.replace("tcp://", "").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    add_cleanup(s.close)
    return s


def zmtp_greeting(socket_type=b"DEALER"):
    """A ZMTP 3.0 NULL-mechanism greeting followed by a READY command."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") \
        + b"\x00" + b"\x00" * 31
    prop_name = b"Socket-Type"
    body = b"\x05READY" + bytes([len(prop_name)]) + prop_name + struct.pack(">I", len(socket_type)) \
        + socket_type
    return greeting + bytes([0x04, len(body)]) + body


def zmtp_frame(data, more=False):
    flags = 0x01 if more else 0x00
    if len(data) > 255:
        return bytes([flags | 0x02]) + struct.pack(">Q", len(data)) + data
    return bytes([flags, len(data)]) + data


# ---------------------------------------------------------------------------
#  CURVE certificates (czmq's ZPL files)

def read_cert(path):
    """(public, secret-or-None) Z85 keys from a czmq certificate file."""
    text = read_file(path)
    pub = re.search(r'public-key\s*=\s*"([^"]{40})"', text)
    sec = re.search(r'secret-key\s*=\s*"([^"]{40})"', text)
    check(pub is not None, "no public-key in %s:\n%s" % (path, text))
    return pub.group(1).encode(), (sec.group(1).encode() if sec else None)


def keygen(path, name=None):
    exe = require_binary("zchat-keygen", skip=True)
    argv = [exe, path] + (["--name", name] if name else [])
    r = run(argv, timeout=T(10))
    check(r.rc == 0, "zchat-keygen failed: %r" % r)
    check(os.path.exists(path) and os.path.exists(path + "_secret"),
          "zchat-keygen did not write %s and %s_secret" % (path, path))
    mode = os.stat(path + "_secret").st_mode & 0o777
    check(mode == 0o600, "secret certificate mode is %o, not 600" % mode)
    return path


class FakeBroker:
    """A ROUTER and a PUB speaking the zchat protocol just enough for one
    client: greeting, joins (with probes echoed), pings. on_request(msg)
    may answer a request itself (return True); publish() sends on the PUB
    from the broker's own thread. pub_port overrides the port WELCOME
    announces (e.g. a RawZmtpServer); version is the protocol version it
    names."""

    def __init__(self, on_request=None, pub_port=None, hello_reply=None, version=1):
        self.router = CTX.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router_port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.pub = CTX.socket(zmq.PUB)
        self.pub.linger = 0
        self.pub_real_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.pub_port = pub_port or self.pub_real_port
        self.on_request = on_request
        self.hello_reply = hello_reply
        self.version = version
        self.endpoint = "tcp://127.0.0.1:%d" % self.router_port
        self.peer = None
        self.last_size = 0              # bytes of the request being handled
        self.nick = None
        self.last_probe = None
        self.probes = []                # every PROBE request, decoded
        self.live = threading.Event()
        self.todo = []                  # (topic, body) to publish
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        add_cleanup(self.close)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.router.close(linger=0)
        self.pub.close(linger=0)

    def publish(self, room, body):
        with self.lock:
            self.todo.append(((room + ":").encode(), body))

    def reply(self, msg, mtype, **fields):
        self.router.send_multipart([self.peer, b"", encode(mtype, msg["id"], **fields)])

    def _run(self):
        try:
            while not self.stop.is_set():
                with self.lock:
                    todo, self.todo = self.todo, []
                for topic, body in todo:
                    self.pub.send_multipart([topic, body])
                #  The join is live once the client stops probing.
                if (self.last_probe and not self.live.is_set()
                        and time.monotonic() - self.last_probe > 0.3):
                    self.live.set()
                if not self.router.poll(20):
                    continue
                frames = self.router.recv_multipart()
                if len(frames) != 3 or frames[1] != b"":
                    continue
                self.peer = frames[0]
                self.last_size = len(frames[2])
                try:
                    msg = decode(frames[2])
                except DecodeError:
                    continue
                self._handle(msg)
        except Exception as e:          # reported by the test, not lost
            self.errors.append(repr(e))

    def _handle(self, msg):
        t = msg["type"]
        if t == HELLO:
            self.nick = msg["nick"]
            if self.hello_reply:
                self.reply(msg, *self.hello_reply[0], **self.hello_reply[1])
            else:
                self.reply(msg, WELCOME, version=self.version, nick=msg["nick"], token="t0k3n",
                           pub_port=self.pub_port, endpoint="", heartbeat_ms=1000,
                           timeout_ms=10000, max_text=4096, resumed=0)
            return
        if self.on_request and self.on_request(self, msg):
            return
        if t == JOIN:
            self.reply(msg, JOINED, room=msg["room"], seq=0, first_seq=0, members=1,
                       topic="")
        elif t == PROBE:
            self.reply(msg, OK)
            #  As a broker of version 5 would, when it WELCOMEd with 5
            self.probes.append(msg)
            topic = probe_topic(msg) if self.version >= 5 else (msg["room"] + ":").encode()
            self.pub.send_multipart([topic, encode(PROBE, 0, room=msg["room"], nick=self.nick)])
            self.last_probe = time.monotonic()
        elif t == PING:
            self.reply(msg, PONG, items=[])
        elif t == BYE:
            self.reply(msg, OK)

    def check_ok(self):
        check(not self.errors, "the fake broker failed: %r" % self.errors)


def driver(endpoint, nick, timeout_ms=20000):
    """A zchat-driver (tests/zchat_driver.c) for nick at endpoint, ready."""
    exe = require_binary("zchat-driver")
    p = Proc([exe, "--server", endpoint, "--nick", nick, "--timeout", str(timeout_ms)],
             "driver-" + nick)
    p.wait_for(lambda e: e.get("type") == "ready", T(15), desc="ready")
    return p


def driver_request(p, line):
    """Give a driver a command; the id of the request it made."""
    n = p.count(lambda e: e.get("type") == "request")
    p.write(line)
    ev = p.wait_count(lambda e: e.get("type") == "request", n + 1, T(5), desc="request")[n]
    check(ev.get("id") != "0", "%s: %r refused: %r" % (p.name, line, ev))
    return ev["id"]
