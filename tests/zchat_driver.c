//  zchat-driver — one libzchat client driven by line commands, for the
//  end-to-end tests: it calls the library directly (what the zchat CLI
//  does not offer, e.g. zchat_client_join_send_only) and prints every
//  event the library hands it, so a test sees exactly what a caller sees.
//
//  zchat-driver --server ENDPOINT --nick NICK [--timeout MS]
//
//  stdin, one command a line:
//      join ROOM | join-send-only ROOM | leave ROOM | who ROOM
//      say ROOM TEXT (the rest of the line) | dm NICK TEXT
//      burst ROOM N [SIZE]: N says in a row ("burst 1" .. "burst N", padded
//      with '.' to SIZE bytes if given, below 8192), no pass of the loop
//      between them; burst-dm NICK N [SIZE]: the same as N DMs to NICK;
//      hold MS: sleep MS without a pass (what a busy caller does; the id
//      printed for a burst is its last send's)
//  stdout, one JSON object a line: {"type":"ready"} once connected; for
//  each command {"type":"request","cmd":...,"room":...,"id":HEX} (id "0"
//  and "error" if the library refused it; "room" is a dm's NICK); then
//  every event, as {"type":"message"|"joined"|..., "id", "room", "nick",
//  "text", "seq", "ts", "code", "reason", "members":[...]}. Exits 0 at the
//  end of stdin, 1 if it cannot connect, 2 on a usage error.

#include <czmq.h>
#include <cJSON.h>
#include <inttypes.h>
#include <unistd.h>
#include "zchat_client.h"

#define S_LINE_MAX  8192

//  Request ids are 64-bit: as JSON numbers (doubles) they would lose their
//  low bits, so they are printed as 16 hex digits ("0" for none).
static void
s_add_id (cJSON *json, uint64_t id)
{
    char text [17];
    snprintf (text, sizeof (text), id? "%016" PRIx64: "%" PRIx64, id);
    cJSON_AddStringToObject (json, "id", text);
}

//  --------------------------------------------------------------------------
//  Print one JSON object (takes it) as a line, flushed.

static void
s_print (cJSON **json_p)
{
    char *text = *json_p? cJSON_PrintUnformatted (*json_p): NULL;
    if (text) {
        printf ("%s\n", text);
        fflush (stdout);
        free (text);
    }
    cJSON_Delete (*json_p);
    *json_p = NULL;
}

//  --------------------------------------------------------------------------
//  Print an event with the fields that mean something for its type.

static void
s_print_event (const zchat_event_t *event)
{
    cJSON *json = cJSON_CreateObject ();
    if (!json)
        return;
    cJSON_AddStringToObject (json, "type", zchat_event_type_name (event->type));
    s_add_id (json, event->id);
    if (*event->room)
        cJSON_AddStringToObject (json, "room", event->room);
    if (*event->nick)
        cJSON_AddStringToObject (json, "nick", event->nick);
    if (*event->new_nick)
        cJSON_AddStringToObject (json, "new_nick", event->new_nick);
    if (*event->topic)
        cJSON_AddStringToObject (json, "topic", event->topic);
    if (event->text)
        cJSON_AddStringToObject (json, "text", event->text);
    cJSON_AddNumberToObject (json, "seq", (double) event->seq);
    if (event->ts)
        cJSON_AddNumberToObject (json, "ts", (double) event->ts);
    if (event->history)
        cJSON_AddBoolToObject (json, "history", true);
    if (event->type == ZCHAT_EV_ERROR) {
        cJSON_AddNumberToObject (json, "code", event->code);
        cJSON_AddStringToObject (json, "reason", event->reason);
    }
    if (event->type == ZCHAT_EV_MEMBERS) {
        cJSON *members = cJSON_AddArrayToObject (json, "members");
        for (size_t i = 0; members && i < event->item_count; i++)
            cJSON_AddItemToArray (members, cJSON_CreateString (event->items [i].nick));
    }
    s_print (&json);
}

//  --------------------------------------------------------------------------
//  Carry out one command line (NUL-terminated, no newline).

static void
s_command (zchat_client_t *client, char *line)
{
    char *cmd = line;
    char *room = strchr (line, ' ');
    char *text = NULL;
    if (room) {
        *room++ = 0;
        text = strchr (room, ' ');
        if (text)
            *text++ = 0;
    }
    uint64_t id = 0;
    bool known = true;
    if (!room)
        known = false;
    else
    if (streq (cmd, "join"))
        id = zchat_client_join (client, room);
    else
    if (streq (cmd, "join-send-only"))
        id = zchat_client_join_send_only (client, room);
    else
    if (streq (cmd, "leave"))
        id = zchat_client_leave (client, room);
    else
    if (streq (cmd, "who"))
        id = zchat_client_who (client, room);
    else
    if (streq (cmd, "say") && text)
        id = zchat_client_say (client, room, text, strlen (text), false);
    else
    if (streq (cmd, "dm") && text)
        id = zchat_client_dm (client, room, text, strlen (text), false);
    else
    if ((streq (cmd, "burst") || streq (cmd, "burst-dm")) && text) {
        bool dm = streq (cmd, "burst-dm");
        char *end = NULL;
        long count = strtol (text, &end, 10);
        long size = end && *end == ' '? strtol (end + 1, NULL, 10): 0;
        char says [S_LINE_MAX];
        if (size < 0 || size >= (long) sizeof (says))
            size = 0;
        for (long i = 1; i <= count; i++) {
            int used = snprintf (says, sizeof (says), "burst %ld", i);
            if (used < size) {
                memset (says + used, '.', (size_t) (size - used));
                used = (int) size;
            }
            id = dm? zchat_client_dm (client, room, says, (size_t) used, false):
                     zchat_client_say (client, room, says, (size_t) used, false);
            if (!id)
                break;
        }
    }
    else
    if (streq (cmd, "hold")) {
        zclock_sleep (atoi (room));
        id = 1;                 //  no request: "1" says it was done
    }
    else
        known = false;
    cJSON *json = cJSON_CreateObject ();
    if (!json)
        return;
    cJSON_AddStringToObject (json, "type", "request");
    cJSON_AddStringToObject (json, "cmd", cmd);
    if (room)
        cJSON_AddStringToObject (json, "room", room);
    s_add_id (json, id);
    if (!id)
        cJSON_AddStringToObject (json, "error",
                                 known? zchat_client_error (client): "unknown command");
    s_print (&json);
}

int
main (int argc, char **argv)
{
    const char *server = NULL, *nick = NULL;
    int timeout_ms = 5000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (streq (argv [i], "--server"))
            server = argv [i + 1];
        else
        if (streq (argv [i], "--nick"))
            nick = argv [i + 1];
        else
        if (streq (argv [i], "--timeout"))
            timeout_ms = atoi (argv [i + 1]);
    }
    if (!server || !nick || timeout_ms <= 0 || argc % 2 == 0) {
        fprintf (stderr, "usage: zchat-driver --server ENDPOINT --nick NICK [--timeout MS]\n");
        return 2;
    }
    int rc = 1;
    char *buffer = (char *) malloc (S_LINE_MAX);
    zchat_client_t *client = zchat_client_new (server, nick);
    if (!buffer || !client) {
        fprintf (stderr, "zchat-driver: cannot create the client\n");
        goto cleanup;
    }
    zchat_client_set_timeout (client, timeout_ms);
    if (zchat_client_connect (client, 10000)) {
        fprintf (stderr, "zchat-driver: %s\n", zchat_client_error (client));
        goto cleanup;
    }
    cJSON *ready = cJSON_CreateObject ();
    if (ready)
        cJSON_AddStringToObject (ready, "type", "ready");
    s_print (&ready);

    size_t filled = 0;
    bool input = true;
    while (!zsys_interrupted && input) {
        int due = zchat_client_due_ms (client);
        zmq_pollitem_t items [3] = {
            { zsock_resolve (zchat_client_dealer (client)), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (zchat_client_sub (client)), 0, ZMQ_POLLIN, 0 },
            { NULL, STDIN_FILENO, ZMQ_POLLIN, 0 }
        };
        if (zmq_poll (items, 3, due < 0 || due > 1000? 1000: due) == -1 && errno != EINTR)
            break;
        //  A closed pipe is POLLHUP, which zmq_poll reports as an error
        if (items [2].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
            ssize_t size = read (STDIN_FILENO, buffer + filled, S_LINE_MAX - 1 - filled);
            if (size <= 0)
                input = false;          //  end of input (or an error): done
            else
                filled += (size_t) size;
            char *newline;
            while ((newline = (char *) memchr (buffer, '\n', filled))) {
                *newline = 0;
                s_command (client, buffer);
                size_t used = (size_t) (newline - buffer) + 1;
                memmove (buffer, newline + 1, filled - used);
                filled -= used;
            }
            if (filled == S_LINE_MAX - 1)
                filled = 0;             //  a line too long: dropped
        }
        zchat_event_t *event;
        while ((event = zchat_client_next (client, 0))) {
            s_print_event (event);
            zchat_event_destroy (&event);
        }
    }
    rc = 0;

cleanup:
    zchat_client_destroy (&client);
    free (buffer);
    return rc;
}
