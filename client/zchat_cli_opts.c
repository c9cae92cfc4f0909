//  zchat_cli_opts — the zchat CLI's command line, failures and exit codes,
//  connecting, and reading stdin by lines inside a poll loop.

#include "zchat_cli.h"
#include <getopt.h>
#include <math.h>
#include <stdarg.h>

static const char *s_usage =
    "usage: zchat [--server tcp://HOST:PORT] --nick NAME [--room ROOM]... [--sub ENDPOINT]\n"
    "             [--send TEXT|-] [--to NICK] [--listen] [--count N] [--timeout SECONDS]\n"
    "             [--json] [--history N] [--cert PATH_secret] [--server-key PATH|Z85] [-v] [--help]\n";

static const char *s_help =
    "\n"
    "A client for the zchat broker. Modes:\n"
    "  interactive    stdin is a terminal: type to talk in the current room, /help for commands\n"
    "  --send TEXT    say TEXT in the first --room (or to --to NICK), wait for the ack, exit\n"
    "  --send -       say every line of stdin, pipelined, in order; exit once all are acked\n"
    "  --listen       print events until --count N messages (never reads stdin)\n"
    "  --json         JSON lines: one command per stdin line, one event per stdout line\n"
    "                 (client/JSON.md); with --send or --listen, their output as JSON\n"
    "  otherwise      stdin is not a terminal: each line is said to the current room, or is\n"
    "                 a /command as in interactive mode; events printed as text; at end of\n"
    "                 input, wait for every acknowledgement, then exit\n"
    "\n"
    "Options:\n"
    "  --server ENDPOINT   the broker's ROUTER endpoint (default " ZCHAT_CLI_DEFAULT_SERVER ")\n"
    "  --nick NAME         nickname: 1-32 of A-Z a-z 0-9 _ - [ ] { } | ^ `, not starting with\n"
    "                      a digit or '-' (required)\n"
    "  --room ROOM         join ROOM (repeatable; a leading # is dropped); the first is the\n"
    "                      current room\n"
    "  --sub ENDPOINT      subscribe here instead of the PUB endpoint the broker announces\n"
    "  --send TEXT|-       send TEXT, or every line of stdin with '-'\n"
    "  --to NICK           with --send: a direct message to NICK instead of the room\n"
    "  --listen            print events, do not read stdin\n"
    "  --count N           with --listen: exit 0 after N message events (room messages,\n"
    "                      replayed history and direct messages)\n"
    "  --timeout SECONDS   bounds connecting and each wait for an acknowledgement; with\n"
    "                      --listen --count, the whole listen; with --listen alone, how long\n"
    "                      to listen (decimals allowed; 0 = no bound; default 10, except that\n"
    "                      a --listen without --count follows forever unless given)\n"
    "  --json              JSON lines in and out\n"
    "  --history N         replay the last N messages of each room on join (interactive\n"
    "                      default 20, else 0)\n"
    "  --cert PATH_secret  CURVE: our secret certificate (see zchat-keygen)\n"
    "  --server-key KEY    CURVE: the broker's public key, a certificate file or 40 Z85 chars\n"
    "  -v, --verbose       say more on stderr\n"
    "  --help              this text\n"
    "\n"
    "Exit codes:\n"
    "  0    success\n"
    "  1    other runtime failure\n"
    "  2    usage error (unknown flag, bad value)\n"
    "  3    cannot reach the broker within --timeout\n"
    "  4    refused by the broker (nick in use, invalid or owned by another key; join or\n"
    "       send refused)\n"
    "  5    a message was not acknowledged within --timeout\n"
    "  6    handshake refused (unknown key, wrong server key, no CURVE, or not\n"
    "       a zchat broker)\n"
    "  7    --listen ran out of --timeout before --count message events\n"
    "  130  interrupted (SIGINT, SIGTERM, SIGHUP)\n"
    "Every failure prints exactly one line to stderr.\n";

//  Print "zchat: <message><tail>" to stderr as one line. The message may
//  quote the broker's reasons or what was typed, and stderr is a terminal
//  too: nothing in it may drive the terminal or break the line.
static void
s_fail_line (const char *tail, const char *format, va_list args)
    __attribute__ ((format (printf, 2, 0)));

static void
s_fail_line (const char *tail, const char *format, va_list args)
{
    char line [1024];
    vsnprintf (line, sizeof line, format, args);
    char *safe = zchat_cli_safe (line);
    fprintf (stderr, "zchat: %s%s\n", safe, tail);
    zstr_free (&safe);
    fflush (stderr);
}


//  ---------------------------------------------------------------------
//  Print one line "zchat: <message>" to stderr.

void
zchat_cli_fail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_fail_line ("", format, args);
    va_end (args);
}


//  ---------------------------------------------------------------------
//  Print a usage error as one line and return ZCHAT_EXIT_USAGE.

int
zchat_cli_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_fail_line (" (usage: zchat --nick NAME [--room ROOM]... [options]; see zchat --help)",
                 format, args);
    va_end (args);
    return ZCHAT_EXIT_USAGE;
}


//  Parse a whole decimal integer in [min, max]. Returns 0 or -1.
static int
s_parse_long (const char *text, long min, long max, long *value_p)
{
    char *end = NULL;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    *value_p = value;
    return 0;
}


//  A whole number option in [min, max], as *value_p. Returns 0, or the
//  usage error after its one line.
static int
s_whole_arg (const char *name, const char *text, long min, long max, long *value_p)
{
    if (s_parse_long (text, min, max, value_p))
        return zchat_cli_usage_error ("bad --%s '%s': expected a whole number >= %ld",
                                      name, text, min);
    return 0;
}


//  An endpoint we can hand to zmq_connect: scheme://address, and for tcp
//  a host and a numeric port. The library reports anything subtler.
static bool
s_endpoint_valid (const char *endpoint)
{
    const char *sep = strstr (endpoint, "://");
    if (!sep || sep == endpoint || !sep [3])
        return false;
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        const char *colon = strrchr (sep + 3, ':');
        long port;
        if (!colon || colon == sep + 3
        ||  s_parse_long (colon + 1, 1, 65535, &port))
            return false;
    }
    return true;
}


//  ---------------------------------------------------------------------
//  Parse the command line into opts. Returns 0, or an exit code.

int
zchat_cli_opts_parse (zchat_cli_opts_t *opts, int argc, char **argv)
{
    memset (opts, 0, sizeof *opts);
    opts->server = ZCHAT_CLI_DEFAULT_SERVER;
    opts->count = -1;
    opts->timeout = ZCHAT_CLI_DEFAULT_TIMEOUT;
    opts->history = -1;

    enum { O_SERVER = 256, O_NICK, O_ROOM, O_SUB, O_SEND, O_TO, O_LISTEN, O_COUNT,
           O_TIMEOUT, O_JSON, O_HISTORY, O_CERT, O_SERVER_KEY, O_HELP };
    //  The options whose value is kept as given once one check passes:
    //  a bad one gets "bad --NAME 'VALUE'" and the row's hint.
    const struct {
        int          option;
        const char **value_p;
        bool       (*valid) (const char *value);    //  NULL: any value
        const char  *hint;
    } texts [] = {
        { O_SERVER,     &opts->server,     s_endpoint_valid, ": expected e.g. tcp://HOST:PORT" },
        { O_NICK,       &opts->nick,       zchat_nick_valid, ": " ZCHAT_CLI_NICK_RULE },
        { O_SUB,        &opts->sub,        s_endpoint_valid, "" },
        { O_SEND,       &opts->send,       NULL,             "" },
        { O_TO,         &opts->to,         zchat_nick_valid, ": not a valid nick" },
        { O_CERT,       &opts->cert,       NULL,             "" },
        { O_SERVER_KEY, &opts->server_key, NULL,             "" }
    };
    static const struct option longopts [] = {
        { "server",     required_argument, NULL, O_SERVER },
        { "nick",       required_argument, NULL, O_NICK },
        { "room",       required_argument, NULL, O_ROOM },
        { "sub",        required_argument, NULL, O_SUB },
        { "send",       required_argument, NULL, O_SEND },
        { "to",         required_argument, NULL, O_TO },
        { "listen",     no_argument,       NULL, O_LISTEN },
        { "count",      required_argument, NULL, O_COUNT },
        { "timeout",    required_argument, NULL, O_TIMEOUT },
        { "json",       no_argument,       NULL, O_JSON },
        { "history",    required_argument, NULL, O_HISTORY },
        { "cert",       required_argument, NULL, O_CERT },
        { "server-key", required_argument, NULL, O_SERVER_KEY },
        { "verbose",    no_argument,       NULL, 'v' },
        { "help",       no_argument,       NULL, O_HELP },
        { NULL, 0, NULL, 0 }
    };
    //  We print our own one-line errors: getopt's own are not one line.
    opterr = 0;
    optind = 1;
    int option, long_index = 0;
    while ((option = getopt_long (argc, argv, ":vh", longopts, &long_index)) != -1) {
        //  Set by every long option; read only for long options.
        const char *name = longopts [long_index].name;
        size_t row = 0;
        while (row < sizeof texts / sizeof texts [0] && texts [row].option != option)
            row++;
        if (row < sizeof texts / sizeof texts [0]) {
            if (texts [row].valid && !texts [row].valid (optarg))
                return zchat_cli_usage_error ("bad --%s '%s'%s", name, optarg,
                                              texts [row].hint);
            *texts [row].value_p = optarg;
            continue;
        }
        long value;
        int rc;
        switch (option) {
            case O_ROOM: {
                const char *room = zchat_cli_room_arg (optarg);
                if (!zchat_room_valid (room))
                    return zchat_cli_usage_error ("bad --room '%s': " ZCHAT_CLI_ROOM_RULE,
                                                  optarg);
                bool known = false;
                for (size_t index = 0; index < opts->room_count; index++)
                    if (streq (opts->rooms [index], room))
                        known = true;
                if (known)
                    break;
                if (opts->room_count == ZCHAT_CLI_MAX_ROOMS)
                    return zchat_cli_usage_error ("at most %d --room options",
                                                  ZCHAT_CLI_MAX_ROOMS);
                snprintf (opts->rooms [opts->room_count++], ZCHAT_MAX_ROOM + 1, "%s", room);
                break;
            }
            case O_LISTEN:
                opts->listen = true;
                break;
            case O_COUNT:
                if ((rc = s_whole_arg (name, optarg, 1, LONG_MAX, &value)))
                    return rc;
                opts->count = value;
                break;
            case O_TIMEOUT: {
                char *end = NULL;
                errno = 0;
                double seconds = strtod (optarg, &end);
                //  At most what fits a poll timeout in ms (about 24 days).
                if (errno || end == optarg || *end || !isfinite (seconds)
                ||  seconds < 0 || seconds > 2000000)
                    return zchat_cli_usage_error ("bad --timeout '%s': expected seconds, "
                                                  "e.g. 2.5 (0 = no bound)", optarg);
                opts->timeout = seconds;
                opts->timeout_given = true;
                break;
            }
            case O_JSON:
                opts->json = true;
                break;
            case O_HISTORY:
                if ((rc = s_whole_arg (name, optarg, 0, 1000000, &value)))
                    return rc;
                opts->history = (int) value;
                break;
            case 'v':
                opts->verbose = true;
                break;
            case 'h':
            case O_HELP:
                fputs (s_usage, stdout);
                fputs (s_help, stdout);
                fflush (stdout);
                opts->help = true;
                return ZCHAT_EXIT_OK;
            case ':':
                return zchat_cli_usage_error ("option %s needs a value", argv [optind - 1]);
            default:
                if (optopt)
                    return zchat_cli_usage_error ("unknown option -%c", optopt);
                return zchat_cli_usage_error ("unknown option %s", argv [optind - 1]);
        }
    }
    if (optind < argc)
        return zchat_cli_usage_error ("unexpected argument '%s'", argv [optind]);
    if (!opts->nick)
        return zchat_cli_usage_error ("--nick is required");
    if (opts->send && opts->listen)
        return zchat_cli_usage_error ("--send and --listen exclude each other");
    if (opts->to && !opts->send)
        return zchat_cli_usage_error ("--to needs --send");
    if (opts->count >= 0 && !opts->listen)
        return zchat_cli_usage_error ("--count needs --listen");
    if (opts->send && !opts->to && opts->room_count == 0)
        return zchat_cli_usage_error ("--send needs --room ROOM or --to NICK");
    if (opts->send && strneq (opts->send, "-")) {
        size_t size = strlen (opts->send);
        if (size == 0)
            return zchat_cli_usage_error ("--send needs a text that is not empty");
        if (!zchat_utf8_valid (opts->send, size))
            return zchat_cli_usage_error ("--send text is not valid UTF-8");
    }
    if (!opts->cert != !opts->server_key)
        return zchat_cli_usage_error ("--cert and --server-key go together");
    return 0;
}


//  ---------------------------------------------------------------------
//  --timeout in milliseconds, or -1 for no bound.

int
zchat_cli_timeout_ms (const zchat_cli_opts_t *opts)
{
    if (opts->timeout <= 0)
        return -1;
    double ms = opts->timeout * 1000;
    if (ms >= INT_MAX)
        return INT_MAX;
    int whole = (int) ms;
    return whole < ms? whole + 1: whole;    //  rounded up, without libm
}


//  ---------------------------------------------------------------------
//  Milliseconds on the monotonic clock.

int64_t
zchat_cli_now (void)
{
    return zclock_mono ();
}


//  ---------------------------------------------------------------------
//  Create, configure and connect a client. Returns an exit code.

int
zchat_cli_connect (const zchat_cli_opts_t *opts, int history, zchat_client_t **client_p)
{
    *client_p = NULL;
    zchat_client_t *client = zchat_client_new (opts->server, opts->nick);
    if (!client) {
        zchat_cli_fail ("cannot create a client for %s as %s", opts->server, opts->nick);
        return ZCHAT_EXIT_FAILED;
    }
    int timeout_ms = zchat_cli_timeout_ms (opts);
    //  No bound means a bound longer than anyone waits.
    int bound_ms = timeout_ms < 0 ? INT_MAX : timeout_ms;
    zchat_client_set_timeout (client, bound_ms);
    if (history > 0)
        zchat_client_set_history (client, history);
    if (opts->sub)
        zchat_client_set_sub_endpoint (client, opts->sub);
    if (opts->cert
    &&  zchat_client_set_curve (client, opts->cert, opts->server_key)) {
        zchat_cli_fail ("cannot load CURVE keys (--cert %s, --server-key %s): %s",
                        opts->cert, opts->server_key, zchat_client_error (client));
        zchat_client_destroy (&client);
        return ZCHAT_EXIT_USAGE;
    }
    int rc = zchat_client_connect (client, bound_ms);
    int exit_code = ZCHAT_EXIT_OK;
    if (rc == ZCHAT_CLIENT_TIMEOUT) {
        zchat_cli_fail ("cannot reach broker at %s within %.1f s", opts->server,
                        opts->timeout);
        exit_code = ZCHAT_EXIT_UNREACHABLE;
    }
    else
    if (rc == ZCHAT_CLIENT_REFUSED) {
        zchat_cli_fail ("refused by broker at %s: %s", opts->server,
                        zchat_client_error (client));
        exit_code = ZCHAT_EXIT_REFUSED;
    }
    else
    if (rc == ZCHAT_CLIENT_AUTH) {
        zchat_cli_fail ("%s (broker at %s)", zchat_client_error (client), opts->server);
        exit_code = ZCHAT_EXIT_AUTH;
    }
    else
    if (rc == ZCHAT_CLIENT_INTERRUPTED) {
        zchat_cli_fail ("interrupted while connecting to %s", opts->server);
        exit_code = ZCHAT_EXIT_INTERRUPTED;
    }
    else
    if (rc) {
        zchat_cli_fail ("cannot connect to %s: %s", opts->server,
                        zchat_client_error (client));
        exit_code = ZCHAT_EXIT_FAILED;
    }
    if (exit_code == ZCHAT_EXIT_OK) {
        if (opts->verbose)
            fprintf (stderr, "zchat: connected to %s as %s\n", opts->server,
                     zchat_client_nick (client));
        *client_p = client;
    }
    else
        zchat_client_destroy (&client);
    return exit_code;
}


//  ---------------------------------------------------------------------
//  Print the stderr line for an ERROR event that ends a one-shot run and
//  return its exit code.

int
zchat_cli_fail_event (const zchat_event_t *event, const char *what)
{
    const char *reason = *event->reason? event->reason: "no reason given";
    switch (event->code) {
        case ZCHAT_CLIENT_TIMEOUT:
            zchat_cli_fail ("%s: no answer in time", what);
            return ZCHAT_EXIT_NOT_ACKED;
        case ZCHAT_CLIENT_AUTH:
            zchat_cli_fail ("%s: CURVE handshake refused: %s", what, reason);
            return ZCHAT_EXIT_AUTH;
        case ZCHAT_CLIENT_INTERRUPTED:
            zchat_cli_fail ("%s: interrupted", what);
            return ZCHAT_EXIT_INTERRUPTED;
        case ZCHAT_CLIENT_INVALID:
        case ZCHAT_CLIENT_FAILED:
        case ZCHAT_CLIENT_REFUSED:
            zchat_cli_fail ("%s: %s", what, reason);
            return event->code == ZCHAT_CLIENT_REFUSED? ZCHAT_EXIT_REFUSED: ZCHAT_EXIT_FAILED;
        default:
            zchat_cli_fail ("%s: %s (%d)", what, reason, event->code);
            //  The broker's internal failures are not a refusal of us.
            return event->code >= 500? ZCHAT_EXIT_FAILED: ZCHAT_EXIT_REFUSED;
    }
}


//  ---------------------------------------------------------------------
//  Lines from a file descriptor

#define LINES_CHUNK     65536

struct _zchat_cli_lines_t {
    int     fd;
    char   *data;
    size_t  capacity;               //  one byte more is kept for a NUL
    size_t  start;                  //  first byte not yet returned
    size_t  size;                   //  bytes held, from 0
    size_t  scanned;                //  bytes after start known to hold no '\n'
    bool    eof;
    bool    skipping;               //  inside a line too long: drop to its '\n'
    char    empty [1];              //  what stands for a line too long
};

zchat_cli_lines_t *
zchat_cli_lines_new (int fd)
{
    zchat_cli_lines_t *self = (zchat_cli_lines_t *) zmalloc (sizeof (zchat_cli_lines_t));
    assert (self);
    self->fd = fd;
    self->capacity = ZCHAT_CLI_MAX_LINE + LINES_CHUNK;
    self->data = (char *) malloc (self->capacity + 1);
    assert (self->data);
    return self;
}

void
zchat_cli_lines_destroy (zchat_cli_lines_t **self_p)
{
    assert (self_p);
    zchat_cli_lines_t *self = *self_p;
    if (self) {
        free (self->data);
        free (self);
        *self_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  One read from fd. Returns 0, or -1 once at end of file.

int
zchat_cli_lines_fill (zchat_cli_lines_t *self)
{
    assert (self);
    if (self->eof)
        return -1;
    //  Keep what is not returned yet at the front, so the buffer never
    //  needs more than one overlong line plus one chunk.
    if (self->start > 0) {
        memmove (self->data, self->data + self->start, self->size - self->start);
        self->size -= self->start;
        self->start = 0;
    }
    if (self->size == self->capacity)
        return 0;               //  full: zchat_cli_lines_next makes room
    ssize_t got = read (self->fd, self->data + self->size, self->capacity - self->size);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (got <= 0) {
        self->eof = true;
        return -1;
    }
    self->size += (size_t) got;
    return 0;
}


//  What stands for a line too long: an empty line, flagged.
static char *
s_too_long (zchat_cli_lines_t *self, size_t *size_p, bool *too_long_p)
{
    self->empty [0] = 0;
    *size_p = 0;
    *too_long_p = true;
    return self->empty;
}


//  ---------------------------------------------------------------------
//  The next line, or NULL; a line too long once as an empty line flagged.

char *
zchat_cli_lines_next (zchat_cli_lines_t *self, size_t *size_p, bool *too_long_p)
{
    assert (self);
    *too_long_p = false;
    char *begin = self->data + self->start;
    size_t held = self->size - self->start;
    char *newline = held > self->scanned
                  ? (char *) memchr (begin + self->scanned, '\n', held - self->scanned)
                  : NULL;
    if (self->skipping) {
        //  The rest of a line already reported: gone, up to its end
        self->scanned = 0;
        if (newline) {
            self->start += (size_t) (newline - begin) + 1;
            self->skipping = false;
            return zchat_cli_lines_next (self, size_p, too_long_p);
        }
        self->start = self->size;
        if (self->eof)
            self->skipping = false;
        return NULL;
    }
    size_t line_size;
    if (newline)
        line_size = (size_t) (newline - begin);
    else
    if (self->eof && held > 0)
        line_size = held;
    else
    if (held > ZCHAT_CLI_MAX_LINE + 1) {
        //  Too long whatever follows (even were the last byte the "\r" of
        //  its end): reported now, before its end is read, so whoever
        //  sent it hears at once; the rest is skipped as it comes
        self->start = self->size;
        self->scanned = 0;
        self->skipping = true;
        return s_too_long (self, size_p, too_long_p);
    }
    else {
        self->scanned = held;
        return NULL;
    }
    self->scanned = 0;
    self->start += line_size + (newline? 1: 0);
    size_t content = line_size;
    if (content > 0 && begin [content - 1] == '\r')
        content--;
    if (content > ZCHAT_CLI_MAX_LINE)
        return s_too_long (self, size_p, too_long_p);
    //  The byte after the line is its '\n', or the spare byte at the end.
    begin [content] = 0;
    *size_p = content;
    return begin;
}


bool
zchat_cli_lines_done (zchat_cli_lines_t *self)
{
    assert (self);
    return self->eof && self->start == self->size;
}


//  ---------------------------------------------------------------------
//  A copy of data with invalid UTF-8 and NULs replaced by U+FFFD.

char *
zchat_cli_utf8_fix (const char *data, size_t size, size_t *size_p)
{
    static const char replacement [] = "\xEF\xBF\xBD";
    //  Each input byte becomes at most the 3 bytes of U+FFFD.
    char *fixed = (char *) malloc (size * 3 + 1);
    assert (fixed);
    size_t in = 0, out = 0;
    while (in < size) {
        unsigned char lead = (unsigned char) data [in];
        size_t length = lead < 0x80? 1
                      : lead >= 0xC2 && lead <= 0xDF? 2
                      : lead >= 0xE0 && lead <= 0xEF? 3
                      : lead >= 0xF0 && lead <= 0xF4? 4: 0;
        if (length && length <= size - in && zchat_utf8_valid (data + in, length)) {
            memcpy (fixed + out, data + in, length);
            out += length;
            in += length;
        }
        else {
            memcpy (fixed + out, replacement, 3);
            out += 3;
            in++;
        }
    }
    fixed [out] = 0;
    *size_p = out;
    return fixed;
}


//  ---------------------------------------------------------------------
//  Strip one leading '#' from a room name people typed.

const char *
zchat_cli_room_arg (const char *room)
{
    return room && *room == '#'? room + 1: room;
}


//  ---------------------------------------------------------------------
//  The rooms we are in; the last one is the current room.

int
zchat_cli_rooms_add (zchat_cli_rooms_t *self, const char *room)
{
    assert (self);
    zchat_cli_rooms_remove (self, room);
    if (self->count == ZCHAT_CLI_MAX_JOINED)
        return -1;
    snprintf (self->names [self->count++], ZCHAT_MAX_ROOM + 1, "%s", room);
    return 0;
}

void
zchat_cli_rooms_remove (zchat_cli_rooms_t *self, const char *room)
{
    assert (self);
    for (size_t index = 0; index < self->count; index++)
        if (streq (self->names [index], room)) {
            memmove (self->names [index], self->names [index + 1],
                     (self->count - index - 1) * sizeof self->names [0]);
            self->count--;
            return;
        }
}

const char *
zchat_cli_rooms_current (const zchat_cli_rooms_t *self)
{
    assert (self);
    return self->count? self->names [self->count - 1]: NULL;
}
