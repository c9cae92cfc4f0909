#!/usr/bin/python3
"""zchat test runner, run by `make check`.

    BUILD=build SANITIZE= /usr/bin/python3 tests/run.py [FILTER...]

Runs, each as one test with its own timeout and scratch directory:
  - every module of the C self test: $BUILD/zchat-selftest -t NAME, the
    names read from tests/selftest.c so that new modules are picked up;
  - the fuzz corpus replay: $BUILD/zchat-replay-NAME over
    tests/fuzz/corpus/NAME/ (and tests/fuzz/crashes/NAME/ if present);
  - every test_* function of tests/e2e/test_*.py, each in its own
    /usr/bin/python3 process (tests/e2e/run_one.py).
FILTER arguments select tests whose name contains one of them.

Each test runs in its own process group; at its end (or its timeout) the
whole group is killed, and so is every pid the test recorded in its scratch
directory (things that left the group, like a tmux server). Every *.stderr
file a test leaves there, and the test's own output, is scanned for
sanitizer reports: one fails the test.

Prints one line per test (PASS / FAIL / SKIP), failures with their output
indented, and last exactly one line "N passed, N failed". Exits 1 if any
test failed or none ran. Two tests run at a time (ZCHAT_JOBS overrides).
"""

import ast
import glob
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
SKIP_RC = 77
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|LeakSanitizer|"
                          r"ERROR: UndefinedBehaviorSanitizer")
MAX_OUTPUT_LINES = 200


class Test:
    def __init__(self, name, argv, timeout, cost):
        self.name = name
        self.argv = argv
        self.timeout = timeout
        self.cost = cost        # rough duration, to start long tests first


def selftest_modules():
    """Module names in tests/selftest.c's table: { "name", function }."""
    try:
        with open(os.path.join(ROOT, "tests", "selftest.c")) as f:
            text = f.read()
    except OSError:
        return []
    return re.findall(r'\{\s*"(\w+)"\s*,\s*\w+\s*\}', text)


def module_constant(tree, name, default):
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name:
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return default
    return default


def e2e_tests():
    tests = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "e2e", "test_*.py"))):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        #  A module may set TIMEOUT (seconds per test, default 120) and
        #  COST (expected seconds per test, to schedule long ones first).
        timeout = module_constant(tree, "TIMEOUT", 120)
        cost = module_constant(tree, "COST", 5)
        base = os.path.splitext(os.path.basename(path))[0]
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                tests.append(Test("e2e/%s:%s" % (base, node.name),
                                  [PYTHON, os.path.join(ROOT, "tests", "e2e", "run_one.py"),
                                   path, node.name], timeout, cost))
    return tests


def all_tests(build):
    tests = []
    for name in selftest_modules():
        tests.append(Test("selftest:" + name,
                          [os.path.join(build, "zchat-selftest"), "-t", name], 120, 10))
    for corpus in sorted(glob.glob(os.path.join(ROOT, "tests", "fuzz", "corpus", "*"))):
        if not os.path.isdir(corpus):
            continue
        name = os.path.basename(corpus)
        replayer = os.path.join(build, "zchat-replay-" + name)
        if not os.access(replayer, os.X_OK):
            continue
        argv = [replayer, corpus]
        crashes = os.path.join(ROOT, "tests", "fuzz", "crashes", name)
        if os.path.isdir(crashes):
            argv.append(crashes)
        tests.append(Test("fuzz-replay:" + name, argv, 300, 10))
    return tests + e2e_tests()


def child_env(build, sanitize, tmp):
    env = dict(os.environ)
    env["BUILD"] = build
    env["SANITIZE"] = "1" if sanitize else ""
    env["ZCHAT_TEST_TMP"] = tmp
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if sanitize:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        supp = os.path.join(ROOT, "tests", "e2e", "lsan.supp")
        if os.path.exists(supp):
            env["LSAN_OPTIONS"] = "suppressions=" + supp
    return env


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_recorded(tmp):
    """Kill pids the test recorded, if they are still the same processes."""
    try:
        with open(os.path.join(tmp, "pids")) as f:
            entries = [l.split() for l in f if l.strip()]
    except OSError:
        return
    for entry in entries:
        try:
            pid = int(entry[0])
            with open("/proc/%d/stat" % pid) as f:
                start = f.read().rsplit(")", 1)[1].split()[19]
            if len(entry) > 1 and entry[1] != start:
                continue
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def sanitizer_reports(tmp, output):
    found = []
    for path in [None] + sorted(glob.glob(os.path.join(tmp, "**", "*.stderr"), recursive=True)):
        if path is None:
            text, where = output, "test output"
        else:
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            where = os.path.basename(path)
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if SANITIZER_RE.search(line):
                found.append("sanitizer report in %s:\n%s"
                             % (where, "\n".join(lines[max(0, i - 2):i + 40])))
                break
    return found


running = {}
running_lock = threading.Lock()


def run_test(test, build, sanitize):
    tmp = tempfile.mkdtemp(prefix="zchat-test-")
    outpath = os.path.join(tmp, "output.log")
    scale = 3 if sanitize else 1
    timeout = test.timeout * scale
    t0 = time.monotonic()
    timed_out = False
    with open(outpath, "wb") as out:
        try:
            p = subprocess.Popen(test.argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=child_env(build, sanitize, tmp),
                                 start_new_session=True)
        except OSError as e:
            out.write(("cannot start %s: %s\n" % (test.argv[0], e)).encode())
            p = None
    rc = None
    if p is not None:
        with running_lock:
            running[p.pid] = p
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            #  SIGTERM first: the e2e harness then kills what it started.
            kill_group(p.pid, signal.SIGTERM)
            try:
                rc = p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(p.pid, signal.SIGKILL)
                rc = p.wait()
        finally:
            #  Whatever is left of the test's process group dies now.
            kill_group(p.pid, signal.SIGKILL)
            kill_recorded(tmp)
            with running_lock:
                running.pop(p.pid, None)
    elapsed = time.monotonic() - t0
    with open(outpath, "rb") as f:
        output = f.read().decode("utf-8", "replace")
    reports = sanitizer_reports(tmp, output)
    if os.environ.get("ZCHAT_KEEP_TMP") and (rc != 0 or reports):
        output += "\n(scratch directory kept: %s)" % tmp
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if timed_out:
        status, why = "FAIL", "timed out after %ds" % timeout
    elif reports:
        status, why = "FAIL", "sanitizer report"
        output = output + "\n" + "\n".join(reports)
    elif rc == 0:
        status, why = "PASS", ""
    elif rc == SKIP_RC:
        status, why = "SKIP", ""
        m = re.search(r"^SKIP: (.*)$", output, re.M)
        why = m.group(1) if m else "skipped"
    elif rc is None:
        status, why = "FAIL", "could not start"
    else:
        status, why = "FAIL", ("exit %d" % rc) if rc >= 0 else ("signal %d" % -rc)
    return status, why, elapsed, output


def indent(text):
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_OUTPUT_LINES:
        lines = lines[:20] + ["... (%d lines cut) ..." % (len(lines) - MAX_OUTPUT_LINES)] \
            + lines[-(MAX_OUTPUT_LINES - 20):]
    return "\n".join("    " + l for l in lines)


def main(argv):
    #  Sanitizers abort on error: no core files from that.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    build = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD") or "build"))
    sanitize = os.environ.get("SANITIZE") == "1"
    filters = argv[1:]
    tests = all_tests(build)
    if filters:
        tests = [t for t in tests if any(f in t.name for f in filters)]
    #  Longest first, so that the two slots finish together.
    tests.sort(key=lambda t: -t.cost)
    jobs = max(1, int(os.environ.get("ZCHAT_JOBS", "2")))
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    print_lock = threading.Lock()
    pending = list(tests)
    pending_lock = threading.Lock()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            with pending_lock:
                if not pending:
                    return
                test = pending.pop(0)
            status, why, elapsed, output = run_test(test, build, sanitize)
            if stop.is_set():
                return
            with print_lock:
                counts[status] += 1
                if status == "PASS":
                    print("PASS %s (%.1fs)" % (test.name, elapsed), flush=True)
                elif status == "SKIP":
                    print("SKIP %s (%s)" % (test.name, why), flush=True)
                else:
                    print("FAIL %s (%.1fs, %s)" % (test.name, elapsed, why), flush=True)
                    print(indent(output), flush=True)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(jobs)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        with running_lock:
            for pid in list(running):
                kill_group(pid, signal.SIGKILL)
        print("interrupted", flush=True)
        print("%d passed, %d failed" % (counts["PASS"], counts["FAIL"] + 1), flush=True)
        return 130
    if counts["SKIP"]:
        print("(%d skipped; %.0fs)" % (counts["SKIP"], time.monotonic() - t0), flush=True)
    else:
        print("(%.0fs)" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (counts["PASS"], counts["FAIL"]), flush=True)
    return 1 if counts["FAIL"] or not counts["PASS"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
