//  zchat_room — the broker's rooms in memory: members, topic, sequence
//  counters, PUB topic frame; and the table of rooms by name.
//
//  A room exists in memory while it has members or staged messages; its
//  messages and topic live in the store, so a room freed and created
//  again continues where it was. Membership is kept on both sides (the
//  room's members, the session's rooms) by zchat_room_join/part only.

#ifndef ZCHAT_ROOM_H_INCLUDED
#define ZCHAT_ROOM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zchat_msg.h"
#include "zchat_session.h"

struct _zchat_room_t {
    char name [ZCHAT_MAX_ROOM + 1];
    uint8_t topic_frame [ZCHAT_MAX_TOPIC_FRAME];    //  "name:" for PUB
    size_t topic_frame_size;
    uint64_t last_seq;                  //  newest committed message
    uint64_t staged_seq;                //  newest handed out, >= last_seq
    char topic [ZCHAT_MAX_TOPIC + 1];
    char topic_by [ZCHAT_MAX_NICK + 1];
    uint64_t topic_ts;
    zchat_session_t **members;          //  join order
    size_t member_count;
    size_t member_limit;                //  allocated slots
    size_t pins;                        //  runs of staged messages in it
    //  The runs of the open group in this room, in seq order, a chain
    //  through the server's runs (zchat_server_say.c); valid while
    //  run_gen is the group's.
    uint64_t run_gen;
    size_t run_first, run_last;
};

typedef struct _zchat_rooms_t zchat_rooms_t;

//  Create an empty table. Returns NULL if out of memory.
zchat_rooms_t *
    zchat_rooms_new (void);

//  Free the table and every room in it. Sessions are not touched (their
//  rooms arrays may then point at freed rooms: end sessions first).
//  Nulls *self_p. Safe on NULL.
void
    zchat_rooms_destroy (zchat_rooms_t **self_p);

//  The room with this name, or NULL. Borrowed.
zchat_room_t *
    zchat_rooms_lookup (zchat_rooms_t *self, const char *name);

//  Create an empty room (name must be valid and not in the table; the
//  caller sets its sequence numbers and topic). Returns it (owned by the
//  table), or NULL if out of memory.
zchat_room_t *
    zchat_rooms_add (zchat_rooms_t *self, const char *name);

//  Remove a room from the table and free it; nulls *room_p. The room must
//  have no members.
void
    zchat_rooms_remove (zchat_rooms_t *self, zchat_room_t **room_p);

//  Iterate the rooms in no particular order; the table must not change
//  during an iteration. NULL at the end.
zchat_room_t *
    zchat_rooms_first (zchat_rooms_t *self);
zchat_room_t *
    zchat_rooms_next (zchat_rooms_t *self);

//  Number of rooms in memory.
size_t
    zchat_rooms_size (zchat_rooms_t *self);

//  Add session to room. Returns 0, 1 if it was a member already, or -1 if
//  out of memory (then nothing changed).
int
    zchat_room_join (zchat_room_t *room, zchat_session_t *session);

//  Take session out of room. Returns 0, or -1 if it was not a member.
int
    zchat_room_part (zchat_room_t *room, zchat_session_t *session);

//  Take session out of the room it joined last, and return that room (or
//  NULL if it is in none). Parting every room this way costs one scan of
//  each room's members, not of the session's rooms as well.
zchat_room_t *
    zchat_room_part_last (zchat_session_t *session);

//  The room called name if session is a member of it, else NULL. A scan
//  of the session's rooms: cheap for the handful most sessions join, and
//  bounded by the broker's rooms-per-session limit.
zchat_room_t *
    zchat_room_of (zchat_session_t *session, const char *name);

//  Self test; asserts on failure.
void
    zchat_room_test (bool verbose);

#endif
