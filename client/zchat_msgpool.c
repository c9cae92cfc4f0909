//  zchat_msgpool — reused blocks for outgoing message bodies. See
//  zchat_msgpool.h for why.

#include "zchat_msgpool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct _zchat_msgpool_t {
    pthread_mutex_t mutex;      //  libzmq's I/O threads give blocks back
    size_t block_size;
    size_t keep;                //  free blocks kept at most
    void **free;                //  free blocks, a stack of keep
    size_t free_count;
    size_t out;                 //  blocks in messages not yet freed
    bool owned;                 //  not destroyed by its owner yet
};

static void
s_pool_free (zchat_msgpool_t *self)
{
    for (size_t i = 0; i < self->free_count; i++)
        free (self->free [i]);
    free (self->free);
    pthread_mutex_destroy (&self->mutex);
    free (self);
}

zchat_msgpool_t *
zchat_msgpool_new (size_t block_size, size_t keep)
{
    assert (block_size > 0);
    zchat_msgpool_t *self = (zchat_msgpool_t *) calloc (1, sizeof (zchat_msgpool_t));
    if (!self)
        return NULL;
    self->free = (void **) calloc (keep? keep: 1, sizeof (void *));
    if (!self->free || pthread_mutex_init (&self->mutex, NULL)) {
        free (self->free);
        free (self);
        return NULL;
    }
    self->block_size = block_size;
    self->keep = keep;
    self->owned = true;
    return self;
}

void
zchat_msgpool_destroy (zchat_msgpool_t **self_p)
{
    assert (self_p);
    zchat_msgpool_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    pthread_mutex_lock (&self->mutex);
    self->owned = false;
    bool gone = self->out == 0;
    pthread_mutex_unlock (&self->mutex);
    if (gone)
        s_pool_free (self);
}

//  libzmq's free function for a message made of a block: called once the
//  message is done with, from whichever thread let go of it last
static void
s_give_back (void *data, void *hint)
{
    zchat_msgpool_t *self = (zchat_msgpool_t *) hint;
    pthread_mutex_lock (&self->mutex);
    assert (self->out > 0);
    self->out--;
    if (self->owned && self->free_count < self->keep) {
        self->free [self->free_count++] = data;
        data = NULL;
    }
    bool gone = !self->owned && self->out == 0;
    pthread_mutex_unlock (&self->mutex);
    free (data);
    if (gone)
        s_pool_free (self);
}

//  A block counted out, or NULL if out of memory
static void *
s_take (zchat_msgpool_t *self)
{
    pthread_mutex_lock (&self->mutex);
    void *block = self->free_count? self->free [--self->free_count]: NULL;
    self->out++;
    pthread_mutex_unlock (&self->mutex);
    if (!block) {
        block = malloc (self->block_size);
        if (!block) {
            pthread_mutex_lock (&self->mutex);
            self->out--;
            pthread_mutex_unlock (&self->mutex);
        }
    }
    return block;
}

int
zchat_msgpool_send (zchat_msgpool_t *self, void *socket, const void *data,
                    size_t size, size_t min_size, int flags)
{
    void *block = NULL;
    if (self && size >= min_size && size <= self->block_size)
        block = s_take (self);
    if (!block)
        return zmq_send (socket, data, size, flags);
    memcpy (block, data, size);
    zmq_msg_t msg;
    if (zmq_msg_init_data (&msg, block, size, s_give_back, self)) {
        //  libzmq took nothing. The pool must not add a way to fail: a
        //  caller's earlier frames of this message may be queued already
        s_give_back (block, self);
        return zmq_send (socket, data, size, flags);
    }
    if (zmq_msg_send (&msg, socket, flags) == -1) {
        int error = errno;
        zmq_msg_close (&msg);           //  gives the block back
        errno = error;
        return -1;
    }
    return (int) size;
}

size_t
zchat_msgpool_free_blocks (zchat_msgpool_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    size_t count = self->free_count;
    pthread_mutex_unlock (&self->mutex);
    return count;
}

size_t
zchat_msgpool_out_blocks (zchat_msgpool_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    size_t count = self->out;
    pthread_mutex_unlock (&self->mutex);
    return count;
}


//  --------------------------------------------------------------------------
//  Self test

//  Receive one frame on socket: its size, and its data's address (inproc
//  passes the sender's block itself) and first byte
static size_t
s_test_recv (void *socket, const void **address, int *first)
{
    zmq_msg_t msg;
    int rc = zmq_msg_init (&msg);
    assert (rc == 0);
    rc = zmq_msg_recv (&msg, socket, 0);
    assert (rc >= 0);
    size_t size = zmq_msg_size (&msg);
    *address = zmq_msg_data (&msg);
    *first = size? ((const unsigned char *) zmq_msg_data (&msg)) [size - 1]: -1;
    zmq_msg_close (&msg);
    return size;
}

void
zchat_msgpool_test (bool verbose)
{
    void *ctx = zmq_ctx_new ();
    assert (ctx);
    void *out = zmq_socket (ctx, ZMQ_PAIR);
    void *in = zmq_socket (ctx, ZMQ_PAIR);
    assert (out && in);
    int rc = zmq_bind (in, "inproc://zchat-msgpool-test");
    assert (rc == 0);
    rc = zmq_connect (out, "inproc://zchat-msgpool-test");
    assert (rc == 0);

    zchat_msgpool_t *pool = zchat_msgpool_new (16 * 1024, 2);
    assert (pool);
    static unsigned char body [32 * 1024];
    for (size_t i = 0; i < sizeof (body); i++)
        body [i] = (unsigned char) (i * 7);

    //  Three bodies in blocks, out with libzmq until received; two come
    //  back to the pool (keep), the third to malloc
    for (int i = 0; i < 3; i++) {
        rc = zchat_msgpool_send (pool, out, body, 10000 + (size_t) i, 1024, 0);
        assert (rc == 10000 + i);
    }
    assert (zchat_msgpool_out_blocks (pool) == 3);
    const void *address = NULL;
    const void *first_block = NULL;
    int last = 0;
    for (int i = 0; i < 3; i++) {
        size_t size = s_test_recv (in, &address, &last);
        assert (size == 10000 + (size_t) i);
        assert (last == body [size - 1]);
        if (i == 1)
            first_block = address;      //  the newest of the two kept
    }
    assert (zchat_msgpool_out_blocks (pool) == 0);
    assert (zchat_msgpool_free_blocks (pool) == 2);

    //  The next body goes out in the newest block kept: the same memory,
    //  not a new allocation
    rc = zchat_msgpool_send (pool, out, body, 12000, 1024, 0);
    assert (rc == 12000);
    assert (zchat_msgpool_free_blocks (pool) == 1);
    size_t size = s_test_recv (in, &address, &last);
    assert (size == 12000 && last == body [11999]);
    assert (address == first_block);
    assert (zchat_msgpool_free_blocks (pool) == 2);

    //  Below min_size, or over a block: libzmq's own copy
    rc = zchat_msgpool_send (pool, out, body, 100, 1024, 0);
    assert (rc == 100);
    rc = zchat_msgpool_send (pool, out, body, sizeof (body), 1024, 0);
    assert (rc == (int) sizeof (body));
    assert (zchat_msgpool_out_blocks (pool) == 0);
    assert (s_test_recv (in, &address, &last) == 100);
    assert (s_test_recv (in, &address, &last) == sizeof (body));
    assert (last == body [sizeof (body) - 1]);

    //  A send that fails gives its block back at once
    void *lonely = zmq_socket (ctx, ZMQ_PUSH);
    assert (lonely);
    rc = zchat_msgpool_send (pool, lonely, body, 5000, 1024, ZMQ_DONTWAIT);
    assert (rc == -1 && errno == EAGAIN);
    assert (zchat_msgpool_out_blocks (pool) == 0);
    assert (zchat_msgpool_free_blocks (pool) == 2);
    zmq_close (lonely);

    //  Destroyed while a block is out: the pool lasts until it comes back
    //  (the sanitizer build checks that nothing is used after it goes)
    rc = zchat_msgpool_send (pool, out, body, 9000, 1024, 0);
    assert (rc == 9000);
    zchat_msgpool_destroy (&pool);
    assert (pool == NULL);
    zchat_msgpool_destroy (&pool);
    assert (s_test_recv (in, &address, &last) == 9000);
    assert (last == body [8999]);

    //  Without a pool: plain zmq_send
    rc = zchat_msgpool_send (NULL, out, body, 3000, 1024, 0);
    assert (rc == 3000);
    assert (s_test_recv (in, &address, &last) == 3000);

    zmq_close (out);
    zmq_close (in);
    zmq_ctx_term (ctx);
    if (verbose)
        printf (" * zchat_msgpool: blocks out and back, reuse, fallbacks,"
                " failed sends, late return\n");
}
