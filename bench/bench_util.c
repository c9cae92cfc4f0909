//  bench_util — clock, latency histogram, payload stamps, completeness
//  tracking, process and /proc helpers shared by zchat-bench and
//  zchat-ceiling.

#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  CLOCK_MONOTONIC in nanoseconds.

int64_t
bench_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

//  --------------------------------------------------------------------------
//  Sleep until an absolute monotonic time; absolute so that a pacing loop
//  does not drift by the cost of its own work.

void
bench_sleep_until_ns (int64_t when_ns)
{
    if (when_ns <= bench_now_ns ())
        return;
    struct timespec ts = {
        .tv_sec = when_ns / 1000000000LL,
        .tv_nsec = when_ns % 1000000000LL
    };
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR
    &&    !zsys_interrupted)
        ;
}

//  --------------------------------------------------------------------------
//  Histogram

void
bench_hist_reset (bench_hist_t *self)
{
    assert (self);
    memset (self, 0, sizeof (*self));
}

static inline int
s_bucket_of (uint64_t value)
{
    if (value < 128)
        return (int) value;
    int exponent = 63 - __builtin_clzll (value);     //  >= 7
    int sub = (int) ((value >> (exponent - 6)) & 63);
    return 128 + (exponent - 7) * 64 + sub;
}

//  Middle of a bucket's range: the value quantiles report.
static uint64_t
s_bucket_value (int bucket)
{
    if (bucket < 128)
        return (uint64_t) bucket;
    int exponent = (bucket - 128) / 64 + 7;
    int sub = (bucket - 128) % 64;
    uint64_t low = (uint64_t) (64 + sub) << (exponent - 6);
    uint64_t width = (uint64_t) 1 << (exponent - 6);
    return low + width / 2;
}

void
bench_hist_add (bench_hist_t *self, uint64_t value)
{
    if (self->count == 0 || value < self->min)
        self->min = value;
    if (value > self->max)
        self->max = value;
    self->count++;
    self->sum += (double) value;
    self->bucket [s_bucket_of (value)]++;
}

void
bench_hist_merge (bench_hist_t *self, const bench_hist_t *other)
{
    if (other->count == 0)
        return;
    if (self->count == 0 || other->min < self->min)
        self->min = other->min;
    if (other->max > self->max)
        self->max = other->max;
    self->count += other->count;
    self->sum += other->sum;
    for (int i = 0; i < BENCH_HIST_BUCKETS; i++)
        self->bucket [i] += other->bucket [i];
}

uint64_t
bench_hist_quantile (const bench_hist_t *self, double q)
{
    if (self->count == 0)
        return 0;
    if (q >= 1.0)
        return self->max;
    //  The rank of the q-quantile, 1-based: the smallest value with at
    //  least q * count values at or below it.
    uint64_t rank = (uint64_t) ceil (q * (double) self->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += self->bucket [i];
        if (seen >= rank) {
            uint64_t value = s_bucket_value (i);
            if (value > self->max)
                value = self->max;
            if (value < self->min)
                value = self->min;
            return value;
        }
    }
    return self->max;
}

double
bench_hist_mean (const bench_hist_t *self)
{
    return self->count? self->sum / (double) self->count: 0.0;
}

int
bench_hist_write_cdf (const bench_hist_t *self, FILE *file)
{
    uint64_t seen = 0;
    for (int i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (self->bucket [i] == 0)
            continue;
        seen += self->bucket [i];
        uint64_t value = s_bucket_value (i);
        if (value > self->max)
            value = self->max;
        if (fprintf (file, "%.3f %.6f\n", (double) value / 1000.0,
                     (double) seen / (double) self->count) < 0)
            return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Payload

static const char s_hex [] = "0123456789abcdef";

static inline void
s_put_hex (char *dest, uint64_t value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        dest [i] = s_hex [value & 15];
        value >>= 4;
    }
}

static inline int
s_get_hex (const char *src, int digits, uint64_t *value)
{
    uint64_t result = 0;
    for (int i = 0; i < digits; i++) {
        char c = src [i];
        int nibble;
        if (c >= '0' && c <= '9')
            nibble = c - '0';
        else
        if (c >= 'a' && c <= 'f')
            nibble = c - 'a' + 10;
        else
            return -1;
        result = (result << 4) | (uint64_t) nibble;
    }
    *value = result;
    return 0;
}

void
bench_payload_init (char *buf, size_t size)
{
    assert (size >= BENCH_PAYLOAD_HEAD);
    memset (buf, '.', size);
    buf [0] = 'M';
}

void
bench_payload_stamp (char *buf, uint32_t sender, uint32_t counter,
                     int64_t sent_ns)
{
    s_put_hex (buf + 1, sender, 4);
    s_put_hex (buf + 5, counter, 8);
    s_put_hex (buf + 13, (uint64_t) sent_ns, 16);
}

int
bench_payload_parse (const void *data, size_t size, uint32_t *sender,
                     uint32_t *counter, int64_t *sent_ns)
{
    const char *text = (const char *) data;
    if (!data || size < BENCH_PAYLOAD_HEAD || text [0] != 'M')
        return -1;
    uint64_t s, c, t;
    if (s_get_hex (text + 1, 4, &s)
    ||  s_get_hex (text + 5, 8, &c)
    ||  s_get_hex (text + 13, 16, &t))
        return -1;
    *sender = (uint32_t) s;
    *counter = (uint32_t) c;
    *sent_ns = (int64_t) t;
    return 0;
}

//  --------------------------------------------------------------------------
//  Tracker

struct _bench_tracker_t {
    uint32_t senders;
    uint32_t per_sender;
    uint64_t unique;
    uint64_t *bits;         //  senders * per_sender bits
};

bench_tracker_t *
bench_tracker_new (uint32_t senders, uint32_t per_sender)
{
    bench_tracker_t *self = (bench_tracker_t *) zmalloc (sizeof (*self));
    assert (self);
    self->senders = senders;
    self->per_sender = per_sender;
    size_t words = ((size_t) senders * per_sender + 63) / 64 + 1;
    self->bits = (uint64_t *) calloc (words, sizeof (uint64_t));
    assert (self->bits);
    return self;
}

void
bench_tracker_destroy (bench_tracker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free ((*self_p)->bits);
        free (*self_p);
        *self_p = NULL;
    }
}

int
bench_tracker_mark (bench_tracker_t *self, uint32_t sender, uint32_t counter)
{
    if (sender >= self->senders || counter >= self->per_sender)
        return -1;
    size_t bit = (size_t) sender * self->per_sender + counter;
    uint64_t mask = (uint64_t) 1 << (bit & 63);
    if (self->bits [bit >> 6] & mask)
        return 1;
    self->bits [bit >> 6] |= mask;
    self->unique++;
    return 0;
}

uint64_t
bench_tracker_unique (bench_tracker_t *self)
{
    return self->unique;
}

uint64_t
bench_tracker_expected (bench_tracker_t *self)
{
    return (uint64_t) self->senders * self->per_sender;
}

bool
bench_tracker_complete (bench_tracker_t *self)
{
    return self->unique == bench_tracker_expected (self);
}

//  --------------------------------------------------------------------------
//  Stats

static int64_t
s_min_set (int64_t a, int64_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b? a: b;
}

static int64_t
s_max (int64_t a, int64_t b)
{
    return a > b? a: b;
}

void
bench_stats_merge (bench_stats_t *self, const bench_stats_t *other)
{
    self->clients += other->clients;
    self->sent += other->sent;
    self->acked += other->acked;
    self->send_errors += other->send_errors;
    self->first_send_ns = s_min_set (self->first_send_ns, other->first_send_ns);
    self->last_send_ns = s_max (self->last_send_ns, other->last_send_ns);
    self->last_ack_ns = s_max (self->last_ack_ns, other->last_ack_ns);
    self->expected += other->expected;
    self->received += other->received;
    self->unique += other->unique;
    self->duplicated += other->duplicated;
    self->repaired += other->repaired;
    self->bogus += other->bogus;
    self->gaps += other->gaps;
    self->errors += other->errors;
    self->other_received += other->other_received;
    self->first_recv_ns = s_min_set (self->first_recv_ns, other->first_recv_ns);
    self->last_recv_ns = s_max (self->last_recv_ns, other->last_recv_ns);
    self->forwarded += other->forwarded;
    self->cpu_s += other->cpu_s;
    self->first_fwd_ns = s_min_set (self->first_fwd_ns, other->first_fwd_ns);
    self->last_fwd_ns = s_max (self->last_fwd_ns, other->last_fwd_ns);
    if (self->note [0] == 0 && other->note [0])
        memcpy (self->note, other->note, sizeof (self->note));
}

//  --------------------------------------------------------------------------
//  Processes

pid_t
bench_spawn (char *const argv [], const char *stderr_path, bool self_exe)
{
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid > 0)
        return pid;

    //  Child: die with the controller, so no worker or broker outlives an
    //  interrupted or crashed run.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)
        _exit (127);
    int null_fd = open ("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2 (null_fd, STDIN_FILENO);
        dup2 (null_fd, STDOUT_FILENO);
    }
    if (stderr_path) {
        int fd = open (stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
    }
    //  Thousands of connections need thousands of descriptors: as root we
    //  may raise the hard limit, otherwise take what the hard limit allows.
    struct rlimit files = { 65536, 65536 };
    if (setrlimit (RLIMIT_NOFILE, &files) != 0
    &&  getrlimit (RLIMIT_NOFILE, &files) == 0) {
        files.rlim_cur = files.rlim_max;
        setrlimit (RLIMIT_NOFILE, &files);
    }
    //  czmq may have blocked signals or set handlers: give the child the
    //  defaults so SIGTERM ends it normally.
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    //  Our own binary is run through /proc/self/exe, the image this very
    //  process was forked from: a rebuild of the file during a run (make
    //  in another shell) must not make workers fail to start.
    execv (self_exe? "/proc/self/exe": argv [0], argv);
    _exit (127);
}

int
bench_stop_process (pid_t pid, int grace_ms)
{
    if (pid <= 0)
        return -1;
    int status = 0;
    pid_t rc = waitpid (pid, &status, WNOHANG);
    if (rc == pid)
        return status;
    kill (pid, SIGTERM);
    int64_t deadline = bench_now_ns () + (int64_t) grace_ms * 1000000LL;
    while (bench_now_ns () < deadline) {
        rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid || rc < 0)
            return rc == pid? status: -1;
        usleep (5000);
    }
    kill (pid, SIGKILL);
    rc = waitpid (pid, &status, 0);
    return rc == pid? status: -1;
}

char *
bench_self_path (void)
{
    char path [4096];
    ssize_t len = readlink ("/proc/self/exe", path, sizeof (path) - 1);
    if (len <= 0)
        return NULL;
    path [len] = 0;
    return strdup (path);
}

char *
bench_sibling_path (const char *name)
{
    char *self = bench_self_path ();
    if (!self)
        return NULL;
    char *slash = strrchr (self, '/');
    if (slash)
        *slash = 0;
    char *path = zsys_sprintf ("%s/%s", slash? self: ".", name);
    free (self);
    return path;
}

double
bench_proc_cpu_s (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof (path), "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line [2048];
    size_t len = fread (line, 1, sizeof (line) - 1, file);
    fclose (file);
    line [len] = 0;
    //  The command name may hold spaces and parentheses: fields count from
    //  the last ')'. utime and stime are fields 14 and 15.
    char *cursor = strrchr (line, ')');
    if (!cursor)
        return -1;
    cursor++;
    unsigned long long utime = 0, stime = 0;
    int field = 2;
    char *save = NULL;
    for (char *token = strtok_r (cursor, " ", &save); token;
         token = strtok_r (NULL, " ", &save)) {
        field++;
        if (field == 14)
            utime = strtoull (token, NULL, 10);
        else
        if (field == 15) {
            stime = strtoull (token, NULL, 10);
            break;
        }
    }
    if (field < 15)
        return -1;
    long ticks = sysconf (_SC_CLK_TCK);
    return (double) (utime + stime) / (double) (ticks > 0? ticks: 100);
}

long
bench_proc_status_kb (pid_t pid, const char *field)
{
    char path [64];
    snprintf (path, sizeof (path), "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line [256];
    long value = -1;
    size_t field_len = strlen (field);
    while (fgets (line, sizeof (line), file)) {
        if (strncmp (line, field, field_len) == 0 && line [field_len] == ':') {
            value = strtol (line + field_len + 1, NULL, 10);
            break;
        }
    }
    fclose (file);
    return value;
}

double
bench_self_cpu_s (void)
{
    struct rusage usage;
    if (getrusage (RUSAGE_SELF, &usage))
        return 0;
    return (double) usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
         + (double) usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

int
bench_proc_fds (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof (path), "/proc/%d/fd", (int) pid);
    int count = 0;
    DIR *handle = opendir (path);
    if (!handle)
        return -1;
    struct dirent *entry;
    while ((entry = readdir (handle)))
        if (entry->d_name [0] != '.')
            count++;
    closedir (handle);
    return count;
}

void
bench_raise_nofile (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
}

void
bench_remove_tree (const char *path)
{
    DIR *dir = opendir (path);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir (dir))) {
            if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
                continue;
            char *child = zsys_sprintf ("%s/%s", path, entry->d_name);
            if (!child)
                continue;
            struct stat info;
            if (lstat (child, &info) == 0 && S_ISDIR (info.st_mode))
                bench_remove_tree (child);
            else
                unlink (child);
            zstr_free (&child);
        }
        closedir (dir);
    }
    rmdir (path);
}

//  --------------------------------------------------------------------------
//  Waiting on zmq sockets with ns resolution: zmq_poll counts in ms, which
//  would turn a paced 10k msg/s stream into bursts of ten.

int
bench_wait_sockets (void **sockets, int count, int64_t deadline_ns)
{
    struct pollfd fds [64];
    if (count > 64)
        count = 64;
    for (int i = 0; i < count; i++) {
        //  ZMQ_FD only signals changes: look at ZMQ_EVENTS first, or a
        //  message already queued would wait for the next one.
        int events = 0;
        size_t size = sizeof (events);
        if (zmq_getsockopt (sockets [i], ZMQ_EVENTS, &events, &size) == 0
        &&  (events & ZMQ_POLLIN))
            return 1;
        int fd = -1;
        size = sizeof (fd);
        if (zmq_getsockopt (sockets [i], ZMQ_FD, &fd, &size) != 0)
            fd = -1;
        fds [i].fd = fd;
        fds [i].events = POLLIN;
        fds [i].revents = 0;
    }
    int64_t now = bench_now_ns ();
    if (deadline_ns == 0)
        deadline_ns = now + 100 * 1000000LL;
    if (deadline_ns <= now)
        return 0;
    int64_t wait = deadline_ns - now;
    struct timespec ts = {
        .tv_sec = wait / 1000000000LL,
        .tv_nsec = wait % 1000000000LL
    };
    int rc = ppoll (fds, (nfds_t) count, &ts, NULL);
    return rc > 0? 1: 0;
}

//  --------------------------------------------------------------------------
//  Raw libzmq sockets: the ceiling and the floor use libzmq alone.

int
bench_set_int (void *socket, int option, int value)
{
    return zmq_setsockopt (socket, option, &value, sizeof (value));
}

char *
bench_last_endpoint (void *socket)
{
    char endpoint [256];
    size_t size = sizeof (endpoint);
    if (zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &size))
        return NULL;
    return strdup (endpoint);
}

//  --------------------------------------------------------------------------
//  Arguments of worker roles

const char *
bench_arg (int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 0; i + 1 < argc; i++)
        if (streq (argv [i], name))
            return argv [i + 1];
    return dflt;
}

long
bench_arg_long (int argc, char **argv, const char *name, long dflt)
{
    const char *value = bench_arg (argc, argv, name, NULL);
    return value? strtol (value, NULL, 10): dflt;
}

double
bench_arg_double (int argc, char **argv, const char *name, double dflt)
{
    const char *value = bench_arg (argc, argv, name, NULL);
    return value? strtod (value, NULL): dflt;
}

int
bench_auto_procs (int subscribers, int requested)
{
    if (requested > 0)
        return requested < subscribers? requested: subscribers;
    //  One process per subscriber while that stays cheap; beyond it,
    //  spread them over 20 processes (a process per client would need
    //  gigabytes for a thousand subscribers).
    if (subscribers <= 100)
        return subscribers;
    return 20;
}

//  --------------------------------------------------------------------------
//  Side results

bench_side_t *
bench_side_new (void)
{
    bench_side_t *self = (bench_side_t *) zmalloc (sizeof (*self));
    assert (self);
    self->lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    self->ack = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    assert (self->lat && self->ack);
    snprintf (self->status, sizeof (self->status), "not run");
    return self;
}

void
bench_side_destroy (bench_side_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free ((*self_p)->lat);
        free ((*self_p)->ack);
        free (*self_p);
        *self_p = NULL;
    }
}

void
bench_side_finish (bench_side_t *self, const bench_stats_t *senders,
                   const bench_stats_t *receivers)
{
    int64_t start = senders->first_send_ns;
    self->expected_deliveries = receivers->expected;
    self->deliveries = receivers->unique;
    self->lost = receivers->expected > receivers->unique
               ? receivers->expected - receivers->unique: 0;
    self->duplicated = receivers->duplicated;
    self->repaired = receivers->repaired;
    self->gaps = receivers->gaps;
    self->send_errors = senders->send_errors;
    self->sender_cpu_s = senders->cpu_s;
    self->receiver_cpu_s = receivers->cpu_s;
    if (start > 0 && self->accepted > 0) {
        int64_t end = senders->last_ack_ns? senders->last_ack_ns
                                          : senders->last_fwd_ns;
        if (end > start)
            self->accept_s = (double) (end - start) / 1e9;
    }
    if (start > 0 && receivers->last_recv_ns > start)
        self->deliver_s = (double) (receivers->last_recv_ns - start) / 1e9;
    self->msgs_per_s = self->accept_s > 0
                     ? (double) self->accepted / self->accept_s: 0;
    self->deliveries_per_s = self->deliver_s > 0
                           ? (double) self->deliveries / self->deliver_s: 0;
}
