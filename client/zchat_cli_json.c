//  zchat_cli_json — JSON-lines mode (zchat --json without --send/--listen):
//  one command per stdin line, one event per stdout line. Made for bots:
//  bad input gets an error line, never a crash; every command may carry
//  an "id" that its answer echoes; at end of input every pending request
//  is waited for (at most --timeout) before exit. client/JSON.md is the
//  reference.

#include "zchat_cli.h"
#include "zchat_cli_poll.h"
#include "zchat_cli_requests.h"
#include <ctype.h>
#include <math.h>

typedef struct {
    const zchat_cli_opts_t *opts;
    zchat_client_t *client;
    zchat_cli_rooms_t rooms;
    //  In flight, so that each answer can echo its command's id and the
    //  exit code can count failed sends.
    zchat_cli_requests_t *requests;
    size_t   sends_failed;
    size_t   sends_timed_out;
    char     first_failure [256];
    bool     quit;                      //  "quit" read: take no more input
} s_json_t;


//  A message that failed before it was sent: counted for the exit code,
//  the first one kept for the last stderr line.
static void
s_send_failed (s_json_t *self, const char *reason, int code)
{
    if (!self->sends_failed++)
        snprintf (self->first_failure, sizeof self->first_failure, "%.200s (%d)",
                  reason, code);
}


//  Remember a request the library took (rid > 0), or print the error of
//  one it refused at once (rid 0).
static void
s_track (s_json_t *self, uint64_t rid, zchat_cli_req_kind_t kind, const char *room,
         const cJSON *id)
{
    if (!rid) {
        //  The library refused it before sending: texts over the broker's
        //  max_text never get here (s_fits), so a send refused is a bad
        //  value, anything else a local failure
        const char *reason = zchat_client_error (self->client);
        int code = kind == ZCHAT_CLI_REQ_SEND? ZCHAT_CLI_ERR_BAD_FIELD: ZCHAT_CLI_ERR_LOCAL;
        zchat_cli_print_json_error (code, reason, id);
        if (kind == ZCHAT_CLI_REQ_SEND)
            s_send_failed (self, reason, code);
        return;
    }
    zchat_cli_requests_add (self->requests, rid, kind, room, id);
}


//  A string field: value set to NULL when absent. Returns 0, or -1 after
//  printing an error (wrong type, or absent while required).
static int
s_string (const cJSON *cmd, const char *name, bool required, const char **value_p,
          const cJSON *id)
{
    const cJSON *field = cJSON_GetObjectItemCaseSensitive (cmd, name);
    *value_p = NULL;
    if (!field || cJSON_IsNull (field)) {
        if (!required)
            return 0;
        char message [64];
        snprintf (message, sizeof message, "missing \"%s\"", name);
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD, message, id);
        return -1;
    }
    if (!cJSON_IsString (field) || !field->valuestring) {
        char message [64];
        snprintf (message, sizeof message, "\"%s\" must be a string", name);
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD, message, id);
        return -1;
    }
    *value_p = field->valuestring;
    return 0;
}


//  A whole number field in [0, max]; *value_p untouched when absent.
//  Returns 1 if present, 0 if absent, -1 after printing an error.
static int
s_number (const cJSON *cmd, const char *name, double max, uint64_t *value_p,
          const cJSON *id)
{
    const cJSON *field = cJSON_GetObjectItemCaseSensitive (cmd, name);
    if (!field || cJSON_IsNull (field))
        return 0;
    double value = cJSON_IsNumber (field)? field->valuedouble: -1;
    if (value < 0 || value > max || value != (double) (uint64_t) value) {
        char message [96];
        snprintf (message, sizeof message, "\"%s\" must be a whole number from 0 to %.0f",
                  name, max);
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD, message, id);
        return -1;
    }
    *value_p = (uint64_t) value;
    return 1;
}


//  The room a command is about: its "room" field, or the current room.
//  Returns NULL after printing an error.
static const char *
s_room (s_json_t *self, const cJSON *cmd, const cJSON *id)
{
    const char *room;
    if (s_string (cmd, "room", false, &room, id))
        return NULL;
    if (!room) {
        room = zchat_cli_rooms_current (&self->rooms);
        if (!room)
            zchat_cli_print_json_error (ZCHAT_CLI_ERR_NO_ROOM,
                                        "no room given and no current room", id);
        return room;
    }
    room = zchat_cli_room_arg (room);
    if (!zchat_room_valid (room)) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                    "\"room\" must be " ZCHAT_CLI_ROOM_RULE, id);
        return NULL;
    }
    return room;
}


//  A text field that must be valid UTF-8 (cJSON lets invalid bytes in
//  strings through). Returns NULL after printing an error.
static const char *
s_text (const cJSON *cmd, const char *name, const cJSON *id)
{
    const char *text;
    if (s_string (cmd, name, true, &text, id))
        return NULL;
    if (!zchat_utf8_valid (text, strlen (text))) {
        char message [64];
        snprintf (message, sizeof message, "\"%s\" is not valid UTF-8", name);
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD, message, id);
        return NULL;
    }
    return text;
}


//  A message's text: as s_text, and not empty (an empty line is no
//  message, as --send "" is refused).
static const char *
s_message_text (const cJSON *cmd, const cJSON *id)
{
    const char *text = s_text (cmd, "text", id);
    if (text && !*text) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD, "\"text\" is empty", id);
        return NULL;
    }
    return text;
}


//  The optional "action" flag into *action; -1 after printing an error if
//  it is there but not true or false (taken as false, a "yes" was a
//  message sent other than asked).
static int
s_action (const cJSON *cmd, bool *action, const cJSON *id)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive (cmd, "action");
    if (item && !cJSON_IsBool (item)) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                    "\"action\" must be true or false", id);
        return -1;
    }
    *action = cJSON_IsTrue (item);
    return 0;
}


//  True if a text of size bytes is within the broker's max_text; else
//  prints the 413 the broker itself would answer and counts the failure.
static bool
s_fits (s_json_t *self, size_t size, const cJSON *id)
{
    uint32_t max_text = zchat_client_max_text (self->client);
    if (size <= max_text)
        return true;
    char message [128];
    snprintf (message, sizeof message,
              "text too long: %zu bytes, the broker takes at most %" PRIu32, size, max_text);
    zchat_cli_print_json_error (ZCHAT_ERR_TOO_LARGE, message, id);
    s_send_failed (self, message, ZCHAT_ERR_TOO_LARGE);
    return false;
}


static void
s_join (s_json_t *self, const char *room, const cJSON *id)
{
    if (zchat_cli_rooms_add (&self->rooms, room)) {
        zchat_cli_print_json_error (ZCHAT_ERR_LIMIT, "too many rooms joined", id);
        return;
    }
    s_track (self, zchat_client_join (self->client, room), ZCHAT_CLI_REQ_JOIN, room, id);
}


//  Carry out one JSON command.
static void
s_command (s_json_t *self, const cJSON *cmd)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive (cmd, "id");
    //  The answer carries the id as it came: a string of UTF-8 (cJSON
    //  takes any bytes in a string, which would make our output invalid),
    //  or a number a double holds exactly (a bigger one came back as
    //  another number, 1e400 as null)
    if (id && !(cJSON_IsString (id) && id->valuestring
                && zchat_utf8_valid (id->valuestring, strlen (id->valuestring)))
           && !(cJSON_IsNumber (id) && fabs (id->valuedouble) <= 9007199254740992.0)) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                    "\"id\" must be a string (UTF-8) or a number "
                                    "within +-2^53", NULL);
        return;
    }
    const char *name;
    if (s_string (cmd, "cmd", true, &name, id))
        return;
    const char *room, *text, *nick;
    zchat_client_t *client = self->client;

    if (streq (name, "say") || streq (name, "me")) {
        bool action;
        if ((room = s_room (self, cmd, id)) && (text = s_message_text (cmd, id))
        &&  s_action (cmd, &action, id) == 0 && s_fits (self, strlen (text), id))
            s_track (self, zchat_client_say (client, room, text, strlen (text),
                                             streq (name, "me") || action),
                     ZCHAT_CLI_REQ_SEND, room, id);
    }
    else
    if (streq (name, "dm")) {
        bool action;
        if (s_string (cmd, "to", true, &nick, id) == 0
        &&  (text = s_message_text (cmd, id)) && s_action (cmd, &action, id) == 0) {
            if (!zchat_nick_valid (nick))
                zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                            "\"to\" is not a valid nick", id);
            else
            if (s_fits (self, strlen (text), id))
                s_track (self, zchat_client_dm (client, nick, text, strlen (text), action),
                         ZCHAT_CLI_REQ_SEND, NULL, id);
        }
    }
    else
    if (streq (name, "join")) {
        if (s_string (cmd, "room", true, &room, id) == 0 && (room = s_room (self, cmd, id)))
            s_join (self, room, id);
    }
    else
    if (streq (name, "leave")) {
        if ((room = s_room (self, cmd, id))) {
            zchat_cli_rooms_remove (&self->rooms, room);
            s_track (self, zchat_client_leave (client, room), ZCHAT_CLI_REQ_LEAVE, room, id);
        }
    }
    else
    if (streq (name, "nick")) {
        if (s_string (cmd, "nick", true, &nick, id) == 0) {
            if (!zchat_nick_valid (nick))
                zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                            "\"nick\" is not a valid nick", id);
            else
                s_track (self, zchat_client_set_nick (client, nick), ZCHAT_CLI_REQ_OTHER,
                         NULL, id);
        }
    }
    else
    if (streq (name, "who")) {
        if ((room = s_room (self, cmd, id)))
            s_track (self, zchat_client_who (client, room), ZCHAT_CLI_REQ_OTHER, room, id);
    }
    else
    if (streq (name, "rooms"))
        s_track (self, zchat_client_rooms (client), ZCHAT_CLI_REQ_OTHER, NULL, id);
    else
    if (streq (name, "topic")) {
        const char *topic;
        if ((room = s_room (self, cmd, id)) && s_string (cmd, "topic", false, &topic, id) == 0) {
            if (topic && (strlen (topic) > ZCHAT_MAX_TOPIC
                      ||  !zchat_utf8_valid (topic, strlen (topic))))
                zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                    "\"topic\" must be valid UTF-8 of at most 255 bytes", id);
            else
                s_track (self, zchat_client_topic (client, room, topic), ZCHAT_CLI_REQ_OTHER,
                         room, id);
        }
    }
    else
    if (streq (name, "history")) {
        //  The last "count" messages (default 20), or the range
        //  "from".."to" (to 0 or absent: the newest), at most "count".
        uint64_t count = 0, from = 0, to = 0;
        int has_count, has_from, has_to;
        if ((room = s_room (self, cmd, id))
        &&  (has_count = s_number (cmd, "count", 65535, &count, id)) >= 0
        &&  (has_from = s_number (cmd, "from", 9007199254740992.0, &from, id)) >= 0
        &&  (has_to = s_number (cmd, "to", 9007199254740992.0, &to, id)) >= 0) {
            if (!has_count)
                count = from? 65535: 20;
            //  0 would reach the library as "no limit": a whole page
            if (count == 0) {
                zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                    "\"count\" must be a whole number from 1 to 65535", id);
                return;
            }
            s_track (self, zchat_client_history (client, room, from, to, (int) count),
                     ZCHAT_CLI_REQ_OTHER, room, id);
        }
    }
    else
    if (streq (name, "quit"))
        self->quit = true;
    else
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_UNKNOWN_CMD, "unknown \"cmd\"", id);
}


//  True if a JSON line holds the escape \u0000. cJSON would cut the
//  string there and we would send half a text without a word: zchat
//  texts cannot hold NUL (PROTOCOL.md section 2), so refuse the line.
static bool
s_has_escaped_nul (const char *line, size_t size)
{
    for (size_t index = 0; index + 1 < size; index++)
        if (line [index] == '\\') {
            if (line [index + 1] == 'u' && size - index >= 6
            &&  memcmp (line + index + 2, "0000", 4) == 0)
                return true;
            index++;            //  skip the escaped character
        }
    return false;
}


//  One line of input: a JSON command, or text to say in the current room.
static void
s_line (s_json_t *self, char *line, size_t size)
{
    const char *start = line;
    while (start < line + size && (*start == ' ' || *start == '\t'))
        start++;
    if (start == line + size)
        return;                 //  blank lines are no command
    if (*start != '{' && *start != '[') {
        const char *room = zchat_cli_rooms_current (&self->rooms);
        if (!room) {
            zchat_cli_print_json_error (ZCHAT_CLI_ERR_NO_ROOM,
                                        "text line but no current room", NULL);
            return;
        }
        size_t fixed_size;
        char *fixed = zchat_cli_utf8_fix (line, size, &fixed_size);
        if (s_fits (self, fixed_size, NULL))
            s_track (self, zchat_client_say (self->client, room, fixed, fixed_size, false),
                     ZCHAT_CLI_REQ_SEND, room, NULL);
        free (fixed);
        return;
    }
    if (s_has_escaped_nul (line, size)) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_FIELD,
                                    "\\u0000 (NUL) cannot be sent: texts hold no NUL", NULL);
        return;
    }
    //  One object and nothing after it but blanks: what follows an object
    //  was either a second command or a mistake, and neither is to be
    //  dropped in silence
    const char *end = NULL;
    cJSON *cmd = cJSON_ParseWithLengthOpts (line, size, &end, false);
    while (cmd && end && end < line + size && isspace ((unsigned char) *end))
        end++;
    if (!cmd || !cJSON_IsObject (cmd) || (end && end < line + size))
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_BAD_JSON,
                                    "not a JSON object (one per line)", NULL);
    else
        s_command (self, cmd);
    cJSON_Delete (cmd);
}


//  A line over ZCHAT_CLI_MAX_LINE: none of it was used. It can only
//  have been a text (no other field is near that size), so it counts as
//  a message not sent.
static void
s_line_too_long (s_json_t *self)
{
    char message [128];
    snprintf (message, sizeof message,
              "line longer than %d bytes: discarded whole, none of it sent",
              ZCHAT_CLI_MAX_LINE);
    zchat_cli_print_json_error (ZCHAT_ERR_TOO_LARGE, message, NULL);
    s_send_failed (self, message, ZCHAT_ERR_TOO_LARGE);
}


//  True while another send may go: fewer than ZCHAT_CLI_WINDOW are
//  unanswered. Past that, input waits, so a fast writer cannot pile up
//  requests without bound.
static bool
s_window_open (s_json_t *self)
{
    return zchat_cli_requests_count (self->requests, ZCHAT_CLI_REQ_SEND) < ZCHAT_CLI_WINDOW;
}


//  Print one event, with the id of the command it answers.
static void
s_event (s_json_t *self, zchat_event_t *event)
{
    cJSON *json = zchat_cli_event_json (event);
    if (!json)
        return;
    bool answer = event->type == ZCHAT_EV_ACK || event->type == ZCHAT_EV_OK
               || event->type == ZCHAT_EV_ERROR || event->type == ZCHAT_EV_JOINED
               || event->type == ZCHAT_EV_LEFT || event->type == ZCHAT_EV_MEMBERS
               || event->type == ZCHAT_EV_ROOMS || event->type == ZCHAT_EV_HISTORY
               || event->type == ZCHAT_EV_TOPIC || event->type == ZCHAT_EV_NICK;
    zchat_cli_request_t *request = answer
                                 ? zchat_cli_requests_lookup (self->requests, event->id): NULL;
    if (request) {
        if (request->id)
            cJSON_AddItemToObject (json, "id", cJSON_Duplicate (request->id, true));
        if (request->kind == ZCHAT_CLI_REQ_SEND) {
            if (event->type == ZCHAT_EV_ERROR) {
                if (event->code == ZCHAT_CLIENT_TIMEOUT)
                    self->sends_timed_out++;
                s_send_failed (self, event->reason, zchat_cli_error_code (event));
            }
        }
        else
        if (request->kind == ZCHAT_CLI_REQ_JOIN && event->type == ZCHAT_EV_ERROR)
            //  Not joined after all: do not talk there by default.
            zchat_cli_rooms_remove (&self->rooms, request->room);
        zchat_cli_requests_remove (self->requests, event->id);
    }
    zchat_cli_print_json (&json);
}


//  ---------------------------------------------------------------------
//  Run JSON-lines mode. Returns the exit code.

int
zchat_cli_json_run (const zchat_cli_opts_t *opts)
{
    s_json_t self = { .opts = opts };
    int history = opts->history > 0? opts->history: 0;
    int exit_code = zchat_cli_connect (opts, history, &self.client);
    if (exit_code)
        return exit_code;
    self.requests = zchat_cli_requests_new ();
    //  The last room joined is the current one: the first --room.
    for (size_t index = opts->room_count; index > 0; index--)
        s_join (&self, opts->rooms [index - 1], NULL);
    zchat_cli_print_connected (opts, self.client);

    zchat_cli_lines_t *lines = zchat_cli_lines_new (STDIN_FILENO);
    zchat_cli_poll_t *poller = zchat_cli_poll_new (self.client, STDIN_FILENO);
    bool stdin_eof = false;

    while (true) {
        //  Lines already read come first, as far as the send window allows.
        size_t size;
        bool too_long;
        char *line;
        while (!self.quit && s_window_open (&self)
           &&  (line = zchat_cli_lines_next (lines, &size, &too_long))) {
            if (too_long)
                s_line_too_long (&self);
            else
                s_line (&self, line, size);
        }
        bool input_done = self.quit || zchat_cli_lines_done (lines);
        if (input_done
        &&  zchat_cli_requests_drained (self.requests, zchat_cli_timeout_ms (opts)))
            break;
        bool reading = !input_done && !stdin_eof && s_window_open (&self);
        int64_t deadline = zchat_cli_requests_deadline (self.requests);
        if (zchat_cli_poll_wait (poller, reading, deadline) != ZCHAT_CLI_POLL_QUIET
        &&  zchat_cli_lines_fill (lines))
            stdin_eof = true;
        zchat_event_t *event;
        while ((event = zchat_client_next (self.client, 0))) {
            s_event (&self, event);
            zchat_event_destroy (&event);
        }
        if (zchat_cli_poll_interrupted (poller)) {
            zchat_cli_fail ("interrupted");
            exit_code = ZCHAT_EXIT_INTERRUPTED;
            goto cleanup;
        }
        if (ferror (stdout)) {
            //  Whoever read our events is gone: nobody to answer to.
            zchat_cli_fail ("cannot write to stdout");
            exit_code = ZCHAT_EXIT_FAILED;
            goto cleanup;
        }
    }
    //  Whatever is still unanswered at the drain deadline failed.
    zchat_cli_request_t *request = zchat_cli_requests_first (self.requests);
    while (request) {
        zchat_cli_print_json_error (ZCHAT_CLI_ERR_TIMEOUT, "no answer in time", request->id);
        if (request->kind == ZCHAT_CLI_REQ_SEND) {
            self.sends_timed_out++;
            s_send_failed (&self, "no answer in time", ZCHAT_CLI_ERR_TIMEOUT);
        }
        request = zchat_cli_requests_next (self.requests);
    }
    if (self.sends_failed) {
        zchat_cli_fail ("%zu message%s not sent (%zu not acknowledged in time); the first: %s",
                        self.sends_failed, self.sends_failed == 1? "": "s",
                        self.sends_timed_out, self.first_failure);
        exit_code = self.sends_timed_out? ZCHAT_EXIT_NOT_ACKED: ZCHAT_EXIT_FAILED;
    }

cleanup:
    zchat_cli_poll_destroy (&poller);
    zchat_cli_lines_destroy (&lines);
    zchat_cli_requests_destroy (&self.requests);
    zchat_client_destroy (&self.client);
    return exit_code;
}
