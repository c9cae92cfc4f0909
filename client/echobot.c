//  zchat-echobot — an example bot on libzchat.
//
//  In its rooms it answers "!echo TEXT" with TEXT and "!time" with the
//  current time (ISO 8601, UTC), in the room the command came from. It
//  ignores its own messages and replayed history (old commands were
//  answered when they were new). Replies go through a token bucket:
//  a burst of 5, then 2 per second; replies over that wait in a queue and
//  go out later, in order, never dropped. When the broker goes away the
//  library reconnects, greets again and rejoins; the bot just keeps
//  going. A join refused with 429 is asked again when the broker says;
//  any other refusal of a join ends the bot with exit 1 (out of a room it
//  should serve it is of no use). SIGINT or SIGTERM: goodbye, exit 0.
//
//      zchat-echobot --server tcp://127.0.0.1:5555 --nick echo --room lobby

#include <czmq.h>
#include <getopt.h>
#include <math.h>                   //  isfinite: a macro, no libm
#include <time.h>
#include "zchat_client.h"

#define BUCKET_BURST        5.0         //  replies at once
#define BUCKET_RATE         2.0         //  replies per second after that
#define QUEUE_MAX           100000      //  replies waiting, to bound memory
#define ROOMS_MAX           64
#define JOIN_RETRY_MS       100         //  a 429 without a retry time

//  A reply waiting for its turn, or on its way (until acknowledged).
typedef struct {
    char     room [ZCHAT_MAX_ROOM + 1];
    char    *text;
    size_t   size;
} s_reply_t;

static void
s_reply_destroy (void **item_p)
{
    s_reply_t *reply = (s_reply_t *) *item_p;
    if (reply) {
        free (reply->text);
        free (reply);
        *item_p = NULL;
    }
}

//  A room of ours, and its join request until the broker answers it
typedef struct {
    const char *name;
    uint64_t join_id;                   //  JOIN unanswered, else 0
    int64_t  join_at;                   //  refused with 429: join again then
} s_room_t;

typedef struct {
    zchat_client_t *client;
    zlistx_t *queue;                    //  s_reply_t waiting, oldest first
    zhashx_t *flight;                   //  request id (hex) -> s_reply_t
    double   tokens;
    int64_t  refilled;                  //  when tokens were last topped up
    bool     verbose;
    s_room_t rooms [ROOMS_MAX];
    size_t   room_count;
    bool     failed;                    //  a room refused us: stop, exit 1
} s_bot_t;


//  Queue a reply (text of size bytes) for room.
static void
s_queue (s_bot_t *self, const char *room, const char *text, size_t size)
{
    if (zlistx_size (self->queue) >= QUEUE_MAX) {
        fprintf (stderr, "zchat-echobot: %d replies waiting; not queueing more\n",
                 QUEUE_MAX);
        return;
    }
    s_reply_t *reply = (s_reply_t *) zmalloc (sizeof (s_reply_t));
    assert (reply);
    snprintf (reply->room, sizeof reply->room, "%s", room);
    reply->text = (char *) malloc (size + 1);
    assert (reply->text);
    memcpy (reply->text, text, size);
    reply->text [size] = 0;
    reply->size = size;
    zlistx_add_end (self->queue, reply);
}


//  Send queued replies while the bucket has tokens.
static void
s_send_queued (s_bot_t *self)
{
    int64_t now = zclock_mono ();
    self->tokens += (double) (now - self->refilled) * BUCKET_RATE / 1000.0;
    if (self->tokens > BUCKET_BURST)
        self->tokens = BUCKET_BURST;
    self->refilled = now;
    while (self->tokens >= 1 && zlistx_size (self->queue)) {
        s_reply_t *reply = (s_reply_t *) zlistx_first (self->queue);
        uint64_t rid = zchat_client_say (self->client, reply->room, reply->text,
                                         reply->size, false);
        if (!rid) {
            //  Most likely not connected right now: try again later.
            if (self->verbose)
                fprintf (stderr, "zchat-echobot: not sent yet: %s\n",
                         zchat_client_error (self->client));
            break;
        }
        char key [17];
        snprintf (key, sizeof key, "%016" PRIx64, rid);
        zhashx_update (self->flight, key, zlistx_detach (self->queue, NULL));
        self->tokens -= 1;
    }
}


//  How long until the next queued reply may go, in ms (-1: nothing queued).
static int
s_next_due (s_bot_t *self)
{
    if (zlistx_size (self->queue) == 0)
        return -1;
    if (self->tokens >= 1)
        return 0;
    return (int) ((1 - self->tokens) * 1000.0 / BUCKET_RATE) + 1;
}


//  A room message: answer it if it is a command for us.
static void
s_on_message (s_bot_t *self, zchat_event_t *event)
{
    if (event->history || streq (event->nick, zchat_client_nick (self->client))
    ||  !event->text)
        return;
    const char *text = event->text;
    if (strncmp (text, "!echo ", 6) == 0 && event->text_size > 6)
        s_queue (self, event->room, text + 6, event->text_size - 6);
    else
    if (streq (text, "!time")) {
        char stamp [32];
        time_t now = time (NULL);
        struct tm utc;
        if (gmtime_r (&now, &utc) && strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc))
            s_queue (self, event->room, stamp, strlen (stamp));
    }
}


//  Join a room; false (with the reason on stderr) if the request cannot
//  even be made.
static bool
s_join (s_bot_t *self, s_room_t *room)
{
    room->join_at = 0;
    room->join_id = zchat_client_join (self->client, room->name);
    if (!room->join_id)
        fprintf (stderr, "zchat-echobot: cannot join #%s: %s\n", room->name,
                 zchat_client_error (self->client));
    return room->join_id != 0;
}


//  The answer to a join: a 429 (the broker's rate limit) joins again when
//  it says; any other refusal stops the bot, which is of no use out of a
//  room it was told to serve. Returns false if the event answers no join.
static bool
s_on_join_answer (s_bot_t *self, zchat_event_t *event)
{
    for (size_t index = 0; index < self->room_count; index++) {
        s_room_t *room = &self->rooms [index];
        if (!room->join_id || room->join_id != event->id)
            continue;
        room->join_id = 0;
        if (event->type != ZCHAT_EV_ERROR)
            return true;
        if (event->code == ZCHAT_ERR_RATE_LIMITED) {
            uint32_t retry_ms = event->retry_ms? event->retry_ms: JOIN_RETRY_MS;
            room->join_at = zclock_mono () + retry_ms;
            if (self->verbose)
                fprintf (stderr, "zchat-echobot: join #%s refused for now (%s); again in"
                         " %u ms\n", room->name, event->reason, retry_ms);
        }
        else {
            fprintf (stderr, "zchat-echobot: cannot join #%s: %s (%d)\n", room->name,
                     event->reason, event->code);
            self->failed = true;
        }
        return true;
    }
    return false;
}


//  Join again the rooms whose 429 has run out; how long until the next
//  one does, in ms (-1: none waits).
static int
s_join_due (s_bot_t *self)
{
    int64_t now = zclock_mono ();
    int wait = -1;
    for (size_t index = 0; index < self->room_count && !self->failed; index++) {
        s_room_t *room = &self->rooms [index];
        if (!room->join_at)
            continue;
        if (now >= room->join_at) {
            if (!s_join (self, room))
                self->failed = true;
        }
        else
        if (wait < 0 || room->join_at - now < wait)
            wait = (int) (room->join_at - now);
    }
    return wait;
}


//  The answer to one of our replies: done, or back to the queue's front.
//  A reply the broker refused with 429 (its rate limit or fair share) is
//  never answered here: libzchat sends it again by itself, in order, and
//  reports only its ACK (zchat_client.h).
static void
s_on_answer (s_bot_t *self, zchat_event_t *event)
{
    char key [17];
    snprintf (key, sizeof key, "%016" PRIx64, event->id);
    s_reply_t *reply = (s_reply_t *) zhashx_lookup (self->flight, key);
    if (!reply)
        return;
    if (event->type == ZCHAT_EV_ERROR && event->code == ZCHAT_CLIENT_TIMEOUT) {
        //  Not known to be stored: the bot prefers a rare duplicate to a
        //  lost reply. Again, first.
        s_reply_t *again = (s_reply_t *) zmalloc (sizeof (s_reply_t));
        assert (again);
        *again = *reply;
        reply->text = NULL;
        zlistx_add_start (self->queue, again);
    }
    else
    if (event->type == ZCHAT_EV_ERROR)
        fprintf (stderr, "zchat-echobot: reply in #%s refused: %s (%d)\n", reply->room,
                 event->reason, event->code);
    zhashx_delete (self->flight, key);
}


static int
s_usage (const char *problem, const char *what)
{
    fprintf (stderr, "zchat-echobot: %s%s%s%s (usage: zchat-echobot --server ENDPOINT "
             "--nick NAME --room ROOM [--room ROOM]... [--timeout S] [--cert PATH_secret "
             "--server-key KEY] [-v] [--help])\n", problem,
             what? " '": "", what? what: "", what? "'": "");
    return 2;
}


int
main (int argc, char **argv)
{
    const char *server = "tcp://127.0.0.1:5555", *nick = NULL;
    const char *cert = NULL, *server_key = NULL;
    const char *rooms [ROOMS_MAX];
    size_t room_count = 0;
    double timeout = 10;
    bool verbose = false;
    static const struct option longopts [] = {
        { "server", required_argument, NULL, 's' },
        { "nick", required_argument, NULL, 'n' },
        { "room", required_argument, NULL, 'r' },
        { "timeout", required_argument, NULL, 't' },
        { "cert", required_argument, NULL, 'c' },
        { "server-key", required_argument, NULL, 'k' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, ":vh", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (option) {
            case 's': server = optarg; break;
            case 'n': nick = optarg; break;
            case 'r':
                if (room_count == ROOMS_MAX)
                    return s_usage ("at most 64 rooms", NULL);
                rooms [room_count] = *optarg == '#'? optarg + 1: optarg;
                if (!zchat_room_valid (rooms [room_count++]))
                    return s_usage ("bad --room", optarg);
                break;
            case 't':
                timeout = strtod (optarg, &end);
                if (end == optarg || *end || !isfinite (timeout) || timeout <= 0
                ||  timeout > 2000000)
                    return s_usage ("bad --timeout: expected seconds > 0, not", optarg);
                break;
            case 'c': cert = optarg; break;
            case 'k': server_key = optarg; break;
            case 'v': verbose = true; break;
            case 'h':
                printf ("zchat-echobot --server ENDPOINT --nick NAME --room ROOM [--room ROOM]...\n"
                        "              [--timeout S] [--cert PATH_secret --server-key KEY] [-v]\n\n"
                        "Answers \"!echo TEXT\" with TEXT and \"!time\" with the time (ISO 8601,\n"
                        "UTC) in the room asked; replies at most 5 at once, then 2 a second\n"
                        "(excess replies wait, in order). --timeout bounds connecting (default\n"
                        "10 s). Exit: 0 on SIGINT/SIGTERM, 2 usage, 3 broker unreachable,\n"
                        "4 refused (nick in use), 6 CURVE handshake refused, 1 other failure.\n");
                return 0;
            case ':': return s_usage ("this option needs a value:", argv [optind - 1]);
            default: return s_usage ("unknown option", argv [optind - 1]);
        }
    }
    if (optind < argc)
        return s_usage ("unexpected argument", argv [optind]);
    if (!nick || !zchat_nick_valid (nick))
        return s_usage ("--nick NAME is required and must be a valid nick", NULL);
    if (room_count == 0)
        return s_usage ("--room is required", NULL);
    if (!cert != !server_key)
        return s_usage ("--cert and --server-key go together", NULL);

    zsys_set_logstream (NULL);
    int exit_code = 0;
    s_bot_t self = { .verbose = verbose, .tokens = BUCKET_BURST };
    self.refilled = zclock_mono ();
    self.queue = zlistx_new ();
    self.flight = zhashx_new ();
    assert (self.queue && self.flight);
    zlistx_set_destructor (self.queue, s_reply_destroy);
    zhashx_set_destructor (self.flight, s_reply_destroy);
    int timeout_ms = (int) (timeout * 1000) + 1;
    self.client = zchat_client_new (server, nick);
    if (!self.client) {
        fprintf (stderr, "zchat-echobot: cannot create a client for %s\n", server);
        exit_code = 1;
        goto cleanup;
    }
    zchat_client_set_timeout (self.client, timeout_ms);
    if (cert && zchat_client_set_curve (self.client, cert, server_key)) {
        fprintf (stderr, "zchat-echobot: cannot load CURVE keys: %s\n",
                 zchat_client_error (self.client));
        exit_code = 2;
        goto cleanup;
    }
    int rc = zchat_client_connect (self.client, timeout_ms);
    if (rc) {
        fprintf (stderr, "zchat-echobot: cannot connect to %s: %s\n", server,
                 zchat_client_error (self.client));
        exit_code = rc == ZCHAT_CLIENT_TIMEOUT? 3: rc == ZCHAT_CLIENT_REFUSED? 4
                  : rc == ZCHAT_CLIENT_AUTH? 6: rc == ZCHAT_CLIENT_INTERRUPTED? 0: 1;
        goto cleanup;
    }
    for (size_t index = 0; index < room_count; index++) {
        self.rooms [index].name = rooms [index];
        self.room_count++;
        if (!s_join (&self, &self.rooms [index])) {
            exit_code = 1;
            goto cleanup;
        }
    }
    if (verbose)
        fprintf (stderr, "zchat-echobot: connected to %s as %s\n", server, nick);

    while (!zsys_interrupted && !self.failed) {
        s_send_queued (&self);
        int wait = s_next_due (&self);
        int due = zchat_client_due_ms (self.client);
        if (wait < 0 || (due >= 0 && due < wait))
            wait = due;
        int join = s_join_due (&self);
        if (wait < 0 || (join >= 0 && join < wait))
            wait = join;
        zchat_event_t *event = zchat_client_next (self.client, wait);
        if (!event)
            continue;
        switch (event->type) {
            case ZCHAT_EV_MESSAGE:
                s_on_message (&self, event);
                break;
            case ZCHAT_EV_ACK:
            case ZCHAT_EV_ERROR:
                if (event->id && !s_on_join_answer (&self, event))
                    s_on_answer (&self, event);
                else
                    fprintf (stderr, "zchat-echobot: %s (%d)\n", event->reason, event->code);
                break;
            case ZCHAT_EV_JOINED:
                s_on_join_answer (&self, event);
                //  fall through
            case ZCHAT_EV_CONNECTED:
            case ZCHAT_EV_DISCONNECTED:
                if (verbose)
                    fprintf (stderr, "zchat-echobot: %s %s\n",
                             zchat_event_type_name (event->type), event->room);
                break;
            default:
                break;
        }
        zchat_event_destroy (&event);
    }
    if (self.failed)
        exit_code = 1;

cleanup:
    zchat_client_destroy (&self.client);
    zhashx_destroy (&self.flight);
    zlistx_destroy (&self.queue);
    return exit_code;
}
