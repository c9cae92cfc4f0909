"""Test whether the shell bot client/bots/greeter.sh, built on `zchat --json`
and jq only, greets whoever joins its room and answers "!uptime", and ignores
ordinary chatter and its own messages."""

import os
import re

from harness import Broker, Proc, check, listener, require_binary, send, T

COST = 6

HERE = os.path.dirname(os.path.abspath(__file__))
GREETER = os.path.join(HERE, "..", "..", "client", "bots", "greeter.sh")


def test_greeter_bot():
    b = Broker()
    zchat = require_binary("zchat")
    ear = listener(b, "ear", ["lobby"])
    bot = Proc(["bash", GREETER, "--server", b.router, "--room", "lobby", "--nick", "greeter"],
               "greeter", stdin=False, env={"ZCHAT": zchat})
    ear.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "greeter",
                 timeout=T(10), desc="the bot's join")

    def from_bot():
        return [m["text"] for m in ear.messages() if m.get("from") == "greeter"]

    #  dave joins (a one-shot send joins the room first): he is greeted.
    send(b, "dave", "lobby", "hello all")
    ear.wait_for(lambda e: e.get("type") == "message" and e.get("from") == "greeter",
                 timeout=T(10), desc="the bot's greeting")
    check(from_bot() == ["welcome to #lobby, dave!"], "the bot said %r" % from_bot())

    send(b, "dave", "lobby", "!uptime")
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "greeter", 3,
                   timeout=T(10), desc="the greeting of the second join and the uptime")
    answers = from_bot()
    check(answers[1] == "welcome to #lobby, dave!" and re.fullmatch(r"up \d+ s", answers[2]),
          "expected a second greeting then 'up N s', got %r" % answers)

    #  Chatter gets no answer: after erin's greeting, the bot's next words
    #  answer the "!uptime" sent after the chatter.
    send(b, "erin", "lobby", "just talking")
    send(b, "erin", "lobby", "!uptime")
    ear.wait_count(lambda e: e.get("type") == "message" and e.get("from") == "greeter", 6,
                   timeout=T(10), desc="erin's greetings and the uptime")
    answers = from_bot()[3:]
    check(answers[:2] == ["welcome to #lobby, erin!"] * 2 and re.fullmatch(r"up \d+ s", answers[2]),
          "unexpected answers %r" % from_bot())
    check(bot.alive(), "the shell bot exited")
