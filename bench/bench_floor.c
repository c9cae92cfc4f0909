//  bench_floor — the raw libzmq floor of an idle client's memory: a
//  minimal server in the broker's shape (a ROUTER that answers every
//  request, a PUB beside it) holding the same number of connections as
//  the idle-client run, each having carried a request and its reply (and,
//  for clients in rooms, a SUB connection that has received a
//  publication). No sessions, nicknames or rooms: what is left is what
//  libzmq itself keeps per connection, the least any broker on this
//  libzmq can hold. zchat's figure is read beside it, as throughput is
//  read beside the ceiling.
//
//  Roles (one process each): fserver, fidle.

#include "bench.h"
#include "zchat_broker.h"

#include <errno.h>

//  The request each client sends, about the size of a HELLO; its reply is
//  the same bytes. Requests starting with 'r' are also published, on the
//  topic they start with, for clients that follow a "room".
#define FLOOR_REQUEST_SIZE  64
#define FLOOR_REPLY_WAIT_MS 10000
#define FLOOR_TOPIC_SIZE    16

//  As the broker does (zchat_broker.c, s_receive_by_copy): receive by
//  copy, which costs each connection less. The number is in zmq.h's
//  draft section; Debian's libzmq 4.3.4 takes it.
#ifndef ZMQ_ZERO_COPY_RECV
#   define ZMQ_ZERO_COPY_RECV 10
#endif

static int
s_set_int (void *socket, int option, int value)
{
    return zmq_setsockopt (socket, option, &value, sizeof (value));
}

static char *
s_last_endpoint (void *socket)
{
    char endpoint [256];
    size_t size = sizeof (endpoint);
    if (zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &size))
        return NULL;
    return strdup (endpoint);
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
    //  receiving by copy.
    if (ctx) {
        zmq_ctx_set (ctx, ZMQ_IO_THREADS, 2);
        zmq_ctx_set (ctx, ZMQ_ZERO_COPY_RECV, 0);
    }
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
    zmq_setsockopt (router, ZMQ_AFFINITY, &router_thread, sizeof (router_thread));
    zmq_setsockopt (pub, ZMQ_AFFINITY, &pub_thread, sizeof (pub_thread));
    s_set_int (router, ZMQ_BACKLOG, 4096);
    s_set_int (pub, ZMQ_BACKLOG, 4096);
    s_set_int (router, ZMQ_LINGER, 0);
    s_set_int (pub, ZMQ_LINGER, 0);
    if (zmq_bind (router, "tcp://127.0.0.1:*")
    ||  zmq_bind (pub, "tcp://127.0.0.1:*")) {
        bench_worker_fail (worker, zmq_strerror (errno));
        goto cleanup;
    }
    router_ep = s_last_endpoint (router);
    pub_ep = s_last_endpoint (pub);
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
            break;
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
            int more = 0;
            size_t more_size = sizeof (more);
            zmq_getsockopt (router, ZMQ_RCVMORE, &more, &more_size);
            if (!more)
                continue;
            int size = zmq_recv (router, request, sizeof (request), 0);
            more_size = sizeof (more);
            zmq_getsockopt (router, ZMQ_RCVMORE, &more, &more_size);
            while (more) {
                char rest [1];
                zmq_recv (router, rest, sizeof (rest), 0);
                more_size = sizeof (more);
                zmq_getsockopt (router, ZMQ_RCVMORE, &more, &more_size);
            }
            if (size < 1 || size > (int) sizeof (request)
            ||  id_size > (int) sizeof (id))
                continue;
            zmq_send (router, id, (size_t) id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send (router, request, (size_t) size, ZMQ_DONTWAIT);
            if (request [0] == 'r')
                zmq_send (pub, request, (size_t) size, ZMQ_DONTWAIT);
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
//  for a round trip every --ping-ms, as zchat's clients ping.

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
        if (zmq_poll (&item, 1, 20) == 1) {
            zmq_recv (sub, reply, sizeof (reply), 0);
            return 0;
        }
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
    int rc = -1;
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    bench_raise_nofile ();
    void *ctx = zmq_ctx_new ();
    if (ctx)
        zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, 2 * clients + 64);
    void **dealer = (void **) calloc ((size_t) clients, sizeof (void *));
    void **sub = (void **) calloc ((size_t) clients, sizeof (void *));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    if (!ctx || !router_ep || !pub_ep || clients < 1 || !dealer || !sub || !empty) {
        bench_worker_fail (worker, "bad arguments");
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
        s_set_int (dealer [i], ZMQ_LINGER, 0);
        s_set_int (dealer [i], ZMQ_RCVTIMEO, FLOOR_REPLY_WAIT_MS);
        if (zmq_connect (dealer [i], router_ep)
        ||  (sub [i] && (s_set_int (sub [i], ZMQ_LINGER, 0)
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
    while (!zsys_interrupted) {
        char *command = bench_worker_command (worker, 50);
        bool stop = command && streq (command, "STOP");
        zstr_free (&command);
        if (stop)
            break;
        if (ping_ms > 0 && bench_now_ns () >= next_ping) {
            for (int i = 0; i < clients; i++)
                if (s_round_trip (dealer [i], NULL, NULL))
                    stats.errors++;
            next_ping += ping_ms * 1000000LL;
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

    char ping_text [24], room_text [16];
    snprintf (ping_text, sizeof (ping_text), "%ld", s_ping_ms (params->broker_args));
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
                          "--room-size", room_text, "--ping-ms", ping_text, NULL };
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
    snprintf (result->floor_status, sizeof (result->floor_status), "ok");
    rc = 0;

cleanup:
    bench_fleet_destroy (&fleet);
    free (router_ep);
    return rc;
}
