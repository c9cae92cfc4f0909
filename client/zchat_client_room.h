//  zchat_client_room — one room a libzchat client is in: its join, the
//  presence events held until the join is reported, its messages put in
//  order, the history fetches that fill its gaps, and its topic and member
//  count as the broker last told them.
//
//  A receiving room subscribes the SUB first (which the client connects
//  to the broker's PUB at its first receiving join), sends JOIN, then
//  PROBE until our own probe comes back on SUB (PROTOCOL.md §6.4): the
//  probes wait out a new connection's handshake as they wait out the
//  subscription. From version 5 each probing episode has a tag of its
//  own, subscribed after the room's topic, and the broker publishes our
//  probes on the tag's topic, to us alone instead of to the whole room.
//  Only then is the join reported, and from then on a
//  zchat_sequencer puts its messages in order and says what to fetch. A
//  send-only room is a JOIN and no more: no subscription (no need of the
//  SUB at all), no probe, no sequencing; it is reported at JOINED.
//
//  Internal to libzchat, not installed. The client keeps its rooms in a
//  table by name and hands each what arrives for it; a room sends its
//  requests, emits its events and asks for housekeeping through its client
//  (zchat_client_int.h). The struct is open so that the client's path for
//  every message can look at a room without a call: the client reads its
//  fields and numbers a new room's join, and (self tests aside) changes
//  nothing else but through these functions.

#ifndef ZCHAT_CLIENT_ROOM_H_INCLUDED
#define ZCHAT_CLIENT_ROOM_H_INCLUDED

#include "zchat_client_int.h"
#include "zchat_sequencer.h"

#pragma GCC visibility push(hidden)

typedef enum {
    R_JOINING,                  //  JOIN sent, waiting for JOINED
    R_PROBING,                  //  JOINED, waiting for our probe on SUB
    R_LIVE
} zchat_client_room_state_t;

struct _zchat_client_room_t {
    zchat_client_t *client;
    char     name [ZCHAT_MAX_ROOM + 1];
    uint8_t  topic_frame [ZCHAT_MAX_TOPIC_FRAME];
    size_t   topic_frame_size;
    zchat_client_room_state_t state;
    bool     send_only;         //  a member to send only: no SUB
                                //  subscription, no probe, no sequencing
    bool     upgrade;           //  a receiving join of a send-only room,
                                //  not live yet: if refused, send-only again
    bool     confirmed;         //  JOINED was reported to the caller
    uint64_t join_id;           //  the caller's join request
    uint64_t join_seq;          //  newest seq at the first join
    uint32_t members;
    char     topic [ZCHAT_MAX_TOPIC + 1];
    zchat_sequencer_t *sequencer;
    zchat_client_queue_t held;  //  presence events before confirmation
    int64_t  join_ms;           //  when JOIN was last asked for
    int64_t  probe_start_ms;    //  JOINED came: probing since
    int64_t  probe_rtt_ms;      //  JOIN to JOINED: no PROBE comes back sooner
    int64_t  probe_next_ms;
    //  While probing with a tag (version 5): its topic frame, 0xFF and the
    //  tag, NUL-terminated so that probe_topic + 1 is the tag; size 0
    //  when not probing or probing untagged
    uint8_t  probe_topic [ZCHAT_MAX_PROBE_TOPIC_FRAME + 1];
    size_t   probe_topic_size;
    uint64_t tail_seq;          //  newest seq a PONG told
    int64_t  tail_due_ms;       //  when to fetch it if still missing, 0 none
    uint64_t tail_last;         //  last seq delivered when that was set
    uint64_t fetch_id;          //  outstanding fetch request, 0 none
    int64_t  fetch_sent_ms;     //  when it was asked
    int64_t  fetch_retry_ms;    //  no fetch before this time
    int64_t  rejoin_ms;         //  our rejoin was refused for now (429):
                                //  JOIN again then; 0 none
};

//  A room of client's we are joining, in state R_JOINING; nothing is sent
//  yet (see join). A receiving room subscribes the client's SUB to its
//  topic at once, so that nothing published after our JOIN can be missed
//  (the client has connected the SUB before, if it was not); a send-only
//  room never subscribes. Returns NULL if out of memory or if
//  the SUB refused the subscription.
zchat_client_room_t *
    zchat_client_room_new (zchat_client_t *client, const char *name, bool send_only);

//  Unsubscribe (a receiving room) and free the room and all it holds; the
//  client forgets it as the room last looked up. Nulls *self_p. Safe on
//  NULL.
void
    zchat_client_room_destroy (zchat_client_room_t **self_p);

//  Send JOIN for the room, answered under its join_id (a first join, or a
//  rejoin on a new session).
void
    zchat_client_room_join (zchat_client_room_t *self, int64_t now);

//  A new session: the old one's fetch is void; join again.
void
    zchat_client_room_rejoin (zchat_client_room_t *self, int64_t now);

//  Make a send-only room receiving (a receiving join of it): subscribe
//  first, as for a new room, then join again; the room is reported again
//  once live, under join_id, a new request id. Returns 0, or -1 if the
//  SUB refused the subscription (the room stays send-only).
int
    zchat_client_room_upgrade (zchat_client_room_t *self, uint64_t join_id,
                               int64_t now);

//  JOINED, answering the join request the caller knows as user_id (0 if
//  none): remember where the room stands; on a first join, start probing
//  (a send-only room is reported at once: there is nothing to probe).
void
    zchat_client_room_joined (zchat_client_room_t *self, uint64_t user_id,
                              const zchat_msg_t *msg, int64_t now);

//  ERROR msg answering a JOIN of the room that the caller knows as
//  user_id: reported to the caller, except a 429 of the room's own rejoin
//  on a new session, which is asked again after retry_ms. Returns true if
//  the room is to be forgotten (its first join, or its rejoin, failed),
//  else false.
bool
    zchat_client_room_join_refused (zchat_client_room_t *self, uint64_t user_id,
                                    const zchat_msg_t *msg, int64_t now);

//  ERROR answering fetch id: if it is the room's, fetch again after
//  retry_ms (the broker's, for a refusal over its query budget), or a
//  pause if 0.
void
    zchat_client_room_fetch_refused (zchat_client_room_t *self, uint64_t id,
                                     uint32_t retry_ms, int64_t now);

//  A PAGE answering fetch id: through the sequencer, then fetch what is
//  still missing. Ignored unless id is the room's outstanding fetch (the
//  session was renewed meanwhile).
void
    zchat_client_room_page (zchat_client_room_t *self, uint64_t id,
                            const zchat_msg_t *msg, int64_t now);

//  A PONG told seq as the room's newest: if still missing after a grace
//  period (it may be on its way on SUB), fetch it. A send-only room wants
//  none of its messages.
void
    zchat_client_room_tail (zchat_client_room_t *self, uint64_t seq, int64_t now);

//  One live message of a receiving room, from a MESSAGE or an item of
//  MESSAGES, to the sequencer. Strings are borrowed.
void
    zchat_client_room_message (zchat_client_room_t *self, uint64_t seq, uint64_t ts,
                               const char *nick, uint8_t kind, const char *text,
                               size_t text_size);

//  Ask history for what the sequencer misses, if anything, and if no fetch
//  is outstanding.
void
    zchat_client_room_fetch (zchat_client_room_t *self, int64_t now);

//  After live messages: a live room with a gap fetches it (if not
//  already). Inline: it runs for every SUB frame of messages.
static inline void
zchat_client_room_check_fetch (zchat_client_room_t *self, int64_t now)
{
    if (self->state == R_LIVE && !zchat_sequencer_fetching (self->sequencer)
    &&  zchat_sequencer_buffered (self->sequencer))
        zchat_client_room_fetch (self, now);
}

//  A presence event of a receiving room (takes it): a TOPIC event sets the
//  room's topic. Emitted once the join is reported, held until then.
void
    zchat_client_room_presence (zchat_client_room_t *self, zchat_event_t *event);

//  A PROBE from nick came back on SUB under topic (the frame it came
//  with): ours makes a probing room live, if it came on the topic this
//  episode probes on (the tag's, else the room's); one of an earlier
//  episode's tag proves nothing and is ignored.
void
    zchat_client_room_probe (zchat_client_room_t *self, const uint8_t *topic,
                             size_t topic_size, const char *nick, int64_t now);

//  Housekeeping: probes, PONG-told tails, fetch retries (none for a
//  send-only room); asks the client to come back when the next is due.
void
    zchat_client_room_tick (zchat_client_room_t *self, int64_t now);

//  Self test; asserts on failure.
void
    zchat_client_room_test (bool verbose);

#pragma GCC visibility pop

#endif
