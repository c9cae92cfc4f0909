//  zchat_cli — the shared parts of the zchat command-line client: options,
//  exit codes, connecting, reading stdin by lines, and printing events as
//  plain text or as JSON lines.
//
//  The front ends (zchat_cli_interactive.c, zchat_cli_json.c,
//  zchat_cli_oneshot.c) build on this and on the public libzchat API only
//  (zchat_client.h): the client side has one implementation of the
//  protocol, the library's. Nothing here is part of libzchat's API.
//  Two parts the front ends share are modules of their own: the wait in
//  each loop (zchat_cli_poll.h) and the requests in flight
//  (zchat_cli_requests.h).

#ifndef ZCHAT_CLI_H_INCLUDED
#define ZCHAT_CLI_H_INCLUDED

#include <czmq.h>
#include <cjson/cJSON.h>
#include "zchat_client.h"

//  Exit codes: the contract in README.md and zchat --help.
#define ZCHAT_EXIT_OK           0
#define ZCHAT_EXIT_FAILED       1       //  other runtime failure
#define ZCHAT_EXIT_USAGE        2       //  unknown flag, bad value
#define ZCHAT_EXIT_UNREACHABLE  3       //  no broker within --timeout
#define ZCHAT_EXIT_REFUSED      4       //  refused by the broker
#define ZCHAT_EXIT_NOT_ACKED    5       //  a send not acknowledged in time
#define ZCHAT_EXIT_AUTH         6       //  CURVE handshake refused
#define ZCHAT_EXIT_INCOMPLETE   7       //  --listen ran out before --count
#define ZCHAT_EXIT_INTERRUPTED  130     //  SIGINT / SIGTERM

#define ZCHAT_CLI_MAX_ROOMS     64      //  --room given at most this often
#define ZCHAT_CLI_DEFAULT_SERVER "tcp://127.0.0.1:5555"
#define ZCHAT_CLI_DEFAULT_TIMEOUT 10.0  //  seconds
#define ZCHAT_CLI_INTERACTIVE_HISTORY 20
#define ZCHAT_CLI_WINDOW        256     //  unacknowledged sends in flight
#define ZCHAT_CLI_MAX_LINE      (1024 * 1024)   //  longer stdin lines are discarded

//  The name rules (PROTOCOL.md section 3) as people are told them.
#define ZCHAT_CLI_NICK_RULE "1-32 of A-Z a-z 0-9 _ - [ ] { } | ^ `, not starting with a digit or '-'"
#define ZCHAT_CLI_ROOM_RULE "1-32 of A-Z a-z 0-9 _ . -"

//  Error codes this client puts in JSON error events for failures found
//  on this side (the broker's own codes, PROTOCOL.md section 5, pass
//  through unchanged). HTTP-like, like the broker's.
#define ZCHAT_CLI_ERR_BAD_JSON      400     //  a command line is not a JSON object
#define ZCHAT_CLI_ERR_NO_ROOM       404     //  no room given and no current room
#define ZCHAT_CLI_ERR_TIMEOUT       408     //  no answer within --timeout
#define ZCHAT_CLI_ERR_BAD_FIELD     422     //  a field missing or invalid
#define ZCHAT_CLI_ERR_AUTH          495     //  CURVE handshake refused
#define ZCHAT_CLI_ERR_LOCAL         500     //  socket or other local failure
#define ZCHAT_CLI_ERR_UNKNOWN_CMD   501     //  "cmd" not known

typedef struct {
    const char *server;
    const char *nick;
    char     rooms [ZCHAT_CLI_MAX_ROOMS][ZCHAT_MAX_ROOM + 1];
    size_t   room_count;
    const char *sub;
    const char *send;                   //  NULL, a text, or "-" for stdin
    const char *to;                     //  --to NICK: direct message
    bool     listen;
    long     count;                     //  -1 when not given
    double   timeout;                   //  seconds; 0 = no bound
    bool     timeout_given;
    bool     json;
    int      history;                   //  -1 when not given
    const char *cert;
    const char *server_key;
    bool     verbose;
    bool     help;                      //  --help was printed: exit 0
} zchat_cli_opts_t;

//  ---------------------------------------------------------------------
//  Options and failures

//  Parse the command line into opts. Returns 0, or ZCHAT_EXIT_USAGE after
//  one usage line was printed to stderr. After --help was printed it
//  returns 0 with opts->help set.
int
    zchat_cli_opts_parse (zchat_cli_opts_t *opts, int argc, char **argv);

//  Print one line "zchat: <message>" to stderr: the only thing a failure
//  prints there.
void
    zchat_cli_fail (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  Print a usage error (one line, naming --help) and return ZCHAT_EXIT_USAGE.
int
    zchat_cli_usage_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  --timeout in milliseconds, or -1 when it is 0 (no bound).
int
    zchat_cli_timeout_ms (const zchat_cli_opts_t *opts);

//  Create a client from opts (history: messages to replay per room on
//  join), connect and greet. Returns ZCHAT_EXIT_OK and sets *client_p, or
//  an exit code after printing one line to stderr.
int
    zchat_cli_connect (const zchat_cli_opts_t *opts, int history,
                       zchat_client_t **client_p);

//  The exit code for an ERROR event that ends a one-shot run, and print
//  its one stderr line prefixed by what (e.g. "cannot join #ops").
int
    zchat_cli_fail_event (const zchat_event_t *event, const char *what);

//  Milliseconds on the monotonic clock.
int64_t
    zchat_cli_now (void);

//  ---------------------------------------------------------------------
//  The rooms we are in, in the order joined: the current room is the last
//  joined that we have not left.

#define ZCHAT_CLI_MAX_JOINED    256

typedef struct {
    char     names [ZCHAT_CLI_MAX_JOINED][ZCHAT_MAX_ROOM + 1];
    size_t   count;
} zchat_cli_rooms_t;

//  Add room, or move it to the end (it becomes the current room).
//  Returns 0, or -1 if too many rooms are joined.
int
    zchat_cli_rooms_add (zchat_cli_rooms_t *self, const char *room);
//  Forget room if joined.
void
    zchat_cli_rooms_remove (zchat_cli_rooms_t *self, const char *room);
//  The current room, or NULL when in none.
const char *
    zchat_cli_rooms_current (const zchat_cli_rooms_t *self);

//  ---------------------------------------------------------------------
//  The front ends. Each returns the exit code.

//  Interactive (terminal true: libedit) or plain lines on stdin.
int
    zchat_cli_interactive_run (const zchat_cli_opts_t *opts, bool terminal);
//  JSON lines: commands on stdin, events on stdout.
int
    zchat_cli_json_run (const zchat_cli_opts_t *opts);
//  --send TEXT, --send -, --to NICK --send.
int
    zchat_cli_send_run (const zchat_cli_opts_t *opts);
//  --listen.
int
    zchat_cli_listen_run (const zchat_cli_opts_t *opts);

//  ---------------------------------------------------------------------
//  Reading lines from a file descriptor without blocking the poll loop

typedef struct _zchat_cli_lines_t zchat_cli_lines_t;

//  Read lines from fd (not owned: never closed here).
zchat_cli_lines_t *
    zchat_cli_lines_new (int fd);
void
    zchat_cli_lines_destroy (zchat_cli_lines_t **self_p);

//  Read what fd has (one read; call when it polls readable). Returns 0,
//  or -1 once fd is at end of file or failed: then only buffered lines
//  remain.
int
    zchat_cli_lines_fill (zchat_cli_lines_t *self);

//  The next complete line without its "\n" (and a "\r" before it), or
//  NULL if none is complete yet; after end of file the last unterminated
//  line too. Sets *size_p. Borrowed until the next call; NUL-terminated.
//  A line over ZCHAT_CLI_MAX_LINE bytes is never handed out, not even in
//  part (a piece could be a command, or a secret's tail said in public):
//  in its place comes, once and as soon as it is seen, an empty line with
//  *too_long_p set, and all of it up to its newline is skipped.
//  *too_long_p is false for every other line.
char *
    zchat_cli_lines_next (zchat_cli_lines_t *self, size_t *size_p, bool *too_long_p);

//  True once end of file was seen and every line was taken.
bool
    zchat_cli_lines_done (zchat_cli_lines_t *self);

//  ---------------------------------------------------------------------
//  Text

//  A copy of data with every invalid UTF-8 sequence and NUL byte replaced
//  by U+FFFD, so any line of input can be sent. Sets *size_p. Caller frees.
char *
    zchat_cli_utf8_fix (const char *data, size_t size, size_t *size_p);

//  A copy of text that cannot drive a terminal, on one line: control
//  characters (newline and tab too) shown as ^X, C1 controls as U+FFFD.
//  For anything from the network printed as plain text (names, reasons).
//  Caller frees (zstr_free).
char *
    zchat_cli_safe (const char *text);

//  Strip one leading '#' that people type before room names.
const char *
    zchat_cli_room_arg (const char *room);

//  ---------------------------------------------------------------------
//  Printing events

//  An event for people: one or more lines, without the final newline.
//  Control characters in text are made visible, so nobody can drive the
//  terminal with a message. show_room adds the room to room lines (when
//  more than one room is joined). Returns a fresh string (free with
//  zstr_free), or NULL for events shown as nothing (ACK, OK).
char *
    zchat_cli_event_text (const zchat_event_t *event, bool show_room);

//  Our own direct message as people see it: "[14:03] -> *bob* text".
//  Returns a fresh string (free with zstr_free).
char *
    zchat_cli_dm_sent_text (const char *to, const char *text, size_t size, bool action);

//  An event as a JSON object of the schema in client/JSON.md. Returns a
//  new object (cJSON_Delete), or NULL if out of memory.
cJSON *
    zchat_cli_event_json (const zchat_event_t *event);

//  The code a JSON error event carries for an ERROR event: the broker's
//  code, or a ZCHAT_CLI_ERR_* code for a local failure.
int
    zchat_cli_error_code (const zchat_event_t *event);

//  Print one JSON object as one line on stdout and flush; takes and
//  destroys *json_p. Returns 0, or -1 if stdout failed.
int
    zchat_cli_print_json (cJSON **json_p);

//  Print a JSON error event (id: a copy of it is added when not NULL).
void
    zchat_cli_print_json_error (int code, const char *message, const cJSON *id);

//  Print {"type":"connected","nick","server"} for a fresh connection.
void
    zchat_cli_print_connected (const zchat_cli_opts_t *opts, zchat_client_t *client);

#endif
