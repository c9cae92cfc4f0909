//  bench_floor — the raw libzmq floor of an idle client's memory: a
//  minimal server in the broker's shape (a ROUTER that answers every
//  request, a PUB beside it) holding the same number of connections as
//  the idle-client run, each having carried a request and its reply
//  (and, for clients in rooms, a SUB connection that has received its
//  room's publications: its own, then one per member joining after it).
//  No sessions, nicknames or rooms: what is left is what libzmq itself
//  keeps for these connections, the least a ROUTER and PUB broker of
//  this shape can hold on this libzmq. zchat's figure is read beside
//  it, as throughput is read beside the ceiling. The clients' pings and
//  the server's replies are counted: a floor that dropped one is no
//  floor.
//
//  Roles (one process each): fserver, fidle.

#include "bench.h"
#include "zchat_broker.h"
#include "zchat_client_int.h"

#include <errno.h>
#include <inttypes.h>

//  The request each client sends, about the size of a HELLO; its reply is
//  the same bytes. Requests starting with 'r' are also published, on the
//  topic they start with, for clients that follow a "room".
#define FLOOR_REQUEST_SIZE  64
#define FLOOR_REPLY_WAIT_MS 10000
#define FLOOR_TOPIC_SIZE    16
//  How long a worker told STOP may take to say DONE: a client may be
//  waiting out one unanswered round trip.
#define FLOOR_DONE_WAIT_MS  (FLOOR_REPLY_WAIT_MS + 5000)
//  Clients per fidle process: two sockets each within an int
#define FLOOR_MAX_CLIENTS   100000

//  True if the part just received has more after it.
static bool
s_more (void *socket)
{
    int more = 0;
    size_t size = sizeof (more);
    return zmq_getsockopt (socket, ZMQ_RCVMORE, &more, &size) == 0 && more;
}

//  --------------------------------------------------------------------------
//  The server: answers each request with its own bytes, publishes the
//  room requests, until STOP.

static int
s_fserver (bench_worker_t *worker, int argc, char **argv)
{
    (void) argc;
    (void) argv;
    int rc = -1;
    char *router_ep = NULL, *pub_ep = NULL;
    void *ctx = zmq_ctx_new ();
    //  The broker's context: two I/O threads, one per socket, and
    //  receiving by copy. The broker goes on when libzmq refuses the
    //  latter (it then only costs memory), and so does the floor, which
    //  keeps the two alike.
    if (ctx && zmq_ctx_set (ctx, ZMQ_IO_THREADS, 2) != 0) {
        zmq_ctx_term (ctx);
        ctx = NULL;
    }
    if (ctx && zmq_ctx_set (ctx, ZCHAT_BROKER_ZERO_COPY_RECV, 0) != 0)
        zsys_debug ("floor: libzmq refused ZMQ_ZERO_COPY_RECV: %s",
                    zmq_strerror (zmq_errno ()));
    void *router = ctx? zmq_socket (ctx, ZMQ_ROUTER): NULL;
    void *pub = ctx? zmq_socket (ctx, ZMQ_PUB): NULL;
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    if (!router || !pub || !empty) {
        bench_worker_fail (worker, "cannot create sockets");
        goto cleanup;
    }
    bench_raise_nofile ();
    uint64_t router_thread = 1, pub_thread = 2;
    if (zmq_setsockopt (router, ZMQ_AFFINITY, &router_thread, sizeof (router_thread))
    ||  zmq_setsockopt (pub, ZMQ_AFFINITY, &pub_thread, sizeof (pub_thread))
    ||  bench_set_int (router, ZMQ_BACKLOG, 4096)
    ||  bench_set_int (pub, ZMQ_BACKLOG, 4096)
    ||  bench_set_int (router, ZMQ_LINGER, 0)
    ||  bench_set_int (pub, ZMQ_LINGER, 0)
    ||  zmq_bind (router, "tcp://127.0.0.1:*")
    ||  zmq_bind (pub, "tcp://127.0.0.1:*")) {
        bench_worker_fail (worker, zmq_strerror (errno));
        goto cleanup;
    }
    router_ep = bench_last_endpoint (router);
    pub_ep = bench_last_endpoint (pub);
    if (!router_ep || !pub_ep) {
        bench_worker_fail (worker, "no endpoints");
        goto cleanup;
    }
    char *info = zsys_sprintf ("%s %s", router_ep, pub_ep);
    bench_worker_ready (worker, info);
    zstr_free (&info);

    zmq_pollitem_t items [] = {
        { zsock_resolve (bench_worker_sock (worker)), 0, ZMQ_POLLIN, 0 },
        { router, 0, ZMQ_POLLIN, 0 }
    };
    while (!zsys_interrupted) {
        if (zmq_poll (items, 2, 100) < 0) {
            if (errno == EINTR)
                continue;
            bench_worker_fail (worker, zmq_strerror (errno));
            goto cleanup;
        }
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (bench_worker_sock (worker));
            bool stop = command && streq (command, "STOP");
            zstr_free (&command);
            if (stop)
                break;
        }
        if (!(items [1].revents & ZMQ_POLLIN))
            continue;
        while (true) {
            //  [routing id] [request]: anything else is not ours, dropped
            char id [256], request [FLOOR_REQUEST_SIZE];
            int id_size = zmq_recv (router, id, sizeof (id), ZMQ_DONTWAIT);
            if (id_size < 0)
                break;
            int size = s_more (router)?
                       zmq_recv (router, request, sizeof (request), 0): -1;
            while (s_more (router)) {
                char rest [1];
                if (zmq_recv (router, rest, sizeof (rest), 0) < 0)
                    break;
            }
            if (size < 1 || size > (int) sizeof (request)
            ||  id_size > (int) sizeof (id))
                continue;
            //  A reply or publication libzmq will not take is an error
            //  the controller sees in our DONE.
            if (zmq_send (router, id, (size_t) id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
            ||  zmq_send (router, request, (size_t) size, ZMQ_DONTWAIT) < 0
            ||  (request [0] == 'r'
                 && zmq_send (pub, request, (size_t) size, ZMQ_DONTWAIT) < 0))
                stats.errors++;
            else
                stats.forwarded++;
        }
    }
    bench_worker_done (worker, &stats, empty, empty);
    rc = 0;

cleanup:
    free (router_ep);
    free (pub_ep);
    free (empty);
    if (router)
        zmq_close (router);
    if (pub)
        zmq_close (pub);
    if (ctx)
        zmq_ctx_term (ctx);
    return rc;
}

//  --------------------------------------------------------------------------
//  Idle clients: each connects a DEALER and makes one round trip; in a
//  room it also connects a SUB and asks until a publication of its room
//  has come (its subscription is then live). Then they keep still, but
//  for a round trip every --ping-ms during the first --ping-for-ms (0:
//  for ever), as zchat's clients ping: from protocol version 6 only for
//  a few heartbeats after their last traffic. Their DEALERs keep ZMTP
//  heartbeats as libzchat's do (libzmq answers those itself, outside
//  any queue).

//  One round trip on a DEALER; for a client in a room, ask again until
//  the room's publication arrives on its SUB. Returns 0 or -1.
static int
s_round_trip (void *dealer, void *sub, const char *topic)
{
    char request [FLOOR_REQUEST_SIZE], reply [FLOOR_REQUEST_SIZE];
    memset (request, '.', sizeof (request));
    if (topic)
        memcpy (request, topic, strlen (topic));
    else
        request [0] = 'p';
    int64_t deadline = bench_now_ns () + FLOOR_REPLY_WAIT_MS * 1000000LL;
    while (bench_now_ns () < deadline) {
        if (zmq_send (dealer, request, sizeof (request), 0) < 0
        ||  zmq_recv (dealer, reply, sizeof (reply), 0) < 0)
            return -1;
        if (!sub)
            return 0;
        zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, 20);
        if (rc < 0 && zmq_errno () != EINTR)
            return -1;
        if (rc == 1)
            return zmq_recv (sub, reply, sizeof (reply), 0) < 0? -1: 0;
    }
    return -1;
}

static int
s_fidle (bench_worker_t *worker, int argc, char **argv)
{
    const char *router_ep = bench_arg (argc, argv, "--router", NULL);
    const char *pub_ep = bench_arg (argc, argv, "--pub", NULL);
    int clients = (int) bench_arg_long (argc, argv, "--clients", 1);
    int first = (int) bench_arg_long (argc, argv, "--first", 0);
    int room_size = (int) bench_arg_long (argc, argv, "--room-size", 0);
    long ping_ms = bench_arg_long (argc, argv, "--ping-ms", 0);
    long ping_for_ms = bench_arg_long (argc, argv, "--ping-for-ms", 0);
    int rc = -1;
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    if (!router_ep || !pub_ep || clients < 1 || clients > FLOOR_MAX_CLIENTS
    ||  room_size < 0 || ping_ms < 0 || ping_for_ms < 0) {
        bench_worker_fail (worker, "bad arguments");
        return -1;
    }
    bench_raise_nofile ();
    void *ctx = zmq_ctx_new ();
    if (ctx && zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, 2 * clients + 64) != 0) {
        zmq_ctx_term (ctx);
        ctx = NULL;
    }
    void **dealer = (void **) calloc ((size_t) clients, sizeof (void *));
    void **sub = (void **) calloc ((size_t) clients, sizeof (void *));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    if (!ctx || !dealer || !sub || !empty) {
        bench_worker_fail (worker, "cannot make a context for the clients");
        goto cleanup;
    }
    for (int i = 0; i < clients && !zsys_interrupted; i++) {
        char topic [FLOOR_TOPIC_SIZE];
        snprintf (topic, sizeof (topic), "r%d:", room_size > 0? (first + i) / room_size: 0);
        dealer [i] = zmq_socket (ctx, ZMQ_DEALER);
        if (room_size > 0)
            sub [i] = zmq_socket (ctx, ZMQ_SUB);
        if (!dealer [i] || (room_size > 0 && !sub [i])) {
            bench_worker_fail (worker, "cannot create sockets");
            goto cleanup;
        }
        //  The receive timeout bounds every round trip: without it a lost
        //  reply would hang the worker
        if (bench_set_int (dealer [i], ZMQ_LINGER, 0)
        ||  bench_set_int (dealer [i], ZMQ_RCVTIMEO, FLOOR_REPLY_WAIT_MS)
        ||  bench_set_int (dealer [i], ZMQ_HEARTBEAT_IVL, ZCHAT_CLIENT_ZMTP_HEARTBEAT_IVL)
        ||  bench_set_int (dealer [i], ZMQ_HEARTBEAT_TIMEOUT,
                           ZCHAT_CLIENT_ZMTP_HEARTBEAT_TIMEOUT)
        ||  zmq_connect (dealer [i], router_ep)
        ||  (sub [i] && (bench_set_int (sub [i], ZMQ_LINGER, 0)
                      || zmq_setsockopt (sub [i], ZMQ_SUBSCRIBE, topic, strlen (topic))
                      || zmq_connect (sub [i], pub_ep)))) {
            bench_worker_fail (worker, zmq_strerror (errno));
            goto cleanup;
        }
        if (s_round_trip (dealer [i], sub [i], sub [i]? topic: NULL)) {
            bench_worker_fail (worker, "no reply from the floor server");
            goto cleanup;
        }
    }
    stats.clients = (uint64_t) clients;
    bench_worker_ready (worker, "");
    int64_t next_ping = bench_now_ns () + ping_ms * 1000000LL;
    int64_t ping_until = ping_for_ms? bench_now_ns () + ping_for_ms * 1000000LL: INT64_MAX;
    while (!zsys_interrupted) {
        char *command = bench_worker_command (worker, 50);
        bool stop = command && streq (command, "STOP");
        zstr_free (&command);
        if (stop)
            break;
        //  A round ends at the first ping unanswered: the server is then
        //  in trouble, and STOP must not wait for every client's timeout.
        if (ping_ms > 0 && bench_now_ns () >= next_ping && next_ping < ping_until) {
            for (int i = 0; i < clients; i++) {
                stats.sent++;
                if (s_round_trip (dealer [i], NULL, NULL)) {
                    stats.errors++;
                    break;
                }
                stats.acked++;
            }
            next_ping = bench_now_ns () + ping_ms * 1000000LL;
        }
    }
    bench_worker_done (worker, &stats, empty, empty);
    rc = 0;

cleanup:
    for (int i = 0; i < clients && dealer && sub; i++) {
        if (dealer [i])
            zmq_close (dealer [i]);
        if (sub [i])
            zmq_close (sub [i]);
    }
    free (dealer);
    free (sub);
    free (empty);
    if (ctx)
        zmq_ctx_term (ctx);
    return rc;
}

static const bench_role_t s_roles [] = {
    { "fserver", s_fserver }, { "fidle", s_fidle }
};

bool
bench_floor_owns (const char *role)
{
    for (size_t i = 0; i < sizeof (s_roles) / sizeof (s_roles [0]); i++)
        if (streq (s_roles [i].name, role))
            return true;
    return false;
}

int
bench_floor_role (const char *role, int argc, char **argv)
{
    return bench_worker_run (role, s_roles, sizeof (s_roles) / sizeof (s_roles [0]),
                             argc, argv);
}

//  --------------------------------------------------------------------------
//  Controller: the floor for the shape of an idle-client run.

//  The heartbeat zchat's clients keep with our broker: a third of its
//  session timeout, which --session-timeout S in broker_args sets.
static long
s_ping_ms (const char *broker_args)
{
    double timeout_s = ZCHAT_BROKER_TIMEOUT_MS / 1000.0;
    const char *option = broker_args? strstr (broker_args, "--session-timeout"): NULL;
    if (option) {
        option += strlen ("--session-timeout");
        while (*option == ' ' || *option == '=')
            option++;
        char *end = NULL;
        double value = strtod (option, &end);
        if (end != option && value > 0)
            timeout_s = value;
    }
    return (long) (timeout_s * 1000 / 3);
}

//  Tell workers [from, to) to stop and sum their DONE counters into
//  stats. Returns 0, or -1 with the reason in status.
static int
s_stop_collect (bench_fleet_t *fleet, int from, int to, bench_stats_t *stats,
                char *status, size_t status_size)
{
    memset (stats, 0, sizeof (*stats));
    for (int i = from; i < to; i++)
        if (bench_fleet_tell (fleet, i, "STOP")) {
            snprintf (status, status_size, "floor worker %d is gone", i);
            return -1;
        }
    for (int done = from; done < to; done++) {
        bench_stats_t one;
        int index = bench_fleet_next_done (fleet, FLOOR_DONE_WAIT_MS, &one, NULL, NULL);
        if (index == -1)
            snprintf (status, status_size, "a floor worker said no DONE in %d ms",
                      FLOOR_DONE_WAIT_MS);
        else
        if (index < 0)
            snprintf (status, status_size, "floor: %s", bench_fleet_error (fleet));
        if (index < 0)
            return -1;
        bench_stats_merge (stats, &one);
    }
    return 0;
}

int
bench_floor_run (const bench_params_t *params, bench_idle_t *result)
{
    int rc = -1;
    char *router_ep = NULL, *pub_ep = NULL;
    bench_fleet_t *fleet = bench_fleet_new ();
    if (!fleet) {
        snprintf (result->floor_status, sizeof (result->floor_status),
                  "cannot open control socket");
        return -1;
    }
    int server = bench_fleet_spawn (fleet, "fserver", (char *[]) { NULL });
    if (server < 0 || bench_fleet_wait_ready (fleet, server, server + 1, 10000)) {
        snprintf (result->floor_status, sizeof (result->floor_status),
                  "floor server: %s", bench_fleet_error (fleet));
        goto cleanup;
    }
    router_ep = strdup (bench_fleet_info (fleet, server));
    pub_ep = router_ep? strchr (router_ep, ' '): NULL;
    if (!pub_ep) {
        snprintf (result->floor_status, sizeof (result->floor_status),
                  "floor server gave no endpoints");
        goto cleanup;
    }
    *pub_ep++ = 0;
    pid_t server_pid = bench_fleet_pid (fleet, server);
    zclock_sleep (300);
    result->floor_base_rss_kb = bench_proc_status_kb (server_pid, "VmRSS");

    //  Our broker speaks version 6 to zchat's clients, which then ping for
    //  ZCHAT_CLIENT_ACTIVE_HEARTBEATS after their last traffic and no more
    char ping_text [24], ping_for_text [24], room_text [16];
    long ping_ms = s_ping_ms (params->broker_args);
    snprintf (ping_text, sizeof (ping_text), "%ld", ping_ms);
    snprintf (ping_for_text, sizeof (ping_for_text), "%ld",
              ping_ms * ZCHAT_CLIENT_ACTIVE_HEARTBEATS);
    snprintf (room_text, sizeof (room_text), "%d", result->room_size);
    int first = 0;
    for (int p = 0; p < result->procs; p++) {
        int clients = result->clients / result->procs
                    + (p < result->clients % result->procs? 1: 0);
        char clients_text [16], first_text [16];
        snprintf (clients_text, sizeof (clients_text), "%d", clients);
        snprintf (first_text, sizeof (first_text), "%d", first);
        first += clients;
        char *args [] = { "--router", router_ep, "--pub", pub_ep,
                          "--clients", clients_text, "--first", first_text,
                          "--room-size", room_text, "--ping-ms", ping_text,
                          "--ping-for-ms", ping_for_text, NULL };
        int index = bench_fleet_spawn (fleet, "fidle", args);
        if (index < 0 || bench_fleet_wait_ready (fleet, index, index + 1,
                                                 (int) (60000 + 50 * (long) clients))) {
            snprintf (result->floor_status, sizeof (result->floor_status),
                      "floor clients: %s", bench_fleet_error (fleet));
            goto cleanup;
        }
    }
    //  The same idle time as zchat's clients had, pings included
    zclock_sleep (result->hold_s * 1000);
    result->floor_rss_kb = bench_proc_status_kb (server_pid, "VmRSS");
    result->floor_fds = bench_proc_fds (server_pid);
    if (result->floor_rss_kb > 0 && result->floor_base_rss_kb > 0)
        result->floor_per_client_kb = (double) (result->floor_rss_kb
                                              - result->floor_base_rss_kb)
                                    / result->clients;
    //  The figure counts only if the floor held every connection and
    //  answered every ping while it was measured: the clients first,
    //  while the server still answers, then the server.
    bench_stats_t clients, served;
    if (s_stop_collect (fleet, server + 1, bench_fleet_size (fleet), &clients,
                        result->floor_status, sizeof (result->floor_status))
    ||  s_stop_collect (fleet, server, server + 1, &served,
                        result->floor_status, sizeof (result->floor_status)))
        goto cleanup;
    result->floor_pings = clients.sent;
    result->floor_unanswered = clients.errors;
    if (clients.errors || served.errors)
        snprintf (result->floor_status, sizeof (result->floor_status),
                  "%" PRIu64 " of %" PRIu64 " pings unanswered, %" PRIu64
                  " replies not sent", clients.errors, clients.sent, served.errors);
    else {
        snprintf (result->floor_status, sizeof (result->floor_status), "ok");
        rc = 0;
    }

cleanup:
    bench_fleet_destroy (&fleet);
    free (router_ep);
    return rc;
}
