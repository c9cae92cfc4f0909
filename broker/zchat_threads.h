//  zchat_threads — libzmq's I/O threads in the broker run as batch work.
//
//  The event loop hands each drained group to libzmq's I/O threads (ACKs
//  to the ROUTER's, publications to the PUB's). Under Linux's default
//  policy a woken thread preempts the one that woke it, so on a busy
//  machine the loop was interrupted at every hand-off, in the middle of
//  the group it was making: about a thousand times a second flat out.
//  Under SCHED_BATCH a woken I/O thread does not preempt: it runs on a
//  free CPU at once, or when the loop next waits, and then sends what has
//  piled up in one go. On a machine with a free CPU nothing changes.
//  Measured in bench/README.md.
//
//  Only threads under the default policy are changed: a broker that an
//  operator runs under a real-time or idle policy keeps it. Nothing here
//  is fatal; a thread that cannot be changed keeps its policy.

#ifndef ZCHAT_THREADS_H_INCLUDED
#define ZCHAT_THREADS_H_INCLUDED

#include <stdbool.h>

//  Put the libzmq background threads (I/O and reaper, named "ZMQbg/...")
//  of czmq's context that run under SCHED_OTHER under SCHED_BATCH. Call it
//  once a socket exists: libzmq starts them with the first one. Returns
//  how many were changed, or -1 with the reason in error when one could
//  not be or not all were found within a second (the others are still
//  changed).
int
    zchat_threads_batch_libzmq (char *error, size_t error_size);

//  Self test; asserts on failure.
void
    zchat_threads_test (bool verbose);

#endif
