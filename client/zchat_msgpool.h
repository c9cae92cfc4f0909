//  zchat_msgpool — blocks of memory for the bodies of outgoing ZeroMQ
//  messages, used again and again instead of allocated per message.
//
//  zmq_send copies a body into a message it allocates, and libzmq's I/O
//  thread frees that once it is on the wire. Bodies of tens of KiB, sent
//  thousands of times a second, are where glibc's heap hurts: a block freed
//  at the top of the heap is given back to the kernel (its trim threshold
//  is 128 KiB), and the next one comes from fresh pages, each a page fault
//  and a page cleared. A sender of 1 KiB texts spent 9 % of its time in
//  those faults, inside zmq_send's copy. A pool hands out blocks of one
//  size; a body is copied into one and sent with zmq_msg_init_data, and
//  libzmq gives the block back (from its I/O thread: the pool is locked)
//  when it is done with it. The blocks stay warm and mapped.
//
//  The pool is shared by its owner and the blocks in flight: destroy
//  drops the owner's part, and the pool goes when the last block comes
//  back (libzmq may still hold some when a socket closes with linger).

#ifndef ZCHAT_MSGPOOL_H_INCLUDED
#define ZCHAT_MSGPOOL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zchat_msgpool_t zchat_msgpool_t;

//  A pool of blocks of block_size bytes, keeping at most keep free ones
//  (more come from malloc when needed and go back to it). NULL if out of
//  memory.
zchat_msgpool_t *
    zchat_msgpool_new (size_t block_size, size_t keep);

//  Drop the owner's part of the pool; nulls *self_p.
void
    zchat_msgpool_destroy (zchat_msgpool_t **self_p);

//  Send size bytes of data as one frame on socket (a libzmq socket
//  handle), as zmq_send (socket, data, size, flags) does, in a block of
//  the pool when size is at least min_size and fits a block (smaller
//  bodies are cheaper copied by libzmq). It fails only as zmq_send
//  would: returns size, or -1 with errno set by libzmq (then nothing was
//  sent, and the block is back).
int
    zchat_msgpool_send (zchat_msgpool_t *self, void *socket, const void *data,
                        size_t size, size_t min_size, int flags);

//  Free blocks held, and blocks out with libzmq (tests and statistics).
size_t
    zchat_msgpool_free_blocks (zchat_msgpool_t *self);
size_t
    zchat_msgpool_out_blocks (zchat_msgpool_t *self);

//  Self test; asserts on failure.
void
    zchat_msgpool_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
