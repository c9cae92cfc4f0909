"""Run end-to-end test functions: run_one.py FILE [FUNCTION...].

tests/run.py starts one of these per test, in its own process group, with
ZCHAT_TEST_TMP set. Run by hand it runs every test_* in FILE (or the named
ones) and cleans up after itself. Exit 0 pass, 1 fail, 77 skipped.
"""

import importlib.util
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import harness  # noqa: E402

SKIP_RC = 77


def main(argv):
    if len(argv) < 2:
        print("usage: run_one.py FILE [FUNCTION...]", file=sys.stderr)
        return 2
    path = os.path.abspath(argv[1])
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = argv[2:] or sorted(n for n in dir(module)
                               if n.startswith("test_") and callable(getattr(module, n)))
    rc = 0
    for name in names:
        t0 = time.monotonic()
        try:
            getattr(module, name)()
            print("ok %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        except harness.Skip as e:
            print("SKIP: %s" % e, flush=True)
            rc = rc or SKIP_RC
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc(file=sys.stdout)
            tails = harness.log_tails()
            if tails:
                print("process logs:\n" + tails)
            print("FAILED %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
            rc = 1
        finally:
            harness.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
