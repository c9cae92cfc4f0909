//  zchat_threads — libzmq's I/O threads in the broker run a little below
//  the event loop's priority (see zchat_threads.h).

#include <czmq.h>
#include <dirent.h>
#include <sched.h>
#include <sys/resource.h>
#include "zchat_threads.h"

//  How long zchat_threads_lower_libzmq waits for libzmq's threads to be
//  named (they are within microseconds).
#define S_NAMES_WAIT_MS 1000

//  Thread ids are the kernel's: on Linux a nice value set for a thread id
//  applies to that thread only. Returns 1 if tid was lowered to target, 0
//  if it was left alone, -1 with errno set.
static int
s_lower (pid_t tid, int target)
{
    int policy = sched_getscheduler (tid);
    if (policy == -1)
        return -1;
    if (policy != SCHED_OTHER)
        return 0;
    errno = 0;
    int current = getpriority (PRIO_PROCESS, (id_t) tid);
    if (current == -1 && errno)
        return -1;
    if (current >= target)
        return 0;
    return setpriority (PRIO_PROCESS, (id_t) tid, target) == 0? 1: -1;
}

//  Read the name of thread tid of this process into name. Returns 0 or -1.
static int
s_thread_name (const char *tid, char *name, size_t size)
{
    char path [64];
    snprintf (path, sizeof (path), "/proc/self/task/%s/comm", tid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    bool read = fgets (name, (int) size, file) != NULL;
    fclose (file);
    if (!read)
        return -1;
    name [strcspn (name, "\n")] = 0;
    return 0;
}

//  One pass over the process's threads: those named "ZMQbg/" are counted
//  in *seen, and those under SCHED_OTHER above target lowered to it.
//  Returns how many were changed, or -1 with errno set.
static int
s_pass (int target, size_t *seen)
{
    DIR *tasks = opendir ("/proc/self/task");
    if (!tasks)
        return -1;
    int changed = 0;
    int error_number = 0;
    *seen = 0;
    struct dirent *entry;
    while ((entry = readdir (tasks))) {
        char *end;
        long tid = strtol (entry->d_name, &end, 10);
        char name [32];
        //  A thread may end between readdir and here: then it is gone,
        //  which is no error
        if (end == entry->d_name || *end || tid <= 0
        ||  s_thread_name (entry->d_name, name, sizeof (name)) != 0
        ||  !strstr (name, "ZMQbg/"))
            continue;
        (*seen)++;
        int rc = s_lower ((pid_t) tid, target);
        if (rc == 1)
            changed++;
        else
        if (rc == -1 && errno != ESRCH)
            error_number = errno;
    }
    closedir (tasks);
    if (error_number) {
        errno = error_number;
        return -1;
    }
    return changed;
}

int
zchat_threads_lower_libzmq (char *error, size_t error_size)
{
    errno = 0;
    int target = getpriority (PRIO_PROCESS, 0);
    if (target == -1 && errno) {
        snprintf (error, error_size, "%s", strerror (errno));
        return -1;
    }
    target = target + ZCHAT_THREADS_IO_NICE > 19? 19: target + ZCHAT_THREADS_IO_NICE;
    //  The I/O threads and the reaper. libzmq names each from inside it,
    //  once it runs, so right after the first socket some may still carry
    //  the process's name: look again until all are there.
    int io_threads = zmq_ctx_get (zsys_init (), ZMQ_IO_THREADS);
    size_t expected = io_threads > 0? (size_t) io_threads + 1: 1;
    int64_t deadline = zclock_mono () + S_NAMES_WAIT_MS;
    int changed = 0;
    while (true) {
        size_t seen;
        int rc = s_pass (target, &seen);
        if (rc == -1) {
            snprintf (error, error_size, "%s", strerror (errno));
            return -1;
        }
        changed += rc;
        if (seen >= expected)
            return changed;
        if (zclock_mono () >= deadline) {
            snprintf (error, error_size, "%zu of libzmq's %zu threads not found",
                      expected - seen, expected);
            return -1;
        }
        zclock_sleep (1);
    }
}


//  ---------------------------------------------------------------------
//  Self test

//  The ids of this process's libzmq background threads, and which of them
//  is the reaper. Returns how many were found.
static size_t
s_libzmq_threads (pid_t *tids, size_t limit, pid_t *reaper)
{
    DIR *tasks = opendir ("/proc/self/task");
    assert (tasks);
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (tasks)) && count < limit) {
        char name [32];
        if (entry->d_name [0] == '.'
        ||  s_thread_name (entry->d_name, name, sizeof (name)) != 0
        ||  !strstr (name, "ZMQbg/"))
            continue;
        tids [count] = (pid_t) atol (entry->d_name);
        if (strstr (name, "Reaper"))
            *reaper = tids [count];
        count++;
    }
    closedir (tasks);
    return count;
}

void
zchat_threads_test (bool verbose)
{
    printf (" * zchat_threads: ");
    if (verbose)
        printf ("\n");
    int caller = sched_getscheduler (0);
    assert (caller == SCHED_OTHER);
    errno = 0;
    int caller_nice = getpriority (PRIO_PROCESS, 0);
    assert (!(caller_nice == -1 && errno));
    int want = caller_nice + ZCHAT_THREADS_IO_NICE > 19? 19: caller_nice + ZCHAT_THREADS_IO_NICE;

    //  libzmq's threads exist once a socket does (named from inside each
    //  thread: wait for the names)
    zsock_t *socket = zsock_new (ZMQ_PAIR);
    assert (socket);
    size_t expected = (size_t) zmq_ctx_get (zsys_init (), ZMQ_IO_THREADS) + 1;
    pid_t tids [16];
    pid_t reaper = 0;
    size_t count = 0;
    for (int tries = 0; tries < 1000 && count < expected; tries++) {
        if (tries)
            zclock_sleep (1);
        count = s_libzmq_threads (tids, 16, &reaper);
    }
    assert (count == expected && reaper);
    struct sched_param param = { .sched_priority = 0 };
    int others = 0;
    for (size_t i = 0; i < count; i++) {
        assert (sched_getscheduler (tids [i]) == SCHED_OTHER);
        others += tids [i] != reaper
               && getpriority (PRIO_PROCESS, (id_t) tids [i]) < want;
    }
    //  A thread that an operator put under another policy (idle here: one
    //  a user may choose) keeps its nice value; the others go down, and
    //  the caller is left as it was
    int reaper_nice = getpriority (PRIO_PROCESS, (id_t) reaper);
    int rc = sched_setscheduler (reaper, SCHED_IDLE, &param);
    assert (rc == 0);
    char error [128];
    int changed = zchat_threads_lower_libzmq (error, sizeof (error));
    assert (changed == others);
    for (size_t i = 0; i < count; i++)
        if (tids [i] == reaper) {
            assert (sched_getscheduler (reaper) == SCHED_IDLE);
            assert (getpriority (PRIO_PROCESS, (id_t) reaper) == reaper_nice);
        }
        else {
            assert (sched_getscheduler (tids [i]) == SCHED_OTHER);
            assert (getpriority (PRIO_PROCESS, (id_t) tids [i]) == want);
        }
    assert (sched_getscheduler (0) == caller);
    assert (getpriority (PRIO_PROCESS, 0) == caller_nice);
    //  Done once, nothing is left to change
    assert (zchat_threads_lower_libzmq (error, sizeof (error)) == 0);

    //  The rest of the self tests run as before where we may put them
    //  back (leaving idle, or raising priority again, may need privilege)
    for (size_t i = 0; i < count; i++) {
        if (sched_setscheduler (tids [i], SCHED_OTHER, &param) != 0
        ||  setpriority (PRIO_PROCESS, (id_t) tids [i], caller_nice) != 0)
            assert (errno == EPERM || errno == EACCES);
    }
    zsock_destroy (&socket);
    if (verbose)
        printf ("   %d of %zu libzmq threads lowered to nice %d\n", changed, count, want);
    printf ("OK\n");
}
