//  zchat_threads — libzmq's I/O threads in the broker run as batch work
//  (see zchat_threads.h).

#include <czmq.h>
#include <dirent.h>
#include <sched.h>
#include "zchat_threads.h"

//  How long zchat_threads_batch_libzmq waits for libzmq's threads to be
//  named (they are within microseconds).
#define S_NAMES_WAIT_MS 1000

//  Thread ids are the kernel's: on Linux a policy set for a thread id
//  applies to that thread only.
static int
s_batch (pid_t tid)
{
    int policy = sched_getscheduler (tid);
    if (policy == -1)
        return -1;
    if (policy != SCHED_OTHER)
        return 0;
    struct sched_param param = { .sched_priority = 0 };
    return sched_setscheduler (tid, SCHED_BATCH, &param) == 0? 1: -1;
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
//  in *seen, and those under SCHED_OTHER put under SCHED_BATCH. Returns
//  how many were changed, or -1 with errno set.
static int
s_pass (size_t *seen)
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
        int rc = s_batch ((pid_t) tid);
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
zchat_threads_batch_libzmq (char *error, size_t error_size)
{
    //  The I/O threads and the reaper. libzmq names each from inside it,
    //  once it runs, so right after the first socket some may still carry
    //  the process's name: look again until all are there.
    int io_threads = zmq_ctx_get (zsys_init (), ZMQ_IO_THREADS);
    size_t expected = io_threads > 0? (size_t) io_threads + 1: 1;
    int64_t deadline = zclock_mono () + S_NAMES_WAIT_MS;
    int changed = 0;
    while (true) {
        size_t seen;
        int rc = s_pass (&seen);
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

    //  libzmq's threads exist once a socket does
    zsock_t *socket = zsock_new (ZMQ_PAIR);
    assert (socket);
    //  (named from inside each thread: wait for the names)
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
        int policy = sched_getscheduler (tids [i]);
        assert (policy == SCHED_OTHER || policy == SCHED_BATCH);
        others += policy == SCHED_OTHER && tids [i] != reaper;
    }
    //  A thread that an operator put under another policy (idle here: the
    //  only other one a user may choose) keeps it; the others become
    //  batch work, and the caller is left as it was
    int rc = sched_setscheduler (reaper, SCHED_IDLE, &param);
    assert (rc == 0);
    char error [128];
    int changed = zchat_threads_batch_libzmq (error, sizeof (error));
    assert (changed == others);
    for (size_t i = 0; i < count; i++)
        assert (sched_getscheduler (tids [i]) == (tids [i] == reaper? SCHED_IDLE: SCHED_BATCH));
    assert (sched_getscheduler (0) == caller);
    //  Done once, nothing is left to change
    assert (zchat_threads_batch_libzmq (error, sizeof (error)) == 0);

    //  The rest of the self tests run with the default policy again
    //  (leaving idle may need privilege: then the reaper stays idle,
    //  which only slows the closing of sockets)
    for (size_t i = 0; i < count; i++)
        if (sched_setscheduler (tids [i], SCHED_OTHER, &param) != 0)
            assert (tids [i] == reaper && errno == EPERM);
    zsock_destroy (&socket);
    if (verbose)
        printf ("   %d of %zu libzmq threads made batch work\n", changed, count);
    printf ("OK\n");
}
