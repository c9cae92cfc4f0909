"""Test whether the interactive client works in a real terminal (tmux): typed
lines reach the room, incoming messages appear without mangling the line
being typed, and /who, /me and /quit work."""

import os
import shlex
import shutil
import subprocess
import time

from harness import (Broker, SANITIZE, Skip, TMP, _log_path, add_cleanup, check, fail, listener,
                     read_file, send, track_pid, wait_until, zchat_argv, T)

COST = 10


class Tmux:
    def __init__(self, command):
        self.tmux = shutil.which("tmux")
        if not self.tmux:
            raise Skip("tmux is not installed")
        self.sock = os.path.join(TMP, "tmux.sock")
        add_cleanup(self.kill)
        self.cmd("new-session", "-d", "-s", "t", "-x", "150", "-y", "40", command)
        pid = self.cmd("display-message", "-p", "#{pid}").strip()
        if pid.isdigit():
            track_pid(int(pid))

    def cmd(self, *args):
        env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm")
        r = subprocess.run([self.tmux, "-u", "-S", self.sock] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env=env)
        if r.returncode != 0:
            fail("tmux %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
        return r.stdout.decode("utf-8", "replace")

    def kill(self):
        subprocess.run([self.tmux, "-S", self.sock, "kill-server"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10)

    def type(self, text):
        self.cmd("send-keys", "-t", "t", "-l", text)

    def enter(self):
        self.cmd("send-keys", "-t", "t", "Enter")

    def screen(self):
        return self.cmd("capture-pane", "-t", "t", "-p", "-J", "-S", "-200")

    def wait_screen(self, pred, timeout, desc):
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                fail("terminal never showed %s; screen:\n%s" % (desc, s))
            time.sleep(0.05)


def test_interactive_tmux():
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    b = Broker()
    bob = listener(b, "bobwatcher", ["lobby"])
    errfile = _log_path("interactive", "stderr")
    exitfile = os.path.join(TMP, "interactive.exit")
    argv = zchat_argv(b, "tmuxer", ["lobby"])
    command = "sh -c %s" % shlex.quote(
        "%s 2>%s; echo \"EXIT=$?\" >%s" % (" ".join(shlex.quote(a) for a in argv),
                                           shlex.quote(errfile), shlex.quote(exitfile)))
    tm = Tmux(command)
    bob.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "tmuxer",
                 timeout=T(10), desc="the interactive client's join")
    time.sleep(0.3)

    #  Typed text goes to the current room.
    tm.type("hello from tmux \u00e9t\u00e9")
    tm.enter()
    m = bob.wait_text("hello from tmux \u00e9t\u00e9", timeout=T(5))
    check(m.get("from") == "tmuxer" and m.get("room") == "lobby",
          "typed line arrived with wrong sender/room: %r" % m)

    #  Incoming messages appear with their sender.
    send(b, "carol", "lobby", "incoming from carol")
    tm.wait_screen(lambda s: any("incoming from carol" in l and "carol" in
                                 l.replace("incoming from carol", "") for l in s.splitlines()),
                   T(5), "carol's message with her nick")

    #  A message arriving while a line is being typed: printed above it, and
    #  the half-typed line survives intact.
    tm.type("partial line")
    tm.wait_screen(lambda s: "partial line" in s, T(5), "the half-typed line")
    send(b, "dave", "lobby", "message while typing")
    s = tm.wait_screen(lambda s: "message while typing" in s, T(5), "dave's message")
    time.sleep(0.2)
    s = tm.screen()
    lines = [l for l in s.splitlines() if l.strip()]
    incoming = [i for i, l in enumerate(lines) if "message while typing" in l]
    typed = [i for i, l in enumerate(lines) if "partial line" in l]
    check(incoming and typed and typed[-1] > incoming[-1],
          "the half-typed line should be redrawn below the incoming message:\n%s" % s)
    check(all("partial" not in lines[i] for i in incoming),
          "incoming message mixed into the typed line:\n%s" % s)
    tm.type(" done")
    tm.enter()
    bob.wait_text("partial line done", timeout=T(5))

    #  /me sends an action.
    tm.type("/me waves")
    tm.enter()
    m = bob.wait_for(lambda e: e.get("type") == "message" and e.get("action") is True,
                     timeout=T(5), desc="the /me action")
    check(m.get("text") == "waves" and m.get("from") == "tmuxer", "/me arrived as %r" % m)

    #  /who lists the members (bobwatcher is shown nowhere else).
    tm.type("/who")
    tm.enter()
    tm.wait_screen(lambda s: "bobwatcher" in s, T(5), "/who listing bobwatcher")

    #  /msg sends a direct message; /nick renames.
    tm.type("/msg bobwatcher a private word")
    tm.enter()
    dm = bob.wait_text("a private word", timeout=T(5), type_="dm")
    check(dm.get("from") == "tmuxer", "/msg arrived as %r" % dm)
    tm.type("/nick tmuxer2")
    tm.enter()
    ev = bob.wait_for(lambda e: e.get("type") == "nick", timeout=T(5), desc="the /nick event")
    check(ev.get("old") == "tmuxer" and ev.get("new") == "tmuxer2", "/nick gave %r" % ev)

    #  /quit ends the client at once, and the others see it quit.
    tm.type("/quit")
    tm.enter()
    deadline = time.monotonic() + T(5)
    while not os.path.exists(exitfile) or not read_file(exitfile).strip():
        if time.monotonic() > deadline:
            fail("/quit did not end the client; screen:\n%s" % tm.screen())
        time.sleep(0.05)
    check(read_file(exitfile).strip() == "EXIT=0",
          "interactive client exited with %s after /quit; stderr: %s"
          % (read_file(exitfile).strip(), read_file(errfile)))
    bob.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "tmuxer2",
                 timeout=T(3), desc="quit event after /quit")
    check([m["text"] for m in bob.messages()] ==
          ["hello from tmux \u00e9t\u00e9", "incoming from carol", "message while typing",
           "partial line done", "waves"],
          "room traffic not as typed: %r" % [m["text"] for m in bob.messages()])


class Pty:
    """A program in a pseudo-terminal of a given size, its output collected."""

    def __init__(self, argv, rows=30, cols=120):
        import fcntl
        import pty
        import struct
        import termios
        self.output = bytearray()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm")
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        track_pid(self.pid)
        add_cleanup(self.kill)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.status = None

    def read(self, timeout):
        """Collect output for up to timeout seconds; False at end of output."""
        import select
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                return False
            self.output.extend(data)
        return True

    def settle(self, quiet, timeout, desc):
        """Read until no output came for quiet seconds."""
        deadline = time.monotonic() + timeout
        while True:
            before = len(self.output)
            if not self.read(quiet) or len(self.output) == before:
                return
            if time.monotonic() > deadline:
                fail("terminal output never settled %s" % desc)

    def type(self, text, chunk=64):
        data = text.encode("utf-8")
        for i in range(0, len(data), chunk):
            os.write(self.fd, data[i:i + chunk])
            self.read(0)

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.status is None:
            self.read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            elif time.monotonic() > deadline:
                fail("the client did not exit; last output:\n%s"
                     % self.output[-2000:].decode("utf-8", "replace"))
        return os.waitstatus_to_exitcode(self.status)

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        os.close(self.fd)


#  libzmq reads past a czmq handle when czmq asks it whether a pointer is a
#  socket (zsock_resolve in zpoller_wait): not ours, and harmless.
VALGRIND_SUPPRESSIONS = """{
   czmq-zsock-resolve-probe
   Memcheck:Addr4
   fun:zmq_getsockopt
}
"""


def test_interactive_long_line():
    """Test whether a line far longer than the terminal is wide (5000
    characters, some of them two bytes in UTF-8) can be typed while messages
    arrive, reaches the room whole, and corrupts no memory: run under
    valgrind where there is one (libedit's readline layer kept a pointer
    into a buffer it had moved once the line passed about 1,000 bytes, and
    wrote through it)."""
    b = Broker("--max-text", "8192")
    bob = listener(b, "bobwatcher", ["lobby"])
    argv = zchat_argv(b, "longtyper", ["lobby"], ["--history", "0"])
    vglog = os.path.join(TMP, "valgrind.log")
    valgrind = shutil.which("valgrind") if not SANITIZE else None
    if valgrind:
        supp = os.path.join(TMP, "valgrind.supp")
        with open(supp, "w") as f:
            f.write(VALGRIND_SUPPRESSIONS)
        argv = [valgrind, "-q", "--error-exitcode=99", "--suppressions=" + supp,
                "--log-file=" + vglog] + argv
    slow = 4 if valgrind else 1
    term = Pty(argv)
    bob.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "longtyper",
                 timeout=T(10 * slow), desc="the interactive client's join")
    term.settle(0.3, T(10 * slow), "after the join")

    #  Messages arrive while the line is about 1,000, 2,000, 3,300 and
    #  4,500 bytes long: each has it redrawn. Under valgrind, where every
    #  keystroke is slow, the line only passes the first 1,000 bytes.
    pieces = ["x" * 1022, "\u00e9" * 500, "y" * 1100, "z" * 1200, "w" * 1178]
    if valgrind:
        pieces = ["x" * 1022, "\u00e9" * 60, "w" * 18]
    typed = ""
    for number, piece in enumerate(pieces[:-1]):
        term.type(piece)
        typed += piece
        term.settle(0.3, T(30 * slow), "while typing")
        send(b, "carol", "lobby", "incoming %d" % number)
        bob.wait_text("incoming %d" % number, timeout=T(5))
        term.settle(0.3, T(30 * slow), "after an incoming message")
    term.type(pieces[-1])
    typed += pieces[-1]
    term.settle(0.3, T(30 * slow), "while typing")
    check(len(typed) == (1100 if valgrind else 5000),
          "the test typed %d characters" % len(typed))
    term.type("\r")
    bob.wait_text(typed, timeout=T(10 * slow))

    term.type("/quit\r")
    code = term.wait_exit(T(10 * slow))
    log = read_file(vglog) if valgrind else ""
    check(code == 0, "the client exited with %s; valgrind said:\n%s" % (code, log[:4000]))
    check("==" not in log, "valgrind found errors:\n%s" % log[:4000])
    check([m["text"] for m in bob.messages()]
          == ["incoming %d" % n for n in range(len(pieces) - 1)] + [typed],
          "room traffic not as typed: %r" % [m["text"][:40] for m in bob.messages()])


def test_interactive_stop_resize_continue():
    """Test whether the interactive client survives what a terminal does to
    it: a window resize (SIGWINCH) used to cut its poll short and end it
    as interrupted (exit 130), and after Ctrl-Z and fg (SIGSTOP, the shell
    setting the terminal back to line mode, SIGCONT) it went on in line
    mode, echoing, its editing gone. Now it keeps editing, a keystroke at a
    time, and says what was typed."""
    import fcntl
    import signal
    import struct
    import termios
    b = Broker()
    bob = listener(b, "bobwatcher", ["lobby"])
    term = Pty(zchat_argv(b, "stopper", ["lobby"], ["--history", "0"]))
    bob.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "stopper",
                 timeout=T(10), desc="the interactive client's join")
    term.settle(0.3, T(10), "after the join")

    def line_mode():
        return bool(termios.tcgetattr(term.fd)[3] & termios.ICANON)

    check(not line_mode(), "the client does not edit a keystroke at a time")
    term.type("before ")
    fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 60, 0, 0))
    term.settle(0.3, T(10), "after a resize")
    term.type("resize\r")
    bob.wait_text("before resize", timeout=T(10))

    term.type("after ")
    term.settle(0.2, T(10), "while typing")
    os.kill(term.pid, signal.SIGSTOP)
    attrs = termios.tcgetattr(term.fd)              # the shell takes the terminal
    attrs[3] |= termios.ICANON | termios.ECHO
    termios.tcsetattr(term.fd, termios.TCSANOW, attrs)
    os.kill(term.pid, signal.SIGCONT)
    wait_until(lambda: not line_mode(), T(10), desc="editing a keystroke at a time again")
    term.type("fg\r")
    bob.wait_text("after fg", timeout=T(10))

    term.type("/quit\r")
    code = term.wait_exit(T(10))
    check(code == 0, "the client exited with %s" % code)
