//  zchat_store_int — what zchat_store.c and its self test share and nobody
//  else uses: the store's constants, statements and state (see
//  broker/STORAGE.md for the design).

#ifndef ZCHAT_STORE_INT_H_INCLUDED
#define ZCHAT_STORE_INT_H_INCLUDED

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include "zchat_msg.h"
#include "zchat_published.h"
#include "zchat_store.h"

//  Bump when the schema changes. Version 1 (one row per message) is
//  refused with a clear message: nothing was ever deployed with it.
//  Version 2 is upgraded in place when opened (s_schema).
#define STORE_SCHEMA_VERSION    3

#define STORE_DB_NAME           ZCHAT_STORE_FILE
#define STORE_LOCK_NAME         "zchat.lock"
#define STORE_MAX_KEY           40      //  a Z85 CURVE public key

//  A record of published seqs that cannot be written is logged this often
//  at most (every group tries).
#define STORE_PUBLISHED_LOG_MS  10000

//  A busy wait stalls the whole event loop, so keep it short. No other
//  writer can exist (the flock keeps other brokers out); only an operator's
//  sqlite3 shell or a backup can hold a lock, and only briefly.
#define STORE_BUSY_TIMEOUT_MS   200
//  While it waits, the event loop looks again this often (s_busy_wait).
#define STORE_BUSY_POLL_US      100

//  A room's chunk is written out, even in the middle of a group, once it
//  holds about this much: no chunk, and so no history read, gets big.
#define STORE_CHUNK_BYTES       (64 * 1024)

//  A chunk blob is the texts, then the head (one entry per message), then
//  a trailer: count u32, head size u32, format u8 (big-endian). The head
//  sits at the end so that start-up can read the message ids of a chunk
//  without its texts.
#define STORE_CHUNK_FORMAT      1
#define STORE_TRAILER_SIZE      9
#define STORE_VARINT_MAX        10
//  Largest head entry: seq delta, ts delta, kind, nick, msg_id, text size.
#define STORE_ENTRY_MAX         (4 * STORE_VARINT_MAX + 2 + ZCHAT_MAX_NICK)

//  The idempotency window: the newest this many message ids are
//  remembered, oldest forgotten first. The index starts small and grows
//  with use (16 bytes per id in the ring plus 8 in the index).
#define STORE_KEYS_MAX          (1u << 20)
#define STORE_KEYS_MIN          4096
//  Consecutive message ids that share an index bucket (s_key_hash)
#define STORE_KEY_RUN           8
//  The index is an array of buckets of 16 slots, one 64-byte cache line
//  each, at most half full. A key goes into the first free slot from its
//  home bucket on; a per-bucket count of the keys that spilled past it
//  (stuck once at STORE_SPILL_STUCK) tells a lookup whether to look on.
//  A bucket holds two runs of ids: with one, a run arriving at an
//  occupied bucket spilled whole into the next, and a lookup scanned
//  three buckets on average.
#define STORE_BUCKET_SLOTS      16
#define STORE_BUCKET(hash, mask) ((size_t) (hash) & (mask))
#define STORE_SPILL_STUCK       255
//  A slot holds ring position + 1 in its low STORE_POS_BITS and a tag
//  (the hash's top bits) above, so a lookup passes other keys without
//  reading the ring: one cache miss per run of ids, not one per key.
#define STORE_POS_BITS          21
#define STORE_POS_MASK          ((1u << STORE_POS_BITS) - 1)
#define STORE_TAG_SHIFT         (32 + STORE_POS_BITS)
#define STORE_TAG(hash)         ((uint32_t) ((hash) >> 32) & ~STORE_POS_MASK)

//  Chunk buffers are kept from group to group up to this much in all, so
//  that one group touching thousands of rooms does not pin memory for
//  good. They start small and double as a room's chunk grows.
#define STORE_KEEP_BYTES        (8 * 1024 * 1024)
#define STORE_HEAD_MIN          256
#define STORE_DATA_MIN          1024

//  The committed newest seq of rooms that groups touched is remembered,
//  in a table that starts with STORE_NEWEST_MIN slots, doubles up to
//  STORE_NEWEST_MAX and is at most half full; full at that size, it is
//  emptied and fills again with the rooms in use.
#define STORE_NEWEST_MIN        64
#define STORE_NEWEST_MAX        (64 * 1024)

//  Checkpoints run on a thread of their own (see STORAGE.md, "WAL
//  checkpoints"), never inside a commit on the event loop. The thread is
//  woken each time the WAL has grown by this many pages (1 MiB) since it
//  was last woken or started over, and every STORE_CKPT_PERIOD_MS anyway.
//  A quarter of SQLite's autocheckpoint default: rounds of 1,000 pages
//  wrote back in bursts that lengthened flat-out p99 by half.
#define STORE_CKPT_PAGES        250
#define STORE_CKPT_PERIOD_MS    1000
//  Under a steady stream of commits one lands during nearly every round,
//  so the WAL is never wholly copied when a commit begins and never starts
//  over. A round that leaves it at least STORE_CKPT_RESTART_PAGES long,
//  with at most STORE_CKPT_TAIL_PAGES committed since the round began,
//  ends with a RESTART checkpoint: it holds the write lock while it copies
//  that tail, so the next commit starts the WAL over. It waits at most
//  STORE_CKPT_RESTART_BUSY_MS for the event loop's transaction to end.
#define STORE_CKPT_RESTART_PAGES 4000
#define STORE_CKPT_TAIL_PAGES   32
#define STORE_CKPT_RESTART_BUSY_MS 2
//  A stream faster than the disk (flat out with 1 KiB texts: every byte
//  goes to the disk twice, WAL and zchat.db) never leaves a short tail, so
//  the WAL grew to the cap and its TRUNCATE, starved of the write lock or
//  holding it while the disk caught up, made commits fail (ERROR 500). A
//  round that copied a WAL of STORE_CKPT_FORCE_PAGES (32 MiB) whatever the
//  tail ends with a RESTART too: the event loop waits at the gate
//  (zchat_store_begin) while it copies the tail, which is how a disk that
//  cannot keep up slows the senders down instead of failing them.
#define STORE_CKPT_FORCE_PAGES  8000
//  The longest the event loop waits for the checkpointer's write lock (at
//  the gate and in the busy handler together) before it gives up on a
//  transaction; for any other holder of the lock it is
//  STORE_BUSY_TIMEOUT_MS. Far below a session's timeout (10 s), which a
//  stalled loop would otherwise let run out on clients whose pings wait
//  in the ROUTER; the slowest RESTART measured took 264 ms.
#define STORE_CKPT_GATE_MAX_MS  2000
//  A RESTART that took this long is logged, once per STORE_CKPT_LOG_MS at
//  most: commits waited for it.
#define STORE_CKPT_SLOW_MS      50
#define STORE_CKPT_LOG_MS       10000
//  A WAL file bigger than this (passive checkpoints starved by a reader
//  holding an old snapshot) gets a TRUNCATE checkpoint, which waits for
//  readers at most STORE_CKPT_BUSY_MS while holding the write lock.
#define STORE_WAL_CAP_BYTES     (64 * 1024 * 1024)
#define STORE_CKPT_BUSY_MS      10

//  The checkpointer: its thread, its own connection to the database, and
//  what it shares with the event loop (under mutex).
typedef struct {
    sqlite3 *db;                    //  the thread's own connection
    char *wal_path;                 //  DIR/zchat.db-wal
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;            //  on CLOCK_MONOTONIC
    bool mutex_ready;               //  mutex and cond initialised
    bool started;                   //  the thread runs (join it)
    //  Under mutex
    bool stop;                      //  the thread must end
    bool wanted;                    //  a checkpoint was asked for
    bool hold;                      //  self test: skip checkpoints
    int64_t cap_bytes;              //  STORE_WAL_CAP_BYTES (the self test lowers it)
    uint64_t runs;                  //  checkpoint rounds done
    uint64_t truncates;             //  TRUNCATE checkpoints tried
    uint64_t restarts;              //  RESTART checkpoints that succeeded
    void (*between) (void *);       //  self test: called between PASSIVE
    void *between_arg;              //  and the RESTART decision
    //  WAL size in pages after the last commit: written by the event
    //  loop, read by the thread (how much a round left uncopied)
    atomic_int wal_pages;
    //  Set by the thread around every checkpoint that takes the write
    //  lock (RESTART, TRUNCATE): the event loop begins no transaction
    //  meanwhile, and waits for the lock as long as the thread holds it.
    atomic_bool locking;
    //  Checkpointer thread only: its busy handler's limit and current wait
    int busy_ms;
    int64_t busy_started;
    //  Event loop thread only
    int wake_at;                    //  wake the thread at this WAL size
    uint64_t wakes;                 //  times the WAL hook woke it
    //  Checkpointer thread only: the WAL's frames at the last RESTART;
    //  slow RESTARTs since the last log line, the longest, when logged
    int restarted_at;
    int slow_count;
    int64_t slow_worst_ms;
    int slow_worst_tail;
    int64_t slow_logged_ms;
} store_ckpt_t;

//  Self test access to the checkpointer: hold (skip checkpoints) or let
//  it go, wake it, read its counters, set its WAL cap.
void
    zchat_store_ckpt_hold (zchat_store_t *self, bool hold);
void
    zchat_store_ckpt_wake (zchat_store_t *self);
void
    zchat_store_ckpt_stats (zchat_store_t *self, uint64_t *runs, uint64_t *truncates,
                            uint64_t *restarts);
void
    zchat_store_ckpt_cap (zchat_store_t *self, int64_t cap_bytes);
void
    zchat_store_ckpt_between (zchat_store_t *self, void (*between) (void *), void *arg);
//  Self test: close or open the gate as the thread does around a RESTART
void
    zchat_store_ckpt_gate (zchat_store_t *self, bool locking);
//  The event loop connection's busy handler (arg is the store), for the
//  self test
int
    zchat_store_busy_wait (void *arg, int count);
//  The checkpointer's RESTART rule (STORE_CKPT_RESTART_PAGES), for the
//  self test
bool
    zchat_store_ckpt_restart_due (int frames, int done, int now_pages, int restarted_at);

//  Self test access to the idempotency index: remember a key hash for a
//  chunk id (as an append does, evicting past keys_max), count the keys
//  with a hash that a lookup finds, and check every invariant of ring and
//  index (returns 0, or -1 after logging what is broken).
void
    zchat_store_keys_add (zchat_store_t *self, uint64_t hash, int64_t chunk);
size_t
    zchat_store_keys_count (zchat_store_t *self, uint64_t hash);
int
    zchat_store_keys_check (zchat_store_t *self);

//  Self test access to the remembered newest seqs: 1 with *last_seq set
//  if the room's is remembered, else 0.
int
    zchat_store_newest_known (zchat_store_t *self, const char *room, uint64_t *last_seq);

//  Every statement the store runs, prepared once.
typedef enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_CHUNK_INSERT,
    ST_CHUNK_GET,
    ST_CHUNK_AT,
    ST_CHUNK_DOWN,
    ST_CHUNK_FROM,
    ST_CHUNK_DELETE,
    ST_CHUNK_MIN_TS,
    ST_CHUNK_NEXT,
    ST_CHUNK_NEWEST,
    ST_CHUNK_SINCE,
    ST_ROOM_GET,
    ST_ROOM_NEWEST,
    ST_ROOM_FLOOR,
    ST_ROOM_LAST,
    ST_ROOM_NEXT,
    ST_TOPIC_GET,
    ST_TOPIC_SET,
    ST_NICK_OWNER,
    ST_NICK_CLAIM,
    ST_NICK_RELEASE,
    ST_NICK_COUNT,
    ST_COUNT
} store_stmt_t;

//  Every statement's SQL, by store_stmt_t.
extern const char *zchat_store_sql [ST_COUNT];

//  One remembered message id: a keyed hash of (nick, msg_id) and the id
//  of the chunk holding the message. The hash only narrows the search: a
//  match counts once the chunk itself has that nick and msg_id.
typedef struct {
    uint64_t hash;
    int64_t chunk;
} store_key_t;

//  A room touched by the open group, and the chunk being filled for it.
typedef struct {
    char room [ZCHAT_MAX_ROOM + 1];
    size_t room_len;
    size_t slot;                    //  its slot in the touched table
    uint64_t last_seq;              //  newest seq: committed or appended
    //  The chunk being filled; count 0 = none yet.
    int64_t id;
    uint64_t count;
    uint64_t first_seq;
    uint64_t chunk_seq;             //  its newest seq (the delta base)
    uint64_t prev_ts;               //  ts of its newest message
    uint64_t min_ts, max_ts;
    uint8_t *head;                  //  head entries
    size_t head_size, head_limit;
    uint8_t *data;                  //  texts; the blob once written out
    size_t data_size, data_limit;
} store_pending_t;

//  A room's newest committed seq, remembered (zchat_store_t.newest).
typedef struct {
    uint64_t last_seq;
    uint8_t room_len;                   //  0: a free slot
    char room [ZCHAT_MAX_ROOM];         //  not NUL-terminated
} store_newest_t;

//  A chunk as the retention and history code handles it: its row, or the
//  open group's chunk of a room (pending, not yet written).
typedef struct {
    int64_t id;
    uint64_t first_seq, last_seq, count, min_ts, max_ts;
    const store_pending_t *pending;
} store_chunk_t;

//  Walks the messages of a chunk. text is NULL when only the head was
//  read (start-up): then text_at is NULL too.
typedef struct {
    const uint8_t *head;
    size_t head_size, head_pos;
    const uint8_t *text;
    size_t text_size, text_pos;
    uint64_t left;                  //  messages still to read
    //  The current message
    uint64_t seq, ts, msg_id;
    uint8_t kind;
    char nick [ZCHAT_MAX_NICK + 1];
    size_t nick_len;
    const char *text_at;
    size_t text_len;
} store_cursor_t;

struct _zchat_store_t {
    sqlite3 *db;
    sqlite3_stmt *stmt [ST_COUNT];
    int lock_fd;                    //  holds the flock while we live
    int64_t busy_started;           //  zchat_store_busy_wait: when the wait began
    bool busy_gated;                //  it saw the checkpointer's gate closed
    int64_t gate_started;           //  s_begin waited at the gate from then
    bool in_group;                  //  a group transaction is open
    bool group_failed;              //  the open group can only roll back
    int64_t next_id;                //  id of the next chunk
    int64_t group_id;               //  next_id when the group began

    //  Rooms touched by the open group: pending [0, pending_count) in
    //  use, the rest keep their buffers for later groups. touched is an
    //  open-addressed table of pending index + 1, by room name.
    store_pending_t *pending;
    size_t pending_count;
    size_t pending_limit;
    size_t pending_bytes;           //  their buffers, in all
    size_t pending_keep;            //  kept between groups (STORE_KEEP_BYTES)
    uint32_t *touched;
    size_t touched_size;            //  slots, a power of two
    size_t pending_last;            //  the entry s_pending_find found last

    //  Idempotency: a ring of keys in the order they were added (absolute
    //  numbers keys_tail..keys_head), and a bucketed index of ring
    //  position + 1 by hash.
    store_key_t *keys;
    size_t keys_limit;              //  ring capacity, a power of two
    size_t keys_max;                //  the window (STORE_KEYS_MAX)
    uint64_t keys_tail;
    uint64_t keys_head;
    uint64_t keys_group;            //  keys_head when the group began
    uint32_t *index;                //  buckets * STORE_BUCKET_SLOTS slots
    uint8_t *spill;                 //  per bucket: keys that spilled past it
    size_t buckets;                 //  keys_limit / 8, a power of two
    uint64_t hash_seed;             //  random: ids cannot be chosen to collide
    //  The last nick hashed (s_nick_hash)
    char nick [ZCHAT_MAX_NICK];
    size_t nick_len;                //  SIZE_MAX: none yet
    uint64_t nick_hash;

    //  The newest committed seq of rooms that groups touched, by name
    //  (seeded hash, linear probing), so that a group asks SQLite only
    //  for rooms it is the first to touch. Written after each commit;
    //  nothing else changes a room's newest seq (we are the only writer).
    store_newest_t *newest;
    size_t newest_size;                 //  slots, a power of two
    size_t newest_count;
    size_t newest_max;                  //  STORE_NEWEST_MAX (the self test lowers it)

    //  Seqs published before their commit (durability off; see
    //  zchat_published.h). group_published: the open group's went out.
    //  unsafe: the newest published seq (uint64_t *) of each room whose
    //  group then failed to commit, by name, until a commit writes it
    //  into rooms.last_seq; while there are any, records are appended.
    zchat_published_t *published;
    bool published_folded;          //  the last run's record was read
    bool group_published;
    zhashx_t *unsafe;
    int64_t published_logged_ms;    //  a failed write was last logged

    //  Where the count rule's round robin over rooms goes on.
    char retain_cursor [ZCHAT_MAX_ROOM + 1];
    //  Where the age rule's walk over chunks goes on: after this id (0 =
    //  from the oldest chunk).
    int64_t age_cursor;

    store_ckpt_t ckpt;
};

#endif
