"""Test whether the broker's command line keeps its contract: usage errors
exit 2, start-up failures (port in use, data directory in use) exit 1 with
one clear line, --help documents every option, SIGINT/SIGTERM exit 0, and
a plaintext broker warns that it is unauthenticated."""

import os
import signal
import tempfile

from harness import TMP, Broker, check, read_file, require_binary, run, spawn, wait_until, T

COST = 5

OPTIONS = ["--router", "--pub", "--session-timeout", "--data", "--fsync", "--retain-messages",
           "--retain-days", "--pub-hwm", "--max-text", "--max-rooms",
           "--max-sessions-per-address", "--history-page", "--rate-limit", "--fair-share", "--group-wait-us", "--cert",
           "--allow", "--allow-any", "--help"]


def test_broker_usage():
    exe = require_binary("zchat-broker")
    data = tempfile.mkdtemp(dir=TMP)
    base = [exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*", "--data", data]
    for args in (["--bogus"], ["--session-timeout", "abc"], ["--session-timeout", "-2"],
                 ["--pub-hwm", "x"], ["--retain-messages", "-1"], ["--max-text", "lots"],
                 ["--fair-share", "x"], ["--group-wait-us", "20000"], ["--cert"],
                 ["--router"], ["stray"]):
        r = run(base + args, timeout=T(10), name="broker-usage")
        check(r.rc == 2, "zchat-broker %s should exit 2: %r" % (" ".join(args), r))
    r = run([exe, "--help"], timeout=T(10), name="broker-help")
    check(r.rc == 0, "zchat-broker --help should exit 0: %r" % r)
    text = r.out + r.err
    for opt in OPTIONS:
        check(opt in text, "zchat-broker --help does not document %s" % opt)


def test_broker_startup_failures():
    b = Broker()
    check("unauthenticated" in b.stderr().lower() or "unencrypted" in b.stderr().lower(),
          "a broker without --cert should warn that traffic is unauthenticated:\n%s" % b.stderr())
    exe = require_binary("zchat-broker")
    #  The same data directory, other ports: refused.
    r = run([exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
             "--data", b.data], timeout=T(10), name="broker-second")
    check(r.rc == 1, "a second broker on a data dir in use should exit 1: %r" % r)
    check(any("in use" in l.lower() or "lock" in l.lower() or b.data in l
              for l in r.err.splitlines()), "no clear error line about the data dir: %r" % r)
    #  The same router port: refused.
    other = tempfile.mkdtemp(dir=TMP)
    r = run([exe, "--router", b.router, "--pub", "tcp://127.0.0.1:*", "--data", other],
            timeout=T(10), name="broker-port")
    check(r.rc == 1, "a broker on a port in use should exit 1: %r" % r)
    b.check_alive()
    #  SIGINT is an orderly stop, like SIGTERM.
    b.proc.send_signal(signal.SIGINT)
    rc = b.proc.wait(timeout=T(10))
    check(rc == 0, "broker exited %s on SIGINT:\n%s" % (rc, b.stderr()[-2000:]))
    #  And the data dir is free again.
    b.restart()
    b.stop()
    check(os.path.isdir(b.data), "data dir vanished")


def test_broker_names_a_store_it_cannot_read():
    #  An operator whose zchat.db is damaged (or not zchat's) must be told
    #  which file, not only SQLite's words.
    exe = require_binary("zchat-broker")
    data = tempfile.mkdtemp(dir=TMP)
    db = os.path.join(data, "zchat.db")
    with open(db, "w") as f:
        f.write("not a database\n")
    r = run([exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
             "--data", data], timeout=T(10), name="broker-bad-store")
    check(r.rc == 1, "a broker on a damaged store should exit 1: %r" % r)
    lines = [l for l in r.err.splitlines() if l.strip()]
    check(len(lines) == 1 and db in lines[0],
          "the one error line should name %s: %r" % (db, r.err))


def test_broker_logs_its_store():
    #  The default store depends on the environment the broker was started
    #  in ($XDG_DATA_HOME, $HOME): its log says which one it serves.
    exe = require_binary("zchat-broker")
    home = tempfile.mkdtemp(dir=TMP)
    env = dict(os.environ, XDG_DATA_HOME=os.path.join(home, "xdg"))
    p = spawn([exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*"],
              "broker-store-log", env=env)
    wait_until(lambda: "ready router=" in read_file(p.stderr_path), T(10),
               desc="the broker's ready line")
    store = os.path.join(home, "xdg", "zchat", "zchat.db")
    check("store %s" % store in read_file(p.stderr_path),
          "the log should name the store %s: %r" % (store, read_file(p.stderr_path)))
