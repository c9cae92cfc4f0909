//  zchat_session — the broker's live sessions: one record per greeted
//  client, indexed by peer (the loop's opaque envelope blob), by nick and
//  by the connection it is bound to (version 6), and kept in
//  least-recently-seen order so expiry looks only at the oldest. A queue
//  of sessions whose connection is to be checked, earliest first, lets
//  the server find the due ones without a scan.
//
//  A session record is a plain struct the server reads and writes
//  directly, except for the fields marked "table": those are the table's
//  and change only through the functions below, which keep the indexes
//  right. Room membership lives in zchat_room.

#ifndef ZCHAT_SESSION_H_INCLUDED
#define ZCHAT_SESSION_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zchat_msg.h"
#include "zchat_util.h"

#define ZCHAT_TOKEN_SIZE    32          //  hex digits the broker issues
#define ZCHAT_KEY_SIZE      40          //  a Z85 CURVE public key
#define ZCHAT_MAX_PEER      1024        //  largest peer blob accepted
//  Connections are indexed by descriptor in an array as long as the
//  largest descriptor bound (the kernel hands out the lowest free one, so
//  it stays about as long as the connections are many); a descriptor at
//  or above this is not bound, and its session ends by silence as before
//  version 6.
#define ZCHAT_SESSION_MAX_FD    (1 << 20)

//  A session remembers the ids of the last ZCHAT_DM_RECENT (zchat_msg.h)
//  DMs it had delivered, so that a DM sent again with the same id (a
//  client whose ACK was lost resends it, and libzchat resends everything
//  unanswered after a reconnect) is acknowledged as the first was and not
//  delivered twice. DMs are not stored: this memory is the session's, in
//  a ring allocated at its first DM and grown from ZCHAT_DM_RECENT_FIRST
//  to ZCHAT_DM_RECENT entries (16 bytes each), oldest forgotten first. A
//  resend of an older one is delivered again (PROTOCOL.md 6.3); libzchat
//  keeps its DMs within the bound (S_DM_WINDOW in client/zchat_client_int.h).
#define ZCHAT_DM_RECENT_FIRST   16

typedef struct _zchat_room_t zchat_room_t;
typedef struct _zchat_session_t zchat_session_t;

typedef struct {
    const uint8_t *data;
    size_t size;
} zchat_blob_t;

//  A DM the session had delivered: its request id and its ACK's ts.
typedef struct {
    uint64_t id;
    uint64_t ts;
} zchat_dm_seen_t;

struct _zchat_session_t {
    char nick  [ZCHAT_MAX_NICK + 1];            //  table
    char token [ZCHAT_TOKEN_SIZE + 1];
    char key   [ZCHAT_KEY_SIZE + 1];            //  CURVE key, "" without
    uint8_t version;                            //  protocol version in use
    char *address;                              //  table; NULL if unknown
    uint8_t *peer;                              //  table; a private copy
    size_t peer_size;                           //  table
    uint64_t started_ms;                        //  times on the server's
    uint64_t last_seen_ms;                      //  monotonic clock; table
                                                //  (touch, requeue): its place
                                                //  in the recency list
    uint64_t alive_ms;                          //  table (touch): its last sign
                                                //  of life; the server also
                                                //  sets it when a check of its
                                                //  connection succeeds
    int fd;                                     //  table (bind): the descriptor
                                                //  of the connection it is bound
                                                //  to, -1 if none: then it ends
                                                //  after a silence
    uint64_t check_ms;                          //  table (check): a check of its
                                                //  connection is due then, 0 none
    zchat_room_t **rooms;                       //  rooms joined, join order
    size_t room_count;
    size_t room_limit;                          //  allocated slots
    zchat_bucket_t messages;                    //  rate limit: SAY, DM
    uint64_t msg_id_max;                        //  largest SAY/DM id seen
    uint64_t refused_until_ms;                  //  the hold (zchat_server_
    bool held;                                  //  say.c): all refused till
                                                //  then, and till a resend
    bool hold_says;                             //  a fair-share hold: SAYs
                                                //  only, DMs go on
    zchat_bucket_t commands;                    //  rate limit: JOIN, LEAVE,
                                                //  NICK, TOPIC set, PROBE
    uint64_t fair_period;                       //  fair share: the period
    uint32_t fair_count;                        //  counted, SAYs in it
    uint32_t fair_prev_count;                   //  SAYs in the period before
    uint32_t fair_company_base;                 //  fair_count when it first
    bool fair_company_seen;                     //  saw the period's second
                                                //  sender (or was it)
    zchat_bucket_t queries;                     //  reply bytes: HISTORY,
                                                //  WHO, ROOMS, TOPIC read
    uint64_t sender_gen;                        //  the open group's, if it
    size_t sender;                              //  holds SAYs of this session:
                                                //  its entry in the group
    zchat_dm_seen_t *dms;                       //  recent DMs, a ring; NULL
                                                //  before the first (dm_*)
    uint32_t dm_count;                          //  entries held
    uint32_t dm_limit;                          //  entries allocated
    uint32_t dm_next;                           //  once full, the oldest
    //  table: indexes, recency list, check queue
    zchat_blob_t peer_key;
    zchat_session_t *older;
    zchat_session_t *newer;
    zchat_session_t *fd_prev;                   //  others bound to its fd
    zchat_session_t *fd_next;
    zchat_session_t *check_prev;
    zchat_session_t *check_next;
};

typedef struct _zchat_sessions_t zchat_sessions_t;

//  Create an empty table. Returns NULL if out of memory.
zchat_sessions_t *
    zchat_sessions_new (void);

//  Free the table and every session still in it (their rooms arrays too;
//  the rooms themselves are not touched). Nulls *self_p. Safe on NULL.
void
    zchat_sessions_destroy (zchat_sessions_t **self_p);

//  Nicks: the table indexes a session's nick in any ASCII case
//  (zchat_nick_compare): "alice" and "Alice" are one nick, which a session
//  holds in the spelling it chose (session->nick, for display).
//
//  Create a session for peer (copied; at most ZCHAT_MAX_PEER bytes) with
//  nick, token and address (copied; may be NULL), seen at now_ms, and
//  index it. The peer and the nick (in any case) must not be in the table
//  already.
//  Returns the session (owned by the table), or NULL if out of memory.
zchat_session_t *
    zchat_sessions_add (zchat_sessions_t *self, const uint8_t *peer,
                        size_t peer_size, const char *nick,
                        const char *token, const char *address,
                        uint64_t now_ms);

//  Find a session by peer, or by nick in any case; NULL if none. Borrowed.
zchat_session_t *
    zchat_sessions_by_peer (zchat_sessions_t *self, const uint8_t *peer,
                            size_t peer_size);
zchat_session_t *
    zchat_sessions_by_nick (zchat_sessions_t *self, const char *nick);

//  Move a session to another peer and address (a takeover). The new peer
//  must not have a session. Returns 0, or -1 if out of memory (then the
//  session is unchanged).
int
    zchat_sessions_move (zchat_sessions_t *self, zchat_session_t *session,
                         const uint8_t *peer, size_t peer_size,
                         const char *address);

//  Rename a session; nick must be free, or another case of the session's
//  own. Returns 0, or -1 if out of memory (then the session keeps its old
//  nick).
int
    zchat_sessions_rename (zchat_sessions_t *self, zchat_session_t *session,
                           const char *nick);

//  Record a sign of life: the session becomes the most recently seen.
void
    zchat_sessions_touch (zchat_sessions_t *self, zchat_session_t *session,
                          uint64_t now_ms);

//  Make the session the most recently seen without a sign of life
//  (alive_ms stays): expiry moves past a session that silence does not
//  end, and comes back to it a timeout later.
void
    zchat_sessions_requeue (zchat_sessions_t *self, zchat_session_t *session,
                            uint64_t now_ms);

//  Bind the session to the connection with descriptor fd (0 up to
//  ZCHAT_SESSION_MAX_FD), or unbind it (fd -1). Several sessions may be
//  bound to one descriptor (a connection closed and a new one given the
//  same number). Returns 0, or -1 if fd is out of range or out of memory
//  (then the session is unbound).
int
    zchat_sessions_bind (zchat_sessions_t *self, zchat_session_t *session, int fd);

//  The first session bound to fd, or NULL; the others follow it through
//  fd_next. Borrowed.
zchat_session_t *
    zchat_sessions_bound (zchat_sessions_t *self, int fd);

//  The connection with descriptor fd closed at now_ms (the loop heard).
//  Remembered, whether or not a session is bound to it, until fd closes
//  again: see closed_ms.
void
    zchat_sessions_closed (zchat_sessions_t *self, int fd, uint64_t now_ms);

//  When a connection with descriptor fd last closed, or 0 if none did.
uint64_t
    zchat_sessions_closed_ms (zchat_sessions_t *self, int fd);

//  Queue a check of the session's connection, due at due_ms. A session
//  queued already keeps the earlier of its two times.
void
    zchat_sessions_check (zchat_sessions_t *self, zchat_session_t *session,
                          uint64_t due_ms);

//  The queued session whose check is due first, or NULL. Borrowed.
zchat_session_t *
    zchat_sessions_next_check (zchat_sessions_t *self);

//  Take the session off the check queue (a no-op if it is not on it).
void
    zchat_sessions_checked (zchat_sessions_t *self, zchat_session_t *session);

//  The least recently seen session, or NULL if the table is empty.
zchat_session_t *
    zchat_sessions_oldest (zchat_sessions_t *self);

//  Remove a session from the table (its indexes and the check queue too)
//  and free it; nulls *session_p. The caller has taken it out of its rooms
//  first.
void
    zchat_sessions_remove (zchat_sessions_t *self, zchat_session_t **session_p);

//  A DM with this id from session was delivered and is still among its
//  newest ZCHAT_DM_RECENT: returns true and sets *ts to the ts its ACK
//  gave. Id 0 is never found.
bool
    zchat_session_dm_seen (const zchat_session_t *session, uint64_t id,
                           uint64_t *ts);

//  Remember that session had the DM with this id delivered, its ACK
//  stamped ts; past ZCHAT_DM_RECENT the oldest is forgotten. The id must
//  not be remembered already; id 0 is not remembered (it answers
//  nothing, so it is no retry). Returns 0, or -1 if out of memory (then
//  it is not remembered, and a resend of it would be delivered again).
int
    zchat_session_dm_remember (zchat_session_t *session, uint64_t id,
                               uint64_t ts);

//  Number of sessions, and number of sessions from one address.
size_t
    zchat_sessions_size (zchat_sessions_t *self);
size_t
    zchat_sessions_at_address (zchat_sessions_t *self, const char *address);

//  Self test; asserts on failure.
void
    zchat_session_test (bool verbose);

#endif
