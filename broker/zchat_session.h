//  zchat_session — the broker's live sessions: one record per greeted
//  client, indexed by peer (the loop's opaque envelope blob) and by nick,
//  and kept in least-recently-seen order so expiry looks only at the
//  oldest.
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

//  A session remembers the ids of the last ZCHAT_DM_RECENT (zchat_msg.h)
//  DMs it had delivered, so that a DM sent again with the same id (a
//  client whose ACK was lost resends it, and libzchat resends everything
//  unanswered after a reconnect) is acknowledged as the first was and not
//  delivered twice. DMs are not stored: this memory is the session's, in
//  a ring allocated at its first DM and grown from ZCHAT_DM_RECENT_FIRST
//  to ZCHAT_DM_RECENT entries (16 bytes each), oldest forgotten first. A
//  resend of an older one is delivered again (PROTOCOL.md 6.3); libzchat
//  keeps its DMs within the bound (S_DM_WINDOW in client/zchat_client.c).
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
    uint64_t last_seen_ms;                      //  monotonic clock; table (touch)
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
                                                //  WHO, ROOMS
    uint64_t sender_gen;                        //  the open group's, if it
    size_t sender;                              //  holds SAYs of this session:
                                                //  its entry in the group
    zchat_dm_seen_t *dms;                       //  recent DMs, a ring; NULL
                                                //  before the first (dm_*)
    uint32_t dm_count;                          //  entries held
    uint32_t dm_limit;                          //  entries allocated
    uint32_t dm_next;                           //  once full, the oldest
    //  table: indexes and recency list
    zchat_blob_t peer_key;
    zchat_session_t *older;
    zchat_session_t *newer;
};

typedef struct _zchat_sessions_t zchat_sessions_t;

//  Create an empty table. Returns NULL if out of memory.
zchat_sessions_t *
    zchat_sessions_new (void);

//  Free the table and every session still in it (their rooms arrays too;
//  the rooms themselves are not touched). Nulls *self_p. Safe on NULL.
void
    zchat_sessions_destroy (zchat_sessions_t **self_p);

//  Create a session for peer (copied; at most ZCHAT_MAX_PEER bytes) with
//  nick, token and address (copied; may be NULL), seen at now_ms, and
//  index it. The peer and the nick must not be in the table already.
//  Returns the session (owned by the table), or NULL if out of memory.
zchat_session_t *
    zchat_sessions_add (zchat_sessions_t *self, const uint8_t *peer,
                        size_t peer_size, const char *nick,
                        const char *token, const char *address,
                        uint64_t now_ms);

//  Find a session by peer or by nick; NULL if none. Borrowed.
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

//  Rename a session; nick must be free. Returns 0, or -1 if out of memory
//  (then the session keeps its old nick).
int
    zchat_sessions_rename (zchat_sessions_t *self, zchat_session_t *session,
                           const char *nick);

//  Record a sign of life: the session becomes the most recently seen.
void
    zchat_sessions_touch (zchat_sessions_t *self, zchat_session_t *session,
                          uint64_t now_ms);

//  The least recently seen session, or NULL if the table is empty.
zchat_session_t *
    zchat_sessions_oldest (zchat_sessions_t *self);

//  Remove a session from the table and free it; nulls *session_p. The
//  caller has taken it out of its rooms first.
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
