//  zchat_store — the broker's durable state in SQLite (WAL mode): room
//  messages with their sequence numbers, the (sender, message id) pairs
//  that make sends idempotent, room topics, and nickname-to-key bindings.
//
//  The broker writes in groups: begin, many appends, commit. A message is
//  durable against a crash of the broker process once commit returns 0
//  (synchronous=NORMAL in WAL mode); with fsync on (synchronous=FULL) also
//  against power loss. One store per data directory: a second process
//  opening the same directory is refused (an flock on DIR/zchat.lock).

#ifndef ZCHAT_STORE_H_INCLUDED
#define ZCHAT_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The database file in the store's directory.
#define ZCHAT_STORE_FILE    "zchat.db"

typedef struct _zchat_store_t zchat_store_t;

//  Open (creating if missing) the store in directory dir, itself created
//  if missing. On failure returns NULL and writes one line of explanation
//  into error (capacity error_size), e.g. "data directory /x is in use by
//  another zchat-broker (pid 123)".
zchat_store_t *
    zchat_store_new (const char *dir, bool fsync, char *error, size_t error_size);

//  Close the store; nulls *self_p. Safe on NULL. Rolls back an open
//  group (the broker commits before destroying).
void
    zchat_store_destroy (zchat_store_t **self_p);

//  Newest sequence number of a room, 0 if it has no messages yet (0 also
//  on a storage error, which is logged).
uint64_t
    zchat_store_last_seq (zchat_store_t *self, const char *room);

//  The same, telling a storage error apart: 0 with *last_seq set (0 if the
//  room has no messages yet), or -1 on a storage error. A room must not
//  be numbered from a seq the store could not read: it would hand out
//  seqs already taken.
int
    zchat_store_room_seq (zchat_store_t *self, const char *room, uint64_t *last_seq);

//  Oldest sequence number still held for a room (retention removes older
//  ones): 0 with *first_seq set (0 if none is held), or -1 on a storage
//  error (logged). An error is not "none": that would tell clients the
//  room's history is gone.
int
    zchat_store_first_seq (zchat_store_t *self, const char *room, uint64_t *first_seq);

//  Group writes. begin starts a transaction; commit makes every append
//  since begin durable. Return 0, or -1 on a storage error (then the
//  group is rolled back and nothing of it was stored).
int
    zchat_store_begin (zchat_store_t *self);
int
    zchat_store_commit (zchat_store_t *self);
void
    zchat_store_rollback (zchat_store_t *self);

//  The open group is about to be published before its commit (durability
//  off). Records each room's newest seq in it, and those of earlier
//  published groups that failed to commit, in DIR/zchat.published, so
//  that if the process dies before they are stored, the next open numbers
//  those rooms past them instead of handing their seqs out again. Returns
//  0, or -1 if the record could not be written (logged): then the group
//  must not go out before its commit.
int
    zchat_store_publishing (zchat_store_t *self);

//  Append one room message inside a group. msg_id is the sender's message
//  id: if (nick, msg_id) was stored before, nothing is written and 1 is
//  returned with the original room, seq and ts in *orig_* (orig_room has
//  capacity ZCHAT_MAX_ROOM + 1). Returns 0 when stored, -1 on error. msg_id
//  0 is never taken for a retry (stored without an id); a (room, seq)
//  already taken returns -1.
int
    zchat_store_append (zchat_store_t *self, const char *room, uint64_t seq,
                        uint64_t ts, const char *nick, uint8_t kind,
                        const char *text, size_t text_size, uint64_t msg_id,
                        char *orig_room, uint64_t *orig_seq, uint64_t *orig_ts);

//  Called once per message by zchat_store_history, in ascending seq order.
//  text is not NUL-terminated and is valid only during the call. Return 0
//  to go on, non-zero to stop.
typedef int (zchat_store_fn) (void *arg, uint64_t seq, uint64_t ts,
                              const char *nick, uint8_t kind,
                              const char *text, size_t text_size);

//  Messages of room with from_seq <= seq <= to_seq (to_seq 0 = newest), in
//  ascending order, at most limit of them; from_seq 0 = the last limit
//  messages up to to_seq (PROTOCOL.md 6.4). fn must not call back into the
//  store. Returns the number passed to fn, or -1 on error.
int
    zchat_store_history (zchat_store_t *self, const char *room,
                         uint64_t from_seq, uint64_t to_seq, size_t limit,
                         zchat_store_fn *fn, void *arg);

//  Delete what is over the retention limits (max_messages per room, 0 =
//  unlimited; max_age_ms, 0 = unlimited), with at most batch chunk rows
//  deleted, rewritten or passed over (and rooms examined) per call so that
//  the event loop never stalls; the broker calls it on a timer. A call
//  that ran out of budget goes on where it stopped at the next one, so a
//  call can return 0 while more is due. Returns the number of messages
//  removed from history, or -1 on error.
int
    zchat_store_retain (zchat_store_t *self, uint64_t max_messages,
                        uint64_t max_age_ms, uint64_t now_ms, size_t batch);

//  Room topics, kept across restarts. get fills topic (capacity
//  ZCHAT_MAX_TOPIC + 1), set_by (ZCHAT_MAX_NICK + 1) and *ts and returns 1;
//  returns 0 if the room has no topic (topic and set_by empty, *ts 0), or
//  -1 on a storage error (logged). set returns 0 or -1.
int
    zchat_store_topic_get (zchat_store_t *self, const char *room,
                           char *topic, char *set_by, uint64_t *ts);
int
    zchat_store_topic_set (zchat_store_t *self, const char *room,
                           const char *topic, const char *set_by, uint64_t ts);

//  Topic and nick writes made while a group is open join that group.
//
//  Nickname ownership under CURVE: the Z85 public key that owns nick. A
//  nick is one nick in any ASCII case: it is owned in every case by the
//  key that claimed it first in any case (a store from before that rule
//  may hold later claims of other cases by other keys: they are ignored,
//  and logged when the store opens). owner fills key (capacity 41) and
//  returns 1; returns 0 if nick is unowned (key empty), or -1 on a storage
//  error (logged). An error is not "unowned". claim binds an unowned nick
//  to key (0), or fails (-1: owned by another key, or a storage error).
//  release unbinds it in every case.
int
    zchat_store_nick_owner (zchat_store_t *self, const char *nick, char *key);
int
    zchat_store_nick_claim (zchat_store_t *self, const char *nick, const char *key);
int
    zchat_store_nick_release (zchat_store_t *self, const char *nick);

//  Number of nicks key owns (for the nicks-per-key limit; each nick once,
//  whatever its cases), or -1 on error.
int64_t
    zchat_store_nick_count (zchat_store_t *self, const char *key);

//  Self test; asserts on failure.
void
    zchat_store_test (bool verbose);

#endif
