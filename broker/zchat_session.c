//  zchat_session — the broker's live sessions, indexed by peer, nick and
//  connection, in least-recently-seen order (see zchat_session.h).

#include <czmq.h>
#include "zchat_session.h"
#include "zchat_util.h"

//  One connection's descriptor: the sessions bound to it, and when a
//  connection with it last closed.
typedef struct {
    zchat_session_t *bound;
    uint64_t closed_ms;
} s_fd_t;

struct _zchat_sessions_t {
    zhashx_t *by_peer;          //  zchat_blob_t * (inside the session) -> session
    zhashx_t *by_nick;          //  session->nick -> session, case-blind
    zhashx_t *addresses;        //  address (copied) -> count, as a pointer
    zchat_session_t *oldest;    //  recency list, oldest first
    zchat_session_t *newest;
    s_fd_t *fds;                //  by descriptor, fd_limit of them
    size_t fd_limit;
    zchat_session_t *check_first;   //  check queue, earliest due first
    zchat_session_t *check_last;
};


static size_t
s_blob_hash (const void *key)
{
    const zchat_blob_t *blob = (const zchat_blob_t *) key;
    return (size_t) zchat_hash_bytes (blob->data, blob->size);
}

static int
s_blob_compare (const void *key1, const void *key2)
{
    const zchat_blob_t *a = (const zchat_blob_t *) key1;
    const zchat_blob_t *b = (const zchat_blob_t *) key2;
    if (a->size != b->size)
        return a->size < b->size ? -1 : 1;
    return a->size ? memcmp (a->data, b->data, a->size) : 0;
}


//  ---------------------------------------------------------------------
//  Create an empty table.

zchat_sessions_t *
zchat_sessions_new (void)
{
    zchat_sessions_t *self = (zchat_sessions_t *) zmalloc (sizeof (zchat_sessions_t));
    if (!self)
        return NULL;
    self->by_peer = zhashx_new ();
    self->by_nick = zhashx_new ();
    self->addresses = zhashx_new ();
    if (!self->by_peer || !self->by_nick || !self->addresses) {
        zchat_sessions_destroy (&self);
        return NULL;
    }
    //  The indexes point at keys inside the sessions: nothing to copy or
    //  free, and the keys live exactly as long as their sessions.
    zhashx_set_key_duplicator (self->by_peer, NULL);
    zhashx_set_key_destructor (self->by_peer, NULL);
    zhashx_set_key_hasher (self->by_peer, s_blob_hash);
    zhashx_set_key_comparator (self->by_peer, s_blob_compare);

    //  A nick is one nick in any ASCII case: the hasher and the
    //  comparator fold alike, and the key is the session's own spelling.
    zhashx_set_key_duplicator (self->by_nick, NULL);
    zhashx_set_key_destructor (self->by_nick, NULL);
    zhashx_set_key_hasher (self->by_nick, zchat_hash_nick);
    zhashx_set_key_comparator (self->by_nick, zchat_nick_compare);

    //  Addresses keep czmq's default strdup/free of keys.
    zhashx_set_key_hasher (self->addresses, zchat_hash_string);
    return self;
}


static void
s_session_free (zchat_session_t **session_p)
{
    zchat_session_t *session = *session_p;
    if (session) {
        free (session->address);
        free (session->peer);
        free (session->rooms);
        free (session->dms);
        free (session);
        *session_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  Free the table and every session still in it.

void
zchat_sessions_destroy (zchat_sessions_t **self_p)
{
    assert (self_p);
    zchat_sessions_t *self = *self_p;
    if (self) {
        zchat_session_t *session = self->oldest;
        while (session) {
            zchat_session_t *next = session->newer;
            s_session_free (&session);
            session = next;
        }
        zhashx_destroy (&self->by_peer);
        zhashx_destroy (&self->by_nick);
        zhashx_destroy (&self->addresses);
        free (self->fds);
        free (self);
        *self_p = NULL;
    }
}


static void
s_address_add (zchat_sessions_t *self, const char *address)
{
    if (!address)
        return;
    uintptr_t count = (uintptr_t) zhashx_lookup (self->addresses, address);
    //  Out of memory here only makes the per-address limit lenient.
    if (count)
        zhashx_update (self->addresses, address, (void *) (count + 1));
    else
        zhashx_insert (self->addresses, address, (void *) (uintptr_t) 1);
}

static void
s_address_drop (zchat_sessions_t *self, const char *address)
{
    if (!address)
        return;
    uintptr_t count = (uintptr_t) zhashx_lookup (self->addresses, address);
    if (count > 1)
        zhashx_update (self->addresses, address, (void *) (count - 1));
    else
    if (count == 1)
        zhashx_delete (self->addresses, address);
}


//  Recency list: unlink, and append as the newest.
static void
s_unlink (zchat_sessions_t *self, zchat_session_t *session)
{
    if (session->older)
        session->older->newer = session->newer;
    else
        self->oldest = session->newer;
    if (session->newer)
        session->newer->older = session->older;
    else
        self->newest = session->older;
    session->older = session->newer = NULL;
}

static void
s_append (zchat_sessions_t *self, zchat_session_t *session)
{
    session->older = self->newest;
    session->newer = NULL;
    if (self->newest)
        self->newest->newer = session;
    else
        self->oldest = session;
    self->newest = session;
}


//  ---------------------------------------------------------------------
//  Create and index a session. Returns it, or NULL if out of memory.

zchat_session_t *
zchat_sessions_add (zchat_sessions_t *self, const uint8_t *peer,
                    size_t peer_size, const char *nick, const char *token,
                    const char *address, uint64_t now_ms)
{
    assert (self);
    assert (peer_size <= ZCHAT_MAX_PEER);
    assert (strlen (nick) <= ZCHAT_MAX_NICK);
    assert (strlen (token) <= ZCHAT_TOKEN_SIZE);

    zchat_session_t *session = (zchat_session_t *) zmalloc (sizeof (zchat_session_t));
    if (!session)
        return NULL;
    session->peer = (uint8_t *) malloc (peer_size ? peer_size : 1);
    session->address = address ? strdup (address) : NULL;
    if (!session->peer || (address && !session->address)) {
        s_session_free (&session);
        return NULL;
    }
    if (peer_size)
        memcpy (session->peer, peer, peer_size);
    session->peer_size = peer_size;
    session->peer_key.data = session->peer;
    session->peer_key.size = peer_size;
    strcpy (session->nick, nick);
    strcpy (session->token, token);
    session->started_ms = now_ms;
    session->last_seen_ms = now_ms;
    session->alive_ms = now_ms;
    session->fd = -1;

    if (zhashx_insert (self->by_peer, &session->peer_key, session)) {
        s_session_free (&session);
        return NULL;
    }
    if (zhashx_insert (self->by_nick, session->nick, session)) {
        zhashx_delete (self->by_peer, &session->peer_key);
        s_session_free (&session);
        return NULL;
    }
    s_address_add (self, address);
    s_append (self, session);
    return session;
}


//  ---------------------------------------------------------------------
//  Find a session by peer; NULL if none.

zchat_session_t *
zchat_sessions_by_peer (zchat_sessions_t *self, const uint8_t *peer,
                        size_t peer_size)
{
    assert (self);
    zchat_blob_t key = { peer, peer_size };
    return (zchat_session_t *) zhashx_lookup (self->by_peer, &key);
}


//  ---------------------------------------------------------------------
//  Find a session by nick, in any ASCII case; NULL if none.

zchat_session_t *
zchat_sessions_by_nick (zchat_sessions_t *self, const char *nick)
{
    assert (self);
    return (zchat_session_t *) zhashx_lookup (self->by_nick, nick);
}


//  ---------------------------------------------------------------------
//  Move a session to another peer and address. Returns 0 or -1.

int
zchat_sessions_move (zchat_sessions_t *self, zchat_session_t *session,
                     const uint8_t *peer, size_t peer_size, const char *address)
{
    assert (self);
    assert (session);
    assert (peer_size <= ZCHAT_MAX_PEER);

    //  Allocate everything first, so that a failure leaves all as it was.
    uint8_t *new_peer = (uint8_t *) malloc (peer_size ? peer_size : 1);
    char *new_address = address ? strdup (address) : NULL;
    if (!new_peer || (address && !new_address)) {
        free (new_peer);
        free (new_address);
        return -1;
    }
    if (peer_size)
        memcpy (new_peer, peer, peer_size);

    zhashx_delete (self->by_peer, &session->peer_key);
    uint8_t *old_peer = session->peer;
    size_t old_size = session->peer_size;
    session->peer = new_peer;
    session->peer_size = peer_size;
    session->peer_key.data = new_peer;
    session->peer_key.size = peer_size;
    if (zhashx_insert (self->by_peer, &session->peer_key, session)) {
        //  Put the old key back; re-inserting what was just there fits.
        session->peer = old_peer;
        session->peer_size = old_size;
        session->peer_key.data = old_peer;
        session->peer_key.size = old_size;
        int rc = zhashx_insert (self->by_peer, &session->peer_key, session);
        assert (rc == 0);
        free (new_peer);
        free (new_address);
        return -1;
    }
    free (old_peer);
    s_address_drop (self, session->address);
    free (session->address);
    session->address = new_address;
    s_address_add (self, new_address);
    return 0;
}


//  ---------------------------------------------------------------------
//  Rename a session (also to another case of its nick). Returns 0 or -1.

int
zchat_sessions_rename (zchat_sessions_t *self, zchat_session_t *session,
                       const char *nick)
{
    assert (self);
    assert (session);
    assert (strlen (nick) <= ZCHAT_MAX_NICK);

    char old_nick [ZCHAT_MAX_NICK + 1];
    strcpy (old_nick, session->nick);
    zhashx_delete (self->by_nick, session->nick);
    strcpy (session->nick, nick);
    if (zhashx_insert (self->by_nick, session->nick, session)) {
        strcpy (session->nick, old_nick);
        int rc = zhashx_insert (self->by_nick, session->nick, session);
        assert (rc == 0);
        return -1;
    }
    return 0;
}


//  ---------------------------------------------------------------------
//  Record a sign of life.

void
zchat_sessions_touch (zchat_sessions_t *self, zchat_session_t *session,
                      uint64_t now_ms)
{
    assert (self);
    assert (session);
    session->alive_ms = now_ms;
    zchat_sessions_requeue (self, session, now_ms);
}


//  ---------------------------------------------------------------------
//  Make the session the most recently seen, without a sign of life.

void
zchat_sessions_requeue (zchat_sessions_t *self, zchat_session_t *session,
                        uint64_t now_ms)
{
    assert (self);
    assert (session);
    session->last_seen_ms = now_ms;
    if (self->newest != session) {
        s_unlink (self, session);
        s_append (self, session);
    }
}


//  ---------------------------------------------------------------------
//  Connections: the descriptor index

//  Make room for descriptor fd. Returns 0, or -1 if out of memory.
static int
s_fds_reach (zchat_sessions_t *self, int fd)
{
    if ((size_t) fd < self->fd_limit)
        return 0;
    size_t limit = self->fd_limit? self->fd_limit: 256;
    while (limit <= (size_t) fd)
        limit *= 2;
    s_fd_t *fds = (s_fd_t *) realloc (self->fds, limit * sizeof (s_fd_t));
    if (!fds)
        return -1;
    memset (fds + self->fd_limit, 0, (limit - self->fd_limit) * sizeof (s_fd_t));
    self->fds = fds;
    self->fd_limit = limit;
    return 0;
}

//  Take a session out of its descriptor's list, if it is bound.
static void
s_unbind (zchat_sessions_t *self, zchat_session_t *session)
{
    if (session->fd < 0)
        return;
    if (session->fd_prev)
        session->fd_prev->fd_next = session->fd_next;
    else
        self->fds [session->fd].bound = session->fd_next;
    if (session->fd_next)
        session->fd_next->fd_prev = session->fd_prev;
    session->fd_prev = session->fd_next = NULL;
    session->fd = -1;
}

//  Bind a session to descriptor fd, or unbind it (-1). Returns 0 or -1.
int
zchat_sessions_bind (zchat_sessions_t *self, zchat_session_t *session, int fd)
{
    assert (self);
    assert (session);
    s_unbind (self, session);
    if (fd < 0)
        return 0;
    if (fd >= ZCHAT_SESSION_MAX_FD || s_fds_reach (self, fd))
        return -1;
    s_fd_t *entry = &self->fds [fd];
    session->fd_next = entry->bound;
    if (entry->bound)
        entry->bound->fd_prev = session;
    entry->bound = session;
    session->fd = fd;
    return 0;
}

//  The first session bound to fd, or NULL.
zchat_session_t *
zchat_sessions_bound (zchat_sessions_t *self, int fd)
{
    assert (self);
    return fd >= 0 && (size_t) fd < self->fd_limit? self->fds [fd].bound: NULL;
}

//  Remember that a connection with descriptor fd closed at now_ms.
void
zchat_sessions_closed (zchat_sessions_t *self, int fd, uint64_t now_ms)
{
    assert (self);
    //  Out of memory here only loses the record, and with it the check of
    //  a greeting that comes after its own connection closed; the hourly
    //  check (zchat_server.c) still finds that one.
    if (fd >= 0 && fd < ZCHAT_SESSION_MAX_FD && s_fds_reach (self, fd) == 0)
        self->fds [fd].closed_ms = now_ms;
}

//  When a connection with descriptor fd last closed, or 0.
uint64_t
zchat_sessions_closed_ms (zchat_sessions_t *self, int fd)
{
    assert (self);
    return fd >= 0 && (size_t) fd < self->fd_limit? self->fds [fd].closed_ms: 0;
}


//  ---------------------------------------------------------------------
//  The check queue, earliest due first. Checks are nearly always due a
//  fixed delay after now, so a new one goes at or near the end: the walk
//  from the end is a step or two.

//  Take a session off the check queue.
void
zchat_sessions_checked (zchat_sessions_t *self, zchat_session_t *session)
{
    assert (self);
    assert (session);
    if (session->check_ms == 0)
        return;
    if (session->check_prev)
        session->check_prev->check_next = session->check_next;
    else
        self->check_first = session->check_next;
    if (session->check_next)
        session->check_next->check_prev = session->check_prev;
    else
        self->check_last = session->check_prev;
    session->check_prev = session->check_next = NULL;
    session->check_ms = 0;
}

//  Queue a check of a session's connection, due at due_ms.
void
zchat_sessions_check (zchat_sessions_t *self, zchat_session_t *session,
                      uint64_t due_ms)
{
    assert (self);
    assert (session);
    //  0 means "none": a check due at time 0 is due at once all the same
    if (due_ms == 0)
        due_ms = 1;
    if (session->check_ms && session->check_ms <= due_ms)
        return;
    zchat_sessions_checked (self, session);
    zchat_session_t *before = self->check_last;
    while (before && before->check_ms > due_ms)
        before = before->check_prev;
    session->check_prev = before;
    session->check_next = before? before->check_next: self->check_first;
    if (session->check_next)
        session->check_next->check_prev = session;
    else
        self->check_last = session;
    if (before)
        before->check_next = session;
    else
        self->check_first = session;
    session->check_ms = due_ms;
}

//  The session whose check is due first, or NULL.
zchat_session_t *
zchat_sessions_next_check (zchat_sessions_t *self)
{
    assert (self);
    return self->check_first;
}


//  ---------------------------------------------------------------------
//  The least recently seen session, or NULL.

zchat_session_t *
zchat_sessions_oldest (zchat_sessions_t *self)
{
    assert (self);
    return self->oldest;
}


//  ---------------------------------------------------------------------
//  Remove a session from the table and free it.

void
zchat_sessions_remove (zchat_sessions_t *self, zchat_session_t **session_p)
{
    assert (self);
    assert (session_p);
    zchat_session_t *session = *session_p;
    if (!session)
        return;
    zhashx_delete (self->by_peer, &session->peer_key);
    zhashx_delete (self->by_nick, session->nick);
    s_address_drop (self, session->address);
    s_unlink (self, session);
    s_unbind (self, session);
    zchat_sessions_checked (self, session);
    s_session_free (session_p);
}


//  ---------------------------------------------------------------------
//  Whether a DM with this id was delivered lately; its ACK's ts if so.

bool
zchat_session_dm_seen (const zchat_session_t *session, uint64_t id, uint64_t *ts)
{
    assert (session);
    assert (ts);
    //  Ids are unique per sender, so the ring's order does not matter
    //  here: a plain scan of at most ZCHAT_DM_RECENT ids in one block,
    //  small beside the two sends a DM costs
    if (id == 0)
        return false;
    for (uint32_t i = 0; i < session->dm_count; i++)
        if (session->dms [i].id == id) {
            *ts = session->dms [i].ts;
            return true;
        }
    return false;
}


//  ---------------------------------------------------------------------
//  Remember a delivered DM, forgetting the oldest past ZCHAT_DM_RECENT.

int
zchat_session_dm_remember (zchat_session_t *session, uint64_t id, uint64_t ts)
{
    assert (session);
    if (id == 0)
        return 0;
    //  Most sessions send few DMs or none: the ring starts small and
    //  doubles as it fills, so its allocations are a handful per session
    //  and never one per message. It wraps only at its full size, so
    //  until then it is in order without moving anything.
    if (session->dm_count == session->dm_limit && session->dm_limit < ZCHAT_DM_RECENT) {
        uint32_t limit = session->dm_limit? session->dm_limit * 2: ZCHAT_DM_RECENT_FIRST;
        if (limit > ZCHAT_DM_RECENT)
            limit = ZCHAT_DM_RECENT;
        zchat_dm_seen_t *bigger = (zchat_dm_seen_t *) realloc (session->dms,
                                                               limit * sizeof (zchat_dm_seen_t));
        if (!bigger)
            return -1;
        session->dms = bigger;
        session->dm_limit = limit;
    }
    zchat_dm_seen_t *slot;
    if (session->dm_count < session->dm_limit)
        slot = &session->dms [session->dm_count++];
    else {
        slot = &session->dms [session->dm_next];
        session->dm_next = (session->dm_next + 1) % session->dm_limit;
    }
    slot->id = id;
    slot->ts = ts;
    return 0;
}


//  ---------------------------------------------------------------------
//  Number of sessions.

size_t
zchat_sessions_size (zchat_sessions_t *self)
{
    assert (self);
    return zhashx_size (self->by_peer);
}


//  ---------------------------------------------------------------------
//  Number of sessions from one address (0 for NULL).

size_t
zchat_sessions_at_address (zchat_sessions_t *self, const char *address)
{
    assert (self);
    if (!address)
        return 0;
    return (size_t) (uintptr_t) zhashx_lookup (self->addresses, address);
}


//  ---------------------------------------------------------------------
//  Self test

void
zchat_session_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_session: ");

    zchat_sessions_t *table = zchat_sessions_new ();
    assert (table);
    const uint8_t peer_a [] = { 0, 1, 2, 3, 4 };
    const uint8_t peer_b [] = { 0, 1, 2, 3, 5 };
    const uint8_t peer_c [] = { 0, 1, 2, 3 };       //  a prefix of the others

    zchat_session_t *alice = zchat_sessions_add (table, peer_a, sizeof (peer_a),
                                                 "alice", "t1", "10.0.0.1", 100);
    zchat_session_t *bob = zchat_sessions_add (table, peer_b, sizeof (peer_b),
                                               "bob", "t2", "10.0.0.1", 200);
    zchat_session_t *carol = zchat_sessions_add (table, peer_c, sizeof (peer_c),
                                                 "carol", "t3", NULL, 300);
    assert (alice && bob && carol);
    assert (zchat_sessions_size (table) == 3);
    assert (zchat_sessions_by_peer (table, peer_a, sizeof (peer_a)) == alice);
    assert (zchat_sessions_by_peer (table, peer_b, sizeof (peer_b)) == bob);
    assert (zchat_sessions_by_peer (table, peer_c, sizeof (peer_c)) == carol);
    assert (zchat_sessions_by_peer (table, peer_a, 3) == NULL);
    assert (zchat_sessions_by_nick (table, "bob") == bob);
    assert (zchat_sessions_by_nick (table, "dave") == NULL);
    assert (zchat_sessions_at_address (table, "10.0.0.1") == 2);
    assert (zchat_sessions_at_address (table, "10.0.0.2") == 0);
    assert (zchat_sessions_at_address (table, NULL) == 0);

    //  Recency: touching alice makes bob the oldest
    assert (zchat_sessions_oldest (table) == alice);
    zchat_sessions_touch (table, alice, 400);
    assert (zchat_sessions_oldest (table) == bob);
    assert (alice->last_seen_ms == 400);

    //  Takeover: bob moves to a new peer and address
    const uint8_t peer_d [] = { 9, 9 };
    assert (zchat_sessions_move (table, bob, peer_d, sizeof (peer_d), "10.0.0.2") == 0);
    assert (zchat_sessions_by_peer (table, peer_b, sizeof (peer_b)) == NULL);
    assert (zchat_sessions_by_peer (table, peer_d, sizeof (peer_d)) == bob);
    assert (zchat_sessions_at_address (table, "10.0.0.1") == 1);
    assert (zchat_sessions_at_address (table, "10.0.0.2") == 1);

    //  Nicks are found in any ASCII case, and keep their spelling
    assert (zchat_sessions_by_nick (table, "BOB") == bob);
    assert (zchat_sessions_by_nick (table, "Bob") == bob);
    assert (zchat_sessions_by_nick (table, "Carol") == carol);
    assert (zchat_sessions_by_nick (table, "bob_") == NULL);
    assert (streq (bob->nick, "bob"));

    //  Rename, to another case of its own nick and then to another nick
    assert (zchat_sessions_rename (table, bob, "Bob") == 0);
    assert (streq (bob->nick, "Bob"));
    assert (zchat_sessions_by_nick (table, "bob") == bob);
    assert (zchat_sessions_size (table) == 3);
    assert (zchat_sessions_rename (table, bob, "robert") == 0);
    assert (zchat_sessions_by_nick (table, "bob") == NULL);
    assert (zchat_sessions_by_nick (table, "Bob") == NULL);
    assert (zchat_sessions_by_nick (table, "robert") == bob);
    assert (zchat_sessions_by_nick (table, "ROBERT") == bob);

    zchat_sessions_remove (table, &bob);
    assert (bob == NULL);
    assert (zchat_sessions_size (table) == 2);
    assert (zchat_sessions_by_nick (table, "robert") == NULL);
    assert (zchat_sessions_by_nick (table, "Robert") == NULL);
    assert (zchat_sessions_at_address (table, "10.0.0.2") == 0);
    assert (zchat_sessions_oldest (table) == carol);

    //  Recent DMs: none before the first, then each found with its ts;
    //  id 0 is never remembered; the ring grows to ZCHAT_DM_RECENT and
    //  then forgets the oldest first. A takeover and a rename keep it.
    uint64_t ts = 0;
    assert (!zchat_session_dm_seen (carol, 1, &ts));
    assert (zchat_session_dm_remember (carol, 0, 5) == 0);
    assert (carol->dm_count == 0 && !zchat_session_dm_seen (carol, 0, &ts));
    for (uint64_t id = 1; id <= ZCHAT_DM_RECENT; id++) {
        assert (zchat_session_dm_remember (carol, 1000 + id, 7000 + id) == 0);
        assert (carol->dm_limit >= carol->dm_count && carol->dm_limit <= ZCHAT_DM_RECENT);
    }
    assert (carol->dm_count == ZCHAT_DM_RECENT && carol->dm_limit == ZCHAT_DM_RECENT);
    for (uint64_t id = 1; id <= ZCHAT_DM_RECENT; id++)
        assert (zchat_session_dm_seen (carol, 1000 + id, &ts) && ts == 7000 + id);
    assert (!zchat_session_dm_seen (carol, 1000, &ts));
    assert (zchat_session_dm_remember (carol, 5000, 1) == 0);
    assert (!zchat_session_dm_seen (carol, 1001, &ts));         //  the oldest went
    assert (zchat_session_dm_seen (carol, 1002, &ts) && ts == 7002);
    assert (zchat_session_dm_seen (carol, 5000, &ts) && ts == 1);
    for (uint64_t id = 1; id < ZCHAT_DM_RECENT; id++)
        assert (zchat_session_dm_remember (carol, 6000 + id, 2) == 0);
    assert (carol->dm_count == ZCHAT_DM_RECENT);
    assert (zchat_session_dm_seen (carol, 5000, &ts));          //  the newest 256
    assert (!zchat_session_dm_seen (carol, 1000 + ZCHAT_DM_RECENT, &ts));
    const uint8_t peer_e [] = { 7 };
    assert (zchat_sessions_move (table, carol, peer_e, sizeof (peer_e), NULL) == 0);
    assert (zchat_sessions_rename (table, carol, "caroline") == 0);
    assert (zchat_session_dm_seen (carol, 5000, &ts) && ts == 1);

    //  Connections: a session is unbound until bound; two sessions may
    //  share a descriptor (a reused one), and unbinding or removing one
    //  leaves the other; a descriptor out of range is refused, unbound
    const uint8_t peer_f [] = { 5, 5 };
    const uint8_t peer_g [] = { 6, 6 };
    zchat_session_t *dave = zchat_sessions_add (table, peer_f, sizeof (peer_f),
                                                "dave", "t4", NULL, 500);
    zchat_session_t *erin = zchat_sessions_add (table, peer_g, sizeof (peer_g),
                                                "erin", "t5", NULL, 500);
    assert (dave && erin && dave->fd == -1 && erin->fd == -1);
    assert (zchat_sessions_bound (table, 7) == NULL);
    assert (zchat_sessions_bound (table, -1) == NULL);
    assert (zchat_sessions_bind (table, dave, 7) == 0 && dave->fd == 7);
    assert (zchat_sessions_bind (table, erin, 7) == 0);
    zchat_session_t *first = zchat_sessions_bound (table, 7);
    assert (first && first->fd_next && !first->fd_next->fd_next);
    assert ((first == dave && first->fd_next == erin) || (first == erin && first->fd_next == dave));
    assert (zchat_sessions_bind (table, dave, 3000) == 0);      //  the index grows
    assert (zchat_sessions_bound (table, 7) == erin && !erin->fd_next);
    assert (zchat_sessions_bound (table, 3000) == dave);
    assert (zchat_sessions_bind (table, erin, ZCHAT_SESSION_MAX_FD) == -1);
    assert (erin->fd == -1 && zchat_sessions_bound (table, 7) == NULL);
    assert (zchat_sessions_bind (table, erin, 3000) == 0);
    assert (zchat_sessions_closed_ms (table, 3000) == 0);
    zchat_sessions_closed (table, 3000, 600);
    zchat_sessions_closed (table, 5000, 601);                   //  none bound
    assert (zchat_sessions_closed_ms (table, 3000) == 600);
    assert (zchat_sessions_closed_ms (table, 5000) == 601);
    assert (zchat_sessions_closed_ms (table, -1) == 0);
    //  Requeue is no sign of life: the recency list moves, alive_ms stays
    zchat_sessions_requeue (table, dave, 700);
    assert (dave->last_seen_ms == 700 && dave->alive_ms == 500);
    zchat_sessions_touch (table, dave, 800);
    assert (dave->last_seen_ms == 800 && dave->alive_ms == 800);
    //  The check queue: earliest first whatever the order queued, an
    //  earlier time kept, time 0 still due
    assert (zchat_sessions_next_check (table) == NULL);
    zchat_sessions_check (table, dave, 2000);
    zchat_sessions_check (table, erin, 1500);
    zchat_sessions_check (table, alice, 1800);
    zchat_sessions_check (table, dave, 2500);                   //  keeps 2000
    assert (zchat_sessions_next_check (table) == erin);
    assert (erin->check_next == alice && alice->check_next == dave);
    zchat_sessions_check (table, dave, 1000);                   //  moves up
    assert (zchat_sessions_next_check (table) == dave && dave->check_ms == 1000);
    zchat_sessions_checked (table, dave);
    assert (dave->check_ms == 0 && zchat_sessions_next_check (table) == erin);
    zchat_sessions_checked (table, dave);                       //  a no-op
    zchat_sessions_check (table, dave, 0);
    assert (zchat_sessions_next_check (table) == dave && dave->check_ms == 1);
    //  Removal takes a session out of both: the others stay in order
    zchat_sessions_remove (table, &dave);
    assert (zchat_sessions_bound (table, 3000) == erin && !erin->fd_prev && !erin->fd_next);
    assert (zchat_sessions_next_check (table) == erin && erin->check_next == alice);
    zchat_sessions_remove (table, &erin);
    assert (zchat_sessions_bound (table, 3000) == NULL);
    assert (zchat_sessions_next_check (table) == alice && !alice->check_prev);
    zchat_sessions_checked (table, alice);
    assert (zchat_sessions_next_check (table) == NULL);

    //  Many sessions: the indexes grow and stay right
    for (uint32_t i = 0; i < 2000; i++) {
        uint8_t peer [4] = { (uint8_t) (i >> 24), (uint8_t) (i >> 16),
                             (uint8_t) (i >> 8), (uint8_t) i };
        char nick [16];
        snprintf (nick, sizeof (nick), "n%u", i);
        assert (zchat_sessions_add (table, peer, sizeof (peer), nick, "", NULL, i));
    }
    assert (zchat_sessions_size (table) == 2002);
    uint8_t peer_1234 [4] = { 0, 0, 1234 >> 8, 1234 & 255 };
    zchat_session_t *found = zchat_sessions_by_peer (table, peer_1234, 4);
    assert (found && streq (found->nick, "n1234"));

    zchat_sessions_destroy (&table);
    assert (table == NULL);
    zchat_sessions_destroy (&table);

    if (verbose)
        printf ("OK\n");
}
