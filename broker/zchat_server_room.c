//  zchat_server_room — the room commands: JOIN, LEAVE, WHO, ROOMS, TOPIC,
//  PROBE, HISTORY.

#include "zchat_server_int.h"

//  The room of the request if the session is a member; else answers 404
//  and returns NULL.
static zchat_room_t *
s_member_room (zchat_server_t *self, zchat_request_t *req)
{
    zchat_room_t *room = zchat_room_of (req->session, req->msg->room);
    if (!room)
        zchat_server_error (self, req, ZCHAT_ERR_NOT_MEMBER, 0,
                            "not a member of room %s",
                            zchat_server_printable (req->msg->room));
    return room;
}

static void
s_ok (zchat_server_t *self, zchat_request_t *req)
{
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req, zchat_encode_ok (&buf, req->msg->id));
}


//  ---------------------------------------------------------------------
//  JOIN: create the room if needed, add the session, answer JOINED with
//  the newest committed seq and the oldest held; announce the join. A
//  member joining again gets JOINED again and nobody hears of it.

void
zchat_server_do_join (zchat_server_t *self, zchat_request_t *req)
{
    zchat_session_t *session = req->session;
    const char *name = req->msg->room;
    if (!zchat_room_valid (name)) {
        zchat_server_error (self, req, ZCHAT_ERR_INVALID, 0,
                            "invalid room name: 1-%d of A-Z a-z 0-9 _ . -",
                            ZCHAT_MAX_ROOM);
        return;
    }
    bool again = zchat_room_of (session, name) != NULL;
    if (!again && self->config.max_rooms
    &&  session->room_count >= self->config.max_rooms) {
        zchat_server_error (self, req, ZCHAT_ERR_LIMIT, 0,
                            "you are in %zu rooms, the limit per session is %u",
                            session->room_count, self->config.max_rooms);
        return;
    }
    if (zchat_server_rate_limited (self, req))
        return;
    zchat_room_t *room = zchat_server_room_open (self, name);
    if (!room) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "could not open room %s, try again", name);
        return;
    }
    //  Only committed messages count: staged ones are published after this
    //  reply, and the client, subscribed before it joined, will see them.
    //  Read before the join, so that a JOIN answered 500 leaves nothing
    //  behind: a first_seq of 0 would tell the client the room's history
    //  is gone.
    uint64_t first_seq = 0;
    if (room->last_seq && zchat_store_first_seq (self->store, name, &first_seq)) {
        zsys_warning ("zchat: cannot read the oldest seq of room %s", name);
        zchat_server_room_release (self, &room);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "could not open room %s, try again", name);
        return;
    }
    if (first_seq > room->last_seq)
        first_seq = 0;
    if (zchat_room_join (room, session) < 0) {
        zchat_server_room_release (self, &room);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req,
        zchat_encode_joined (&buf, req->msg->id, name, room->last_seq, first_seq,
                             (uint32_t) room->member_count, room->topic));
    if (!again) {
        ZCHAT_DEBUG ("zchat: %s joined %s", session->nick, name);
        zchat_server_event (self, room, ZCHAT_EVENT_JOIN, session->nick, "", req->now_ms);
    }
}


//  ---------------------------------------------------------------------
//  LEAVE: take the session out of the room and announce it.

void
zchat_server_do_leave (zchat_server_t *self, zchat_request_t *req)
{
    zchat_room_t *room = s_member_room (self, req);
    if (!room || zchat_server_rate_limited (self, req))
        return;
    //  The leaver's staged messages are published before its leave event.
    zchat_server_settle (self);
    int rc = zchat_room_part (room, req->session);
    assert (rc == 0);
    ZCHAT_DEBUG ("zchat: %s left %s", req->session->nick, room->name);
    zchat_server_event (self, room, ZCHAT_EVENT_LEAVE, req->session->nick, "",
                        req->now_ms);
    zchat_server_room_release (self, &room);
    s_ok (self, req);
}


//  ---------------------------------------------------------------------
//  WHO: the members of a room the caller is in, in join order.

void
zchat_server_do_who (zchat_server_t *self, zchat_request_t *req)
{
    zchat_room_t *room = s_member_room (self, req);
    if (!room || zchat_server_query_refused (self, req))
        return;
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    size_t size = zchat_encode_members_begin (&buf, req->msg->id, room->name);
    //  Past ZCHAT_MAX_ITEMS an add fails, is taken back, and the list so
    //  far is sent: a room that big gets a partial list, not an error.
    for (size_t i = 0; i < room->member_count && size; i++) {
        size_t added = zchat_encode_members_add (&buf, room->members [i]->nick);
        if (added == 0)
            break;
        size = added;
    }
    zchat_server_query_charge (self, req, size);
    zchat_server_reply (self, req, size);
}


static int
s_compare_rooms (const void *a, const void *b)
{
    const zchat_room_t *room_a = *(const zchat_room_t * const *) a;
    const zchat_room_t *room_b = *(const zchat_room_t * const *) b;
    return strcmp (room_a->name, room_b->name);
}

//  ---------------------------------------------------------------------
//  ROOMS: every room with members, by name: member count, newest
//  committed seq, topic. Cut short (at ZCHAT_MAX_ITEMS or a full body)
//  rather than fail when there are very many.

void
zchat_server_do_rooms (zchat_server_t *self, zchat_request_t *req)
{
    if (zchat_server_query_refused (self, req))
        return;
    size_t count = 0;
    size_t limit = zchat_rooms_size (self->rooms);
    zchat_room_t **list = (zchat_room_t **) malloc ((limit ? limit : 1) * sizeof (zchat_room_t *));
    if (!list) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    for (zchat_room_t *room = zchat_rooms_first (self->rooms); room;
         room = zchat_rooms_next (self->rooms))
        if (room->member_count > 0 && count < limit)
            list [count++] = room;
    qsort (list, count, sizeof (zchat_room_t *), s_compare_rooms);

    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    size_t size = zchat_encode_roomlist_begin (&buf, req->msg->id);
    for (size_t i = 0; i < count && size; i++) {
        size_t added = zchat_encode_roomlist_add (&buf, list [i]->name,
                                                  (uint32_t) list [i]->member_count,
                                                  list [i]->last_seq, list [i]->topic);
        if (added == 0)
            break;          //  the list so far stays valid
        size = added;
    }
    free (list);
    zchat_server_query_charge (self, req, size);
    zchat_server_reply (self, req, size);
}


//  ---------------------------------------------------------------------
//  TOPIC: read (anyone) or set (members) a room's topic; a set is stored,
//  then announced. Both are answered TOPICIS.
//
//  A read of a room not loaded is a store lookup, and anyone may ask for
//  any room: it is charged to the query budget like the other lookups
//  that only answer the asker (WHO, ROOMS, HISTORY), the size of its
//  reply, a read of a loaded room too, so that the budget does not tell
//  which rooms are. Not to the rate limit's command bucket: that is for
//  what publishes or writes, and is off by default.

void
zchat_server_do_topic (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    if (!zchat_room_valid (msg->room)) {
        zchat_server_error (self, req, ZCHAT_ERR_INVALID, 0,
                            "invalid room name: 1-%d of A-Z a-z 0-9 _ . -",
                            ZCHAT_MAX_ROOM);
        return;
    }
    zchat_buf_t buf;
    if (!msg->flag) {
        if (zchat_server_query_refused (self, req))
            return;
        char topic [ZCHAT_MAX_TOPIC + 1] = "";
        char set_by [ZCHAT_MAX_NICK + 1] = "";
        uint64_t ts = 0;
        zchat_room_t *room = zchat_rooms_lookup (self->rooms, msg->room);
        if (room) {
            strcpy (topic, room->topic);
            strcpy (set_by, room->topic_by);
            ts = room->topic_ts;
        }
        else
        if (zchat_store_topic_get (self->store, msg->room, topic, set_by, &ts) < 0) {
            //  Not "no topic": that is an answer, and a wrong one.
            zsys_warning ("zchat: could not read the topic of %s", msg->room);
            zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                                "could not read the topic, try again");
            return;
        }
        zchat_buf_init (&buf, self->buffer, self->buffer_size);
        size_t size = zchat_encode_topicis (&buf, msg->id, msg->room, topic, set_by, ts);
        zchat_server_query_charge (self, req, size);
        zchat_server_reply (self, req, size);
        return;
    }
    zchat_room_t *room = s_member_room (self, req);
    if (!room || zchat_server_rate_limited (self, req))
        return;
    //  The decoder has checked the length (<= 255) and the UTF-8. The
    //  store write must not join the open group: its rollback would take
    //  back a topic already announced.
    zchat_server_settle (self);
    if (zchat_store_topic_set (self->store, room->name, msg->topic,
                               req->session->nick, req->now_ms)) {
        zsys_warning ("zchat: could not store the topic of %s", room->name);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "could not store the topic, try again");
        return;
    }
    strcpy (room->topic, msg->topic);
    strcpy (room->topic_by, req->session->nick);
    room->topic_ts = req->now_ms;
    zchat_server_event (self, room, ZCHAT_EVENT_TOPIC, req->session->nick,
                        room->topic, req->now_ms);
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req,
        zchat_encode_topicis (&buf, msg->id, room->name, room->topic,
                              room->topic_by, room->topic_ts));
}


//  ---------------------------------------------------------------------
//  PROBE: publish PROBE(room, nick), so the client sees when its
//  subscription is live; answer OK. Untagged, on the room's topic, where
//  every member receives it. Tagged (version 5), on 0xFF + tag, which
//  only the prober subscribes to: a join then costs the room nothing, where
//  a join storm into a room of N members cost N deliveries per probe. The
//  published copy has id 0: clients match their probe by nick (and tag),
//  and a request id would show the room how a member counts its requests.

void
zchat_server_do_probe (zchat_server_t *self, zchat_request_t *req)
{
    zchat_room_t *room = s_member_room (self, req);
    if (!room || zchat_server_rate_limited (self, req))
        return;
    //  Before version 5 a second string meant nothing, and still does:
    //  such a client expects its probe on the room's topic. The decoder
    //  has capped the tag at ZCHAT_MAX_PROBE_TAG bytes of UTF-8 (a longer
    //  one is malformed, 400, like any field over its limit).
    const char *tag = req->session->version >= 5? req->msg->nick: "";
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    size_t size = zchat_encode_probe (&buf, 0, room->name, req->session->nick);
    if (*tag) {
        uint8_t topic [ZCHAT_MAX_PROBE_TOPIC_FRAME];
        zchat_server_publish_on (self, topic, zchat_probe_topic_frame (tag, topic), size);
    }
    else
        zchat_server_publish (self, room, size);
    s_ok (self, req);
}


//  Collects history rows into a PAGE being built.
typedef struct {
    zchat_buf_t *buf;
    size_t size;                //  body size so far
    size_t count;               //  items added
    size_t limit;               //  most items in this page
    bool more;                  //  a row was left out
    size_t damaged;             //  rows passed over as unreadable
    uint64_t damaged_first;     //  the oldest and newest of them, for the log
    uint64_t damaged_last;
    size_t damaged_bytes;       //  what they would have taken in the page
} s_page_t;

//  A stored row no client could read: the store checks a chunk's framing
//  and lengths, not what a PAGE item must be, so a damaged store can hand
//  out a kind the protocol does not know (the encoder refuses it) or a
//  nick or text that is not UTF-8 (the encoder takes it, and the client's
//  decoder would then throw the whole page away). Such a message is gone,
//  as if retention had taken it: the page goes on past it and leaves its
//  seq out, which tells the client exactly that (PROTOCOL.md 6.4).
static void
s_page_damaged (s_page_t *page, uint64_t seq, size_t item)
{
    if (page->damaged++ == 0)
        page->damaged_first = seq;
    page->damaged_last = seq;
    page->damaged_bytes += item;
}

//  A page holds at most ZCHAT_PAGE_BYTES, or its header and one item:
//  well inside the buffer, so the encoder never refuses a readable row
//  for want of space, and a refusal means a damaged row.
_Static_assert (ZCHAT_PAGE_BYTES + 8 + 8 + 1 + ZCHAT_MAX_NICK + 1 + 4 + ZCHAT_MAX_TEXT
                <= ZCHAT_MAX_FRAME, "a PAGE at its byte cap takes one more item");

static int
s_page_add (void *arg, uint64_t seq, uint64_t ts, const char *nick, uint8_t kind,
            const char *text, size_t text_size)
{
    s_page_t *page = (s_page_t *) arg;
    size_t nick_len = strlen (nick);
    size_t item = 8 + 8 + 1 + nick_len + 1 + 4 + text_size;
    //  The first item always fits (a text is at most 64 KiB), so every
    //  page with more makes progress; later rows stop at the byte cap. A
    //  row after a full page, readable or not, means more: the next page
    //  starts after this one's last item and passes over it if need be.
    if (page->count == page->limit
    ||  (page->count > 0 && page->size + item > ZCHAT_PAGE_BYTES)) {
        page->more = true;
        return 1;
    }
    if (!zchat_utf8_valid (nick, nick_len) || !zchat_utf8_valid (text, text_size)) {
        s_page_damaged (page, seq, item);
        return 0;
    }
    //  The encoder refuses only a damaged row (a kind it does not know):
    //  the page's own limits, checked above, lie inside its own.
    assert (page->count < ZCHAT_MAX_ITEMS);     //  history_page is at most that
    size_t size = zchat_encode_page_add (page->buf, seq, ts, nick, kind, text, text_size);
    if (size == 0) {
        s_page_damaged (page, seq, item);
        return 0;
    }
    page->size = size;
    page->count++;
    return 0;
}

//  Answer 500 to a HISTORY whose page the store could not read.
static void
s_history_failed (zchat_server_t *self, zchat_request_t *req, const zchat_room_t *room)
{
    zsys_warning ("zchat: could not read the history of %s", room->name);
    zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                        "could not read the history, try again");
}

//  ---------------------------------------------------------------------
//  HISTORY: a page of committed messages of a room the caller is in (with
//  durability off: of published ones).
//  from_seq > 0 asks for from_seq..to_seq; from_seq 0 for the last limit
//  messages up to to_seq, served from its start like any range, so that
//  "more" always means "ask again from the last seq + 1". to_seq 0 means
//  the newest; limit 0 means the broker's page size.

void
zchat_server_do_history (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    zchat_room_t *room = s_member_room (self, req);
    if (!room || zchat_server_query_refused (self, req))
        return;
    //  Up to the room's newest committed seq only, so nothing in a page
    //  can be taken back: the store reads inside the open group, whose
    //  staged messages lie above it and are published when it commits.
    //  Committing the group first would let history requests break group
    //  commit for everyone.
    uint64_t newest = room->last_seq;
    uint64_t to = (msg->to_seq == 0 || msg->to_seq > newest) ? newest : msg->to_seq;
    uint64_t wanted = msg->limit ? msg->limit : self->config.history_page;
    uint64_t from = msg->from_seq;
    if (from == 0)
        from = to >= wanted ? to - wanted + 1 : 1;
    size_t limit = wanted < self->config.history_page ? (size_t) wanted
                                                      : self->config.history_page;

    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    //  A first_seq the store could not read is no answer: 0 would tell the
    //  client that everything before the page is gone.
    uint64_t first_seq = 0;
    if (newest && zchat_store_first_seq (self->store, room->name, &first_seq)) {
        s_history_failed (self, req, room);
        return;
    }
    if (first_seq > newest)
        first_seq = 0;              //  all it holds is staged
    size_t size = zchat_encode_page_begin (&buf, msg->id, room->name, first_seq,
                                           newest, false);
    s_page_t page = { &buf, size, 0, limit, false, 0, 0, 0, 0 };
    if (newest > 0 && from <= to) {
        //  The page stops the store itself, at the row after its last item
        //  (so it knows there is more): no row limit here, since a damaged
        //  row it passes over must not use up what a good one needs. A
        //  page with more then always carries an item, and one without
        //  has read the range to its end. A run of damaged rows is read
        //  through in one go: the cost is reading them, once per page,
        //  and a page cannot stop inside them, empty, without the client
        //  taking the whole range as gone.
        int rc = zchat_store_history (self->store, room->name, from, to,
                                      SIZE_MAX, s_page_add, &page);
        if (rc < 0) {
            s_history_failed (self, req, room);
            return;
        }
    }
    //  One line per page, not per row, so a damaged store cannot flood
    //  the log faster than clients page through it.
    if (page.damaged)
        zsys_warning ("zchat: history of %s: %zu unreadable message%s left out "
                      "(seq %" PRIu64 "..%" PRIu64 "): the store is damaged",
                      room->name, page.damaged, page.damaged == 1 ? "" : "s",
                      page.damaged_first, page.damaged_last);
    if (page.more)
        zchat_encode_page_set_more (&buf, true);
    //  Rows passed over were read all the same: charged as if served, so
    //  that asking again and again for a damaged range is not free
    zchat_server_query_charge (self, req, page.size + page.damaged_bytes);
    ZCHAT_DEBUG ("zchat: history of %s %" PRIu64 "..%" PRIu64 " for %s: %zu messages%s",
                 room->name, from, to, req->session->nick, page.count,
                 page.more ? ", more" : "");
    zchat_server_reply (self, req, page.size);
}
