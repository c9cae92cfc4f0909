//  zchat_threads — libzmq's I/O threads in the broker run a little below
//  the event loop's priority.
//
//  The event loop hands each drained group to libzmq's I/O threads (ACKs
//  to the ROUTER's, publications to the PUB's). A woken thread of the
//  same priority preempts the one that woke it, so on a busy machine the
//  loop was interrupted at every hand-off, in the middle of the group it
//  was making: about a thousand times a second flat out. Five nice levels
//  below the loop, a woken I/O thread takes a free CPU at once, or waits
//  until the loop is done with its slice, and then sends what has piled
//  up in one go; it still preempts anything of lower priority than its
//  own. Measured in bench/README.md (SCHED_BATCH, which never preempts on
//  wake-up, gained as much but waited out whole scheduler ticks behind
//  unrelated background work; ten levels starved the I/O threads).
//
//  Only threads under the default policy are changed: a broker that an
//  operator runs under a real-time, batch or idle policy keeps it.
//  Nothing here is fatal; a thread that cannot be changed keeps its
//  priority.

#ifndef ZCHAT_THREADS_H_INCLUDED
#define ZCHAT_THREADS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  How many nice levels below the calling thread libzmq's threads run.
#define ZCHAT_THREADS_IO_NICE   5

//  Give the libzmq background threads (I/O and reaper, named "ZMQbg/...")
//  of czmq's context that run under SCHED_OTHER a nice value of the
//  calling thread's plus ZCHAT_THREADS_IO_NICE (at most 19); threads
//  already that low are left as they are, so a second call changes
//  nothing. Call it once a socket exists: libzmq starts them with the
//  first one. Returns how many were changed, or -1 with the reason in
//  error when one could not be or not all were found within a second
//  (the others are still changed).
int
    zchat_threads_lower_libzmq (char *error, size_t error_size);

//  Self test; asserts on failure.
void
    zchat_threads_test (bool verbose);

#endif
