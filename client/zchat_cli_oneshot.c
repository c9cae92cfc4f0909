//  zchat_cli_oneshot — the scriptable modes: --send TEXT, --send - (every
//  line of stdin, pipelined), --to NICK --send, and --listen. Each ends
//  with a documented exit code and, on failure, exactly one stderr line.

#include "zchat_cli.h"
#include "zchat_cli_poll.h"

//  A join refused with 429 and no retry time is asked again after this
#define S_JOIN_RETRY_MS     100

//  Print an event as text or JSON, as --json says. id, when >= 0, is put
//  in JSON output as "id" (the line number of a sent message).
static void
s_print (const zchat_cli_opts_t *opts, const zchat_event_t *event, long id, bool show_room)
{
    if (opts->json) {
        cJSON *json = zchat_cli_event_json (event);
        if (json && id >= 0)
            cJSON_AddNumberToObject (json, "id", (double) id);
        zchat_cli_print_json (&json);
    }
    else {
        char *text = zchat_cli_event_text (event, show_room);
        if (text) {
            printf ("%s\n", text);
            fflush (stdout);
            zstr_free (&text);
        }
    }
}


//  An ERROR that is about the session rather than one request ends a
//  one-shot run: our nick was taken while we were away, the broker
//  refused our key, and the like. Returns the exit code, or 0 to go on.
static int
s_session_error (const zchat_event_t *event)
{
    if (event->type != ZCHAT_EV_ERROR || event->id)
        return 0;
    if (event->code == ZCHAT_CLIENT_AUTH || event->code == ZCHAT_CLIENT_REFUSED
    ||  event->code == ZCHAT_ERR_NICK_IN_USE || event->code == ZCHAT_ERR_FORBIDDEN
    ||  event->code == ZCHAT_ERR_INVALID || event->code == ZCHAT_ERR_VERSION)
        return zchat_cli_fail_event (event, "session ended");
    return 0;
}


//  ---------------------------------------------------------------------
//  --send

//  One message on its way: its line number. Its text is the library's
//  once sent: libzchat sends it again by itself until it is acknowledged,
//  also after a 429 (zchat_client.h), so we never send it twice.
typedef struct {
    long     line;
} s_message_t;

static void
s_message_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

typedef struct {
    const zchat_cli_opts_t *opts;
    zchat_client_t *client;
    const char *room;                   //  NULL for a direct message
    zhashx_t *flight;                   //  request id (hex) -> s_message_t
    size_t   discarded;                 //  lines too long to send
    long     first_discarded;           //  the first of them (line number)
    char     first_reason [128];        //  why it was not sent
} s_send_t;


//  A line of stdin too long to send: over ZCHAT_CLI_MAX_LINE, or over the
//  broker's max_text. None of it is sent. The other lines still go (one
//  long line in a log must not end a log bot); the run fails at the end,
//  with one stderr line (the failure exit status says "not everything was
//  sent"). size is the text's, or 0 for a line over ZCHAT_CLI_MAX_LINE.
static void
s_discard (s_send_t *self, long line, size_t size)
{
    char message [128];
    if (size)
        snprintf (message, sizeof message, "text too long: %zu bytes, the broker takes "
                  "at most %" PRIu32, size, zchat_client_max_text (self->client));
    else
        snprintf (message, sizeof message,
                  "longer than %d bytes: discarded whole, none of it sent",
                  ZCHAT_CLI_MAX_LINE);
    if (!self->discarded++) {
        self->first_discarded = line;
        snprintf (self->first_reason, sizeof self->first_reason, "%s", message);
    }
    if (self->opts->json) {
        char json_message [160];
        snprintf (json_message, sizeof json_message, "line %ld %s", line, message);
        cJSON *id = cJSON_CreateNumber ((double) line);
        zchat_cli_print_json_error (ZCHAT_ERR_TOO_LARGE, json_message, id);
        cJSON_Delete (id);
    }
}


//  Say or DM line (text of size bytes, borrowed). Returns 0, or an exit
//  code after one stderr line.
static int
s_send_one (s_send_t *self, long line, const char *text, size_t size)
{
    uint64_t rid = self->room
        ? zchat_client_say (self->client, self->room, text, size, false)
        : zchat_client_dm (self->client, self->opts->to, text, size, false);
    if (!rid) {
        if (self->opts->send [0] == '-' && !self->opts->send [1])
            zchat_cli_fail ("line %ld not sent: %s", line, zchat_client_error (self->client));
        else
            zchat_cli_fail ("message not sent: %s", zchat_client_error (self->client));
        return ZCHAT_EXIT_FAILED;
    }
    s_message_t *message = (s_message_t *) zmalloc (sizeof (s_message_t));
    assert (message);
    message->line = line;
    char key [17];
    snprintf (key, sizeof key, "%016" PRIx64, rid);
    zhashx_update (self->flight, key, message);
    return 0;
}


//  Handle one event. Returns 0, or an exit code after one stderr line.
static int
s_send_event (s_send_t *self, zchat_event_t *event)
{
    int exit_code = s_session_error (event);
    if (exit_code)
        return exit_code;
    char key [17];
    snprintf (key, sizeof key, "%016" PRIx64, event->id);
    s_message_t *message = event->id
                         ? (s_message_t *) zhashx_lookup (self->flight, key): NULL;
    if (!message || (event->type != ZCHAT_EV_ACK && event->type != ZCHAT_EV_ERROR))
        return 0;
    if (event->type == ZCHAT_EV_ACK) {
        if (self->opts->json)
            s_print (self->opts, event, message->line, false);
        zhashx_delete (self->flight, key);
        return 0;
    }
    //  An ERROR for a message is final: one refused with 429 (rate limit,
    //  fair share) is never reported, the library sends it again itself.
    char what [64];
    if (self->opts->send [0] == '-' && !self->opts->send [1])
        snprintf (what, sizeof what, "line %ld not sent", message->line);
    else
        snprintf (what, sizeof what, "message not sent");
    if (event->code == ZCHAT_CLIENT_TIMEOUT) {
        zchat_cli_fail ("%s: not acknowledged within %.1f s", what, self->opts->timeout);
        return ZCHAT_EXIT_NOT_ACKED;
    }
    return zchat_cli_fail_event (event, what);
}


//  Join the room to send to it and wait for the broker's JOINED. Returns an
//  exit code. --send only posts: a send-only join neither subscribes to
//  the room nor probes, so the first send goes one JOINED after connect.
static int
s_join_wait (zchat_client_t *client, const zchat_cli_opts_t *opts, const char *room,
             int64_t deadline)
{
    uint64_t rid = zchat_client_join_send_only (client, room);
    if (!rid) {
        zchat_cli_fail ("cannot join #%s: %s", room, zchat_client_error (client));
        return ZCHAT_EXIT_FAILED;
    }
    while (!zsys_interrupted) {
        int64_t now = zchat_cli_now ();
        if (deadline && now >= deadline)
            break;
        zchat_event_t *event = zchat_client_wait (client, rid,
                                                  deadline? (int) (deadline - now): -1);
        if (!event)
            continue;
        int exit_code = ZCHAT_EXIT_OK;
        //  Only a refusal fails: ZCHAT_CLIENT_TIMEOUT (an unconfirmed
        //  subscription, which a send-only join never has) would not.
        if (event->type == ZCHAT_EV_ERROR && event->code != ZCHAT_CLIENT_TIMEOUT) {
            char what [64];
            snprintf (what, sizeof what, "cannot join #%s", room);
            exit_code = zchat_cli_fail_event (event, what);
        }
        else
        if (opts->json && event->type == ZCHAT_EV_JOINED)
            s_print (opts, event, -1, false);
        zchat_event_destroy (&event);
        return exit_code;
    }
    if (zsys_interrupted) {
        zchat_cli_fail ("interrupted");
        return ZCHAT_EXIT_INTERRUPTED;
    }
    zchat_cli_fail ("cannot join #%s within %.1f s (broker at %s)", room, opts->timeout,
                    opts->server);
    return ZCHAT_EXIT_UNREACHABLE;
}


//  ---------------------------------------------------------------------
//  --send TEXT or --send -. Returns the exit code.

int
zchat_cli_send_run (const zchat_cli_opts_t *opts)
{
    s_send_t self = { .opts = opts, .room = opts->to? NULL: opts->rooms [0] };
    int exit_code = zchat_cli_connect (opts, 0, &self.client);
    if (exit_code)
        return exit_code;
    int timeout_ms = zchat_cli_timeout_ms (opts);
    if (self.room) {
        //  The library answers a join within --timeout; the extra second
        //  only guards against waiting forever.
        exit_code = s_join_wait (self.client, opts, self.room,
                                 timeout_ms < 0? 0: zchat_cli_now () + timeout_ms + 1000);
        if (exit_code) {
            zchat_client_destroy (&self.client);
            return exit_code;
        }
    }
    self.flight = zhashx_new ();
    assert (self.flight);
    zhashx_set_destructor (self.flight, s_message_destroy);

    bool from_stdin = streq (opts->send, "-");
    long line_number = 0;
    zchat_cli_lines_t *lines = NULL;
    if (!from_stdin)
        exit_code = s_send_one (&self, ++line_number, opts->send, strlen (opts->send));
    else
        lines = zchat_cli_lines_new (STDIN_FILENO);

    zchat_cli_poll_t *poller = zchat_cli_poll_new (self.client, STDIN_FILENO);
    bool stdin_eof = !from_stdin;

    while (!exit_code) {
        size_t in_flight = zhashx_size (self.flight);
        //  New lines, while the window has room.
        size_t size;
        bool too_long;
        char *line;
        while (!exit_code && lines && in_flight < ZCHAT_CLI_WINDOW
           &&  (line = zchat_cli_lines_next (lines, &size, &too_long))) {
            line_number++;
            if (too_long)
                s_discard (&self, line_number, 0);
            if (size == 0)
                continue;       //  an empty line is no message
            size_t text_size;
            char *text = zchat_cli_utf8_fix (line, size, &text_size);
            if (text_size > zchat_client_max_text (self.client)) {
                s_discard (&self, line_number, text_size);
                free (text);
                continue;
            }
            exit_code = s_send_one (&self, line_number, text, text_size);
            free (text);
            in_flight++;
        }
        if (exit_code)
            break;
        in_flight = zhashx_size (self.flight);
        if (in_flight == 0 && (!lines || zchat_cli_lines_done (lines))) {
            //  Everything sent is acknowledged: all, unless lines were
            //  too long to send
            if (self.discarded) {
                zchat_cli_fail ("line %ld not sent: %s (%zu line%s too long, "
                                "the others sent)", self.first_discarded,
                                self.first_reason, self.discarded,
                                self.discarded == 1? "": "s");
                exit_code = ZCHAT_EXIT_FAILED;
            }
            break;
        }
        bool reading = !stdin_eof && in_flight < ZCHAT_CLI_WINDOW;
        if (zchat_cli_poll_wait (poller, reading, 0) != ZCHAT_CLI_POLL_QUIET
        &&  zchat_cli_lines_fill (lines))
            stdin_eof = true;
        zchat_event_t *event;
        while (!exit_code && (event = zchat_client_next (self.client, 0))) {
            exit_code = s_send_event (&self, event);
            zchat_event_destroy (&event);
        }
        if (!exit_code && ferror (stdout)) {
            zchat_cli_fail ("cannot write to stdout");
            exit_code = ZCHAT_EXIT_FAILED;
        }
        if (!exit_code && zchat_cli_poll_interrupted (poller)) {
            zchat_cli_fail ("interrupted with %zu message%s not acknowledged",
                            in_flight, in_flight == 1? "": "s");
            exit_code = ZCHAT_EXIT_INTERRUPTED;
        }
    }
    zchat_cli_poll_destroy (&poller);
    zchat_cli_lines_destroy (&lines);
    zhashx_destroy (&self.flight);
    zchat_client_destroy (&self.client);
    return exit_code;
}


//  ---------------------------------------------------------------------
//  --listen. Returns the exit code.

int
zchat_cli_listen_run (const zchat_cli_opts_t *opts)
{
    int64_t started = zchat_cli_now ();
    int timeout_ms = zchat_cli_timeout_ms (opts);
    //  With --count, --timeout (default 10 s) bounds the whole listen;
    //  without, only a --timeout given does, and then ending is success.
    int64_t deadline = 0;
    if (timeout_ms >= 0 && (opts->count >= 0 || opts->timeout_given))
        deadline = started + timeout_ms;

    zchat_client_t *client;
    int exit_code = zchat_cli_connect (opts, opts->history > 0? opts->history: 0, &client);
    if (exit_code)
        return exit_code;
    uint64_t joins [ZCHAT_CLI_MAX_ROOMS] = { 0 };
    //  A join refused with 429 (the broker's rate limit counts joins too,
    //  so more rooms than its burst meet it) is asked again at join_at
    int64_t join_at [ZCHAT_CLI_MAX_ROOMS] = { 0 };
    //  A room whose join was confirmed (JOINED: our subscription is live)
    bool live [ZCHAT_CLI_MAX_ROOMS] = { false };
    for (size_t index = 0; index < opts->room_count; index++) {
        joins [index] = zchat_client_join (client, opts->rooms [index]);
        if (!joins [index]) {
            zchat_cli_fail ("cannot join #%s: %s", opts->rooms [index],
                            zchat_client_error (client));
            zchat_client_destroy (&client);
            return ZCHAT_EXIT_FAILED;
        }
    }
    if (opts->json)
        zchat_cli_print_connected (opts, client);
    //  --listen never reads stdin.
    zchat_cli_poll_t *poller = zchat_cli_poll_new (client, -1);
    long printed = 0;
    bool show_room = opts->room_count > 1;
    while (!exit_code) {
        int64_t wake = deadline;
        for (size_t index = 0; index < opts->room_count && !exit_code; index++) {
            if (!join_at [index])
                continue;
            if (zchat_cli_now () >= join_at [index]) {
                join_at [index] = 0;
                joins [index] = zchat_client_join (client, opts->rooms [index]);
                if (!joins [index]) {
                    zchat_cli_fail ("cannot join #%s: %s", opts->rooms [index],
                                    zchat_client_error (client));
                    exit_code = ZCHAT_EXIT_FAILED;
                }
            }
            else
            if (!wake || join_at [index] < wake)
                wake = join_at [index];
        }
        if (exit_code)
            break;
        if (deadline && zchat_cli_now () >= deadline) {
            if (opts->count >= 0) {
                //  No message may just be a quiet room, but a room never
                //  confirmed is a subscription that never went live: say
                //  so, it is what to look at (the PUB endpoint, --sub)
                size_t dead = 0;
                while (dead < opts->room_count && live [dead])
                    dead++;
                char why [160] = "";
                if (dead < opts->room_count)
                    snprintf (why, sizeof why, " (the subscription to #%s never went live:"
                              " is the broker's PUB endpoint reachable? see --sub)",
                              opts->rooms [dead]);
                zchat_cli_fail ("only %ld of %ld message%s within %.1f s%s", printed,
                                opts->count, opts->count == 1? "": "s", opts->timeout, why);
                exit_code = ZCHAT_EXIT_INCOMPLETE;
            }
            break;
        }
        zchat_cli_poll_wait (poller, false, wake);
        zchat_event_t *event;
        while (!exit_code && (event = zchat_client_next (client, 0))) {
            exit_code = s_session_error (event);
            if (event->type == ZCHAT_EV_JOINED)
                for (size_t index = 0; index < opts->room_count; index++)
                    if (streq (event->room, opts->rooms [index]))
                        live [index] = true;
            bool later = false;         //  a join to ask again: not shown
            //  A join refused ends the listen; one not confirmed in time
            //  (ZCHAT_CLIENT_TIMEOUT) is still a join, recovered by PONGs.
            if (!exit_code && event->type == ZCHAT_EV_ERROR && event->id
            &&  event->code != ZCHAT_CLIENT_TIMEOUT) {
                for (size_t index = 0; index < opts->room_count; index++)
                    if (joins [index] == event->id
                    &&  event->code == ZCHAT_ERR_RATE_LIMITED) {
                        joins [index] = 0;
                        join_at [index] = zchat_cli_now () + (event->retry_ms?
                                          event->retry_ms: S_JOIN_RETRY_MS);
                        later = true;
                    }
                    else
                    if (joins [index] == event->id) {
                        char what [64];
                        snprintf (what, sizeof what, "cannot join #%s", opts->rooms [index]);
                        exit_code = zchat_cli_fail_event (event, what);
                    }
            }
            //  In text, our own coming and going is said once, by JOINED
            //  and LEFT ("you joined"), not again as presence
            bool own = !opts->json
                    && (event->type == ZCHAT_EV_JOIN || event->type == ZCHAT_EV_LEAVE)
                    && streq (event->nick, zchat_client_nick (client));
            if (!exit_code && !later && !own)
                s_print (opts, event, -1, show_room);
            if (event->type == ZCHAT_EV_MESSAGE || event->type == ZCHAT_EV_DM)
                printed++;
            zchat_event_destroy (&event);
            if (!exit_code && opts->count >= 0 && printed >= opts->count)
                goto cleanup;
        }
        if (!exit_code && ferror (stdout)) {
            zchat_cli_fail ("cannot write to stdout");
            exit_code = ZCHAT_EXIT_FAILED;
        }
        if (!exit_code && zchat_cli_poll_interrupted (poller)) {
            zchat_cli_fail ("interrupted");
            exit_code = ZCHAT_EXIT_INTERRUPTED;
        }
    }
cleanup:
    zchat_cli_poll_destroy (&poller);
    zchat_client_destroy (&client);
    return exit_code;
}
