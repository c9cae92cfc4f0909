//  zchat_testbed — a socket-free zchat_server over a temporary store, with
//  a recording, checking output (see zchat_testbed.h).

#include <czmq.h>
#include <dirent.h>
#include "zchat_testbed.h"
#include "zchat_log.h"

//  2023-11-14, a plausible epoch time; fixed so runs replay the same way.
#define S_EPOCH_MS      1700000000000ULL
//  The monotonic clock starts elsewhere, so that mixing the two shows.
#define S_MONO_MS       5000000ULL

typedef struct {
    bool publish;               //  else a reply
    uint8_t *key;               //  peer blob or topic frame
    size_t key_size;
    uint8_t *body;
    size_t body_size;
} s_record_t;

//  A publication the server lent (publish_lent): held a while, as a slow
//  I/O thread would, and checked unchanged when it is given back.
typedef struct {
    const uint8_t *body;
    size_t size;
    uint8_t *copy;
    void (*release) (void *data, void *hint);
    void *hint;
} s_loan_t;

#define S_LOANS_HELD    8

//  A peer the testbed has seen: its blob, its connection's descriptor,
//  and whether that connection is closed.
typedef struct {
    uint8_t *key;
    size_t key_size;
    int fd;
    bool gone;
} s_peer_t;

//  Peers named anew get descriptors from here up
#define S_FIRST_FD      100

struct _zchat_testbed_t {
    zchat_server_config_t config;
    char *dir;                  //  the store's directory, removed on destroy
    zchat_store_t *store;
    zchat_server_t *server;
    uint64_t now_ms;
    uint64_t mono_ms;
    bool record;                //  keep what is emitted (tests), or only check it (fuzz)
    zlistx_t *records;          //  s_record_t, oldest first
    s_record_t *taken;          //  the last record taken, alive until the next
    size_t emitted;             //  bodies emitted, recorded or not
    size_t batches;             //  of which ACKS, ACKRUNS or MESSAGES
    size_t ackruns, runs;       //  ACKRUNS bodies, and their items
    s_loan_t loans [S_LOANS_HELD];  //  lent publications held, oldest first
    size_t loan_count;
    size_t lent;                //  publications lent, ever
    zlistx_t *peers;            //  s_peer_t
    int next_fd;
    size_t checks;              //  reaches calls
    size_t unreached;           //  of which found their peer gone
};

static void
s_peer_free (void **item)
{
    s_peer_t *peer = *(s_peer_t **) item;
    if (peer) {
        free (peer->key);
        free (peer);
        *item = NULL;
    }
}

//  The peer of this blob, made (with a descriptor of its own) if new.
static s_peer_t *
s_peer (zchat_testbed_t *self, const uint8_t *key, size_t key_size)
{
    for (s_peer_t *peer = (s_peer_t *) zlistx_first (self->peers); peer;
         peer = (s_peer_t *) zlistx_next (self->peers))
        if (peer->key_size == key_size && memcmp (peer->key, key, key_size) == 0)
            return peer;
    s_peer_t *peer = (s_peer_t *) zmalloc (sizeof (s_peer_t));
    assert (peer);
    peer->key = (uint8_t *) malloc (key_size + 1);
    assert (peer->key);
    memcpy (peer->key, key, key_size);
    peer->key_size = key_size;
    peer->fd = self->next_fd++;
    assert (zlistx_add_end (self->peers, peer));
    return peer;
}

static s_peer_t *
s_peer_named (zchat_testbed_t *self, const char *name)
{
    return s_peer (self, (const uint8_t *) name, strlen (name));
}


static void
s_record_destroy (s_record_t **record_p)
{
    s_record_t *record = *record_p;
    if (record) {
        free (record->key);
        free (record->body);
        free (record);
        *record_p = NULL;
    }
}

static void
s_record_free (void **item)
{
    s_record_destroy ((s_record_t **) item);
}

//  A reply must decode and be a broker-to-client type.
static void
s_check_reply (const uint8_t *body, size_t size)
{
    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, body, size);
    if (rc != ZCHAT_DECODE_OK)
        zsys_error ("testbed: reply does not decode: %s", zchat_decode_strerror (rc));
    assert (rc == ZCHAT_DECODE_OK);
    assert (msg.type == ZCHAT_WELCOME || msg.type == ZCHAT_PONG
         || msg.type == ZCHAT_JOINED  || msg.type == ZCHAT_ACK
         || msg.type == ZCHAT_DELIVER || msg.type == ZCHAT_MEMBERS
         || msg.type == ZCHAT_ROOMLIST || msg.type == ZCHAT_TOPICIS
         || msg.type == ZCHAT_PAGE    || msg.type == ZCHAT_OK
         || msg.type == ZCHAT_ERROR   || msg.type == ZCHAT_ACKS
         || msg.type == ZCHAT_ACKRUNS);
    //  A batch is worth sending only with two or more in it
    if (msg.type == ZCHAT_ACKS)
        assert (msg.item_count >= 2);
    if (msg.type == ZCHAT_ACKRUNS) {
        //  Two or more ACKs, in runs as long as they can be: no item
        //  continues the one before
        assert (msg.item_count >= 1);
        size_t cursor = 0;
        zchat_item_t item, previous = { 0 };
        uint64_t acks = 0;
        while (zchat_msg_next_item (&msg, &cursor, &item)) {
            assert (item.count >= 1);
            assert (!(previous.count && previous.id + previous.count > previous.id
                      && item.id == previous.id + previous.count
                      && previous.seq + previous.count > previous.seq
                      && item.seq == previous.seq + previous.count
                      && item.ts == previous.ts && streq (item.room, previous.room)));
            acks += item.count;
            previous = item;
        }
        assert (acks >= 2);
    }
    if (msg.type == ZCHAT_ERROR)
        assert (msg.code >= 400 && msg.code <= 599);
}

//  A publication must be a PUB type of a valid room, on that room's topic,
//  or a PROBE on a tag's topic (0xFF, then 1..ZCHAT_MAX_PROBE_TAG bytes of
//  UTF-8: what the prober sent).
static void
s_check_publication (const uint8_t *topic, size_t topic_size,
                     const uint8_t *body, size_t size)
{
    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, body, size);
    if (rc != ZCHAT_DECODE_OK)
        zsys_error ("testbed: publication does not decode: %s",
                    zchat_decode_strerror (rc));
    assert (rc == ZCHAT_DECODE_OK);
    assert (msg.type == ZCHAT_MESSAGE || msg.type == ZCHAT_EVENT
         || msg.type == ZCHAT_PROBE   || msg.type == ZCHAT_MESSAGES);
    assert (zchat_room_valid (msg.room));
    assert (topic_size >= 2);
    if (topic [0] == ZCHAT_PROBE_TOPIC) {
        assert (msg.type == ZCHAT_PROBE && msg.id == 0);
        assert (topic_size <= ZCHAT_MAX_PROBE_TOPIC_FRAME);
        assert (zchat_utf8_valid ((const char *) topic + 1, topic_size - 1));
        assert (zchat_nick_valid (msg.nick));
        return;
    }
    assert (topic_size <= ZCHAT_MAX_TOPIC_FRAME);
    assert (topic [topic_size - 1] == ZCHAT_TOPIC_END);
    assert (strlen (msg.room) == topic_size - 1);
    assert (memcmp (msg.room, topic, topic_size - 1) == 0);
    if (msg.type == ZCHAT_MESSAGES) {
        //  Two or more, consecutive seqs of the one room
        assert (msg.item_count >= 2);
        size_t cursor = 0;
        zchat_item_t item;
        uint64_t previous = 0;
        while (zchat_msg_next_item (&msg, &cursor, &item)) {
            assert (previous == 0 || item.seq == previous + 1);
            previous = item.seq;
        }
    }
    if (msg.type == ZCHAT_PROBE)
        assert (zchat_nick_valid (msg.nick));
}

static void
    s_keep (zchat_testbed_t *self, bool publish, const uint8_t *key, size_t key_size,
            const uint8_t *body, size_t body_size);

//  Record each item of a batch as the single ACK or MESSAGE it stands for.
static void
s_keep_items (zchat_testbed_t *self, bool publish, const uint8_t *key, size_t key_size,
              const zchat_msg_t *batch)
{
    size_t cursor = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (batch, &cursor, &item)) {
        //  A run of ACKs: one each
        for (uint32_t i = 1; batch->type == ZCHAT_ACKRUNS && i < item.count; i++) {
            uint8_t data [128];
            zchat_buf_t buf;
            zchat_buf_init (&buf, data, sizeof data);
            size_t size = zchat_encode_ack (&buf, item.id + i - 1, item.room,
                                            item.seq + i - 1, item.ts);
            assert (size > 0);
            s_keep (self, publish, key, key_size, data, size);
        }
        if (batch->type == ZCHAT_ACKRUNS) {
            item.id += item.count - 1;
            item.seq += item.count - 1;
        }
        size_t capacity = 128 + item.text_size;
        uint8_t *data = (uint8_t *) malloc (capacity);
        assert (data);
        zchat_buf_t buf;
        zchat_buf_init (&buf, data, capacity);
        size_t size = publish?
            zchat_encode_message (&buf, 0, batch->room, item.seq, item.ts, item.nick,
                                  item.kind, item.text, item.text_size):
            zchat_encode_ack (&buf, item.id, item.room, item.seq, item.ts);
        assert (size > 0);
        s_keep (self, publish, key, key_size, data, size);
        free (data);
    }
}

static void
s_keep (zchat_testbed_t *self, bool publish, const uint8_t *key, size_t key_size,
        const uint8_t *body, size_t body_size)
{
    if (body_size > 2 && (body [2] == ZCHAT_ACKS || body [2] == ZCHAT_MESSAGES
                          || body [2] == ZCHAT_ACKRUNS)) {
        self->batches++;
        assert (body_size <= ZCHAT_SERVER_BATCH_BYTES);
        zchat_msg_t batch;
        int rc = zchat_msg_decode (&batch, body, body_size);
        assert (rc == ZCHAT_DECODE_OK);
        if (batch.type == ZCHAT_ACKRUNS) {
            self->ackruns++;
            self->runs += batch.item_count;
        }
        if (self->record)
            s_keep_items (self, publish, key, key_size, &batch);
        return;
    }
    self->emitted++;
    if (!self->record)
        return;
    s_record_t *record = (s_record_t *) zmalloc (sizeof (s_record_t));
    assert (record);
    record->publish = publish;
    record->key = (uint8_t *) malloc (key_size + 1);
    record->body = (uint8_t *) malloc (body_size);
    assert (record->key && record->body);
    memcpy (record->key, key, key_size);
    record->key_size = key_size;
    memcpy (record->body, body, body_size);
    record->body_size = body_size;
    assert (zlistx_add_end (self->records, record));
}

static void
s_on_reply (void *arg, const uint8_t *peer, size_t peer_size,
            const uint8_t *body, size_t body_size)
{
    s_check_reply (body, body_size);
    s_keep ((zchat_testbed_t *) arg, false, peer, peer_size, body, body_size);
}

//  A check of a peer's connection: recorded as a reply unless the peer is
//  gone. Always an unsolicited PONG of no items (PROTOCOL.md 6.1).
static bool
s_on_reaches (void *arg, const uint8_t *peer, size_t peer_size,
              const uint8_t *body, size_t body_size)
{
    zchat_testbed_t *self = (zchat_testbed_t *) arg;
    zchat_msg_t msg;
    assert (zchat_msg_decode (&msg, body, body_size) == ZCHAT_DECODE_OK);
    assert (msg.type == ZCHAT_PONG && msg.id == 0 && msg.item_count == 0);
    self->checks++;
    if (s_peer (self, peer, peer_size)->gone) {
        self->unreached++;
        return false;
    }
    s_on_reply (arg, peer, peer_size, body, body_size);
    return true;
}

static void
s_on_publish (void *arg, const uint8_t *topic, size_t topic_size,
              const uint8_t *body, size_t body_size)
{
    s_check_publication (topic, topic_size, body, body_size);
    s_keep ((zchat_testbed_t *) arg, true, topic, topic_size, body, body_size);
}

//  Give the oldest held loan back, checking that nothing wrote into it
//  while it was lent.
static void
s_loan_return (zchat_testbed_t *self)
{
    assert (self->loan_count > 0);
    s_loan_t *loan = &self->loans [0];
    assert (memcmp (loan->body, loan->copy, loan->size) == 0);
    free (loan->copy);
    loan->release ((void *) loan->body, loan->hint);
    memmove (&self->loans [0], &self->loans [1],
             --self->loan_count * sizeof (s_loan_t));
}

static void
s_on_publish_lent (void *arg, const uint8_t *topic, size_t topic_size,
                   const uint8_t *body, size_t body_size,
                   void (*release) (void *data, void *hint), void *hint)
{
    zchat_testbed_t *self = (zchat_testbed_t *) arg;
    s_on_publish (arg, topic, topic_size, body, body_size);
    if (self->loan_count == S_LOANS_HELD)
        s_loan_return (self);
    uint8_t *copy = (uint8_t *) malloc (body_size);
    assert (copy);
    memcpy (copy, body, body_size);
    self->loans [self->loan_count++] = (s_loan_t) { body, body_size, copy, release, hint };
    self->lent++;
}

//  Remove the store's directory; it holds only files.
static void
s_remove_dir (const char *dir)
{
    DIR *handle = opendir (dir);
    if (handle) {
        struct dirent *entry;
        while ((entry = readdir (handle))) {
            if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
                continue;
            char path [PATH_MAX];
            snprintf (path, sizeof (path), "%s/%s", dir, entry->d_name);
            if (unlink (path))
                zsys_warning ("testbed: cannot remove %s: %s", path, strerror (errno));
        }
        closedir (handle);
    }
    if (rmdir (dir))
        zsys_warning ("testbed: cannot remove %s: %s", dir, strerror (errno));
}


//  ---------------------------------------------------------------------
//  A configuration for tests: small, fast, with every limit off.

zchat_server_config_t
zchat_testbed_config (void)
{
    zchat_server_config_t config = {
        .pub_endpoint = "tcp://127.0.0.1:5556",
        .pub_port = 5556,
        .heartbeat_ms = 1000,
        .timeout_ms = 3000,
        .max_text = 4096,
        .history_page = 500,
    };
    return config;
}


//  ---------------------------------------------------------------------
//  Create a server over a new store in a new temporary directory.

zchat_testbed_t *
zchat_testbed_new (const zchat_server_config_t *config, bool in_memory)
{
    zchat_testbed_t *self = (zchat_testbed_t *) zmalloc (sizeof (zchat_testbed_t));
    if (!self)
        return NULL;
    self->config = config ? *config : zchat_testbed_config ();
    self->now_ms = S_EPOCH_MS;
    self->mono_ms = S_MONO_MS;
    self->record = true;
    self->records = zlistx_new ();
    self->peers = zlistx_new ();
    if (!self->records || !self->peers)
        goto failed;
    zlistx_set_destructor (self->records, s_record_free);
    zlistx_set_destructor (self->peers, s_peer_free);
    self->next_fd = S_FIRST_FD;

    const char *base = getenv ("TMPDIR");
    if (in_memory && access ("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (!base || !*base)
        base = "/tmp";
    char path [PATH_MAX];
    snprintf (path, sizeof (path), "%s/zchat-testbed-XXXXXX", base);
    if (!mkdtemp (path)) {
        zsys_error ("testbed: mkdtemp %s: %s", path, strerror (errno));
        goto failed;
    }
    self->dir = strdup (path);
    if (!self->dir) {
        rmdir (path);
        goto failed;
    }
    char error [256] = "";
    self->store = zchat_store_new (self->dir, false, error, sizeof (error));
    if (!self->store) {
        zsys_error ("testbed: cannot open a store: %s", error);
        goto failed;
    }
    if (zchat_testbed_restart (self))
        goto failed;
    return self;

failed:
    zchat_testbed_destroy (&self);
    return NULL;
}


//  ---------------------------------------------------------------------
//  Destroy everything, the directory too.

void
zchat_testbed_destroy (zchat_testbed_t **self_p)
{
    assert (self_p);
    zchat_testbed_t *self = *self_p;
    if (self) {
        zchat_server_destroy (&self->server);
        //  Loans outlive their server, as they may in libzmq
        while (self->loan_count)
            s_loan_return (self);
        zchat_store_destroy (&self->store);
        if (self->dir)
            s_remove_dir (self->dir);
        free (self->dir);
        s_record_destroy (&self->taken);
        zlistx_destroy (&self->records);
        zlistx_destroy (&self->peers);
        free (self);
        *self_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  Restart the server over the same store.

int
zchat_testbed_restart (zchat_testbed_t *self)
{
    assert (self);
    zchat_server_destroy (&self->server);
    zchat_server_output_t output = { self, s_on_reply, s_on_publish, s_on_publish_lent,
                                     s_on_reaches };
    self->server = zchat_server_new (&self->config, self->store, output);
    return self->server ? 0 : -1;
}


zchat_server_t *
zchat_testbed_server (zchat_testbed_t *self)
{
    assert (self);
    return self->server;
}

zchat_store_t *
zchat_testbed_store (zchat_testbed_t *self)
{
    assert (self);
    return self->store;
}

const char *
zchat_testbed_dir (zchat_testbed_t *self)
{
    assert (self);
    return self->dir;
}

uint64_t
zchat_testbed_now (zchat_testbed_t *self)
{
    assert (self);
    return self->now_ms;
}

void
zchat_testbed_advance (zchat_testbed_t *self, uint64_t ms)
{
    assert (self);
    self->now_ms += ms;
    self->mono_ms += ms;
}

void
zchat_testbed_step_wall (zchat_testbed_t *self, int64_t ms)
{
    assert (self);
    assert (ms >= 0 || (uint64_t) -ms < self->now_ms);
    self->now_ms = (uint64_t) ((int64_t) self->now_ms + ms);
}


//  ---------------------------------------------------------------------
//  Hand a body to the server.

void
zchat_testbed_send_from (zchat_testbed_t *self, const char *peer,
                         const char *user_id, const char *address,
                         const void *body, size_t size)
{
    assert (self);
    assert (peer);
    s_peer_t *from = s_peer_named (self, peer);
    zchat_server_clock (self->server, self->mono_ms);
    zchat_server_handle (self->server, (const uint8_t *) peer, strlen (peer), from->fd,
                         user_id, address, (const uint8_t *) body, size,
                         self->now_ms);
}

void
zchat_testbed_set_fd (zchat_testbed_t *self, const char *peer, int fd)
{
    assert (self);
    assert (peer);
    s_peer_named (self, peer)->fd = fd;
}

int
zchat_testbed_fd (zchat_testbed_t *self, const char *peer)
{
    assert (self);
    assert (peer);
    return s_peer_named (self, peer)->fd;
}

void
zchat_testbed_close (zchat_testbed_t *self, const char *peer)
{
    assert (self);
    assert (peer);
    s_peer_t *closing = s_peer_named (self, peer);
    closing->gone = true;
    zchat_server_clock (self->server, self->mono_ms);
    zchat_server_closed (self->server, closing->fd, self->now_ms);
}

void
zchat_testbed_lose (zchat_testbed_t *self, const char *peer)
{
    assert (self);
    assert (peer);
    s_peer_named (self, peer)->gone = true;
}

void
zchat_testbed_connect (zchat_testbed_t *self, const char *peer, const char *user_id)
{
    assert (self);
    assert (peer);
    s_peer_t *coming = s_peer_named (self, peer);
    coming->gone = false;
    zchat_server_clock (self->server, self->mono_ms);
    zchat_server_connected (self->server, (const uint8_t *) peer, strlen (peer),
                            coming->fd, user_id, self->now_ms);
}

size_t
zchat_testbed_checks (zchat_testbed_t *self, size_t *unreached)
{
    assert (self);
    if (unreached)
        *unreached = self->unreached;
    return self->checks;
}

void
zchat_testbed_send (zchat_testbed_t *self, const char *peer,
                    const void *body, size_t size)
{
    zchat_testbed_send_from (self, peer, NULL, "127.0.0.1", body, size);
}

int
zchat_testbed_flush (zchat_testbed_t *self)
{
    assert (self);
    return zchat_server_flush (self->server);
}

void
zchat_testbed_tick (zchat_testbed_t *self)
{
    assert (self);
    zchat_server_clock (self->server, self->mono_ms);
    zchat_server_tick (self->server, self->now_ms);
}


//  ---------------------------------------------------------------------
//  Recorded output

static bool
s_matches (const s_record_t *record, bool publish, const char *key)
{
    return record->publish == publish
        && record->key_size == strlen (key)
        && memcmp (record->key, key, record->key_size) == 0;
}

static size_t
s_count (zchat_testbed_t *self, bool publish, const char *key)
{
    size_t count = 0;
    for (s_record_t *record = (s_record_t *) zlistx_first (self->records); record;
         record = (s_record_t *) zlistx_next (self->records))
        if (s_matches (record, publish, key))
            count++;
    return count;
}

static bool
s_take (zchat_testbed_t *self, bool publish, const char *key, zchat_msg_t *msg)
{
    for (s_record_t *record = (s_record_t *) zlistx_first (self->records); record;
         record = (s_record_t *) zlistx_next (self->records))
        if (s_matches (record, publish, key)) {
            s_record_destroy (&self->taken);
            self->taken = (s_record_t *) zlistx_detach_cur (self->records);
            assert (self->taken == record);
            int rc = zchat_msg_decode (msg, record->body, record->body_size);
            assert (rc == ZCHAT_DECODE_OK);
            return true;
        }
    return false;
}

size_t
zchat_testbed_replies (zchat_testbed_t *self, const char *peer)
{
    assert (self);
    return s_count (self, false, peer);
}

size_t
zchat_testbed_publications (zchat_testbed_t *self, const char *topic)
{
    assert (self);
    return s_count (self, true, topic);
}

size_t
zchat_testbed_batches (zchat_testbed_t *self)
{
    assert (self);
    return self->batches;
}

size_t
zchat_testbed_lent (zchat_testbed_t *self, bool give_back)
{
    assert (self);
    while (give_back && self->loan_count)
        s_loan_return (self);
    return self->lent;
}

size_t
zchat_testbed_ackruns (zchat_testbed_t *self, size_t *runs)
{
    assert (self);
    if (runs)
        *runs = self->runs;
    return self->ackruns;
}

size_t
zchat_testbed_pending (zchat_testbed_t *self)
{
    assert (self);
    return zlistx_size (self->records);
}

bool
zchat_testbed_take_reply (zchat_testbed_t *self, const char *peer, zchat_msg_t *msg)
{
    assert (self);
    return s_take (self, false, peer, msg);
}

bool
zchat_testbed_take_publication (zchat_testbed_t *self, const char *topic,
                                zchat_msg_t *msg)
{
    assert (self);
    return s_take (self, true, topic, msg);
}

void
zchat_testbed_clear (zchat_testbed_t *self)
{
    assert (self);
    zlistx_purge (self->records);
    s_record_destroy (&self->taken);
}


//  ---------------------------------------------------------------------
//  Fuzzing

#define S_FUZZ_PEERS    4

static zchat_testbed_t *s_fuzz_bed = NULL;

static void
s_fuzz_cleanup (void)
{
    zchat_testbed_destroy (&s_fuzz_bed);
}

//  Limits small enough for short inputs to reach them.
static zchat_server_config_t
s_fuzz_config (bool curve)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.max_text = 256;
    config.max_rooms = 4;
    config.max_sessions_per_address = 3;
    config.history_page = 8;
    config.rate_limit = 1000;
    config.rate_burst = 40;
    config.query_rate = 4;
    config.query_burst = 8;
    config.max_sessions = 3;
    config.max_nicks_per_key = 2;
    config.retain_messages = 50;
    config.curve = curve;
    return config;
}

int
zchat_testbed_fuzz (const uint8_t *data, size_t size)
{
    if (!s_fuzz_bed) {
        //  Per-message debug lines would drown the fuzzer's own output.
        zchat_log_set_verbose (false);
        zchat_server_config_t config = s_fuzz_config (false);
        s_fuzz_bed = zchat_testbed_new (&config, true);
        assert (s_fuzz_bed);
        s_fuzz_bed->record = false;
        atexit (s_fuzz_cleanup);
    }
    zchat_testbed_t *self = s_fuzz_bed;
    bool curve = size > 0 && (data [0] & 0x20);
    self->config = s_fuzz_config (curve);
    self->now_ms = S_EPOCH_MS;
    int rc = zchat_testbed_restart (self);
    assert (rc == 0);

    static const char *peers [S_FUZZ_PEERS] = { "\x00\x01", "\x00\x02", "\x00\x03", "\x00\x04" };
    static const char *addresses [S_FUZZ_PEERS] = {
        "10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2" };
    static const char *keys [S_FUZZ_PEERS] = {
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
        "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
        "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs",
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",   //  peer 3 shares peer 0's key
    };
    //  Every input starts with all four connected, on descriptors 10-13
    s_peer_t *connection [S_FUZZ_PEERS];
    for (int peer = 0; peer < S_FUZZ_PEERS; peer++) {
        connection [peer] = s_peer (self, (const uint8_t *) peers [peer], 2);
        connection [peer]->fd = 10 + peer;
        connection [peer]->gone = false;
    }
    size_t at = 0;
    while (size - at >= 3) {
        uint8_t control = data [at];
        size_t length = ((size_t) data [at + 1] << 8) | data [at + 2];
        at += 3;
        if (length > size - at)
            length = size - at;
        int peer = control & 3;
        const char *key = (control & 0x10) ? keys [peer] : NULL;
        //  Peer blobs start with a NUL byte, so they are blobs, not strings.
        //  A record from a peer whose connection closed was read late; a
        //  new connection's probe brings it back.
        if ((control & 0xC0) == 0xC0) {
            connection [peer]->gone = false;
            zchat_server_connected (self->server, (const uint8_t *) peers [peer], 2,
                                    connection [peer]->fd, key, self->now_ms);
        }
        else
            zchat_server_handle (self->server, (const uint8_t *) peers [peer], 2,
                                 (control & 0x80)? -1: connection [peer]->fd,
                                 key, addresses [peer], data + at, length, self->now_ms);
        at += length;
        self->now_ms += 1;
        if (control & 0x04)
            zchat_server_flush (self->server);
        if ((control & 0xC0) == 0x40) {
            connection [peer]->gone = true;
            zchat_server_closed (self->server, connection [peer]->fd, self->now_ms);
        }
        if (control & 0x08) {
            //  Past a connection check's delay too: a session whose
            //  connection is gone is unbound here, and ends at the next
            self->now_ms += self->config.timeout_ms + ZCHAT_SERVER_CHECK_MS + 1;
            zchat_server_tick (self->server, self->now_ms);
        }
    }
    zchat_server_flush (self->server);
    zchat_server_tick (self->server, self->now_ms);
    return 0;
}


//  Append one fuzz record to buf; returns false if it did not fit.
static bool
s_sample_add (zchat_buf_t *out, uint8_t control, const uint8_t *body, size_t size)
{
    if (size == 0 || out->capacity - out->size < 3 + size)
        return false;
    out->data [out->size++] = control;
    out->data [out->size++] = (uint8_t) (size >> 8);
    out->data [out->size++] = (uint8_t) size;
    memcpy (out->data + out->size, body, size);
    out->size += size;
    return true;
}

size_t
zchat_testbed_fuzz_sample (uint8_t *buffer, size_t capacity)
{
    zchat_buf_t out;
    zchat_buf_init (&out, buffer, capacity);
    uint8_t scratch [512];
    zchat_buf_t buf;
    zchat_buf_init (&buf, scratch, sizeof (scratch));
    bool ok = true;
#define ADD(control, encode) \
    do { size_t n_ = (encode); ok = ok && s_sample_add (&out, control, scratch, n_); } while (0)
    ADD (0, zchat_encode_hello (&buf, 1, 1, "alice", ""));
    ADD (1, zchat_encode_hello (&buf, 2, 1, "bob", ""));
    ADD (0, zchat_encode_join (&buf, 3, "lobby"));
    ADD (1, zchat_encode_join (&buf, 4, "lobby"));
    ADD (0, zchat_encode_say (&buf, 5, "lobby", ZCHAT_KIND_TEXT, "hello", 5));
    ADD (4, zchat_encode_say (&buf, 6, "lobby", ZCHAT_KIND_ACTION, "waves", 5));
    ADD (0, zchat_encode_say (&buf, 5, "lobby", ZCHAT_KIND_TEXT, "hello", 5));
    ADD (1, zchat_encode_dm (&buf, 7, "alice", ZCHAT_KIND_TEXT, "psst", 4));
    ADD (1, zchat_encode_history (&buf, 8, "lobby", 0, 0, 10));
    ADD (1, zchat_encode_ping (&buf, 9));
    ADD (0, zchat_encode_topic (&buf, 10, "lobby", true, "chat"));
    ADD (1, zchat_encode_who (&buf, 11, "lobby"));
    ADD (1, zchat_encode_rooms (&buf, 12));
    ADD (1, zchat_encode_probe (&buf, 13, "lobby", NULL));
    ADD (2, zchat_encode_hello (&buf, 20, ZCHAT_VERSION, "carol", ""));
    ADD (2, zchat_encode_join (&buf, 21, "lobby"));
    ADD (2, zchat_encode_probe (&buf, 22, "lobby", "0123456789abcdef"));
    ADD (1, zchat_encode_nick (&buf, 14, "robert"));
    ADD (0, zchat_encode_leave (&buf, 15, "lobby"));
    ADD (2, zchat_encode_ping (&buf, 16));
    ADD (0x42, zchat_encode_ping (&buf, 23));       //  carol's connection closes
    ADD (0xC2, zchat_encode_ping (&buf, 24));       //  her new one announces itself
    ADD (0x82, zchat_encode_ping (&buf, 25));       //  through a relay
    ADD (8, zchat_encode_ping (&buf, 17));
    ADD (1, zchat_encode_bye (&buf, 18));
#undef ADD
    const uint8_t garbage [] = { 'Z', 'C', 9, 0, 0, 0, 0, 0, 0, 0, 1, 5, 'l' };
    ok = ok && s_sample_add (&out, 3, garbage, sizeof (garbage));
    return ok ? out.size : 0;
}
