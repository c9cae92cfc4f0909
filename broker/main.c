//  zchat-broker — the chat broker's command line: parse the options, build
//  the configuration, run the loop (broker/zchat_broker.c) until SIGINT or
//  SIGTERM.
//
//  Exit codes: 0 after an orderly shutdown, 1 if the broker cannot start
//  (port or data directory in use, bad certificate), 2 on a usage error.

#include "zchat_broker.h"
#include "zchat_msg.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_USAGE      2
//  Upper bounds that keep conversions to milliseconds and ints exact.
#define MIN_TIMEOUT_S   0.1
#define MAX_TIMEOUT_S   86400.0
#define MAX_RETAIN_DAYS 36500.0
#define MAX_COUNT       1000000000ULL
#define BROKER_IO_THREADS 2     //  ROUTER and PUB each on their own (zchat_broker_new)

static const char *s_usage =
"Usage: zchat-broker [OPTION]...\n"
"The zchat broker: one ROUTER for requests, one PUB for room traffic.\n"
"\n"
"  --router ENDPOINT        where clients send requests (default " ZCHAT_BROKER_ROUTER ");\n"
"                           port * picks a free port\n"
"  --pub ENDPOINT           where room traffic is published (default " ZCHAT_BROKER_PUB ")\n"
"  --session-timeout S      a session ends, announced as quit, this many seconds\n"
"                           after its client's connection closed, unless the\n"
"                           client resumes it (default 10, decimals allowed);\n"
"                           a client of protocol version 5 or below, or behind\n"
"                           a relay, silent this long is expired\n"
"  --data DIR               the message store (default $XDG_DATA_HOME/zchat or\n"
"                           ~/.local/share/zchat); one broker per directory\n"
"  --group-wait-us N        while messages arrive steadily, a group of fewer than\n"
"                           8 waits N microseconds for more before its commit,\n"
"                           so that commits are fewer and larger (default 200;\n"
"                           0 = commit at once)\n"
"  --fsync                  commit with synchronous=FULL: acknowledged messages\n"
"                           survive power loss, not only a broker crash (default off)\n"
"  --durable on|off         on (default): a room message is acknowledged and\n"
"                           published only once committed; off: just before the\n"
"                           commit instead (still numbered and stored), so a\n"
"                           broker crash or a failed commit can lose\n"
"                           acknowledged messages (their seqs are never given\n"
"                           to other messages: see zchat-broker(1))\n"
"  --retain-messages N      keep at most N messages per room (default unlimited)\n"
"  --retain-days D          drop messages older than D days, decimals allowed\n"
"                           (default unlimited)\n"
"  --pub-hwm N              PUB send high-water mark per subscriber, in\n"
"                           publications, 1 or more (default 48 MiB / (the\n"
"                           largest publication + 256): 3024, or fewer with a\n"
"                           max-text over 16 KiB; a stalled subscriber holds at\n"
"                           most ~48 MiB, and all of them 16 MiB of lent groups);\n"
"                           a slower subscriber loses live messages and recovers\n"
"                           them from history\n"
"  --max-text BYTES         longest message text, at most 65536 (default 4096)\n"
"  --max-rooms N            rooms one session may join, at most 4096 (default 100)\n"
"  --max-sessions-per-address N\n"
"                           sessions from one IP address (default 1000)\n"
"  --max-sessions N         sessions in all, whatever their address (default\n"
"                           100000)\n"
"  --history-page N         most messages in one history reply (default 500)\n"
"  --rate-limit R[:B]       per-session room and direct messages per second, with\n"
"                           bursts of B (default B = R), and as many of the other\n"
"                           requests that publish or write (join, leave, nick,\n"
"                           topic, probe); excess is refused with a retry-after\n"
"                           (default off)\n"
"  --fair-share N           messages per second any session may send to rooms;\n"
"                           past that, while other sessions send too, at most\n"
"                           N more than twice their average, the excess refused\n"
"                           with a retry-after (default 1000; 0 = off)\n"
"  --query-budget R[:B]     per-session KiB per second of history pages, member\n"
"                           and room lists and topics read, with bursts of B KiB\n"
"                           (default 1024:16384), and four times that for all\n"
"                           the sessions of one IP address; excess is refused\n"
"                           with a retry-after\n"
"  --cert PATH_secret       turn CURVE on for both sockets with this broker\n"
"                           certificate (make one with zchat-keygen); needs one of:\n"
"  --allow DIR                admit only the public certificates in DIR\n"
"                             (read again on SIGHUP, which also ends the\n"
"                             sessions of keys no longer there)\n"
"  --allow-any                admit any key (encryption without an allow-list)\n"
"  --max-nicks-per-key N    with --cert: nicks one key may bind (default 10)\n"
"  --release-nick NICK      do not serve: unbind NICK from its key in the store\n"
"                           of --data (refused while a broker runs there), print\n"
"                           one line, exit 0 (1 if NICK was not bound)\n"
"  -v, --verbose            debug logging\n"
"  -h, --help               this help\n"
"\n"
"Logs go to stderr. Once listening it logs `ready router=ENDPOINT pub=ENDPOINT`\n"
"with the real endpoints. SIGINT/SIGTERM: commit everything pending, exit 0.\n"
"Exit 1 if it cannot start, 2 on a usage error.\n";

enum {
    OPT_ROUTER = 256, OPT_PUB, OPT_TIMEOUT, OPT_DATA, OPT_FSYNC, OPT_DURABLE,
    OPT_RETAIN_MESSAGES, OPT_RETAIN_DAYS, OPT_PUB_HWM, OPT_MAX_TEXT,
    OPT_MAX_ROOMS, OPT_MAX_SESSIONS, OPT_MAX_ALL_SESSIONS, OPT_HISTORY_PAGE, OPT_RATE_LIMIT,
    OPT_QUERY_BUDGET, OPT_FAIR_SHARE, OPT_GROUP_WAIT,
    OPT_CERT, OPT_ALLOW, OPT_ALLOW_ANY, OPT_MAX_NICKS, OPT_RELEASE_NICK
};

static const struct option s_options [] = {
    { "router",             required_argument, NULL, OPT_ROUTER },
    { "pub",                required_argument, NULL, OPT_PUB },
    { "session-timeout",    required_argument, NULL, OPT_TIMEOUT },
    { "data",               required_argument, NULL, OPT_DATA },
    { "fsync",              no_argument,       NULL, OPT_FSYNC },
    { "durable",            required_argument, NULL, OPT_DURABLE },
    { "retain-messages",    required_argument, NULL, OPT_RETAIN_MESSAGES },
    { "retain-days",        required_argument, NULL, OPT_RETAIN_DAYS },
    { "pub-hwm",            required_argument, NULL, OPT_PUB_HWM },
    { "max-text",           required_argument, NULL, OPT_MAX_TEXT },
    { "max-rooms",          required_argument, NULL, OPT_MAX_ROOMS },
    { "max-sessions-per-address", required_argument, NULL, OPT_MAX_SESSIONS },
    { "max-sessions",       required_argument, NULL, OPT_MAX_ALL_SESSIONS },
    { "history-page",       required_argument, NULL, OPT_HISTORY_PAGE },
    { "rate-limit",         required_argument, NULL, OPT_RATE_LIMIT },
    { "query-budget",       required_argument, NULL, OPT_QUERY_BUDGET },
    { "fair-share",         required_argument, NULL, OPT_FAIR_SHARE },
    { "group-wait-us",      required_argument, NULL, OPT_GROUP_WAIT },
    { "cert",               required_argument, NULL, OPT_CERT },
    { "allow",              required_argument, NULL, OPT_ALLOW },
    { "allow-any",          no_argument,       NULL, OPT_ALLOW_ANY },
    { "max-nicks-per-key",  required_argument, NULL, OPT_MAX_NICKS },
    { "release-nick",       required_argument, NULL, OPT_RELEASE_NICK },
    { "verbose",            no_argument,       NULL, 'v' },
    { "help",               no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

//  ---------------------------------------------------------------------
//  Print one usage error line and the hint; returns the usage exit code.

static int
s_usage_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static int
s_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "zchat-broker: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\nTry 'zchat-broker --help' for more information.\n");
    va_end (args);
    return EXIT_USAGE;
}

//  ---------------------------------------------------------------------
//  Parse a whole decimal number in min..max. Returns 0, or -1.

static int
s_parse_count (const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
    if (!text || *text < '0' || *text > '9')
        return -1;                  //  no sign, no blanks
    errno = 0;
    char *end = NULL;
    unsigned long long number = strtoull (text, &end, 10);
    if (errno || *end || number < min || number > max)
        return -1;
    *value = number;
    return 0;
}

//  ---------------------------------------------------------------------
//  Parse a decimal amount (e.g. 1.5) in min..max. Returns 0, or -1.

static int
s_parse_amount (const char *text, double min, double max, double *value)
{
    if (!text || !(*text == '.' || (*text >= '0' && *text <= '9')))
        return -1;
    errno = 0;
    char *end = NULL;
    double number = strtod (text, &end);
    if (errno || *end || !isfinite (number) || number < min || number > max)
        return -1;
    *value = number;
    return 0;
}

//  ---------------------------------------------------------------------
//  Parse R or R:B. Returns 0, or -1.

static int
s_parse_rate (const char *text, uint32_t *rate, uint32_t *burst)
{
    char copy [64];
    if (strlen (text) >= sizeof (copy))
        return -1;
    strcpy (copy, text);
    char *colon = strchr (copy, ':');
    if (colon)
        *colon = 0;
    uint64_t value;
    if (s_parse_count (copy, 1, 1000000, &value) != 0)
        return -1;
    *rate = (uint32_t) value;
    *burst = *rate;
    if (colon) {
        if (s_parse_count (colon + 1, 1, 1000000, &value) != 0)
            return -1;
        *burst = (uint32_t) value;
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  An endpoint must at least name a transport; libzmq checks the rest
//  when binding.

static bool
s_endpoint_valid (const char *endpoint)
{
    const char *separator = strstr (endpoint, "://");
    return separator && separator > endpoint && separator [3];
}

//  ---------------------------------------------------------------------
//  The default data directory: $XDG_DATA_HOME/zchat (the XDG rules ignore
//  a relative value), else $HOME/.local/share/zchat. Returns a new string,
//  or NULL if neither variable helps.

static char *
s_default_data_dir (void)
{
    const char *xdg = getenv ("XDG_DATA_HOME");
    if (xdg && *xdg == '/')
        return zsys_sprintf ("%s/zchat", xdg);
    const char *home = getenv ("HOME");
    if (home && *home)
        return zsys_sprintf ("%s/.local/share/zchat", home);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Create the parents of dir if missing (the store creates dir itself),
//  private to the user as a chat history should be. Returns 0, or -1.

static int
s_create_parents (const char *dir)
{
    char *path = strdup (dir);
    assert (path);
    int rc = 0;
    char *last = strrchr (path, '/');
    for (char *slash = strchr (path + 1, '/'); slash && slash <= last && rc == 0;
         slash = strchr (slash + 1, '/')) {
        *slash = 0;
        if (mkdir (path, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *slash = '/';
    }
    int error_number = errno;
    free (path);
    errno = error_number;
    return rc;
}

int
main (int argc, char **argv)
{
    zchat_broker_config_t config;
    zchat_broker_config_defaults (&config);
    char *default_dir = NULL;
    int exit_code = EXIT_USAGE;
    bool allow_any = false;
    const char *release_nick = NULL;
    uint64_t count;
    double amount;

    opterr = 0;                     //  our own messages, with the hint
    int option;
    while ((option = getopt_long (argc, argv, ":vh", s_options, NULL)) != -1) {
        const char *arg = optarg;
        switch (option) {
            case OPT_ROUTER:
            case OPT_PUB:
                if (!s_endpoint_valid (arg)) {
                    exit_code = s_usage_error ("invalid endpoint '%s' "
                        "(expected e.g. tcp://*:5555)", arg);
                    goto done;
                }
                if (option == OPT_ROUTER)
                    config.router_endpoint = arg;
                else
                    config.pub_endpoint = arg;
                break;
            case OPT_TIMEOUT:
                if (s_parse_amount (arg, MIN_TIMEOUT_S, MAX_TIMEOUT_S, &amount) != 0) {
                    exit_code = s_usage_error ("--session-timeout: '%s' is not "
                        "a number of seconds (0.1..86400)", arg);
                    goto done;
                }
                config.timeout_ms = (uint32_t) (amount * 1000 + 0.5);
                break;
            case OPT_DATA:
                if (!*arg) {
                    exit_code = s_usage_error ("--data: empty directory name");
                    goto done;
                }
                config.data_dir = arg;
                break;
            case OPT_FSYNC:
                config.fsync = true;
                break;
            case OPT_DURABLE:
                if (streq (arg, "on") || streq (arg, "off"))
                    config.durable = streq (arg, "on");
                else {
                    exit_code = s_usage_error ("--durable: '%s' is not on or off", arg);
                    goto done;
                }
                break;
            case OPT_RETAIN_MESSAGES:
                if (s_parse_count (arg, 1, MAX_COUNT, &count) != 0) {
                    exit_code = s_usage_error ("--retain-messages: '%s' is not "
                        "a positive count", arg);
                    goto done;
                }
                config.retain_messages = count;
                break;
            case OPT_RETAIN_DAYS:
                if (s_parse_amount (arg, 0, MAX_RETAIN_DAYS, &amount) != 0
                ||  amount * 86400000.0 < 1) {
                    exit_code = s_usage_error ("--retain-days: '%s' is not "
                        "a positive number of days", arg);
                    goto done;
                }
                config.retain_ms = (uint64_t) (amount * 86400000.0 + 0.5);
                break;
            case OPT_PUB_HWM:
                if (s_parse_count (arg, 1, INT32_MAX, &count) != 0) {
                    exit_code = s_usage_error ("--pub-hwm: '%s' is not a count of 1 "
                        "or more (0 would mean unlimited)", arg);
                    goto done;
                }
                config.pub_hwm = (int) count;
                break;
            case OPT_MAX_TEXT:
                if (s_parse_count (arg, 1, ZCHAT_MAX_TEXT, &count) != 0) {
                    exit_code = s_usage_error ("--max-text: '%s' is not "
                        "a size in 1..65536", arg);
                    goto done;
                }
                config.max_text = (uint32_t) count;
                break;
            case OPT_MAX_ROOMS:
                if (s_parse_count (arg, 1, ZCHAT_MAX_ITEMS, &count) != 0) {
                    exit_code = s_usage_error ("--max-rooms: '%s' is not "
                        "a count in 1..4096", arg);
                    goto done;
                }
                config.max_rooms = (uint32_t) count;
                break;
            case OPT_MAX_SESSIONS:
            case OPT_MAX_ALL_SESSIONS:
                if (s_parse_count (arg, 1, MAX_COUNT, &count) != 0) {
                    exit_code = s_usage_error ("%s: '%s' is not a positive count",
                        option == OPT_MAX_SESSIONS? "--max-sessions-per-address":
                        "--max-sessions", arg);
                    goto done;
                }
                if (option == OPT_MAX_SESSIONS)
                    config.max_sessions_per_address = (uint32_t) count;
                else
                    config.max_sessions = (uint32_t) count;
                break;
            case OPT_HISTORY_PAGE:
                if (s_parse_count (arg, 1, ZCHAT_MAX_ITEMS, &count) != 0) {
                    exit_code = s_usage_error ("--history-page: '%s' is not "
                        "a count in 1..4096", arg);
                    goto done;
                }
                config.history_page = (uint32_t) count;
                break;
            case OPT_RATE_LIMIT:
                if (s_parse_rate (arg, &config.rate_limit, &config.rate_burst) != 0) {
                    exit_code = s_usage_error ("--rate-limit: '%s' is not R or R:B "
                        "(messages per second, burst; 1..1000000)", arg);
                    goto done;
                }
                break;
            case OPT_GROUP_WAIT:
                if (s_parse_count (arg, 0, 10000, &count) != 0) {
                    exit_code = s_usage_error ("--group-wait-us: '%s' is not a count "
                        "of microseconds in 0..10000 (0 = never wait)", arg);
                    goto done;
                }
                config.group_wait_us = (uint32_t) count;
                break;
            case OPT_FAIR_SHARE:
                if (s_parse_count (arg, 0, 1000000, &count) != 0) {
                    exit_code = s_usage_error ("--fair-share: '%s' is not a count of "
                        "messages per second in 0..1000000 (0 = off)", arg);
                    goto done;
                }
                config.fair_share = (uint32_t) count;
                break;
            case OPT_QUERY_BUDGET:
                if (s_parse_rate (arg, &config.query_rate, &config.query_burst) != 0) {
                    exit_code = s_usage_error ("--query-budget: '%s' is not R or R:B "
                        "(KiB per second, burst KiB; 1..1000000)", arg);
                    goto done;
                }
                break;
            case OPT_CERT:
                config.cert_path = arg;
                break;
            case OPT_ALLOW:
                config.allow_dir = arg;
                break;
            case OPT_ALLOW_ANY:
                allow_any = true;
                break;
            case OPT_MAX_NICKS:
                if (s_parse_count (arg, 1, MAX_COUNT, &count) != 0) {
                    exit_code = s_usage_error ("--max-nicks-per-key: '%s' is not "
                        "a positive count", arg);
                    goto done;
                }
                config.max_nicks_per_key = (uint32_t) count;
                break;
            case OPT_RELEASE_NICK:
                if (!zchat_nick_valid (arg)) {
                    exit_code = s_usage_error ("--release-nick: '%s' is not a valid nick",
                                               arg);
                    goto done;
                }
                release_nick = arg;
                break;
            case 'v':
                config.verbose = true;
                break;
            case 'h':
                fputs (s_usage, stdout);
                exit_code = 0;
                goto done;
            case ':':
                exit_code = s_usage_error ("option '%s' needs a value", argv [optind - 1]);
                goto done;
            default:
                exit_code = s_usage_error ("unknown option '%s'", argv [optind - 1]);
                goto done;
        }
    }
    if (optind < argc) {
        exit_code = s_usage_error ("unexpected argument '%s'", argv [optind]);
        goto done;
    }
    //  CURVE needs an admission rule, and an admission rule needs CURVE:
    //  a broker that silently admitted everybody would be worse than one
    //  that refused to start.
    if (config.allow_dir && allow_any) {
        exit_code = s_usage_error ("--allow and --allow-any exclude each other");
        goto done;
    }
    if (config.cert_path && !config.allow_dir && !allow_any) {
        exit_code = s_usage_error ("--cert needs --allow DIR or --allow-any");
        goto done;
    }
    if (!config.cert_path && (config.allow_dir || allow_any)) {
        exit_code = s_usage_error ("--allow and --allow-any need --cert");
        goto done;
    }

    zsys_set_logstream (stderr);
    zsys_set_logident ("zchat-broker");
    exit_code = EXIT_FAILURE;
    if (!config.data_dir) {
        default_dir = s_default_data_dir ();
        if (!default_dir) {
            fprintf (stderr, "zchat-broker: no data directory: set HOME or "
                     "XDG_DATA_HOME, or give --data DIR\n");
            goto done;
        }
        config.data_dir = default_dir;
    }
    char error [512];
    if (release_nick) {
        //  An operator command on an existing store, not a broker run.
        int rc = zchat_broker_release_nick (config.data_dir, release_nick,
                                            error, sizeof (error));
        if (rc == 0)
            printf ("%s\n", error);
        else
            fprintf (stderr, "zchat-broker: %s\n", error);
        exit_code = rc == 0? EXIT_SUCCESS: EXIT_FAILURE;
        goto done;
    }
    if (s_create_parents (config.data_dir) != 0) {
        int error_number = errno;
        fprintf (stderr, "zchat-broker: cannot create the parents of data "
                 "directory %s: %s\n", config.data_dir, strerror (error_number));
        goto done;
    }
    //  Two I/O threads, before any socket exists: zchat_broker_new gives
    //  the ROUTER's connections one and the PUB's the other, so that
    //  replies and ACKs never wait behind a big room's fan-out. An
    //  operator's ZSYS_IO_THREADS (read by czmq) wins.
    if (!getenv ("ZSYS_IO_THREADS"))
        zsys_set_io_threads (BROKER_IO_THREADS);
    zchat_broker_t *broker = zchat_broker_new (&config, error, sizeof (error));
    if (!broker) {
        fprintf (stderr, "zchat-broker: %s\n", error);
        goto done;
    }
    int rc = zchat_broker_run (broker);
    zchat_broker_destroy (&broker);
    zsys_info ("stopped");
    exit_code = rc == 0? EXIT_SUCCESS: EXIT_FAILURE;

done:
    zstr_free (&default_dir);
    return exit_code;
}
