#!/usr/bin/env bash
#  greeter.sh — a zchat bot in shell, on `zchat --json` and jq only: it
#  greets whoever joins the room and answers "!uptime" with its own uptime.
#
#      client/bots/greeter.sh --server tcp://127.0.0.1:5555 --room lobby [--nick greeter]
#
#  zchat runs as a coprocess: JSON commands go to its stdin, its JSON
#  events come back through jq as tab-separated type, nick, text.
server=tcp://127.0.0.1:5555 room=lobby nick=greeter
while [ $# -ge 2 ]; do
    case $1 in --server|--room|--nick) printf -v "${1#--}" %s "$2"; shift 2 ;; *) break ;; esac
done
[ $# -eq 0 ] || { echo "usage: $0 [--server ENDPOINT] [--room ROOM] [--nick NAME]" >&2; exit 2; }
zchat=${ZCHAT:-$(dirname "$0")/../../build/zchat}
started=$(date +%s)

coproc CHAT { set -o pipefail; "$zchat" --json --server "$server" --nick "$nick" --room "$room" |
              jq --unbuffered -r 'select(.history != true) | [.type, .nick // .from // "", .text // ""] | @tsv'; }
chat_pid=$CHAT_PID
say() { jq -cn --arg room "$room" --arg text "$1" '{cmd: "say", room: $room, text: $text}' >&"${CHAT[1]}"; }

while IFS=$'\t' read -r type who text <&"${CHAT[0]}"; do
    [ "$who" = "$nick" ] && continue                    # not ourselves
    case $type in
        join)    say "welcome to #$room, $who!" ;;
        message) [ "$text" = '!uptime' ] && say "up $(( $(date +%s) - started )) s" ;;
    esac
done
wait "$chat_pid"                                        # zchat's exit code
