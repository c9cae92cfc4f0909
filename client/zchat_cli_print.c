//  zchat_cli_print — events as text for people and as JSON lines for
//  programs (the schema is documented in client/JSON.md).

#include "zchat_cli.h"
#include <stdarg.h>
#include <time.h>

//  Append text to a zchar buffer, making control characters visible: a
//  message must not be able to move the cursor, recolour or retitle the
//  terminal of whoever reads it. Newlines and tabs stay; C0 controls and
//  DEL become ^X; the C1 controls (U+0080..U+009F, which some terminals
//  obey) become U+FFFD. continuation starts every line after a newline;
//  without one (NULL) the text stays on one line: newlines and tabs are
//  shown as ^J and ^I like the other controls.
static void
s_append_safe (zchunk_t *out, const char *text, size_t size, const char *continuation)
{
    size_t index = 0;
    while (index < size) {
        unsigned char byte = (unsigned char) text [index];
        if (byte == '\n' && continuation) {
            zchunk_extend (out, "\n", 1);
            zchunk_extend (out, continuation, strlen (continuation));
            index++;
        }
        else
        if (byte == '\t' && continuation) {
            zchunk_extend (out, "\t", 1);
            index++;
        }
        else
        if (byte < 0x20 || byte == 0x7F) {
            char shown [2] = { '^', (char) (byte == 0x7F? '?': byte + 0x40) };
            zchunk_extend (out, shown, 2);
            index++;
        }
        else
        if (byte == 0xC2 && index + 1 < size
        &&  (unsigned char) text [index + 1] >= 0x80
        &&  (unsigned char) text [index + 1] <= 0x9F) {
            zchunk_extend (out, "\xEF\xBF\xBD", 3);
            index += 2;
        }
        else {
            zchunk_extend (out, text + index, 1);
            index++;
        }
    }
}

static void
s_append (zchunk_t *out, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_append (zchunk_t *out, const char *format, ...)
{
    char buffer [512];
    va_list args;
    va_start (args, format);
    int size = vsnprintf (buffer, sizeof buffer, format, args);
    va_end (args);
    if (size > 0)
        zchunk_extend (out, buffer, (size_t) size < sizeof buffer? (size_t) size
                                                                  : sizeof buffer - 1);
}

//  Topics are free text: through s_append_safe.
static void
s_append_topic (zchunk_t *out, const char *topic)
{
    s_append_safe (out, topic, strlen (topic), " ");
}


//  Room and nick names come from the broker. The library drops events
//  whose names break the rules, but no path from the network to the
//  terminal should rest on one check: every name is shown through the
//  sanitizer too, on one line, into a buffer of S_NAME_SIZE bytes (a name
//  at most triples: a control byte becomes two, a C1 pair three).
#define S_NAME_MAX      (ZCHAT_MAX_NICK > ZCHAT_MAX_ROOM? ZCHAT_MAX_NICK: ZCHAT_MAX_ROOM)
#define S_NAME_SIZE     (3 * S_NAME_MAX + 1)

static const char *
s_name (char *buffer, const char *name)
{
    zchunk_t *out = zchunk_new (NULL, S_NAME_SIZE);
    assert (out);
    s_append_safe (out, name, strnlen (name, S_NAME_MAX), NULL);
    size_t size = zchunk_size (out);
    assert (size < S_NAME_SIZE);
    memcpy (buffer, zchunk_data (out), size);
    buffer [size] = 0;
    zchunk_destroy (&out);
    return buffer;
}


//  What was appended to *out_p as a fresh string (free with zstr_free);
//  destroys the chunk and nulls *out_p.
static char *
s_string (zchunk_t **out_p)
{
    zchunk_t *out = *out_p;
    zchunk_extend (out, "", 1);
    char *result = strdup ((char *) zchunk_data (out));
    assert (result);
    zchunk_destroy (out_p);
    return result;
}


//  ---------------------------------------------------------------------
//  Text from the network made safe for a terminal, on one line.

char *
zchat_cli_safe (const char *text)
{
    size_t size = strlen (text);
    zchunk_t *out = zchunk_new (NULL, size + 1);
    assert (out);
    s_append_safe (out, text, size, NULL);
    return s_string (&out);
}

//  "[HH:MM] " in local time, of the broker's timestamp (epoch ms), or of
//  now for events that carry none.
static void
s_append_time (zchunk_t *out, uint64_t ts)
{
    time_t now = time (NULL);
    time_t seconds = ts? (time_t) (ts / 1000): now;
    struct tm local, today;
    char stamp [32] = "[--:--] ";
    //  Replayed history may be older than today: then the date matters.
    if (localtime_r (&seconds, &local) && localtime_r (&now, &today))
        strftime (stamp, sizeof stamp,
                  local.tm_yday == today.tm_yday && local.tm_year == today.tm_year
                  ? "[%H:%M] ": "[%Y-%m-%d %H:%M] ", &local);
    zchunk_extend (out, stamp, strlen (stamp));
}


//  ---------------------------------------------------------------------
//  An event for people; NULL for events that show nothing.

char *
zchat_cli_event_text (const zchat_event_t *ev, bool show_room)
{
    zchunk_t *out = zchunk_new (NULL, 256);
    assert (out);
    const char *text = ev->text? ev->text: "";
    size_t text_size = ev->text? ev->text_size: 0;
    bool shown = true;
    char nick [S_NAME_SIZE], new_nick [S_NAME_SIZE], room [S_NAME_SIZE];
    char item_name [S_NAME_SIZE];
    s_name (nick, ev->nick);
    s_name (new_nick, ev->new_nick);
    s_name (room, ev->room);
    s_append_time (out, ev->ts);
    switch (ev->type) {
        case ZCHAT_EV_MESSAGE:
            if (show_room)
                s_append (out, "#%s ", room);
            if (ev->action)
                s_append (out, "* %s ", nick);
            else
                s_append (out, "<%s> ", nick);
            s_append_safe (out, text, text_size, "        ");
            break;
        case ZCHAT_EV_DM:
            if (ev->action)
                s_append (out, "* %s (dm) ", nick);
            else
                s_append (out, "*%s* (dm) ", nick);
            s_append_safe (out, text, text_size, "        ");
            break;
        case ZCHAT_EV_JOINED:
            s_append (out, "-- you joined #%s", room);
            if (*ev->topic) {
                s_append (out, " (topic: ");
                s_append_topic (out, ev->topic);
                s_append (out, ")");
            }
            break;
        case ZCHAT_EV_LEFT:
            s_append (out, "-- you left #%s", room);
            break;
        case ZCHAT_EV_JOIN:
            s_append (out, "-- %s joined #%s", nick, room);
            break;
        case ZCHAT_EV_LEAVE:
            s_append (out, "-- %s left #%s", nick, room);
            break;
        case ZCHAT_EV_QUIT:
            s_append (out, "-- %s quit", nick);
            if (show_room)
                s_append (out, " (#%s)", room);
            break;
        case ZCHAT_EV_NICK:
            if (ev->id)
                s_append (out, "-- you are now known as %s", new_nick);
            else
                s_append (out, "-- %s is now known as %s", nick, new_nick);
            break;
        case ZCHAT_EV_TOPIC:
            if (ev->id) {
                //  The answer to our own request to read or set it.
                if (*ev->topic) {
                    s_append (out, "-- topic of #%s: ", room);
                    s_append_topic (out, ev->topic);
                    if (*nick)
                        s_append (out, " (set by %s)", nick);
                }
                else
                    s_append (out, "-- #%s has no topic", room);
            }
            else {
                s_append (out, "-- %s set the topic of #%s: ", nick, room);
                s_append_topic (out, ev->topic);
            }
            break;
        case ZCHAT_EV_ERROR:
            s_append (out, "!! ");
            if (*ev->reason)
                s_append_safe (out, ev->reason, strlen (ev->reason), " ");
            else
                s_append (out, "failed");
            if (ev->code > 0)
                s_append (out, " (%d)", ev->code);
            if (ev->retry_ms)
                s_append (out, "; retry in %.1f s", ev->retry_ms / 1000.0);
            break;
        case ZCHAT_EV_MEMBERS:
            s_append (out, "-- #%s (%zu):", room, ev->item_count);
            for (size_t index = 0; index < ev->item_count; index++)
                s_append (out, " %s", s_name (item_name, ev->items [index].nick));
            break;
        case ZCHAT_EV_ROOMS:
            if (ev->item_count == 0)
                s_append (out, "-- no rooms");
            for (size_t index = 0; index < ev->item_count; index++) {
                const zchat_list_item_t *item = &ev->items [index];
                if (index > 0) {
                    zchunk_extend (out, "\n", 1);
                    s_append_time (out, ev->ts);
                }
                s_append (out, "-- #%s: %u member%s, %" PRIu64 " message%s",
                          s_name (item_name, item->room),
                          item->members, item->members == 1? "": "s",
                          item->seq, item->seq == 1? "": "s");
                if (*item->topic) {
                    s_append (out, ", topic: ");
                    s_append_topic (out, item->topic);
                }
            }
            break;
        case ZCHAT_EV_HISTORY:
            s_append (out, "-- end of history of #%s", room);
            break;
        case ZCHAT_EV_GAP:
            s_append (out, "!! messages %" PRIu64 "..%" PRIu64 " of #%s are gone from "
                      "history", ev->from_seq, ev->to_seq, room);
            break;
        case ZCHAT_EV_CONNECTED:
            //  The library reports only reconnections.
            s_append (out, "-- reconnected%s", ev->resumed? " (session resumed)": "");
            break;
        case ZCHAT_EV_DISCONNECTED:
            s_append (out, "!! lost the broker; reconnecting");
            break;
        default:
            shown = false;      //  ACK, OK: the absence of an error says it
            break;
    }
    if (shown)
        return s_string (&out);
    zchunk_destroy (&out);
    return NULL;
}


//  ---------------------------------------------------------------------
//  Our own direct message, as people see it.

char *
zchat_cli_dm_sent_text (const char *to, const char *text, size_t size, bool action)
{
    zchunk_t *out = zchunk_new (NULL, 256);
    assert (out);
    char name [S_NAME_SIZE];
    s_append_time (out, 0);
    s_append (out, action? "-> *%s* * ": "-> *%s* ", s_name (name, to));
    s_append_safe (out, text, size, "        ");
    return s_string (&out);
}


//  ---------------------------------------------------------------------
//  The JSON error code of an ERROR event.

int
zchat_cli_error_code (const zchat_event_t *ev)
{
    switch (ev->code) {
        case ZCHAT_CLIENT_TIMEOUT:      return ZCHAT_CLI_ERR_TIMEOUT;
        case ZCHAT_CLIENT_AUTH:         return ZCHAT_CLI_ERR_AUTH;
        case ZCHAT_CLIENT_INVALID:      return ZCHAT_CLI_ERR_BAD_FIELD;
        case ZCHAT_CLIENT_REFUSED:      return ZCHAT_ERR_FORBIDDEN;
        case ZCHAT_CLIENT_INTERRUPTED:
        case ZCHAT_CLIENT_FAILED:       return ZCHAT_CLI_ERR_LOCAL;
        default:                        return ev->code > 0? ev->code: ZCHAT_CLI_ERR_LOCAL;
    }
}


//  Add the event's text as "text" ("" when it has none): by its size,
//  which is what counts, not by a NUL.
static void
s_add_text (cJSON *json, const zchat_event_t *ev)
{
    size_t size = ev->text? ev->text_size: 0;
    char *copy = (char *) malloc (size + 1);
    assert (copy);
    if (size)
        memcpy (copy, ev->text, size);
    copy [size] = 0;
    cJSON_AddStringToObject (json, "text", copy);
    free (copy);
}


//  Add a 64-bit unsigned number (seq, ts) as its exact decimal digits.
//  As a double (cJSON's numbers) one over 2^53 came out rounded, a seq
//  that was not the broker's, and as 1.8446744073709552e+19 at the top.
static void
s_add_u64 (cJSON *json, const char *name, uint64_t value)
{
    char digits [24];
    snprintf (digits, sizeof digits, "%" PRIu64, value);
    cJSON_AddRawToObject (json, name, digits);
}


//  ---------------------------------------------------------------------
//  An event as a JSON object (see client/JSON.md).

cJSON *
zchat_cli_event_json (const zchat_event_t *ev)
{
    cJSON *json = cJSON_CreateObject ();
    if (!json)
        return NULL;
    cJSON_AddStringToObject (json, "type", zchat_event_type_name (ev->type));
    switch (ev->type) {
        case ZCHAT_EV_MESSAGE:
            cJSON_AddStringToObject (json, "room", ev->room);
            cJSON_AddStringToObject (json, "from", ev->nick);
            s_add_text (json, ev);
            s_add_u64 (json, "seq", ev->seq);
            s_add_u64 (json, "ts", ev->ts);
            if (ev->history)
                cJSON_AddTrueToObject (json, "history");
            if (ev->action)
                cJSON_AddTrueToObject (json, "action");
            break;
        case ZCHAT_EV_DM:
            cJSON_AddStringToObject (json, "from", ev->nick);
            s_add_text (json, ev);
            s_add_u64 (json, "ts", ev->ts);
            if (ev->action)
                cJSON_AddTrueToObject (json, "action");
            break;
        case ZCHAT_EV_JOINED:
            cJSON_AddStringToObject (json, "room", ev->room);
            s_add_u64 (json, "seq", ev->seq);
            cJSON_AddStringToObject (json, "topic", ev->topic);
            break;
        case ZCHAT_EV_LEFT:
            cJSON_AddStringToObject (json, "room", ev->room);
            break;
        case ZCHAT_EV_JOIN:
        case ZCHAT_EV_LEAVE:
        case ZCHAT_EV_QUIT:
            cJSON_AddStringToObject (json, "room", ev->room);
            cJSON_AddStringToObject (json, "nick", ev->nick);
            if (ev->ts)
                s_add_u64 (json, "ts", ev->ts);
            break;
        case ZCHAT_EV_NICK:
            cJSON_AddStringToObject (json, "old", ev->nick);
            cJSON_AddStringToObject (json, "new", ev->new_nick);
            if (*ev->room)
                cJSON_AddStringToObject (json, "room", ev->room);
            break;
        case ZCHAT_EV_TOPIC:
            cJSON_AddStringToObject (json, "room", ev->room);
            cJSON_AddStringToObject (json, "topic", ev->topic);
            cJSON_AddStringToObject (json, "nick", ev->nick);
            if (ev->ts)
                s_add_u64 (json, "ts", ev->ts);
            break;
        case ZCHAT_EV_ACK:
            cJSON_AddStringToObject (json, "room", ev->room);
            s_add_u64 (json, "seq", ev->seq);
            s_add_u64 (json, "ts", ev->ts);
            break;
        case ZCHAT_EV_ERROR:
            cJSON_AddNumberToObject (json, "code", zchat_cli_error_code (ev));
            cJSON_AddStringToObject (json, "message", *ev->reason? ev->reason: "failed");
            if (ev->retry_ms)
                cJSON_AddNumberToObject (json, "retry_ms", ev->retry_ms);
            break;
        case ZCHAT_EV_MEMBERS: {
            cJSON_AddStringToObject (json, "room", ev->room);
            cJSON *nicks = cJSON_AddArrayToObject (json, "nicks");
            for (size_t index = 0; nicks && index < ev->item_count; index++)
                cJSON_AddItemToArray (nicks, cJSON_CreateString (ev->items [index].nick));
            break;
        }
        case ZCHAT_EV_ROOMS: {
            cJSON *rooms = cJSON_AddArrayToObject (json, "rooms");
            for (size_t index = 0; rooms && index < ev->item_count; index++) {
                const zchat_list_item_t *item = &ev->items [index];
                cJSON *entry = cJSON_CreateObject ();
                if (!entry)
                    break;
                cJSON_AddStringToObject (entry, "room", item->room);
                cJSON_AddNumberToObject (entry, "members", item->members);
                cJSON_AddStringToObject (entry, "topic", item->topic);
                s_add_u64 (entry, "seq", item->seq);
                cJSON_AddItemToArray (rooms, entry);
            }
            break;
        }
        case ZCHAT_EV_HISTORY:
            cJSON_AddStringToObject (json, "room", ev->room);
            s_add_u64 (json, "seq", ev->seq);
            break;
        case ZCHAT_EV_GAP:
            cJSON_AddStringToObject (json, "room", ev->room);
            s_add_u64 (json, "from", ev->from_seq);
            s_add_u64 (json, "to", ev->to_seq);
            break;
        case ZCHAT_EV_CONNECTED:
            if (ev->resumed)
                cJSON_AddTrueToObject (json, "resumed");
            break;
        default:
            break;              //  OK, DISCONNECTED: the type says it all
    }
    return json;
}


//  ---------------------------------------------------------------------
//  Print one JSON object as one line; takes *json_p.

//  Make every string value in json valid UTF-8, replacing what is not by
//  U+FFFD: stdout carries JSON only, and JSON is UTF-8. The library hands
//  on broker strings checked, but not every string is one of those: a
//  local error's text cut to fit its buffer inside a character (a broker
//  may name a long PUB endpoint that then appears in it), or a command's
//  "id" echoed back (cJSON lets any bytes through in strings).
static void
s_fix_strings (cJSON *json)
{
    for (cJSON *item = json; item; item = item->next) {
        if (cJSON_IsString (item) && item->valuestring
        &&  !zchat_utf8_valid (item->valuestring, strlen (item->valuestring))) {
            size_t size;
            char *fixed = zchat_cli_utf8_fix (item->valuestring,
                                              strlen (item->valuestring), &size);
            cJSON_SetValuestring (item, fixed);
            free (fixed);
        }
        if (item->child)
            s_fix_strings (item->child);
    }
}


int
zchat_cli_print_json (cJSON **json_p)
{
    assert (json_p);
    int rc = -1;
    if (*json_p) {
        s_fix_strings (*json_p);
        char *line = cJSON_PrintUnformatted (*json_p);
        if (line) {
            //  Flushed per line: a bot reading us sees each event at once.
            if (fprintf (stdout, "%s\n", line) > 0 && fflush (stdout) == 0)
                rc = 0;
            cJSON_free (line);
        }
        cJSON_Delete (*json_p);
        *json_p = NULL;
    }
    return rc;
}


//  ---------------------------------------------------------------------
//  Print a JSON error event.

void
zchat_cli_print_json_error (int code, const char *message, const cJSON *id)
{
    cJSON *json = cJSON_CreateObject ();
    if (!json)
        return;
    cJSON_AddStringToObject (json, "type", "error");
    cJSON_AddNumberToObject (json, "code", code);
    cJSON_AddStringToObject (json, "message", message);
    if (id)
        cJSON_AddItemToObject (json, "id", cJSON_Duplicate (id, true));
    zchat_cli_print_json (&json);
}


//  ---------------------------------------------------------------------
//  {"type":"connected"} once connected: the library itself reports only
//  reconnections, and a bot wants to know when it is in.

void
zchat_cli_print_connected (const zchat_cli_opts_t *opts, zchat_client_t *client)
{
    cJSON *json = cJSON_CreateObject ();
    if (json) {
        cJSON_AddStringToObject (json, "type", "connected");
        cJSON_AddStringToObject (json, "nick", zchat_client_nick (client));
        cJSON_AddStringToObject (json, "server", opts->server);
        zchat_cli_print_json (&json);
    }
}
