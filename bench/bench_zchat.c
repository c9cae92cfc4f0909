//  bench_zchat — zchat's side of the bench: worker roles that use only the
//  public client library (libzchat), and the controller that starts a
//  broker, runs them and gathers the figures.
//
//  Roles (one process each):
//    zsender  one client: joins the room send-only (a member that does not
//             receive, like the ceiling's senders), then says N messages
//             through a pipelined window of unacknowledged sends, paced to
//             its share of --rate; times every ack. With --receive it joins
//             as a receiving member and also accounts for the room's
//             messages (fairness runs); with --flood it sends until STOP
//             (the flooder).
//    zsub     one or more clients joined to the room, accounting for every
//             message: lost, duplicated, repaired from history.
//    zidle    many clients connected and greeted, doing nothing but keep
//             their sessions alive (memory per idle client).

#include "bench.h"
#include "zchat_client.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_MS   30000   //  resend/give-up horizon of a send
#define CONNECT_TIMEOUT_MS  20000
#define JOIN_TIMEOUT_MS     20000
#define RECEIVE_LINGER_NS   (10 * 1000000000LL)
#define ACK_CLOCK_EVERY     32      //  ACKs timed with one clock read

//  --------------------------------------------------------------------------
//  Sends in flight: request id -> send time. Open addressing with linear
//  probing and backward-shift deletion; sized to four times the window so
//  probes stay short.

typedef struct {
    uint64_t id;            //  0 = empty (the library never returns id 0)
    int64_t  sent_ns;
} s_slot_t;

typedef struct {
    s_slot_t *slots;
    size_t   mask;
} s_inflight_t;

static int
s_inflight_init (s_inflight_t *self, int window)
{
    size_t size = 16;
    while (size < (size_t) window * 4)
        size *= 2;
    self->slots = (s_slot_t *) calloc (size, sizeof (s_slot_t));
    self->mask = size - 1;
    return self->slots? 0: -1;
}

static void
s_inflight_put (s_inflight_t *self, uint64_t id, int64_t sent_ns)
{
    size_t slot = (size_t) (id * 0x9E3779B97F4A7C15ULL) & self->mask;
    while (self->slots [slot].id)
        slot = (slot + 1) & self->mask;
    self->slots [slot].id = id;
    self->slots [slot].sent_ns = sent_ns;
}

//  Remove id; returns its send time, or -1 if it was not in flight.
static int64_t
s_inflight_take (s_inflight_t *self, uint64_t id)
{
    if (id == 0)
        return -1;
    size_t slot = (size_t) (id * 0x9E3779B97F4A7C15ULL) & self->mask;
    while (self->slots [slot].id != id) {
        if (self->slots [slot].id == 0)
            return -1;
        slot = (slot + 1) & self->mask;
    }
    int64_t sent_ns = self->slots [slot].sent_ns;
    //  Backward shift: move later entries of the cluster into the hole so
    //  no lookup stops early at it.
    size_t hole = slot;
    size_t next = (hole + 1) & self->mask;
    while (self->slots [next].id) {
        size_t home = (size_t) (self->slots [next].id * 0x9E3779B97F4A7C15ULL)
                    & self->mask;
        //  Move next into hole unless its home lies cyclically in (hole, next].
        bool stays = hole <= next? (home > hole && home <= next)
                                 : (home > hole || home <= next);
        if (!stays) {
            self->slots [hole] = self->slots [next];
            hole = next;
        }
        next = (next + 1) & self->mask;
    }
    self->slots [hole].id = 0;
    return sent_ns;
}

//  --------------------------------------------------------------------------
//  Accounting for one receiving client.

typedef struct {
    bench_tracker_t *tracker;
    bool complete;
    bool due;                   //  its housekeeping is due (zsub)
} s_receiver_t;

static void
s_note (bench_stats_t *stats, const char *format, const char *text, int code)
{
    if (stats->note [0] == 0)
        snprintf (stats->note, sizeof (stats->note), format, text, code);
}

//  Account for one event of a receiving client. Returns true if the client
//  just became complete.
static bool
s_receive_event (s_receiver_t *self, zchat_event_t *event, uint32_t senders,
                 bench_stats_t *stats, bench_hist_t *lat)
{
    if (event->type == ZCHAT_EV_GAP) {
        stats->gaps++;
        return false;
    }
    if (event->type != ZCHAT_EV_MESSAGE)
        return false;
    int64_t now = bench_now_ns ();
    uint32_t sender, counter;
    int64_t sent_ns;
    if (bench_payload_parse (event->text, event->text_size, &sender, &counter,
                             &sent_ns)) {
        stats->bogus++;
        return false;
    }
    if (sender >= senders) {
        //  The flooder's messages: counted, not tracked.
        stats->other_received++;
        return false;
    }
    stats->received++;
    int mark = bench_tracker_mark (self->tracker, sender, counter);
    if (mark < 0) {
        stats->bogus++;
        return false;
    }
    if (mark > 0) {
        stats->duplicated++;
        return false;
    }
    stats->unique++;
    if (event->history)
        stats->repaired++;
    if (stats->first_recv_ns == 0)
        stats->first_recv_ns = now;
    stats->last_recv_ns = now;
    bench_hist_add (lat, (uint64_t) (now > sent_ns? now - sent_ns: 0));
    if (!self->complete && bench_tracker_complete (self->tracker)) {
        self->complete = true;
        return true;
    }
    return false;
}

//  Connect a client and join the room (send-only: to send to it only),
//  waiting for the join to be live. Returns the client, or NULL with reason
//  filled in.
static zchat_client_t *
s_client_open (const char *server, const char *nick, const char *room, bool send_only,
               char *reason, size_t reason_size)
{
    zchat_client_t *client = zchat_client_new (server, nick);
    if (!client) {
        snprintf (reason, reason_size, "zchat_client_new (%s) failed", nick);
        return NULL;
    }
    zchat_client_set_timeout (client, CLIENT_TIMEOUT_MS);
    if (zchat_client_connect (client, CONNECT_TIMEOUT_MS)) {
        snprintf (reason, reason_size, "%s: connect: %s", nick,
                  zchat_client_error (client));
        zchat_client_destroy (&client);
        return NULL;
    }
    if (!room)
        return client;
    uint64_t id = send_only? zchat_client_join_send_only (client, room):
                             zchat_client_join (client, room);
    zchat_event_t *event = id? zchat_client_wait (client, id, JOIN_TIMEOUT_MS): NULL;
    if (!event || event->type != ZCHAT_EV_JOINED) {
        snprintf (reason, reason_size, "%s: join %s: %.180s", nick, room,
                  event? event->reason: "no answer");
        zchat_event_destroy (&event);
        zchat_client_destroy (&client);
        return NULL;
    }
    zchat_event_destroy (&event);
    return client;
}

static int
s_command (bench_worker_t *worker)
{
    //  0 nothing, 1 GO, 2 STOP
    char *command = bench_worker_command (worker, 0);
    int result = 0;
    if (command)
        result = streq (command, "GO")? 1: streq (command, "STOP")? 2: 0;
    zstr_free (&command);
    return result;
}

//  --------------------------------------------------------------------------
//  zsender

static int
s_zsender (bench_worker_t *worker, int argc, char **argv)
{
    const char *server = bench_arg (argc, argv, "--server", NULL);
    const char *room = bench_arg (argc, argv, "--room", "bench");
    const char *prefix = bench_arg (argc, argv, "--nick-prefix", "b");
    uint32_t me = (uint32_t) bench_arg_long (argc, argv, "--sender", 0);
    uint32_t senders = (uint32_t) bench_arg_long (argc, argv, "--senders", 1);
    long messages = bench_arg_long (argc, argv, "--messages", 0);
    int size = (int) bench_arg_long (argc, argv, "--size", 64);
    double rate = bench_arg_double (argc, argv, "--rate", 0);
    int window = (int) bench_arg_long (argc, argv, "--window", 512);
    bool receive = bench_arg_long (argc, argv, "--receive", 0) != 0;
    int rc = -1;
    char reason [256];
    char nick [ZCHAT_MAX_NICK + 1];
    snprintf (nick, sizeof (nick), "%ss%u_%x", prefix, me, (unsigned) getpid ());
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    bench_hist_t *lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_hist_t *ack = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    char *buf = (char *) malloc ((size_t) size + 1);
    s_inflight_t inflight = { NULL, 0 };
    s_receiver_t receiver = { NULL, false, false };
    zchat_client_t *client = NULL;
    if (!server || !lat || !ack || !buf || size < BENCH_MIN_SIZE || window < 1
    ||  messages < 1 || s_inflight_init (&inflight, window)) {
        bench_worker_fail (worker, "bad arguments");
        goto cleanup;
    }
    client = s_client_open (server, nick, room, !receive, reason, sizeof (reason));
    if (!client) {
        bench_worker_fail (worker, reason);
        goto cleanup;
    }
    if (receive)
        receiver.tracker = bench_tracker_new (senders, (uint32_t) messages);
    bench_payload_init (buf, (size_t) size);
    buf [size] = 0;
    bench_worker_ready (worker, nick);

    //  Keep the session alive until GO. Other senders may start a moment
    //  before us: a receiving sender accounts for their messages already.
    stats.clients = 1;
    stats.expected = receive? (uint64_t) senders * (uint64_t) messages: 0;
    int command = 0;
    while (!zsys_interrupted && (command = s_command (worker)) == 0) {
        zchat_event_t *event = zchat_client_next (client, 20);
        if (event && receive)
            s_receive_event (&receiver, event, senders, &stats, lat);
        zchat_event_destroy (&event);
    }
    if (command != 1)
        goto cleanup;

    void *sockets [3] = {
        zsock_resolve (zchat_client_dealer (client)),
        zsock_resolve (zchat_client_sub (client)),
        zsock_resolve (bench_worker_sock (worker))
    };
    int64_t interval = rate > 0? (int64_t) (1e9 / rate): 0;
    int64_t next_due = bench_now_ns ()
                     + (interval? interval * me / (senders? senders: 1): 0);
    long counter = 0;           //  next message to send
    long in_flight = 0;
    bool stopped = false;
    int64_t sends_done_ns = 0;  //  when every send was answered
    unsigned loops = 0;
    while (!zsys_interrupted) {
        //  1. Send what the window and the pace allow.
        int64_t now = bench_now_ns ();
        bool refused = false;
        while (!stopped && counter < messages && in_flight < window
        &&     (!interval || now >= next_due)) {
            bench_payload_stamp (buf, me, (uint32_t) counter, now);
            uint64_t id = zchat_client_say (client, room, buf, (size_t) size, false);
            if (id == 0) {
                s_note (&stats, "say: %.90s (%d)", zchat_client_error (client), 0);
                refused = true;
                break;          //  try again after the next events
            }
            s_inflight_put (&inflight, id, now);
            in_flight++;
            counter++;
            stats.sent++;
            if (stats.first_send_ns == 0)
                stats.first_send_ns = now;
            stats.last_send_ns = now;
            if (interval) {
                next_due += interval;
                now = bench_now_ns ();
            }
        }
        //  2. Take every event that is ready. ACKs come in batches: the
        //  clock is read once per ACK_CLOCK_EVERY of them (a few µs apart
        //  at most), not per ACK, which the ceiling's sender does not pay.
        bool got = false;
        zchat_event_t *event;
        int64_t at = 0;
        unsigned clock_uses = 0;
        while ((event = zchat_client_next (client, 0))) {
            got = true;
            if (event->type == ZCHAT_EV_ACK || event->type == ZCHAT_EV_ERROR) {
                int64_t sent_ns = s_inflight_take (&inflight, event->id);
                if (sent_ns >= 0) {
                    if (clock_uses++ % ACK_CLOCK_EVERY == 0)
                        at = bench_now_ns ();
                    in_flight--;
                    if (event->type == ZCHAT_EV_ACK) {
                        stats.acked++;
                        stats.last_ack_ns = at;
                        bench_hist_add (ack, (uint64_t) (at - sent_ns));
                    }
                    else {
                        stats.send_errors++;
                        s_note (&stats, "send failed: %.90s (%d)", event->reason,
                                event->code);
                    }
                }
                else
                if (event->type == ZCHAT_EV_ERROR) {
                    stats.errors++;
                    s_note (&stats, "error: %.90s (%d)", event->reason, event->code);
                }
            }
            else
            if (receive)
                s_receive_event (&receiver, event, senders, &stats, lat);
            zchat_event_destroy (&event);
        }
        //  3. Finished? Sending ends with the last answer; a receiving
        //  sender also waits for the room's messages, a while at most.
        bool sends_done = in_flight == 0 && (counter >= messages || stopped);
        if (sends_done && !sends_done_ns)
            sends_done_ns = bench_now_ns ();
        if (sends_done
        &&  (!receive || receiver.complete || stopped
             || bench_now_ns () - sends_done_ns > RECEIVE_LINGER_NS))
            break;
        //  4. Orders from the controller, now and then (a poll is dear at
        //  several hundred thousand loops a second).
        if (got && (++loops & 63) != 0)
            continue;
        command = s_command (worker);
        if (command == 2) {
            //  Stop sending; the answers to what is in flight still count.
            stopped = true;
            if (!sends_done_ns && in_flight == 0)
                break;
        }
        if (got)
            continue;
        //  5. Nothing to do: sleep until the next send is due, a socket
        //  stirs, or the library has housekeeping to do.
        int64_t deadline = bench_now_ns ()
                         + (int64_t) zchat_client_due_ms (client) * 1000000LL;
        bool can_send = !stopped && counter < messages && in_flight < window;
        if (can_send && interval && next_due < deadline)
            deadline = next_due;
        if (!can_send || interval || refused)
            bench_wait_sockets (sockets, 3, deadline);
    }
    bench_worker_done (worker, &stats, lat, ack);
    //  Stay in the room until told: leaving early would publish events
    //  into a run still measuring.
    while (!zsys_interrupted && s_command (worker) != 2) {
        zchat_event_t *event = zchat_client_next (client, 20);
        zchat_event_destroy (&event);
    }
    rc = 0;

cleanup:
    zchat_client_destroy (&client);
    bench_tracker_destroy (&receiver.tracker);
    free (inflight.slots);
    free (buf);
    free (lat);
    free (ack);
    return rc;
}

//  --------------------------------------------------------------------------
//  zsub: one or more receiving clients in one process.

static int
s_zsub (bench_worker_t *worker, int argc, char **argv)
{
    const char *server = bench_arg (argc, argv, "--server", NULL);
    const char *room = bench_arg (argc, argv, "--room", "bench");
    const char *prefix = bench_arg (argc, argv, "--nick-prefix", "b");
    int clients = (int) bench_arg_long (argc, argv, "--clients", 1);
    uint32_t senders = (uint32_t) bench_arg_long (argc, argv, "--senders", 1);
    long messages = bench_arg_long (argc, argv, "--messages", 0);
    int index = (int) bench_arg_long (argc, argv, "--index", 0);
    int rc = -1;
    char reason [256];
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    bench_hist_t *lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    zchat_client_t **client = (zchat_client_t **) calloc ((size_t) clients,
                                                           sizeof (void *));
    s_receiver_t *receiver = (s_receiver_t *) calloc ((size_t) clients,
                                                      sizeof (s_receiver_t));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) clients * 2 + 1,
                                                       sizeof (zmq_pollitem_t));
    if (!server || clients < 1 || messages < 1 || !lat || !empty || !client
    ||  !receiver || !items) {
        bench_worker_fail (worker, "bad arguments");
        goto cleanup;
    }
    for (int i = 0; i < clients; i++) {
        char nick [ZCHAT_MAX_NICK + 1];
        snprintf (nick, sizeof (nick), "%sr%d_%d_%x", prefix, index, i,
                  (unsigned) getpid ());
        client [i] = s_client_open (server, nick, room, false, reason, sizeof (reason));
        if (!client [i]) {
            bench_worker_fail (worker, reason);
            goto cleanup;
        }
        receiver [i].tracker = bench_tracker_new (senders, (uint32_t) messages);
        items [2 * i].socket = zsock_resolve (zchat_client_dealer (client [i]));
        items [2 * i].events = ZMQ_POLLIN;
        items [2 * i + 1].socket = zsock_resolve (zchat_client_sub (client [i]));
        items [2 * i + 1].events = ZMQ_POLLIN;
    }
    items [2 * clients].socket = zsock_resolve (bench_worker_sock (worker));
    items [2 * clients].events = ZMQ_POLLIN;
    stats.clients = (uint64_t) clients;
    stats.expected = (uint64_t) clients * senders * (uint64_t) messages;
    bench_worker_ready (worker, "");

    int complete = 0;
    bool done_sent = false;
    int64_t next_sweep = 0;
    int64_t next_progress = 0;
    while (!zsys_interrupted) {
        int timeout = 100;
        for (int i = 0; i < clients; i++) {
            int due = zchat_client_due_ms (client [i]);
            receiver [i].due = due == 0;
            if (due >= 0 && due < timeout)
                timeout = due;
        }
        if (zmq_poll (items, clients * 2 + 1, timeout) < 0 && errno != EINTR)
            break;
        if (items [2 * clients].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (bench_worker_sock (worker));
            bool stop = command && streq (command, "STOP");
            zstr_free (&command);
            if (stop)
                break;
        }
        //  Drain the clients that stirred or have housekeeping due (pings,
        //  resends, gap repair; the poll did not wait because of them: left
        //  alone, they would keep it from waiting), and every client now
        //  and then.
        int64_t now = bench_now_ns ();
        bool sweep = now >= next_sweep;
        if (sweep)
            next_sweep = now + 20 * 1000000LL;
        for (int i = 0; i < clients; i++) {
            if (!sweep && !receiver [i].due
            &&  !(items [2 * i].revents & ZMQ_POLLIN)
            &&  !(items [2 * i + 1].revents & ZMQ_POLLIN))
                continue;
            zchat_event_t *event;
            while ((event = zchat_client_next (client [i], 0))) {
                if (event->type == ZCHAT_EV_ERROR) {
                    stats.errors++;
                    s_note (&stats, "error: %.90s (%d)", event->reason, event->code);
                }
                else
                if (s_receive_event (&receiver [i], event, senders, &stats, lat))
                    complete++;
                zchat_event_destroy (&event);
            }
        }
        if (!done_sent && complete == clients) {
            bench_worker_done (worker, &stats, lat, empty);
            done_sent = true;
        }
        //  Still short: say how far we got, so that the controller waits
        //  while we repair (history comes at the broker's query budget).
        //  Nothing yet is worth saying too: that we are in our loop, idle,
        //  so that the controller does not take our CPU for work. A report
        //  that fails to go only shortens the grace: it is not worth
        //  failing the run for, so its result is not looked at.
        if (!done_sent && now >= next_progress) {
            uint64_t received = 0;
            for (int i = 0; i < clients; i++)
                received += bench_tracker_unique (receiver [i].tracker);
            (void) bench_worker_progress (worker, received);
            next_progress = now + 500 * 1000000LL;
        }
    }
    if (!done_sent)
        bench_worker_done (worker, &stats, lat, empty);
    rc = 0;

cleanup:
    for (int i = 0; client && i < clients; i++) {
        zchat_client_destroy (&client [i]);
        if (receiver)
            bench_tracker_destroy (&receiver [i].tracker);
    }
    free (client);
    free (receiver);
    free (items);
    free (lat);
    free (empty);
    return rc;
}

//  --------------------------------------------------------------------------
//  zidle: many connected, silent clients.

static int
s_zidle (bench_worker_t *worker, int argc, char **argv)
{
    const char *server = bench_arg (argc, argv, "--server", NULL);
    const char *prefix = bench_arg (argc, argv, "--nick-prefix", "b");
    int clients = (int) bench_arg_long (argc, argv, "--clients", 1);
    int index = (int) bench_arg_long (argc, argv, "--index", 0);
    //  Client i of the whole fleet (first + i) follows room
    //  PREFIX-r(first + i) / room_size, if room_size > 0
    int first = (int) bench_arg_long (argc, argv, "--first", 0);
    int room_size = (int) bench_arg_long (argc, argv, "--room-size", 0);
    int rc = -1;
    char reason [256];
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    zchat_client_t **client = (zchat_client_t **) calloc ((size_t) clients,
                                                           sizeof (void *));
    if (!server || clients < 1 || !client || !empty) {
        bench_worker_fail (worker, "bad arguments");
        goto cleanup;
    }
    int64_t next_report = 0;
    for (int i = 0; i < clients && !zsys_interrupted; i++) {
        char nick [ZCHAT_MAX_NICK + 1];
        snprintf (nick, sizeof (nick), "%si%d_%d_%x", prefix, index, i,
                  (unsigned) getpid ());
        char room [ZCHAT_MAX_ROOM + 1];
        if (room_size > 0)
            snprintf (room, sizeof (room), "%s-r%d", prefix, (first + i) / room_size);
        client [i] = s_client_open (server, nick, room_size > 0? room: NULL, false,
                                    reason, sizeof (reason));
        if (!client [i]) {
            bench_worker_fail (worker, reason);
            goto cleanup;
        }
        //  Those already connected must keep pinging while the rest
        //  connect, or the broker would expire them.
        if (bench_now_ns () > next_report) {
            for (int j = 0; j <= i; j++) {
                zchat_event_t *event;
                while ((event = zchat_client_next (client [j], 0)))
                    zchat_event_destroy (&event);
            }
            next_report = bench_now_ns () + 500 * 1000000LL;
        }
    }
    stats.clients = (uint64_t) clients;
    bench_worker_ready (worker, "");
    while (!zsys_interrupted && s_command (worker) != 2) {
        for (int i = 0; i < clients; i++) {
            zchat_event_t *event;
            while ((event = zchat_client_next (client [i], 0))) {
                if (event->type == ZCHAT_EV_DISCONNECTED)
                    stats.errors++;
                zchat_event_destroy (&event);
            }
        }
        usleep (50000);
    }
    bench_worker_done (worker, &stats, empty, empty);
    rc = 0;

cleanup:
    for (int i = 0; client && i < clients; i++)
        zchat_client_destroy (&client [i]);
    free (client);
    free (empty);
    return rc;
}

int
bench_zchat_role (const char *role, int argc, char **argv)
{
    //  A process holding many clients needs more sockets than czmq's
    //  default (1024) and more files than the default soft limit.
    int clients = (int) bench_arg_long (argc, argv, "--clients", 1);
    bench_raise_nofile ();
    zsys_set_max_sockets ((size_t) clients * 2 + 64);
    zsys_init ();
    static const bench_role_t roles [] = {
        { "zsender", s_zsender }, { "zsub", s_zsub }, { "zidle", s_zidle }
    };
    return bench_worker_run (role, roles, sizeof (roles) / sizeof (roles [0]),
                             argc, argv);
}

//  --------------------------------------------------------------------------
//  Our own broker: build/zchat-broker beside our executable, on free
//  loopback ports, with a fresh data directory removed afterwards.

typedef struct {
    pid_t pid;
    char  *dir;
    char  *log;
    char  router [256];
    char  pub [256];
} s_broker_t;

//  Append the space-separated words of text to argv (at most max).
static int
s_split_args (char *text, char **argv, int argc, int max)
{
    char *save = NULL;
    for (char *word = strtok_r (text, " ", &save); word && argc < max;
         word = strtok_r (NULL, " ", &save))
        argv [argc++] = word;
    return argc;
}

//  Does the broker's --help mention this option?
static bool
s_broker_knows (const char *broker, const char *option)
{
    char *command = zsys_sprintf ("'%s' --help 2>&1", broker);
    FILE *pipe = command? popen (command, "r"): NULL;
    zstr_free (&command);
    if (!pipe)
        return false;
    bool found = false;
    char line [512];
    while (fgets (line, sizeof (line), pipe))
        if (strstr (line, option))
            found = true;
    pclose (pipe);
    return found;
}

//  Last non-empty line of the broker's log, for error messages.
static void
s_last_log_line (const char *path, char *line, size_t size)
{
    line [0] = 0;
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char buffer [512];
    while (fgets (buffer, sizeof (buffer), file))
        if (buffer [0] && buffer [0] != '\n') {
            buffer [strcspn (buffer, "\n")] = 0;
            snprintf (line, size, "%.*s", (int) (size - 1), buffer);
        }
    fclose (file);
}

//  The broker's last log lines to stderr, when a run failed.
static void
s_print_log_tail (const char *path)
{
    FILE *file = path? fopen (path, "r"): NULL;
    if (!file)
        return;
    char lines [5][512];
    int count = 0;
    while (fgets (lines [count % 5], sizeof (lines [0]), file))
        count++;
    fclose (file);
    for (int i = count > 5? count - 5: 0; i < count; i++)
        fprintf (stderr, "broker log: %s", lines [i % 5]);
}

static void
s_broker_stop (s_broker_t *self)
{
    if (self->pid > 0)
        bench_stop_process (self->pid, 10000);
    self->pid = 0;
    if (self->dir)
        bench_remove_tree (self->dir);
    zstr_free (&self->dir);
    zstr_free (&self->log);
}

static int
s_broker_start (s_broker_t *self, const bench_params_t *params,
                char *status, size_t status_size)
{
    memset (self, 0, sizeof (*self));
    char *path = bench_sibling_path ("zchat-broker");
    char *extra = NULL, *off_args = NULL;
    char budget [32];
    char *argv [64];
    int argc = 0;
    int rc = -1;
    if (!path || access (path, X_OK)) {
        snprintf (status, status_size, "no broker at %s (build it: make)",
                  path? path: "zchat-broker");
        goto cleanup;
    }
    if (!params->durable) {
        const char *args = params->durable_off_args;
        char option [64] = "";
        if (args)
            sscanf (args, "%63s", option);
        if (!option [0] || !s_broker_knows (path, option)) {
            snprintf (status, status_size,
                      "unavailable: the broker has no '%s' switch",
                      option [0]? option: "durability off");
            goto cleanup;
        }
        off_args = strdup (args);
    }
    self->dir = strdup ("/tmp/zchat-bench-XXXXXX");
    if (!self->dir || !mkdtemp (self->dir)) {
        snprintf (status, status_size, "cannot create a temporary directory");
        zstr_free (&self->dir);
        goto cleanup;
    }
    self->log = zsys_sprintf ("%s/broker.log", self->dir);
    char *data = zsys_sprintf ("%s/data", self->dir);
    argv [argc++] = path;
    argv [argc++] = (char *) "--router";
    argv [argc++] = (char *) "tcp://127.0.0.1:*";
    argv [argc++] = (char *) "--pub";
    argv [argc++] = (char *) "tcp://127.0.0.1:*";
    argv [argc++] = (char *) "--data";
    argv [argc++] = data;
    //  Every client here comes from 127.0.0.1, where in use each would
    //  come from a machine of its own: the broker shares one address's
    //  query budget among its sessions (four sessions' worth), which would
    //  hold subscribers that repair from history to that together. Scale
    //  the budget so the address has what its sessions would have had
    //  apart; --broker-args, parsed after, can still set another.
    int clients = params->senders + params->subscribers + (params->flooder? 1: 0);
    long scale = clients > 4? (clients + 3) / 4: 1;
    snprintf (budget, sizeof (budget), "%ld:%ld",
              1024 * scale < 1000000? 1024 * scale: 1000000,
              16384 * scale < 1000000? 16384 * scale: 1000000);
    argv [argc++] = (char *) "--query-budget";
    argv [argc++] = budget;
    if (off_args)
        argc = s_split_args (off_args, argv, argc, 60);
    if (params->broker_args) {
        extra = strdup (params->broker_args);
        argc = s_split_args (extra, argv, argc, 62);
    }
    argv [argc] = NULL;
    self->pid = bench_spawn (argv, self->log, false);
    zstr_free (&data);
    if (self->pid < 0) {
        snprintf (status, status_size, "cannot start %s", path);
        goto cleanup;
    }
    //  Wait for "ready router=... pub=..." in its log.
    int64_t deadline = bench_now_ns () + 15 * 1000000000LL;
    while (!zsys_interrupted && bench_now_ns () < deadline) {
        int wstatus;
        if (waitpid (self->pid, &wstatus, WNOHANG) == self->pid) {
            self->pid = 0;
            char line [256];
            s_last_log_line (self->log, line, sizeof (line));
            snprintf (status, status_size, "broker exited: %s", line);
            goto cleanup;
        }
        FILE *file = fopen (self->log, "r");
        char line [1024];
        while (file && fgets (line, sizeof (line), file)) {
            char *ready = strstr (line, "ready router=");
            if (ready
            &&  sscanf (ready, "ready router=%255s pub=%255s", self->router,
                        self->pub) == 2) {
                rc = 0;
                break;
            }
        }
        if (file)
            fclose (file);
        if (rc == 0)
            break;
        usleep (20000);
    }
    if (rc)
        snprintf (status, status_size, "broker not ready within 15 s");

cleanup:
    if (rc)
        s_broker_stop (self);
    free (path);
    free (extra);
    free (off_args);
    return rc;
}

//  --------------------------------------------------------------------------
//  Controller: run zchat once.

int
bench_zchat_run (const bench_params_t *params, bench_side_t *side)
{
    int rc = -1;
    s_broker_t broker;
    memset (&broker, 0, sizeof (broker));
    bench_fleet_t *fleet = NULL;
    bench_stats_t senders, receivers;
    memset (&senders, 0, sizeof (senders));
    memset (&receivers, 0, sizeof (receivers));
    char server [256];
    if (params->server)
        snprintf (server, sizeof (server), "%s", params->server);
    else {
        if (s_broker_start (&broker, params, side->status, sizeof (side->status)))
            return -1;
        snprintf (server, sizeof (server), "%s", broker.router);
    }
    fleet = bench_fleet_new ();
    if (!fleet) {
        snprintf (side->status, sizeof (side->status), "cannot open control socket");
        goto cleanup;
    }
    //  A room and nick prefix of our own, so runs against a shared broker
    //  never mix.
    char room [32], prefix [16];
    unsigned tag = (unsigned) randof (0x7FFFFFFF);
    snprintf (room, sizeof (room), "bench-%08x", tag);
    snprintf (prefix, sizeof (prefix), "b%04x", tag & 0xFFFF);

    char text [10][32];
    snprintf (text [0], sizeof (text [0]), "%d", params->senders);
    snprintf (text [1], sizeof (text [1]), "%ld", params->messages);
    snprintf (text [2], sizeof (text [2]), "%d", params->size);
    snprintf (text [3], sizeof (text [3]), "%.3f",
              params->rate > 0? params->rate / params->senders: 0.0);
    snprintf (text [4], sizeof (text [4]), "%d", params->window);
    snprintf (text [5], sizeof (text [5]), "%d", params->senders_receive? 1: 0);

    //  Receivers first: joined and live before anyone speaks.
    int r_from = bench_fleet_size (fleet);
    if (!params->senders_receive) {
        int procs = bench_auto_procs (params->subscribers, params->sub_procs);
        for (int p = 0; p < procs; p++) {
            int clients = params->subscribers / procs
                        + (p < params->subscribers % procs? 1: 0);
            snprintf (text [6], sizeof (text [6]), "%d", clients);
            char *args [] = { "--server", server, "--room", room,
                              "--nick-prefix", prefix, "--clients", text [6],
                              "--senders", text [0], "--messages", text [1],
                              NULL };
            if (bench_fleet_spawn (fleet, "zsub", args) < 0) {
                snprintf (side->status, sizeof (side->status),
                          "cannot start subscribers");
                goto cleanup;
            }
        }
    }
    int r_to = bench_fleet_size (fleet);
    if (bench_fleet_wait_ready (fleet, r_from, r_to,
                                60000 + 100 * params->subscribers)) {
        snprintf (side->status, sizeof (side->status), "subscribers: %s",
                  bench_fleet_error (fleet));
        goto cleanup;
    }
    int s_from = bench_fleet_size (fleet);
    for (int s = 0; s <= params->senders; s++) {
        bool flooder = s == params->senders;
        if (flooder && !params->flooder)
            break;
        snprintf (text [7], sizeof (text [7]), "%d", s);
        char *args [] = { "--server", server, "--room", room,
                          "--nick-prefix", prefix, "--sender", text [7],
                          "--senders", text [0],
                          "--messages", flooder? "100000000": text [1],
                          "--size", text [2], "--rate", flooder? "0": text [3],
                          "--window", text [4],
                          "--receive", flooder? "0": text [5],
                          "--flood", flooder? "1": "0", NULL };
        if (bench_fleet_spawn (fleet, "zsender", args) < 0) {
            snprintf (side->status, sizeof (side->status), "cannot start senders");
            goto cleanup;
        }
    }
    int s_to = s_from + params->senders;
    int flooder = params->flooder? s_to: -1;
    if (bench_fleet_wait_ready (fleet, s_from, bench_fleet_size (fleet),
                                60000 + 100 * params->senders)) {
        snprintf (side->status, sizeof (side->status), "senders: %s",
                  bench_fleet_error (fleet));
        goto cleanup;
    }
    if (params->senders_receive) {
        r_from = s_from;
        r_to = s_to;
    }
    pid_t server_pid = broker.pid;
    double cpu_start = server_pid > 0? bench_proc_cpu_s (server_pid): -1;
    if (flooder >= 0) {
        //  The flooder gets a head start, so the others meet it at speed.
        bench_fleet_tell (fleet, flooder, "GO");
        zclock_sleep (500);
    }
    int64_t go_ns = bench_now_ns ();
    for (int s = s_from; s < s_to; s++)
        bench_fleet_tell (fleet, s, "GO");

    int64_t end_ns = 0;
    //  Grace after the senders: a lost tail is found by the next heartbeat
    //  (a third of the session timeout, 3.3 s by default).
    int collected = bench_fleet_collect (fleet, s_from, s_to, r_from, r_to,
                                         go_ns, params->timeout_s, 8000,
                                         &senders, &receivers, side->lat,
                                         side->ack, &end_ns);
    if (server_pid > 0) {
        double cpu_end = bench_proc_cpu_s (server_pid);
        side->server_hwm_kb = bench_proc_status_kb (server_pid, "VmHWM");
        side->server_rss_kb = bench_proc_status_kb (server_pid, "VmRSS");
        if (cpu_start >= 0 && cpu_end >= cpu_start) {
            side->server_cpu_s = cpu_end - cpu_start;
            double wall = (double) (end_ns - go_ns) / 1e9;
            side->server_cpu_pct = wall > 0? 100.0 * side->server_cpu_s / wall: 0;
        }
    }
    if (collected < 0) {
        snprintf (side->status, sizeof (side->status), "%s", bench_fleet_error (fleet));
        s_print_log_tail (broker.log);
        goto cleanup;
    }
    if (flooder >= 0) {
        bench_stats_t flood;
        memset (&flood, 0, sizeof (flood));
        bench_fleet_tell (fleet, flooder, "STOP");
        while (bench_fleet_next_done (fleet, 10000, &flood, NULL, NULL) >= 0
        &&     !bench_fleet_is_done (fleet, flooder))
            ;
        side->flood_acked = flood.acked;
        if (flood.last_ack_ns > flood.first_send_ns && flood.first_send_ns)
            side->flood_msgs_per_s = (double) flood.acked * 1e9
                                   / (double) (flood.last_ack_ns - flood.first_send_ns);
    }
    side->messages = (uint64_t) params->senders * (uint64_t) params->messages;
    side->accepted = senders.acked;
    bench_side_finish (side, &senders, &receivers);
    side->ran = true;
    const char *note = senders.note [0]? senders.note: receivers.note;
    if (collected == 1)
        snprintf (side->status, sizeof (side->status),
                  "cut short: not every subscriber got every message in time%s%.127s",
                  note [0]? "; ": "", note);
    else
    if (senders.acked < side->messages)
        snprintf (side->status, sizeof (side->status),
                  "only %llu of %llu sends acknowledged%s%.127s",
                  (unsigned long long) senders.acked,
                  (unsigned long long) side->messages,
                  note [0]? "; ": "", note);
    else
        snprintf (side->status, sizeof (side->status), "ok");
    rc = 0;

cleanup:
    bench_fleet_destroy (&fleet);
    s_broker_stop (&broker);
    return rc;
}

//  --------------------------------------------------------------------------
//  Controller: idle clients and the broker's memory.

int
bench_idle_run (const bench_params_t *params, bench_idle_t *result)
{
    int rc = -1;
    s_broker_t broker;
    bench_fleet_t *fleet = NULL;
    if (s_broker_start (&broker, params, result->status, sizeof (result->status)))
        return -1;
    zclock_sleep (300);
    result->base_rss_kb = bench_proc_status_kb (broker.pid, "VmRSS");
    fleet = bench_fleet_new ();
    if (!fleet) {
        snprintf (result->status, sizeof (result->status), "no control socket");
        goto cleanup;
    }
    char prefix [16], text [32];
    snprintf (prefix, sizeof (prefix), "b%04x", (unsigned) randof (0xFFFF));
    int64_t start = bench_now_ns ();
    //  One process at a time: thousands of greetings at once on two cores
    //  measure the connect storm, not the memory of idle clients.
    int first = 0;
    for (int p = 0; p < result->procs; p++) {
        int clients = result->clients / result->procs
                    + (p < result->clients % result->procs? 1: 0);
        char first_text [16], room_size_text [16];
        snprintf (text, sizeof (text), "%d", clients);
        snprintf (first_text, sizeof (first_text), "%d", first);
        snprintf (room_size_text, sizeof (room_size_text), "%d", result->room_size);
        first += clients;
        char *args [] = { "--server", broker.router, "--nick-prefix", prefix,
                          "--clients", text, "--first", first_text,
                          "--room-size", room_size_text, NULL };
        int index = bench_fleet_spawn (fleet, "zidle", args);
        if (index < 0) {
            snprintf (result->status, sizeof (result->status), "cannot start clients");
            goto cleanup;
        }
        if (bench_fleet_wait_ready (fleet, index, index + 1,
                                    (int) (60000 + 50 * (long) clients))) {
            snprintf (result->status, sizeof (result->status), "%s",
                      bench_fleet_error (fleet));
            s_print_log_tail (broker.log);
            goto cleanup;
        }
    }
    result->connect_s = (double) (bench_now_ns () - start) / 1e9;
    //  Let queues settle and heartbeats go round (4 s by default). Each
    //  ping passes through libzmq queues built of 16 KiB blocks, which
    //  fill page by page: the RSS grows until every queue has touched its
    //  two blocks (~14 min at the default session timeout), so a short
    //  hold measures less than a long-lived broker holds.
    zclock_sleep (result->hold_s * 1000);
    result->rss_kb = bench_proc_status_kb (broker.pid, "VmRSS");
    result->hwm_kb = bench_proc_status_kb (broker.pid, "VmHWM");
    result->broker_fds = bench_proc_fds (broker.pid);
    if (result->clients > 0 && result->rss_kb > 0 && result->base_rss_kb > 0)
        result->per_client_kb = (double) (result->rss_kb - result->base_rss_kb)
                              / result->clients;
    snprintf (result->status, sizeof (result->status), "ok");
    rc = 0;

cleanup:
    bench_fleet_destroy (&fleet);
    s_broker_stop (&broker);
    (void) params;
    return rc;
}
