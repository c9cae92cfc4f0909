//  zchat_session — the broker's live sessions, indexed by peer and nick,
//  in least-recently-seen order (see zchat_session.h).

#include <czmq.h>
#include "zchat_session.h"
#include "zchat_util.h"

struct _zchat_sessions_t {
    zhashx_t *by_peer;          //  zchat_blob_t * (inside the session) -> session
    zhashx_t *by_nick;          //  session->nick -> session
    zhashx_t *addresses;        //  address (copied) -> count, as a pointer
    zchat_session_t *oldest;    //  recency list, oldest first
    zchat_session_t *newest;
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

static int
s_string_compare (const void *key1, const void *key2)
{
    return strcmp ((const char *) key1, (const char *) key2);
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

    zhashx_set_key_duplicator (self->by_nick, NULL);
    zhashx_set_key_destructor (self->by_nick, NULL);
    zhashx_set_key_hasher (self->by_nick, zchat_hash_string);
    zhashx_set_key_comparator (self->by_nick, s_string_compare);

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
//  Find a session by nick; NULL if none.

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
//  Rename a session. Returns 0 or -1.

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
    session->last_seen_ms = now_ms;
    if (self->newest != session) {
        s_unlink (self, session);
        s_append (self, session);
    }
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

    //  Rename
    assert (zchat_sessions_rename (table, bob, "robert") == 0);
    assert (zchat_sessions_by_nick (table, "bob") == NULL);
    assert (zchat_sessions_by_nick (table, "robert") == bob);

    zchat_sessions_remove (table, &bob);
    assert (bob == NULL);
    assert (zchat_sessions_size (table) == 2);
    assert (zchat_sessions_by_nick (table, "robert") == NULL);
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
