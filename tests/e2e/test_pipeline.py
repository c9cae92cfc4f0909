"""Test whether `zchat --send -` sends one message per stdin line, all of
them, in order, and exits 0 only once every line is acknowledged."""

from harness import Broker, check, check_contiguous, listener, run, zchat_argv, T

COST = 5


def test_500_line_pipeline():
    b = Broker()
    ear = listener(b, "ear", ["logs"], count=500, timeout=T(60))
    lines = ["log line %03d: \u00e9v\u00e9nement \"%d\"" % (i, i * i) for i in range(500)]
    r = run(zchat_argv(b, "logbot", ["logs"], ["--send", "-"]),
            input="".join(l + "\n" for l in lines), timeout=T(60), name="logbot", pipe=True)
    check(r.rc == 0, "--send - failed: %r" % r)
    check(ear.wait(T(30)) == 0, "listener did not get 500 messages: %s" % ear._describe())
    msgs = ear.messages("logs")
    check_contiguous(msgs, 1, 500, "pipeline listener")
    check([m["text"] for m in msgs] == lines, "pipeline texts differ or are out of order")
    check(all(m.get("from") == "logbot" for m in msgs), "wrong sender in pipeline")


def test_pipeline_from_shell():
    #  The README's shape: a shell pipeline into zchat, last line without \n.
    b = Broker()
    ear = listener(b, "ear", ["ops"], count=3, timeout=T(30))
    zc = " ".join(zchat_argv(b, "piper", ["ops"], ["--send", "-"]))
    r = run(["/bin/sh", "-c", "printf 'one\\ntwo\\nthree' | " + zc], timeout=T(30), name="sh")
    check(r.rc == 0, "shell pipeline failed: %r" % r)
    check(ear.wait(T(20)) == 0, "listener: %s" % ear._describe())
    check([m["text"] for m in ear.messages()] == ["one", "two", "three"],
          "pipeline got %r" % ear.messages())
    #  Empty input: nothing to send, success.
    r = run(zchat_argv(b, "empty", ["ops"], ["--send", "-"]), input="", timeout=T(30), pipe=True)
    check(r.rc == 0, "--send - with empty stdin should succeed: %r" % r)
