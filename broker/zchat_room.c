//  zchat_room — rooms in memory and the table of rooms by name (see
//  zchat_room.h).

#include <czmq.h>
#include "zchat_room.h"
#include "zchat_util.h"

struct _zchat_rooms_t {
    zhashx_t *by_name;          //  room->name -> room
};


static int
s_string_compare (const void *key1, const void *key2)
{
    return strcmp ((const char *) key1, (const char *) key2);
}

static void
s_room_free (zchat_room_t **room_p)
{
    zchat_room_t *room = *room_p;
    if (room) {
        free (room->members);
        free (room);
        *room_p = NULL;
    }
}

//  Grow an array to hold one more entry of entry_size bytes; returns the
//  array (maybe moved), or NULL if out of memory (the old one is intact).
//  The typed wrappers below keep the arrays' own pointer types.
static void *
s_reserve (void *array, size_t count, size_t *limit, size_t entry_size)
{
    if (count < *limit)
        return array;
    size_t new_limit = *limit ? *limit * 2 : 4;
    void *grown = realloc (array, new_limit * entry_size);
    if (grown)
        *limit = new_limit;
    return grown;
}

static int
s_reserve_member (zchat_room_t *room)
{
    zchat_session_t **members = (zchat_session_t **) s_reserve (
        room->members, room->member_count, &room->member_limit, sizeof (zchat_session_t *));
    if (!members)
        return -1;
    room->members = members;
    return 0;
}

static int
s_reserve_room (zchat_session_t *session)
{
    zchat_room_t **rooms = (zchat_room_t **) s_reserve (
        session->rooms, session->room_count, &session->room_limit, sizeof (zchat_room_t *));
    if (!rooms)
        return -1;
    session->rooms = rooms;
    return 0;
}


//  ---------------------------------------------------------------------
//  Create an empty table.

zchat_rooms_t *
zchat_rooms_new (void)
{
    zchat_rooms_t *self = (zchat_rooms_t *) zmalloc (sizeof (zchat_rooms_t));
    if (!self)
        return NULL;
    self->by_name = zhashx_new ();
    if (!self->by_name) {
        free (self);
        return NULL;
    }
    //  Keys are the names inside the rooms.
    zhashx_set_key_duplicator (self->by_name, NULL);
    zhashx_set_key_destructor (self->by_name, NULL);
    zhashx_set_key_hasher (self->by_name, zchat_hash_string);
    zhashx_set_key_comparator (self->by_name, s_string_compare);
    return self;
}


//  ---------------------------------------------------------------------
//  Free the table and every room in it.

void
zchat_rooms_destroy (zchat_rooms_t **self_p)
{
    assert (self_p);
    zchat_rooms_t *self = *self_p;
    if (self) {
        zlistx_t *rooms = zhashx_values (self->by_name);
        if (rooms) {
            zchat_room_t *room = (zchat_room_t *) zlistx_first (rooms);
            while (room) {
                s_room_free (&room);
                room = (zchat_room_t *) zlistx_next (rooms);
            }
            zlistx_destroy (&rooms);
        }
        zhashx_destroy (&self->by_name);
        free (self);
        *self_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  The room with this name, or NULL.

zchat_room_t *
zchat_rooms_lookup (zchat_rooms_t *self, const char *name)
{
    assert (self);
    return (zchat_room_t *) zhashx_lookup (self->by_name, name);
}


//  ---------------------------------------------------------------------
//  Create an empty room. Returns it, or NULL if out of memory.

zchat_room_t *
zchat_rooms_add (zchat_rooms_t *self, const char *name)
{
    assert (self);
    assert (zchat_room_valid (name));
    zchat_room_t *room = (zchat_room_t *) zmalloc (sizeof (zchat_room_t));
    if (!room)
        return NULL;
    strcpy (room->name, name);
    room->topic_frame_size = zchat_topic_frame (name, room->topic_frame);
    if (zhashx_insert (self->by_name, room->name, room)) {
        s_room_free (&room);
        return NULL;
    }
    return room;
}


//  ---------------------------------------------------------------------
//  Remove a room from the table and free it.

void
zchat_rooms_remove (zchat_rooms_t *self, zchat_room_t **room_p)
{
    assert (self);
    assert (room_p);
    zchat_room_t *room = *room_p;
    if (room) {
        assert (room->member_count == 0);
        zhashx_delete (self->by_name, room->name);
        s_room_free (room_p);
    }
}


//  ---------------------------------------------------------------------
//  Iterate the rooms.

zchat_room_t *
zchat_rooms_first (zchat_rooms_t *self)
{
    assert (self);
    return (zchat_room_t *) zhashx_first (self->by_name);
}

zchat_room_t *
zchat_rooms_next (zchat_rooms_t *self)
{
    assert (self);
    return (zchat_room_t *) zhashx_next (self->by_name);
}


//  ---------------------------------------------------------------------
//  Number of rooms in memory.

size_t
zchat_rooms_size (zchat_rooms_t *self)
{
    assert (self);
    return zhashx_size (self->by_name);
}


//  ---------------------------------------------------------------------
//  Add session to room: 0, 1 if already a member, -1 if out of memory.

int
zchat_room_join (zchat_room_t *room, zchat_session_t *session)
{
    assert (room);
    assert (session);
    if (zchat_room_of (session, room->name))
        return 1;
    //  Reserve both sides before changing either.
    if (s_reserve_member (room) || s_reserve_room (session))
        return -1;
    room->members [room->member_count++] = session;
    session->rooms [session->room_count++] = room;
    return 0;
}


//  ---------------------------------------------------------------------
//  Take session out of room, whose entry is at index at of the session's
//  rooms. Both arrays keep their order: PONG lists rooms in join order,
//  WHO lists members in join order.

static void
s_part_at (zchat_room_t *room, zchat_session_t *session, size_t at)
{
    assert (at < session->room_count && session->rooms [at] == room);
    memmove (session->rooms + at, session->rooms + at + 1,
             (session->room_count - at - 1) * sizeof (zchat_room_t *));
    session->room_count--;

    at = 0;
    while (at < room->member_count && room->members [at] != session)
        at++;
    assert (at < room->member_count);   //  both sides always change together
    memmove (room->members + at, room->members + at + 1,
             (room->member_count - at - 1) * sizeof (zchat_session_t *));
    room->member_count--;
}


//  ---------------------------------------------------------------------
//  Take session out of room: 0, or -1 if it was not a member.

int
zchat_room_part (zchat_room_t *room, zchat_session_t *session)
{
    assert (room);
    assert (session);
    for (size_t at = session->room_count; at > 0; at--)
        if (session->rooms [at - 1] == room) {
            s_part_at (room, session, at - 1);
            return 0;
        }
    return -1;
}


//  ---------------------------------------------------------------------
//  Take session out of its newest room; returns the room or NULL.

zchat_room_t *
zchat_room_part_last (zchat_session_t *session)
{
    assert (session);
    if (session->room_count == 0)
        return NULL;
    zchat_room_t *room = session->rooms [session->room_count - 1];
    s_part_at (room, session, session->room_count - 1);
    return room;
}


//  ---------------------------------------------------------------------
//  The room called name if session is a member of it, else NULL.

zchat_room_t *
zchat_room_of (zchat_session_t *session, const char *name)
{
    assert (session);
    for (size_t i = 0; i < session->room_count; i++)
        if (streq (session->rooms [i]->name, name))
            return session->rooms [i];
    return NULL;
}


//  ---------------------------------------------------------------------
//  Self test

void
zchat_room_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_room: ");

    zchat_rooms_t *rooms = zchat_rooms_new ();
    zchat_sessions_t *sessions = zchat_sessions_new ();
    assert (rooms && sessions);

    zchat_room_t *lobby = zchat_rooms_add (rooms, "lobby");
    zchat_room_t *lob = zchat_rooms_add (rooms, "lob");
    assert (lobby && lob);
    assert (lobby->topic_frame_size == 6);
    assert (memcmp (lobby->topic_frame, "lobby:", 6) == 0);
    assert (zchat_rooms_lookup (rooms, "lobby") == lobby);
    assert (zchat_rooms_lookup (rooms, "lobb") == NULL);
    assert (zchat_rooms_size (rooms) == 2);

    const uint8_t peer_a [] = { 1 }, peer_b [] = { 2 };
    zchat_session_t *alice = zchat_sessions_add (sessions, peer_a, 1, "alice", "", NULL, 0);
    zchat_session_t *bob = zchat_sessions_add (sessions, peer_b, 1, "bob", "", NULL, 0);
    assert (alice && bob);

    assert (zchat_room_join (lobby, alice) == 0);
    assert (zchat_room_join (lobby, alice) == 1);
    assert (zchat_room_join (lobby, bob) == 0);
    assert (zchat_room_join (lob, bob) == 0);
    assert (lobby->member_count == 2);
    assert (lobby->members [0] == alice && lobby->members [1] == bob);
    assert (bob->room_count == 2);
    assert (zchat_room_of (bob, "lob") == lob);
    assert (zchat_room_of (alice, "lob") == NULL);

    assert (zchat_room_part (lob, alice) == -1);
    assert (zchat_room_part (lobby, alice) == 0);
    assert (lobby->member_count == 1 && lobby->members [0] == bob);
    assert (alice->room_count == 0);

    size_t seen = 0;
    for (zchat_room_t *room = zchat_rooms_first (rooms); room;
         room = zchat_rooms_next (rooms))
        seen++;
    assert (seen == 2);

    //  Many members: order holds across growth
    for (int i = 0; i < 100; i++) {
        uint8_t peer [2] = { 9, (uint8_t) i };
        char nick [16];
        snprintf (nick, sizeof (nick), "u%d", i);
        zchat_session_t *user = zchat_sessions_add (sessions, peer, 2, nick, "", NULL, 0);
        assert (user);
        assert (zchat_room_join (lob, user) == 0);
    }
    assert (lob->member_count == 101);
    assert (streq (lob->members [100]->nick, "u99"));
    while (lob->member_count)
        assert (zchat_room_part (lob, lob->members [0]) == 0);
    zchat_rooms_remove (rooms, &lob);
    assert (lob == NULL);
    assert (zchat_rooms_lookup (rooms, "lob") == NULL);

    //  Parting the newest room first, room after room
    zchat_room_t *ops = zchat_rooms_add (rooms, "ops");
    assert (ops);
    assert (zchat_room_join (ops, bob) == 0);
    assert (zchat_room_join (ops, alice) == 0);
    assert (zchat_room_join (lobby, alice) == 0);
    assert (bob->room_count == 2);
    assert (zchat_room_part_last (bob) == ops);
    assert (ops->member_count == 1 && ops->members [0] == alice);
    assert (zchat_room_part_last (bob) == lobby);
    assert (zchat_room_part_last (bob) == NULL);
    assert (lobby->member_count == 1 && lobby->members [0] == alice);
    assert (zchat_room_part_last (alice) == lobby);
    assert (zchat_room_part_last (alice) == ops);
    assert (alice->room_count == 0 && lobby->member_count == 0 && ops->member_count == 0);
    zchat_rooms_destroy (&rooms);
    zchat_sessions_destroy (&sessions);

    if (verbose)
        printf ("OK\n");
}
