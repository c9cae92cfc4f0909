"""Test whether the example echo bot answers !echo and !time in its room,
ignores its own messages, and delays (never drops) a burst of requests."""

import re
import signal

from harness import Broker, Proc, check, listener, one_stderr_line, require_binary, run, send, wait_until, T

COST = 10


def test_echobot():
    b = Broker()
    exe = require_binary("zchat-echobot")
    ear = listener(b, "ear", ["bots"])
    bot = Proc([exe, "--server", b.router, "--nick", "echo", "--room", "bots"], "echobot",
               stdin=False)
    ear.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "echo",
                 timeout=T(10), desc="the bot's join")

    def from_bot():
        return [m["text"] for m in ear.messages() if m.get("from") == "echo"]

    send(b, "user", "bots", "!echo hello \"world\" \u00fc")
    ear.wait_for(lambda e: e.get("type") == "message" and e.get("from") == "echo",
                 timeout=T(10), desc="the bot's echo")
    check(from_bot() == ["hello \"world\" \u00fc"], "!echo answered %r" % from_bot())

    send(b, "user", "bots", "!time")
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "echo", 2,
                   timeout=T(10), desc="the bot's time")
    check(re.search(r"\d{1,2}:\d{2}", from_bot()[1]) is not None,
          "!time answered %r, which shows no time" % from_bot()[1])

    #  Its own "!echo x" must not make it answer itself.
    send(b, "user", "bots", "!echo !echo loop")
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "echo", 3,
                   timeout=T(10), desc="the bot's echo of !echo")
    check(from_bot()[2] == "!echo loop", "echo of '!echo !echo loop' was %r" % from_bot()[2])
    #  Ordinary chatter is ignored.
    send(b, "user", "bots", "just talking")

    #  A burst of 12: every one answered, in order (delayed, never dropped).
    for i in range(12):
        send(b, "user", "bots", "!echo burst %d" % i)
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "echo", 15,
                   timeout=T(30), desc="answers to the burst")
    send(b, "user", "bots", "!echo final")
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "echo", 16,
                   timeout=T(30), desc="the final echo")
    check(from_bot()[3:] == ["burst %d" % i for i in range(12)] + ["final"],
          "the bot's answers: %r" % from_bot())
    check(bot.alive(), "the bot exited")

    #  It comes back by itself after a broker restart.
    b.stop()
    b.restart()

    def answered():
        send(b, "user", "bots", "!echo after restart")
        try:
            ear.wait_for(lambda e: e.get("type") == "message" and e.get("from") == "echo"
                         and e.get("text") == "after restart", timeout=T(2), desc="")
            return True
        except AssertionError:
            return False
    wait_until(answered, T(30), "the bot to answer after a broker restart", 0.1)
    bot.signal(signal.SIGINT)
    check(bot.wait(T(10)) in (0, 130), "the bot did not exit cleanly on SIGINT")


def test_echobot_joins_again_after_429_and_stops_when_refused():
    #  Under the broker's rate limit the bot's second and third JOIN are
    #  refused with 429 at first: it joins them again when the broker says,
    #  and answers in the last room too (before: it stayed out, silently)
    b = Broker("--rate-limit", "4:1")
    exe = require_binary("zchat-echobot")
    ear = listener(b, "ear", ["r3"])
    bot = Proc([exe, "--server", b.router, "--nick", "echo", "--room", "r1", "--room", "r2",
                "--room", "r3", "-v"], "echobot", stdin=False)
    ear.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "echo",
                 timeout=T(10), desc="the bot's join of r3")
    check("refused for now" in bot.stderr(), "no join was refused with 429: %r"
          % bot.stderr()[-500:])
    send(b, "user", "r3", "!echo third")
    ear.wait_for(lambda e: e.get("type") == "message" and e.get("from") == "echo",
                 timeout=T(10), desc="the bot's echo in r3")
    bot.signal(signal.SIGTERM)
    check(bot.wait(T(10)) == 0, "the bot did not stop cleanly")

    #  Any other refusal: a bot out of a room it was told to serve says so
    #  and exits 1
    b2 = Broker("--max-rooms", "1")
    bot2 = Proc([exe, "--server", b2.router, "--nick", "echo2", "--room", "a", "--room", "b"],
                "echobot2", stdin=False)
    rc = bot2.wait(T(10))
    check(rc == 1, "exit %r after a refused join, expected 1" % rc)
    check("cannot join #b" in bot2.stderr(), "no reason given: %r" % bot2.stderr())


def test_echobot_usage_errors_name_what_is_wrong():
    exe = require_binary("zchat-echobot")
    for args, named in ((["--bogus"], "'--bogus'"), (["--room", "bad room"], "'bad room'"),
                        (["--timeout", "x"], "'x'"), (["--timeout"], "'--timeout'"),
                        (["--nick", "e", "--room", "r", "extra"], "'extra'")):
        r = run([exe] + args, timeout=T(10), name="echobot-usage")
        check(r.rc == 2, "%s should be a usage error: %r" % (args, r))
        check(named in one_stderr_line(r), "%s: the error should name %s: %r"
              % (args, named, r.err))
