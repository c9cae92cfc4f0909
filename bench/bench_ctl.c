//  bench_ctl — the control channel between a bench controller and its
//  worker processes (READY, GO, STOP, DONE with counters and histograms).
//
//  Worker to controller: [command] [index] [payload...]
//      READY  [info text]
//      FAIL   [reason]
//      DONE   [bench_stats_t] [latency bench_hist_t] [ack bench_hist_t]
//  Controller to worker: [command] ("GO", "STOP").
//  Both ends are the same binary on the same host, so structs travel as
//  raw bytes; sizes are still checked before copying.

#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/wait.h>

typedef struct {
    pid_t    pid;
    zframe_t *routing_id;       //  known once it spoke
    bool     ready;
    bool     done;
    bool     exited;
    uint64_t progress;          //  messages received, as last reported
    int64_t  reported_ns;       //  last PROGRESS, whether it grew or not
    double   cpu_s;             //  CPU at the last look in the grace
    bool     cpu_looked;
    int      status;            //  as waitpid gave it, once exited
    int64_t  exited_ns;
    char     *info;
} s_worker_t;

//  A worker that exits (not killed) has said what it had to (READY, DONE,
//  or FAIL and why) first, but its last message may still be on its way
//  through our ROUTER when waitpid already tells the exit: it is given
//  this long to arrive before the worker counts as dead. (A loaded machine made a
//  worker that said DONE and exited on STOP look dead: "died: exit 0".)
#define WORKER_LAST_WORD_NS (2000 * 1000000LL)

struct _bench_fleet_t {
    zsock_t  *router;
    char     *endpoint;
    char     *self_path;
    s_worker_t *workers;
    int      size;
    int      capacity;
    int64_t  progress_ns;       //  when a worker last reported more received
    char     error [256];
};

//  --------------------------------------------------------------------------
//  Create a fleet: a ROUTER on a free loopback port.

bench_fleet_t *
bench_fleet_new (void)
{
    bench_fleet_t *self = (bench_fleet_t *) zmalloc (sizeof (*self));
    assert (self);
    self->router = zsock_new (ZMQ_ROUTER);
    self->self_path = bench_self_path ();
    if (!self->router || !self->self_path)
        goto failed;
    zsock_set_rcvhwm (self->router, 0);
    zsock_set_sndhwm (self->router, 0);
    int port = zsock_bind (self->router, "tcp://127.0.0.1:*");
    if (port < 0)
        goto failed;
    self->endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    return self;

failed:
    bench_fleet_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Destroy: stops every worker still running.

void
bench_fleet_destroy (bench_fleet_t **self_p)
{
    assert (self_p);
    bench_fleet_t *self = *self_p;
    if (!self)
        return;
    bench_fleet_stop_all (self, 2000);
    for (int i = 0; i < self->size; i++) {
        zframe_destroy (&self->workers [i].routing_id);
        zstr_free (&self->workers [i].info);
    }
    free (self->workers);
    zsock_destroy (&self->router);
    zstr_free (&self->endpoint);
    free (self->self_path);
    free (self);
    *self_p = NULL;
}

const char *
bench_fleet_endpoint (bench_fleet_t *self)
{
    return self->endpoint;
}

int
bench_fleet_size (bench_fleet_t *self)
{
    return self->size;
}

pid_t
bench_fleet_pid (bench_fleet_t *self, int index)
{
    assert (index >= 0 && index < self->size);
    return self->workers [index].pid;
}

const char *
bench_fleet_info (bench_fleet_t *self, int index)
{
    assert (index >= 0 && index < self->size);
    return self->workers [index].info? self->workers [index].info: "";
}

bool
bench_fleet_is_done (bench_fleet_t *self, int index)
{
    assert (index >= 0 && index < self->size);
    return self->workers [index].done;
}

const char *
bench_fleet_error (bench_fleet_t *self)
{
    return self->error;
}

//  --------------------------------------------------------------------------
//  Start a worker process.

int
bench_fleet_spawn (bench_fleet_t *self, const char *role, char *const extra [])
{
    if (self->size == self->capacity) {
        int capacity = self->capacity? self->capacity * 2: 16;
        s_worker_t *workers = (s_worker_t *) realloc (self->workers,
                                  (size_t) capacity * sizeof (s_worker_t));
        if (!workers)
            return -1;
        self->workers = workers;
        self->capacity = capacity;
    }
    int extra_count = 0;
    while (extra && extra [extra_count])
        extra_count++;
    char index_text [16];
    snprintf (index_text, sizeof (index_text), "%d", self->size);
    char **argv = (char **) calloc ((size_t) extra_count + 10, sizeof (char *));
    if (!argv)
        return -1;
    int argc = 0;
    argv [argc++] = self->self_path;
    argv [argc++] = (char *) "--role";
    argv [argc++] = (char *) role;
    argv [argc++] = (char *) "--ctl";
    argv [argc++] = self->endpoint;
    argv [argc++] = (char *) "--index";
    argv [argc++] = index_text;
    for (int i = 0; i < extra_count; i++)
        argv [argc++] = extra [i];
    argv [argc] = NULL;
    pid_t pid = bench_spawn (argv, NULL, true);
    free (argv);
    if (pid < 0)
        return -1;
    s_worker_t *worker = &self->workers [self->size];
    memset (worker, 0, sizeof (*worker));
    worker->pid = pid;
    return self->size++;
}

//  Notice workers that died: a dead worker will never say DONE.
static int
s_check_alive (bench_fleet_t *self)
{
    int64_t now = bench_now_ns ();
    for (int i = 0; i < self->size; i++) {
        s_worker_t *worker = &self->workers [i];
        if (worker->pid <= 0 || worker->done)
            continue;
        if (!worker->exited) {
            if (waitpid (worker->pid, &worker->status, WNOHANG) != worker->pid)
                continue;
            worker->exited = true;
            worker->exited_ns = now;
        }
        int status = worker->status;
        //  Exited, not killed: its last word (DONE, or FAIL with the reason)
        //  may still be on its way
        if (WIFEXITED (status) && now - worker->exited_ns < WORKER_LAST_WORD_NS)
            continue;
        snprintf (self->error, sizeof (self->error),
                  "worker %d (pid %d) died: %s %d", i, (int) worker->pid,
                  WIFSIGNALED (status)? "signal": "exit",
                  WIFSIGNALED (status)? WTERMSIG (status): WEXITSTATUS (status));
        return -1;
    }
    return 0;
}

//  Receive one worker message; returns the worker's index and command, or
//  -1 on timeout. The message is the caller's.
static int
s_recv (bench_fleet_t *self, int timeout_ms, char **command, zmsg_t **msg_p)
{
    zmq_pollitem_t item = { zsock_resolve (self->router), 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc <= 0)
        return -1;
    zmsg_t *msg = zmsg_recv (self->router);
    if (!msg)
        return -1;
    zframe_t *routing_id = zmsg_pop (msg);
    *command = zmsg_popstr (msg);
    char *index_text = zmsg_popstr (msg);
    int index = index_text? atoi (index_text): -1;
    zstr_free (&index_text);
    if (!routing_id || !*command || index < 0 || index >= self->size) {
        zframe_destroy (&routing_id);
        zstr_free (command);
        zmsg_destroy (&msg);
        return -1;
    }
    s_worker_t *worker = &self->workers [index];
    if (!worker->routing_id)
        worker->routing_id = routing_id;
    else
        zframe_destroy (&routing_id);
    *msg_p = msg;
    return index;
}

int
bench_fleet_wait_ready (bench_fleet_t *self, int from, int to, int timeout_ms)
{
    int64_t deadline = bench_now_ns () + (int64_t) timeout_ms * 1000000LL;
    while (true) {
        bool all = true;
        for (int i = from; i < to; i++)
            if (!self->workers [i].ready)
                all = false;
        if (all)
            return 0;
        if (zsys_interrupted) {
            snprintf (self->error, sizeof (self->error), "interrupted");
            return -1;
        }
        if (s_check_alive (self))
            return -1;
        if (bench_now_ns () > deadline) {
            int missing = 0;
            for (int i = from; i < to; i++)
                if (!self->workers [i].ready)
                    missing++;
            snprintf (self->error, sizeof (self->error),
                      "%d of %d workers not ready after %d ms", missing,
                      to - from, timeout_ms);
            return -1;
        }
        char *command = NULL;
        zmsg_t *msg = NULL;
        int index = s_recv (self, 50, &command, &msg);
        if (index < 0)
            continue;
        int rc = 0;
        if (streq (command, "READY")) {
            self->workers [index].ready = true;
            zstr_free (&self->workers [index].info);
            self->workers [index].info = zmsg_popstr (msg);
        }
        else
        if (streq (command, "FAIL")) {
            char *reason = zmsg_popstr (msg);
            snprintf (self->error, sizeof (self->error), "worker %d: %s",
                      index, reason? reason: "failed");
            zstr_free (&reason);
            rc = -1;
        }
        zstr_free (&command);
        zmsg_destroy (&msg);
        if (rc)
            return rc;
    }
}

int
bench_fleet_tell (bench_fleet_t *self, int index, const char *command)
{
    assert (index >= 0 && index < self->size);
    s_worker_t *worker = &self->workers [index];
    if (!worker->routing_id || worker->exited)
        return -1;
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (worker->routing_id) });
    zmsg_addstr (msg, command);
    int rc = zmsg_send (&msg, self->router);
    zmsg_destroy (&msg);
    return rc;
}

//  Copy a frame of exactly size bytes into dest; -1 if it does not fit.
static int
s_copy_frame (zmsg_t *msg, void *dest, size_t size)
{
    zframe_t *frame = zmsg_pop (msg);
    int rc = -1;
    if (frame && zframe_size (frame) == size) {
        if (dest)
            memcpy (dest, zframe_data (frame), size);
        rc = 0;
    }
    zframe_destroy (&frame);
    return rc;
}

int
bench_fleet_next_done (bench_fleet_t *self, int timeout_ms,
                       bench_stats_t *stats, bench_hist_t *lat,
                       bench_hist_t *ack)
{
    int64_t deadline = bench_now_ns () + (int64_t) timeout_ms * 1000000LL;
    while (!zsys_interrupted) {
        char *command = NULL;
        zmsg_t *msg = NULL;
        int64_t left = (deadline - bench_now_ns ()) / 1000000LL;
        if (left < 0)
            return -1;
        int index = s_recv (self, left > 50? 50: (int) left, &command, &msg);
        if (index < 0) {
            if (s_check_alive (self))
                return -2;
            continue;
        }
        int rc = -3;        //  not a DONE: keep waiting
        if (streq (command, "DONE")) {
            if (s_copy_frame (msg, stats, sizeof (bench_stats_t))
            ||  s_copy_frame (msg, lat, sizeof (bench_hist_t))
            ||  s_copy_frame (msg, ack, sizeof (bench_hist_t))) {
                snprintf (self->error, sizeof (self->error),
                          "worker %d sent a malformed DONE", index);
                rc = -2;
            }
            else {
                self->workers [index].done = true;
                rc = index;
            }
        }
        else
        if (streq (command, "PROGRESS")) {
            char *count = zmsg_popstr (msg);
            uint64_t received = count? strtoull (count, NULL, 10): 0;
            self->workers [index].reported_ns = bench_now_ns ();
            if (received > self->workers [index].progress) {
                self->workers [index].progress = received;
                self->progress_ns = self->workers [index].reported_ns;
            }
            zstr_free (&count);
        }
        else
        if (streq (command, "FAIL")) {
            char *reason = zmsg_popstr (msg);
            snprintf (self->error, sizeof (self->error), "worker %d: %s",
                      index, reason? reason: "failed");
            zstr_free (&reason);
            rc = -2;
        }
        zstr_free (&command);
        zmsg_destroy (&msg);
        if (rc != -3)
            return rc;
    }
    return -1;
}

void
bench_fleet_stop_all (bench_fleet_t *self, int grace_ms)
{
    for (int i = 0; i < self->size; i++)
        if (!self->workers [i].exited && self->workers [i].pid > 0)
            bench_fleet_tell (self, i, "STOP");
    //  Give them the grace period together, not one by one.
    int64_t deadline = bench_now_ns () + (int64_t) grace_ms * 1000000LL;
    while (bench_now_ns () < deadline) {
        bool all = true;
        for (int i = 0; i < self->size; i++) {
            s_worker_t *worker = &self->workers [i];
            if (worker->exited || worker->pid <= 0)
                continue;
            int status;
            if (waitpid (worker->pid, &status, WNOHANG) == worker->pid)
                worker->exited = true;
            else
                all = false;
        }
        if (all)
            break;
        usleep (10000);
    }
    for (int i = 0; i < self->size; i++) {
        s_worker_t *worker = &self->workers [i];
        if (!worker->exited && worker->pid > 0) {
            bench_stop_process (worker->pid, 200);
            worker->exited = true;
        }
    }
}

//  --------------------------------------------------------------------------
//  Worker side

struct _bench_worker_t {
    zsock_t *dealer;
    char    index [16];
};

bench_worker_t *
bench_worker_new (const char *endpoint, int index)
{
    if (!endpoint || index < 0)
        return NULL;
    bench_worker_t *self = (bench_worker_t *) zmalloc (sizeof (*self));
    assert (self);
    snprintf (self->index, sizeof (self->index), "%d", index);
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        free (self);
        return NULL;
    }
    //  Our last words (DONE, FAIL) must reach the controller even when we
    //  exit right after.
    zsock_set_linger (self->dealer, 2000);
    zsock_set_sndhwm (self->dealer, 0);
    if (zsock_connect (self->dealer, "%s", endpoint)) {
        bench_worker_destroy (&self);
        return NULL;
    }
    return self;
}

void
bench_worker_destroy (bench_worker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        zsock_destroy (&(*self_p)->dealer);
        free (*self_p);
        *self_p = NULL;
    }
}

int
bench_worker_run (const char *role, const bench_role_t *roles, size_t count,
                  int argc, char **argv)
{
    const char *endpoint = bench_arg (argc, argv, "--ctl", NULL);
    int index = (int) bench_arg_long (argc, argv, "--index", -1);
    bench_worker_t *worker = bench_worker_new (endpoint, index);
    if (!worker)
        return 1;
    int rc = -1;
    size_t which = 0;
    while (which < count && !streq (roles [which].name, role))
        which++;
    if (which < count)
        rc = roles [which].run (worker, argc, argv);
    else
        bench_worker_fail (worker, "unknown role");
    bench_worker_destroy (&worker);
    return rc? 1: 0;
}

zsock_t *
bench_worker_sock (bench_worker_t *self)
{
    return self->dealer;
}

static int
s_worker_say (bench_worker_t *self, const char *command, const char *text)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, command);
    zmsg_addstr (msg, self->index);
    zmsg_addstr (msg, text? text: "");
    int rc = zmsg_send (&msg, self->dealer);
    zmsg_destroy (&msg);
    return rc;
}

int
bench_worker_ready (bench_worker_t *self, const char *info)
{
    return s_worker_say (self, "READY", info);
}

int
bench_worker_fail (bench_worker_t *self, const char *reason)
{
    return s_worker_say (self, "FAIL", reason);
}

int
bench_worker_done (bench_worker_t *self, const bench_stats_t *stats,
                   const bench_hist_t *lat, const bench_hist_t *ack)
{
    //  CPU spent so far, set-up included: the same for both sides.
    bench_stats_t stamped = *stats;
    stamped.cpu_s = bench_self_cpu_s ();
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "DONE");
    zmsg_addstr (msg, self->index);
    zmsg_addmem (msg, &stamped, sizeof (stamped));
    zmsg_addmem (msg, lat, sizeof (*lat));
    zmsg_addmem (msg, ack, sizeof (*ack));
    int rc = zmsg_send (&msg, self->dealer);
    zmsg_destroy (&msg);
    return rc;
}

int
bench_worker_progress (bench_worker_t *self, uint64_t received)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "PROGRESS");
    zmsg_addstr (msg, self->index);
    zmsg_addstrf (msg, "%" PRIu64, received);
    int rc = zmsg_send (&msg, self->dealer);
    zmsg_destroy (&msg);
    return rc;
}

char *
bench_worker_command (bench_worker_t *self, int timeout_ms)
{
    zmq_pollitem_t item = { zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return NULL;
    return zstr_recv (self->dealer);
}

//  --------------------------------------------------------------------------
//  Collect the results of one run.

//  While receivers still short of messages keep a tenth of a CPU busy
//  between two looks, or report that they received more (PROGRESS), they
//  are working through a backlog, not waiting for messages that will
//  never come: the grace goes on (up to the hard deadline). A thousand
//  subscribers on two cores can need far longer than the senders took,
//  and so can subscribers repairing from history at the broker's query
//  budget after its PUB dropped for them (100 subscribers of 80,000
//  512-byte messages: about 25 s, at a few per cent of a CPU); stopping
//  them then called "lost" what was only late.
#define COLLECT_LOOK_NS     (500 * 1000000LL)
#define COLLECT_BUSY_CPU_S  0.05
//  Progress is a step, not a flow: a subscriber repairing at the query
//  budget gets a page, then waits until the budget is out of debt, and
//  one whose PUB dropped the end of the stream learns of that tail only
//  from its next PONG (a heartbeat is a third of the session timeout,
//  3.3 s by default, plus 200 ms of grace). Waiting only a second for
//  more cut such runs short, every time, with thousands "lost" (2 -> 20
//  subscribers of 5,000 4 KiB messages each, --pub-hwm 10).
#define COLLECT_QUIET_NS    (5000 * 1000000LL)

//  CPU the unfinished receivers spent since the last look, each counted
//  against its own last look (so that one joining or leaving the sum does
//  not count its whole life as spent now). A receiver whose loop reported
//  lately (PROGRESS, even unchanged) is judged by its count alone: what CPU
//  it spends without receiving is its idle loop (polls, pings), and two
//  hundred subscriber processes idle that way, stuck short after real
//  loss, took 8 to 28 % of a CPU between them and kept the grace going.
//  One that works through a backlog without getting back to its loop to
//  report is counted by its CPU, as are receivers that never report (the
//  ceiling's).
static double
s_receivers_busy_s (bench_fleet_t *self, int r_from, int r_to, int64_t now)
{
    double total = 0;
    for (int i = r_from; i < r_to; i++) {
        s_worker_t *worker = &self->workers [i];
        if (worker->done)
            continue;
        double cpu = bench_proc_cpu_s (worker->pid);
        if (cpu < 0)
            continue;           //  gone: s_check_alive will tell
        double spent = worker->cpu_looked? cpu - worker->cpu_s: 0;
        worker->cpu_s = cpu;
        worker->cpu_looked = true;
        if (worker->reported_ns <= now - 2 * COLLECT_LOOK_NS)
            total += spent;
    }
    return total;
}

int
bench_fleet_collect (bench_fleet_t *self, int s_from, int s_to,
                     int r_from, int r_to, int64_t go_ns, int timeout_s,
                     int grace_ms, bench_stats_t *senders,
                     bench_stats_t *receivers, bench_hist_t *lat,
                     bench_hist_t *ack, int64_t *end_ns)
{
    bench_stats_t *stats = (bench_stats_t *) zmalloc (sizeof (bench_stats_t));
    bench_hist_t *one_lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_hist_t *one_ack = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    assert (stats && one_lat && one_ack);
    int rc = 0;
    int senders_left = s_to - s_from;
    int receivers_left = r_to - r_from;
    int64_t hard_deadline = go_ns + (int64_t) timeout_s * 1000000000LL;
    int64_t grace_deadline = 0;         //  set once the senders are done
    int64_t stop_deadline = 0;          //  set once STOP went out
    int64_t next_look = 0;              //  at the receivers' CPU, in grace
    *end_ns = 0;

    while (senders_left > 0 || receivers_left > 0) {
        if (zsys_interrupted) {
            snprintf (self->error, sizeof (self->error), "interrupted");
            rc = -1;
            break;
        }
        int64_t now = bench_now_ns ();
        if (grace_deadline && !stop_deadline && now >= next_look) {
            bool busy = s_receivers_busy_s (self, r_from, r_to, now) >= COLLECT_BUSY_CPU_S;
            bool progress = self->progress_ns > now - COLLECT_QUIET_NS;
            if ((busy || progress) && grace_deadline < now + 2 * COLLECT_LOOK_NS)
                grace_deadline = now + 2 * COLLECT_LOOK_NS;
            next_look = now + COLLECT_LOOK_NS;
        }
        if (stop_deadline && now > stop_deadline) {
            snprintf (self->error, sizeof (self->error),
                      "%d senders and %d receivers did not report after STOP",
                      senders_left, receivers_left);
            rc = -1;
            break;
        }
        bool cut = !stop_deadline
                && (now > hard_deadline
                    || (grace_deadline && now > grace_deadline));
        if (cut) {
            //  Ask the stragglers for what they have: their counts show
            //  what was lost.
            for (int i = s_from; i < s_to; i++)
                if (!self->workers [i].done && now > hard_deadline)
                    bench_fleet_tell (self, i, "STOP");
            for (int i = r_from; i < r_to; i++)
                if (!self->workers [i].done)
                    bench_fleet_tell (self, i, "STOP");
            if (*end_ns == 0 && senders_left == 0)
                *end_ns = now;
            stop_deadline = now + 5000 * 1000000LL;
            rc = 1;
        }
        int index = bench_fleet_next_done (self, 50, stats, one_lat, one_ack);
        if (index == -2) {
            rc = -1;
            break;
        }
        if (index < 0)
            continue;
        if (index >= s_from && index < s_to) {
            bench_stats_merge (senders, stats);
            if (ack)
                bench_hist_merge (ack, one_ack);
            if (--senders_left == 0 && !grace_deadline) {
                now = bench_now_ns ();
                int64_t sending = now - go_ns;
                grace_deadline = now + (int64_t) grace_ms * 1000000LL
                               + (sending > 0? sending: 0);
            }
        }
        //  Ranges may be the same workers (senders that also receive).
        if (index >= r_from && index < r_to) {
            bench_stats_merge (receivers, stats);
            if (lat)
                bench_hist_merge (lat, one_lat);
            if (--receivers_left == 0 && *end_ns == 0)
                *end_ns = bench_now_ns ();
        }
    }
    if (*end_ns == 0)
        *end_ns = bench_now_ns ();
    free (stats);
    free (one_lat);
    free (one_ack);
    return rc;
}
