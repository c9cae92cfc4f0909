//  bench_ceiling — the raw libzmq ceiling: a minimal forwarder in the
//  broker's shape (senders' DEALER -> ROUTER -> PUB -> subscribers' SUB),
//  written the fast way (zmq_msg_t reused, wake on the poller, then drain
//  the ROUTER with non-blocking receives in a bounded batch). No protocol
//  beyond the bench payload, so it shows what the machine and libzmq can
//  do for this shape; zchat's figures are read as a ratio of it.
//
//  Roles (one process each): forwarder, csender, csub.

#include "bench.h"

#include <errno.h>

#define CEIL_TOPIC      "bench:"
#define CEIL_BATCH      1024        //  messages drained per wake-up
#define PROBE_EVERY_NS  (10 * 1000000LL)

//  --------------------------------------------------------------------------
//  The forwarder. Publishes probes until GO so subscribers can tell when
//  their subscription is live (the slow-joiner problem), then forwards.

static int
s_forwarder (bench_worker_t *worker, int argc, char **argv)
{
    int hwm = (int) bench_arg_long (argc, argv, "--hwm", 0);
    bool blocking = bench_arg_long (argc, argv, "--blocking", 0) != 0;
    int rc = -1;
    char *router_ep = NULL, *pub_ep = NULL;
    void *ctx = zmq_ctx_new ();
    void *router = ctx? zmq_socket (ctx, ZMQ_ROUTER): NULL;
    void *pub = ctx? zmq_socket (ctx, ZMQ_PUB): NULL;
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    if (!router || !pub || !empty) {
        bench_worker_fail (worker, "cannot create sockets");
        goto cleanup;
    }
    bench_set_int (pub, ZMQ_SNDHWM, hwm);
    //  As the broker does: a thousand SUBs connecting at once overflow
    //  libzmq's default backlog of 100, and the overflow waits out TCP
    //  retransmits that back off past the 60 s a subscriber is given
    bench_set_int (router, ZMQ_BACKLOG, 4096);
    bench_set_int (pub, ZMQ_BACKLOG, 4096);
    bench_set_int (router, ZMQ_LINGER, 0);
    bench_set_int (pub, ZMQ_LINGER, 0);
    bench_set_int (router, ZMQ_RCVTIMEO, 50);
    if (zmq_bind (router, "tcp://127.0.0.1:*")
    ||  zmq_bind (pub, "tcp://127.0.0.1:*")) {
        bench_worker_fail (worker, zmq_strerror (errno));
        goto cleanup;
    }
    router_ep = bench_last_endpoint (router);
    pub_ep = bench_last_endpoint (pub);
    char *info = zsys_sprintf ("%s %s", router_ep, pub_ep);
    bench_worker_ready (worker, info);
    zstr_free (&info);

    zmq_msg_t part;
    zmq_msg_init (&part);
    bool probing = true;
    int64_t next_probe = 0;
    zmq_pollitem_t items [] = {
        { zsock_resolve (bench_worker_sock (worker)), 0, ZMQ_POLLIN, 0 },
        { router, 0, ZMQ_POLLIN, 0 }
    };
    while (!zsys_interrupted) {
        if (probing && bench_now_ns () >= next_probe) {
            zmq_send (pub, CEIL_TOPIC, strlen (CEIL_TOPIC), ZMQ_SNDMORE);
            zmq_send (pub, "P", 1, 0);
            next_probe = bench_now_ns () + PROBE_EVERY_NS;
        }
        if (blocking && !probing) {
            //  Blocking receives, no poll per message: the control socket
            //  is looked at when the ROUTER falls quiet for 50 ms.
            if (zmq_msg_recv (&part, router, 0) < 0) {
                if (errno != EAGAIN && errno != EINTR)
                    break;
                char *command = bench_worker_command (worker, 0);
                bool stop = command && streq (command, "STOP");
                zstr_free (&command);
                if (stop)
                    break;
                continue;
            }
            while (zmq_msg_more (&part))
                if (zmq_msg_recv (&part, router, 0) < 0)
                    break;
            if (zmq_send (pub, CEIL_TOPIC, strlen (CEIL_TOPIC), ZMQ_SNDMORE) < 0
            ||  zmq_msg_send (&part, pub, 0) < 0)
                continue;
            int64_t now = bench_now_ns ();
            if (stats.forwarded++ == 0)
                stats.first_fwd_ns = now;
            stats.last_fwd_ns = now;
            continue;
        }
        if (zmq_poll (items, 2, probing? 10: 100) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (bench_worker_sock (worker));
            bool stop = command && streq (command, "STOP");
            if (command && streq (command, "GO"))
                probing = false;
            zstr_free (&command);
            if (stop)
                break;
        }
        if (!(items [1].revents & ZMQ_POLLIN))
            continue;
        for (int count = 0; count < CEIL_BATCH; count++) {
            //  [routing id] [""] [payload]: forward the last frame.
            if (zmq_msg_recv (&part, router, ZMQ_DONTWAIT) < 0)
                break;
            while (zmq_msg_more (&part))
                if (zmq_msg_recv (&part, router, 0) < 0)
                    break;
            if (zmq_send (pub, CEIL_TOPIC, strlen (CEIL_TOPIC), ZMQ_SNDMORE) < 0
            ||  zmq_msg_send (&part, pub, 0) < 0)
                continue;
            int64_t now = bench_now_ns ();
            if (stats.forwarded++ == 0)
                stats.first_fwd_ns = now;
            stats.last_fwd_ns = now;
        }
    }
    zmq_msg_close (&part);
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

//  Wait for a command from the controller; true if it is GO.
static bool
s_wait_go (bench_worker_t *worker)
{
    while (!zsys_interrupted) {
        char *command = bench_worker_command (worker, 100);
        if (!command)
            continue;
        bool go = streq (command, "GO");
        zstr_free (&command);
        return go;
    }
    return false;
}

static void
s_wait_stop (bench_worker_t *worker)
{
    while (!zsys_interrupted) {
        char *command = bench_worker_command (worker, 100);
        bool stop = command && streq (command, "STOP");
        zstr_free (&command);
        if (stop)
            break;
    }
}

//  --------------------------------------------------------------------------
//  A raw sender: blocking sends on a DEALER (its HWM is the flow control),
//  paced to its share of the rate when there is one.

static int
s_csender (bench_worker_t *worker, int argc, char **argv)
{
    const char *router_ep = bench_arg (argc, argv, "--router", NULL);
    uint32_t me = (uint32_t) bench_arg_long (argc, argv, "--sender", 0);
    uint32_t senders = (uint32_t) bench_arg_long (argc, argv, "--senders", 1);
    long messages = bench_arg_long (argc, argv, "--messages", 0);
    int size = (int) bench_arg_long (argc, argv, "--size", 64);
    double rate = bench_arg_double (argc, argv, "--rate", 0);
    int rc = -1;
    void *ctx = zmq_ctx_new ();
    void *dealer = ctx? zmq_socket (ctx, ZMQ_DEALER): NULL;
    char *buf = (char *) malloc ((size_t) size);
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    if (!router_ep || !dealer || !buf || !empty || size < BENCH_MIN_SIZE) {
        bench_worker_fail (worker, "bad arguments or no socket");
        goto cleanup;
    }
    bench_set_int (dealer, ZMQ_LINGER, 5000);
    if (zmq_connect (dealer, router_ep)) {
        bench_worker_fail (worker, zmq_strerror (errno));
        goto cleanup;
    }
    bench_payload_init (buf, (size_t) size);
    bench_worker_ready (worker, "");
    if (!s_wait_go (worker))
        goto cleanup;

    stats.clients = 1;
    int64_t interval = rate > 0? (int64_t) (1e9 / rate): 0;
    //  Senders start staggered within one interval, like independent users.
    int64_t next = bench_now_ns () + (interval? interval * me / senders: 0);
    for (long i = 0; i < messages && !zsys_interrupted; i++) {
        if (interval) {
            bench_sleep_until_ns (next);
            next += interval;
        }
        int64_t now = bench_now_ns ();
        bench_payload_stamp (buf, me, (uint32_t) i, now);
        if (zmq_send (dealer, "", 0, ZMQ_SNDMORE) < 0
        ||  zmq_send (dealer, buf, (size_t) size, 0) < 0) {
            stats.send_errors++;
            continue;
        }
        if (stats.sent++ == 0)
            stats.first_send_ns = now;
        stats.last_send_ns = now;
    }
    bench_worker_done (worker, &stats, empty, empty);
    s_wait_stop (worker);
    rc = 0;

cleanup:
    free (buf);
    free (empty);
    if (dealer)
        zmq_close (dealer);
    if (ctx)
        zmq_ctx_term (ctx);
    return rc;
}

//  --------------------------------------------------------------------------
//  A raw subscriber process holding one or more SUB sockets.

static int
s_csub (bench_worker_t *worker, int argc, char **argv)
{
    const char *pub_ep = bench_arg (argc, argv, "--pub", NULL);
    int clients = (int) bench_arg_long (argc, argv, "--clients", 1);
    uint32_t senders = (uint32_t) bench_arg_long (argc, argv, "--senders", 1);
    long messages = bench_arg_long (argc, argv, "--messages", 0);
    int hwm = (int) bench_arg_long (argc, argv, "--hwm", 0);
    int rc = -1;
    void *ctx = zmq_ctx_new ();
    void **subs = (void **) calloc ((size_t) clients, sizeof (void *));
    bench_tracker_t **trackers = (bench_tracker_t **) calloc ((size_t) clients,
                                     sizeof (bench_tracker_t *));
    bool *live = (bool *) calloc ((size_t) clients, sizeof (bool));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) clients + 1,
                                sizeof (zmq_pollitem_t));
    bench_hist_t *lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_hist_t *empty = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_stats_t stats;
    memset (&stats, 0, sizeof (stats));
    if (!ctx || !pub_ep || clients < 1 || !subs || !trackers || !live
    ||  !items || !lat || !empty || messages < 1) {
        bench_worker_fail (worker, "bad arguments");
        goto cleanup;
    }
    items [0].socket = zsock_resolve (bench_worker_sock (worker));
    items [0].events = ZMQ_POLLIN;
    for (int i = 0; i < clients; i++) {
        subs [i] = zmq_socket (ctx, ZMQ_SUB);
        if (!subs [i]) {
            bench_worker_fail (worker, "too many sockets");
            goto cleanup;
        }
        bench_set_int (subs [i], ZMQ_RCVHWM, hwm);
        bench_set_int (subs [i], ZMQ_LINGER, 0);
        if (zmq_setsockopt (subs [i], ZMQ_SUBSCRIBE, CEIL_TOPIC, strlen (CEIL_TOPIC))
        ||  zmq_connect (subs [i], pub_ep)) {
            bench_worker_fail (worker, zmq_strerror (errno));
            goto cleanup;
        }
        trackers [i] = bench_tracker_new (senders, (uint32_t) messages);
        items [i + 1].socket = subs [i];
        items [i + 1].events = ZMQ_POLLIN;
    }
    stats.clients = (uint64_t) clients;
    stats.expected = (uint64_t) clients * senders * (uint64_t) messages;

    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    zmq_msg_init (&body);
    int live_count = 0;
    int complete_count = 0;
    bool ready_sent = false, done_sent = false;
    int64_t ready_deadline = bench_now_ns () + 60 * 1000000000LL;
    while (!zsys_interrupted) {
        if (!ready_sent && live_count == clients) {
            bench_worker_ready (worker, "");
            ready_sent = true;
        }
        if (!ready_sent && bench_now_ns () > ready_deadline) {
            bench_worker_fail (worker, "subscriptions not live after 60 s");
            goto cleanup_msgs;
        }
        if (ready_sent && !done_sent && complete_count == clients) {
            bench_worker_done (worker, &stats, lat, empty);
            done_sent = true;
        }
        if (zmq_poll (items, clients + 1, 100) < 0) {
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
        for (int i = 0; i < clients; i++) {
            if (!(items [i + 1].revents & ZMQ_POLLIN))
                continue;
            for (int count = 0; count < CEIL_BATCH; count++) {
                if (zmq_msg_recv (&topic, subs [i], ZMQ_DONTWAIT) < 0)
                    break;
                if (!zmq_msg_more (&topic)
                ||  zmq_msg_recv (&body, subs [i], 0) < 0) {
                    stats.bogus++;
                    continue;
                }
                int64_t now = bench_now_ns ();
                const char *data = (const char *) zmq_msg_data (&body);
                size_t size = zmq_msg_size (&body);
                if (size == 1 && data [0] == 'P') {
                    if (!live [i]) {
                        live [i] = true;
                        live_count++;
                    }
                    continue;
                }
                uint32_t sender, counter;
                int64_t sent_ns;
                if (bench_payload_parse (data, size, &sender, &counter, &sent_ns)) {
                    stats.bogus++;
                    continue;
                }
                stats.received++;
                int mark = bench_tracker_mark (trackers [i], sender, counter);
                if (mark < 0) {
                    stats.bogus++;
                    continue;
                }
                if (mark > 0) {
                    stats.duplicated++;
                    continue;
                }
                stats.unique++;
                if (stats.first_recv_ns == 0)
                    stats.first_recv_ns = now;
                stats.last_recv_ns = now;
                bench_hist_add (lat, (uint64_t) (now > sent_ns? now - sent_ns: 0));
                if (bench_tracker_complete (trackers [i]))
                    complete_count++;
            }
        }
    }
    if (!done_sent) {
        bench_worker_done (worker, &stats, lat, empty);
        s_wait_stop (worker);
    }
    rc = 0;

cleanup_msgs:
    zmq_msg_close (&topic);
    zmq_msg_close (&body);
cleanup:
    for (int i = 0; subs && i < clients; i++) {
        if (subs [i])
            zmq_close (subs [i]);
        if (trackers)
            bench_tracker_destroy (&trackers [i]);
    }
    free (subs);
    free (trackers);
    free (live);
    free (items);
    free (lat);
    free (empty);
    if (ctx)
        zmq_ctx_term (ctx);
    return rc;
}

int
bench_ceiling_role (const char *role, int argc, char **argv)
{
    static const bench_role_t roles [] = {
        { "forwarder", s_forwarder }, { "csender", s_csender }, { "csub", s_csub }
    };
    return bench_worker_run (role, roles, sizeof (roles) / sizeof (roles [0]),
                             argc, argv);
}

//  --------------------------------------------------------------------------
//  Controller: run the ceiling once with the given parameters.

int
bench_ceiling_run (const bench_params_t *params, bench_side_t *side)
{
    int rc = -1;
    char text [8][32];
    bench_stats_t senders, receivers;
    memset (&senders, 0, sizeof (senders));
    memset (&receivers, 0, sizeof (receivers));
    char *router_ep = NULL, *pub_ep = NULL;
    bench_fleet_t *fleet = bench_fleet_new ();
    if (!fleet) {
        snprintf (side->status, sizeof (side->status), "cannot open control socket");
        return -1;
    }
    snprintf (text [0], sizeof (text [0]), "%d", params->hwm);
    char *fwd_args [] = { "--hwm", text [0], "--blocking",
                          getenv ("ZCHAT_CEILING_BLOCKING")? "1": "0", NULL };
    int forwarder = bench_fleet_spawn (fleet, "forwarder", fwd_args);
    if (forwarder < 0 || bench_fleet_wait_ready (fleet, forwarder, forwarder + 1, 10000)) {
        snprintf (side->status, sizeof (side->status), "forwarder: %s",
                  bench_fleet_error (fleet));
        goto cleanup;
    }
    router_ep = strdup (bench_fleet_info (fleet, forwarder));
    pub_ep = strchr (router_ep, ' ');
    if (!pub_ep) {
        snprintf (side->status, sizeof (side->status), "forwarder gave no endpoints");
        goto cleanup;
    }
    *pub_ep++ = 0;

    //  Subscribers first, all live before any sender starts.
    int procs = bench_auto_procs (params->subscribers, params->sub_procs);
    int r_from = bench_fleet_size (fleet);
    snprintf (text [1], sizeof (text [1]), "%d", params->senders);
    snprintf (text [2], sizeof (text [2]), "%ld", params->messages);
    for (int p = 0; p < procs; p++) {
        int clients = params->subscribers / procs
                    + (p < params->subscribers % procs? 1: 0);
        snprintf (text [3], sizeof (text [3]), "%d", clients);
        char *args [] = { "--pub", pub_ep, "--clients", text [3],
                          "--senders", text [1], "--messages", text [2],
                          "--hwm", text [0], NULL };
        if (bench_fleet_spawn (fleet, "csub", args) < 0) {
            snprintf (side->status, sizeof (side->status), "cannot start subscribers");
            goto cleanup;
        }
    }
    int r_to = bench_fleet_size (fleet);
    if (bench_fleet_wait_ready (fleet, r_from, r_to, 60000)) {
        snprintf (side->status, sizeof (side->status), "subscribers: %s",
                  bench_fleet_error (fleet));
        goto cleanup;
    }
    int s_from = bench_fleet_size (fleet);
    snprintf (text [4], sizeof (text [4]), "%d", params->size);
    snprintf (text [5], sizeof (text [5]), "%.3f",
              params->rate > 0? params->rate / params->senders: 0.0);
    for (int s = 0; s < params->senders; s++) {
        snprintf (text [6], sizeof (text [6]), "%d", s);
        char *args [] = { "--router", router_ep, "--sender", text [6],
                          "--senders", text [1], "--messages", text [2],
                          "--size", text [4], "--rate", text [5], NULL };
        if (bench_fleet_spawn (fleet, "csender", args) < 0) {
            snprintf (side->status, sizeof (side->status), "cannot start senders");
            goto cleanup;
        }
    }
    int s_to = bench_fleet_size (fleet);
    if (bench_fleet_wait_ready (fleet, s_from, s_to, 30000)) {
        snprintf (side->status, sizeof (side->status), "senders: %s",
                  bench_fleet_error (fleet));
        goto cleanup;
    }
    pid_t fwd_pid = bench_fleet_pid (fleet, forwarder);
    double cpu_start = bench_proc_cpu_s (fwd_pid);
    int64_t go_ns = bench_now_ns ();
    bench_fleet_tell (fleet, forwarder, "GO");
    for (int s = s_from; s < s_to; s++)
        bench_fleet_tell (fleet, s, "GO");

    int64_t end_ns = 0;
    int collected = bench_fleet_collect (fleet, s_from, s_to, r_from, r_to,
                                         go_ns, params->timeout_s, 2000,
                                         &senders, &receivers, side->lat,
                                         NULL, &end_ns);
    double cpu_end = bench_proc_cpu_s (fwd_pid);
    side->server_hwm_kb = bench_proc_status_kb (fwd_pid, "VmHWM");
    side->server_rss_kb = bench_proc_status_kb (fwd_pid, "VmRSS");
    if (collected < 0) {
        snprintf (side->status, sizeof (side->status), "%s", bench_fleet_error (fleet));
        goto cleanup;
    }
    //  The forwarder's own count: what the ceiling "accepted".
    bench_stats_t forwarded;
    memset (&forwarded, 0, sizeof (forwarded));
    bench_fleet_tell (fleet, forwarder, "STOP");
    while (bench_fleet_next_done (fleet, 5000, &forwarded, NULL, NULL) >= 0
    &&     !bench_fleet_is_done (fleet, forwarder))
        ;
    senders.last_fwd_ns = forwarded.last_fwd_ns;
    side->messages = (uint64_t) params->senders * (uint64_t) params->messages;
    side->accepted = forwarded.forwarded;
    bench_side_finish (side, &senders, &receivers);
    if (cpu_start >= 0 && cpu_end >= cpu_start) {
        side->server_cpu_s = cpu_end - cpu_start;
        double wall = (double) (end_ns - go_ns) / 1e9;
        side->server_cpu_pct = wall > 0? 100.0 * side->server_cpu_s / wall: 0;
    }
    side->ran = true;
    if (collected == 1)
        snprintf (side->status, sizeof (side->status),
                  "cut short: not every subscriber got every message in time");
    else
        snprintf (side->status, sizeof (side->status), "ok");
    rc = 0;

cleanup:
    bench_fleet_destroy (&fleet);
    free (router_ep);
    return rc;
}
