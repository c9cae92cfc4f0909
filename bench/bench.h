//  bench — shared parts of zchat-bench and zchat-ceiling.
//
//  Both programs run one controller process and many worker processes:
//  the controller re-executes its own binary (/proc/self/exe) with the
//  hidden flag `--role NAME`, so every sender, subscriber and forwarder is
//  a process of its own (a shared process would hide the costs of
//  scheduling and of the kernel's loopback path). Workers talk to the
//  controller over a small control channel (a DEALER each, to the
//  controller's ROUTER on loopback): READY when set up, GO / STOP from the
//  controller, DONE with their counters and latency histograms.
//
//  Every message carries, in its text, the sender's index, a counter and
//  the CLOCK_MONOTONIC time of sending (the clock is system-wide, so
//  processes on one host compare it directly). Receivers account for each
//  (sender, counter) pair exactly once: lost, duplicated and (for zchat)
//  repaired-from-history messages are counted, never guessed.

#ifndef BENCH_H_INCLUDED
#define BENCH_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

//  ---------------------------------------------------------------------
//  Clock

//  CLOCK_MONOTONIC in nanoseconds.
int64_t
    bench_now_ns (void);

//  Sleep until the given bench_now_ns value (returns at once if past).
void
    bench_sleep_until_ns (int64_t when_ns);

//  ---------------------------------------------------------------------
//  Latency histogram: log-linear buckets (values below 128 exact, then 64
//  sub-buckets per power of two: relative error under 1.6 %), min/max
//  exact. A plain struct so it can travel over the control channel.

#define BENCH_HIST_BUCKETS (128 + 57 * 64)

typedef struct {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double   sum;
    uint64_t bucket [BENCH_HIST_BUCKETS];
} bench_hist_t;

void
    bench_hist_reset (bench_hist_t *self);
void
    bench_hist_add (bench_hist_t *self, uint64_t value);
void
    bench_hist_merge (bench_hist_t *self, const bench_hist_t *other);
//  Value at quantile q (0..1); 0 when empty. Never above max.
uint64_t
    bench_hist_quantile (const bench_hist_t *self, double q);
double
    bench_hist_mean (const bench_hist_t *self);
//  Write the CDF as "value_us fraction" lines (one per non-empty bucket).
//  Returns 0 or -1.
int
    bench_hist_write_cdf (const bench_hist_t *self, FILE *file);

//  ---------------------------------------------------------------------
//  Payload: "M" + sender (4 hex) + counter (8 hex) + send time (16 hex),
//  padded with '.' to the requested size. Plain ASCII, so it is valid
//  UTF-8 text for zchat and an ordinary payload for the ceiling.

#define BENCH_PAYLOAD_HEAD  29
#define BENCH_MIN_SIZE      32
#define BENCH_MAX_SENDERS   0xFFFF

//  Fill buf (size bytes, size >= BENCH_PAYLOAD_HEAD) with the padding once.
void
    bench_payload_init (char *buf, size_t size);
//  Stamp sender, counter and time into an initialised buffer.
void
    bench_payload_stamp (char *buf, uint32_t sender, uint32_t counter,
                         int64_t sent_ns);
//  Parse; returns 0, or -1 if data is not a bench payload.
int
    bench_payload_parse (const void *data, size_t size, uint32_t *sender,
                         uint32_t *counter, int64_t *sent_ns);

//  ---------------------------------------------------------------------
//  Completeness tracker for one receiver: a bitmap per sender.

typedef struct _bench_tracker_t bench_tracker_t;

bench_tracker_t *
    bench_tracker_new (uint32_t senders, uint32_t per_sender);
void
    bench_tracker_destroy (bench_tracker_t **self_p);
//  Returns 0 for a new message, 1 for a duplicate, -1 if out of range.
int
    bench_tracker_mark (bench_tracker_t *self, uint32_t sender,
                        uint32_t counter);
uint64_t
    bench_tracker_unique (bench_tracker_t *self);
uint64_t
    bench_tracker_expected (bench_tracker_t *self);
bool
    bench_tracker_complete (bench_tracker_t *self);

//  ---------------------------------------------------------------------
//  Counters a worker reports in DONE (summed over all its clients).

typedef struct {
    uint64_t clients;
    //  senders
    uint64_t sent;              //  sends issued (first transmissions)
    uint64_t acked;             //  acknowledged by the broker
    uint64_t send_errors;       //  sends that failed for good
    int64_t  first_send_ns;     //  0 if none
    int64_t  last_send_ns;
    int64_t  last_ack_ns;
    //  receivers
    uint64_t expected;          //  messages each client should get, summed
    uint64_t received;          //  every delivery, duplicates included
    uint64_t unique;
    uint64_t duplicated;
    uint64_t repaired;          //  came from history (gap repair)
    uint64_t bogus;             //  not a bench payload / out of range
    uint64_t gaps;              //  GAP events (history truncated)
    uint64_t errors;            //  ERROR events not tied to a send
    uint64_t other_received;    //  deliveries not tracked (flooder's)
    int64_t  first_recv_ns;
    int64_t  last_recv_ns;
    //  forwarder (ceiling)
    uint64_t forwarded;
    int64_t  first_fwd_ns;
    int64_t  last_fwd_ns;
    double   cpu_s;             //  the worker process's own CPU time
    char     note [128];        //  first error, for the report
} bench_stats_t;

void
    bench_stats_merge (bench_stats_t *self, const bench_stats_t *other);

//  ---------------------------------------------------------------------
//  Processes

//  Start argv (argv[0] is a path) as a child that dies with us. stderr
//  goes to stderr_path if not NULL (appended), stdout to /dev/null. With
//  self_exe, runs our own executable whatever argv[0] says. Returns the
//  pid, or -1.
pid_t
    bench_spawn (char *const argv [], const char *stderr_path, bool self_exe);
//  Send SIGTERM, wait up to grace_ms, then SIGKILL and reap. Safe on <= 0.
//  Returns the exit status as waitpid gives it, or -1.
int
    bench_stop_process (pid_t pid, int grace_ms);
//  Path of our own executable, and of a sibling program beside it.
//  Returns a fresh string or NULL.
char *
    bench_self_path (void);
char *
    bench_sibling_path (const char *name);

//  CPU time (user + system) of a process in seconds, or -1.
double
    bench_proc_cpu_s (pid_t pid);
//  A "Vm...:" field of /proc/PID/status in kB (e.g. "VmHWM"), or -1.
long
    bench_proc_status_kb (pid_t pid, const char *field);
//  Open descriptors of a process, or -1.
int
    bench_proc_fds (pid_t pid);
//  CPU time (user + system) of the calling process in seconds.
double
    bench_self_cpu_s (void);
//  Raise the soft limit of open files to the hard limit.
void
    bench_raise_nofile (void);
//  rm -rf of a directory we created (only plain files and directories).
void
    bench_remove_tree (const char *path);

//  ---------------------------------------------------------------------
//  Control channel, controller side. A fleet is a set of workers.

typedef struct _bench_fleet_t bench_fleet_t;

bench_fleet_t *
    bench_fleet_new (void);
void
    bench_fleet_destroy (bench_fleet_t **self_p);
//  Endpoint workers connect to.
const char *
    bench_fleet_endpoint (bench_fleet_t *self);
//  Start a worker: our own binary with "--role ROLE --ctl EP --index N"
//  plus extra arguments (NULL-terminated list). Returns its index, or -1.
int
    bench_fleet_spawn (bench_fleet_t *self, const char *role,
                       char *const extra []);
int
    bench_fleet_size (bench_fleet_t *self);
pid_t
    bench_fleet_pid (bench_fleet_t *self, int index);
//  Wait until every worker in [from, to) has said READY; their READY
//  text is kept (bench_fleet_info). Returns 0, or -1 on timeout, FAIL or
//  a dead worker (reason in bench_fleet_error).
int
    bench_fleet_wait_ready (bench_fleet_t *self, int from, int to,
                            int timeout_ms);
const char *
    bench_fleet_info (bench_fleet_t *self, int index);
//  Send a command ("GO", "STOP") to a worker. Returns 0 or -1.
int
    bench_fleet_tell (bench_fleet_t *self, int index, const char *command);
//  Wait up to timeout_ms for the next DONE from any worker. Returns its
//  index (stats and histograms copied out; NULL pointers allowed), -1 on
//  timeout/interrupt, -2 on FAIL or a dead worker.
int
    bench_fleet_next_done (bench_fleet_t *self, int timeout_ms,
                           bench_stats_t *stats, bench_hist_t *lat,
                           bench_hist_t *ack);
bool
    bench_fleet_is_done (bench_fleet_t *self, int index);
const char *
    bench_fleet_error (bench_fleet_t *self);
//  Stop every worker (STOP, short grace, then signals) and reap them.
void
    bench_fleet_stop_all (bench_fleet_t *self, int grace_ms);

//  Collect DONE from the senders [s_from, s_to) and receivers [r_from,
//  r_to) of a run that started at go_ns. Receivers still short of
//  messages get STOP once every sender is done and a grace period (at
//  least grace_ms, and as long again as the sending took, and as long as
//  they keep a tenth of a CPU busy or report progress, working through a
//  backlog) has passed;
//  everything gets STOP at go_ns + timeout_s. Stats and histograms are
//  merged into the outputs; *end_ns is when the last receiver finished.
//  Returns 0, 1 if it had to cut the run short (note says why), or -1 if
//  a worker failed (error says why).
int
    bench_fleet_collect (bench_fleet_t *self, int s_from, int s_to,
                         int r_from, int r_to, int64_t go_ns, int timeout_s,
                         int grace_ms, bench_stats_t *senders,
                         bench_stats_t *receivers, bench_hist_t *lat,
                         bench_hist_t *ack, int64_t *end_ns);

//  ---------------------------------------------------------------------
//  Control channel, worker side.

typedef struct _bench_worker_t bench_worker_t;

//  Parse --ctl/--index from argv and connect. NULL on failure.
bench_worker_t *
    bench_worker_new (const char *endpoint, int index);
void
    bench_worker_destroy (bench_worker_t **self_p);
zsock_t *
    bench_worker_sock (bench_worker_t *self);
int
    bench_worker_ready (bench_worker_t *self, const char *info);
int
    bench_worker_fail (bench_worker_t *self, const char *reason);
int
    bench_worker_done (bench_worker_t *self, const bench_stats_t *stats,
                       const bench_hist_t *lat, const bench_hist_t *ack);

//  A worker role: its name after --role, and what runs it (0 or -1).
typedef struct {
    const char *name;
    int (*run) (bench_worker_t *worker, int argc, char **argv);
} bench_role_t;

//  Connect to the controller (--ctl, --index in argv), run the role named
//  role from roles (unknown: reported to the controller), disconnect.
//  Returns the process's exit code: 0, or 1.
int
    bench_worker_run (const char *role, const bench_role_t *roles, size_t count,
                      int argc, char **argv);
//  Tell the controller how many messages this worker has received so far
//  (receivers short of messages, every half second or so, even with none
//  yet): while it grows, the controller's grace after the senders goes on;
//  while it comes but does not grow, the worker is idle, whatever CPU its
//  loop spends. Returns 0 or -1.
int
    bench_worker_progress (bench_worker_t *self, uint64_t received);
//  Non-blocking: the next command from the controller ("GO", "STOP"),
//  or NULL. Returned string is the caller's (zstr_free).
char *
    bench_worker_command (bench_worker_t *self, int timeout_ms);

//  Wait until one of the sockets may be readable, or until deadline_ns
//  (0 = 100 ms). Uses ZMQ_FD with ppoll, so waits have ns resolution.
//  Returns 1 if something may be readable, 0 on timeout.
int
    bench_wait_sockets (void **sockets, int count, int64_t deadline_ns);

//  An int socket option on a raw libzmq socket. Returns 0, or -1 (errno).
int
    bench_set_int (void *socket, int option, int value);
//  The endpoint a raw socket last bound, as a fresh string (free), or NULL.
char *
    bench_last_endpoint (void *socket);

//  ---------------------------------------------------------------------
//  One side of a run (zchat or ceiling): the figures issue 5 asks for.

typedef struct {
    bool     ran;
    char     status [256];          //  "ok", or why it did not run
    uint64_t messages;              //  expected: senders * messages
    uint64_t accepted;              //  zchat: acked; ceiling: forwarded
    uint64_t expected_deliveries;
    uint64_t deliveries;            //  unique
    uint64_t lost;
    uint64_t duplicated;
    uint64_t repaired;
    uint64_t gaps;
    uint64_t send_errors;
    double   accept_s;              //  first send .. last accept
    double   deliver_s;             //  first send .. last delivery
    double   msgs_per_s;
    double   deliveries_per_s;
    bench_hist_t *lat;              //  send -> delivery, ns
    bench_hist_t *ack;              //  send -> ack, ns (zchat only)
    double   sender_cpu_s;          //  CPU of all sender processes
    double   receiver_cpu_s;        //  CPU of all subscriber processes
    double   server_cpu_s;          //  broker / forwarder CPU in the run
    double   server_cpu_pct;
    long     server_hwm_kb;         //  VmHWM at the end
    long     server_rss_kb;         //  VmRSS at the end
    //  extras (fairness runs)
    uint64_t flood_acked;
    double   flood_msgs_per_s;
} bench_side_t;

bench_side_t *
    bench_side_new (void);
void
    bench_side_destroy (bench_side_t **self_p);
//  Fill the rates and lost count from the raw counters.
void
    bench_side_finish (bench_side_t *self, const bench_stats_t *senders,
                       const bench_stats_t *receivers);

//  Parameters shared by both sides.
typedef struct {
    int      senders;
    int      subscribers;
    int      sub_procs;             //  subscriber processes (0 = auto)
    int      size;
    long     messages;              //  per sender
    double   rate;                  //  total msgs/s over all senders, 0 = max
    int      window;                //  zchat: unacked sends per sender
    int      hwm;                   //  ceiling: PUB/SUB HWM (0 = none)
    int      timeout_s;             //  bound for one side's run
    bool     verbose;
    //  zchat only
    const char *server;             //  use this broker instead of our own
    bool     durable;               //  false: broker without durable commit
    const char *durable_off_args;   //  broker arguments for durability off
    const char *broker_args;        //  extra broker arguments (space-separated)
    bool     flooder;               //  add one sender flooding at full speed
    bool     senders_receive;       //  senders are the receivers (fairness)
} bench_params_t;

//  Run zchat with these parameters into side (own broker unless
//  params->server). Returns 0, or -1 if it could not run (status says why).
int
    bench_zchat_run (const bench_params_t *params, bench_side_t *side);

//  Idle clients: connect `clients` clients over `procs` processes to our
//  own broker and measure its memory.
typedef struct {
    int      clients;
    int      procs;
    int      hold_s;                //  idle time before the measurement
    int      room_size;             //  clients per room they follow (0: none)
    long     base_rss_kb;           //  broker VmRSS before
    long     rss_kb;                //  broker VmRSS with every client in
    long     hwm_kb;
    double   per_client_kb;
    int      broker_fds;
    double   connect_s;             //  time to connect them all
    char     status [160];
    //  The raw libzmq floor for the same shape (bench_floor.c)
    long     floor_base_rss_kb;     //  floor server VmRSS before
    long     floor_rss_kb;          //  with every client in
    double   floor_per_client_kb;
    int      floor_fds;             //  floor server's descriptors
    uint64_t floor_pings;           //  round trips the floor's clients made idle
    uint64_t floor_unanswered;      //  of those, not answered in time
    char     floor_status [160];
} bench_idle_t;

int
    bench_idle_run (const bench_params_t *params, bench_idle_t *result);

//  The raw libzmq floor of the same idle-client shape: the same number of
//  connections to a minimal ROUTER (and PUB) server, held as long, into
//  result's floor fields. Returns 0, or -1 (floor_status says why).
int
    bench_floor_run (const bench_params_t *params, bench_idle_t *result);

//  Run the raw ceiling with these parameters into side. Returns 0, or -1
//  if the run could not be done (side->status says why).
int
    bench_ceiling_run (const bench_params_t *params, bench_side_t *side);

//  Worker entry points (argv after --role NAME).
int
    bench_ceiling_role (const char *role, int argc, char **argv);
int
    bench_zchat_role (const char *role, int argc, char **argv);
int
    bench_floor_role (const char *role, int argc, char **argv);
//  True if role is one of bench_floor_role's.
bool
    bench_floor_owns (const char *role);

//  Reporting: one side as a cJSON object (the caller's), or as text.
#include <cjson/cJSON.h>
cJSON *
    bench_side_json (const bench_side_t *self);
void
    bench_side_print (const bench_side_t *self, const char *name, FILE *file);

//  Helpers for role argument parsing: value of "--name" or default.
const char *
    bench_arg (int argc, char **argv, const char *name, const char *dflt);
long
    bench_arg_long (int argc, char **argv, const char *name, long dflt);
double
    bench_arg_double (int argc, char **argv, const char *name, double dflt);

//  Subscriber processes to use for n subscribers when not told.
int
    bench_auto_procs (int subscribers, int requested);

#endif
