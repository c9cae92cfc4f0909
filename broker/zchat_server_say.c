//  zchat_server_say — the message path: SAY (and SAYS) staged into a store
//  group and acknowledged only after the group commits, DM delivered at
//  once, the fair share that holds a flood back while others talk, and
//  the per-session rate limit, which every command that publishes or
//  writes is charged to (SAY, DM, JOIN, LEAVE, NICK, TOPIC set, PROBE).
//
//  This is the broker's hot path. A SAY costs a hash lookup of its peer, a
//  scan of the sender's rooms (once per run of SAYS items for one room),
//  one store append, one encode of its MESSAGES item straight into its
//  room's run in the group's arena, and a staged entry for its ACK; the
//  arena and the arrays are reused from group to group, so a steady
//  stream allocates nothing.
//
//  When the group goes out, what it holds is batched: a room's messages
//  are already MESSAGES bodies (runs, up to S_BATCH_BYTES each) and go out
//  as they are, small runs merged first, and each version 2 sender gets
//  one ACKS for all its SAYs in the group, encoded from the staged
//  entries. Under load a group holds hundreds of messages, and every frame
//  saved is a send and a receive in libzmq and the kernel at both ends of
//  a hop; at low rates a group holds one message, which goes out as a
//  plain MESSAGE and ACK, as soon as it would have anyway.
//
//  With ack_before_commit (durability off) the group is staged just the
//  same, so it is numbered, stored and recognised if resent, but it goes
//  out before the commit instead of after it, once the store has written
//  down its rooms' newest seqs (zchat_store_publishing).

#include "zchat_server_int.h"

#define S_BATCH_BYTES   ZCHAT_SERVER_BATCH_BYTES

//  Fair share is counted in periods this long (s_fair_refused); when no
//  other session sent in the last one, a sender is judged by what it sent
//  since it had company, once that company is this old.
#define S_FAIR_PERIOD_MS        100
#define S_FAIR_COMPANY_MS       10
//  A sender held after a refusal that never sends the refused message
//  again is let go this long after the retry time (s_held).
#define S_HOLD_MAX_MS           1000

//  "No entry" in the chains through the staged array.
#define S_NONE          SIZE_MAX
//  Publications this big or bigger are lent from the arena, not copied
#define S_LEND_MIN      2048

//  Worst-case sizes of a MESSAGES header and of one of its items without
//  the text.
#define S_RUN_HEAD_MAX  (ZCHAT_HEADER_SIZE + 1 + ZCHAT_MAX_ROOM + 2)
#define S_ITEM_MAX      (8 + 8 + 1 + ZCHAT_MAX_NICK + 1 + 4)

//  ---------------------------------------------------------------------
//  Rate limit: token buckets per session. Room and direct messages have
//  one, the other commands that publish or write another of the same
//  size, so that a client's own probes while it joins a room never eat
//  into what its user may say, and neither kind can flood a room.
//
//  The buckets are the session's, but a session is cheap to start again:
//  a client that greets again (or says BYE, then HELLO) would get full
//  buckets each time and be limited by nothing. So what a session that
//  ends leaves of them is kept by its address until it has refilled, and
//  a new session from that address starts from it.
//
//  The query budget is the address's as well (ZCHAT_QUERY_SHARE): one
//  connection can carry many sessions behind relay hops, and one address
//  hold max_sessions_per_address of them, each with a budget of its own.
//  That bucket lives in the same entry, so the table holds, by address,
//  what its sessions have spent between them and what ended ones left.
//  An entry whose buckets are all full tells nothing a missing one does
//  not (a new entry starts full), so it goes once a second whether or not
//  sessions of its address are alive: the table holds the addresses that
//  spent something within the time a bucket takes to refill.

//  How often remembered buckets that have refilled are forgotten
#define S_SPENT_PRUNE_MS    1000

typedef struct {
    zchat_bucket_t messages;            //  what sessions that ended left
    zchat_bucket_t commands;            //  of their own buckets (full if
    zchat_bucket_t queries;             //  none did)
    zchat_bucket_t shared;              //  the query budget of the address,
                                        //  all its sessions' queries
} zchat_spent_t;

//  Refill bucket to mono_ms; true if it is full (or its limit is off).
static bool
s_refilled (zchat_bucket_t *bucket, uint64_t per_second, uint64_t burst,
            uint64_t mono_ms)
{
    return per_second == 0 || burst == 0
        || zchat_bucket_wait (bucket, per_second, burst, burst, mono_ms) == 0;
}

//  Refill what sessions that ended left in spent to mono_ms; true if it
//  is all full.
static bool
s_left_refilled (zchat_server_t *self, zchat_spent_t *spent, uint64_t mono_ms)
{
    const zchat_server_config_t *c = &self->config;
    bool messages = s_refilled (&spent->messages, c->rate_limit, c->rate_burst, mono_ms);
    bool commands = s_refilled (&spent->commands, c->rate_limit, c->rate_burst, mono_ms);
    bool queries = s_refilled (&spent->queries, (uint64_t) c->query_rate * 1024,
                               (uint64_t) c->query_burst * 1024, mono_ms);
    return messages && commands && queries;
}

//  Refill every bucket of spent to mono_ms; true if all are full.
static bool
s_spent_refilled (zchat_server_t *self, zchat_spent_t *spent, uint64_t mono_ms)
{
    const zchat_server_config_t *c = &self->config;
    bool left = s_left_refilled (self, spent, mono_ms);
    bool shared = s_refilled (&spent->shared,
                              (uint64_t) c->query_rate * 1024 * ZCHAT_QUERY_SHARE,
                              (uint64_t) c->query_burst * 1024 * ZCHAT_QUERY_SHARE,
                              mono_ms);
    return left && shared;
}

//  The entry of address, made with full buckets as of mono_ms if there is
//  none. NULL if out of memory, which only forgets the address's spending.
static zchat_spent_t *
s_spent_of (zchat_server_t *self, const char *address, uint64_t mono_ms)
{
    zchat_spent_t *spent = (zchat_spent_t *) zhashx_lookup (self->spent, address);
    if (spent)
        return spent;
    spent = (zchat_spent_t *) malloc (sizeof (zchat_spent_t));
    if (!spent)
        return NULL;
    const zchat_server_config_t *c = &self->config;
    zchat_bucket_fill (&spent->messages, c->rate_burst, mono_ms);
    zchat_bucket_fill (&spent->commands, c->rate_burst, mono_ms);
    zchat_bucket_fill (&spent->queries, (uint64_t) c->query_burst * 1024, mono_ms);
    zchat_bucket_fill (&spent->shared,
                       (uint64_t) c->query_burst * 1024 * ZCHAT_QUERY_SHARE, mono_ms);
    if (zhashx_insert (self->spent, address, spent)) {
        free (spent);
        return NULL;
    }
    return spent;
}

//  Keep the emptier of two buckets refilled to the same time.
static void
s_bucket_lower (zchat_bucket_t *kept, const zchat_bucket_t *other)
{
    if (other->level < kept->level)
        kept->level = other->level;
}

void
zchat_server_rate_init (zchat_server_t *self, zchat_session_t *session,
                        uint64_t now_ms)
{
    zchat_bucket_fill (&session->messages, self->config.rate_burst, now_ms);
    zchat_bucket_fill (&session->commands, self->config.rate_burst, now_ms);
    zchat_bucket_fill (&session->queries, (uint64_t) self->config.query_burst * 1024,
                       now_ms);
    zchat_spent_t *spent = self->spent && session->address?
        (zchat_spent_t *) zhashx_lookup (self->spent, session->address): NULL;
    if (spent && !s_left_refilled (self, spent, now_ms)) {
        session->messages = spent->messages;
        session->commands = spent->commands;
        session->queries = spent->queries;
    }
}

void
zchat_server_rate_keep (zchat_server_t *self, const zchat_session_t *session,
                        uint64_t mono_ms)
{
    if (!self->spent || !session->address)
        return;
    zchat_spent_t left = { session->messages, session->commands, session->queries,
                           { 0, 0 } };
    if (s_left_refilled (self, &left, mono_ms))
        return;
    //  Out of memory only forgets it
    zchat_spent_t *spent = s_spent_of (self, session->address, mono_ms);
    if (!spent)
        return;
    s_left_refilled (self, spent, mono_ms);
    s_bucket_lower (&spent->messages, &left.messages);
    s_bucket_lower (&spent->commands, &left.commands);
    s_bucket_lower (&spent->queries, &left.queries);
}

void
zchat_server_rate_prune (zchat_server_t *self, uint64_t mono_ms)
{
    if (!self->spent || zhashx_size (self->spent) == 0 || mono_ms < self->spent_due_ms)
        return;
    self->spent_due_ms = mono_ms + S_SPENT_PRUNE_MS;
    zlistx_t *addresses = zhashx_keys (self->spent);
    if (!addresses)
        return;
    for (const char *address = (const char *) zlistx_first (addresses); address;
         address = (const char *) zlistx_next (addresses)) {
        zchat_spent_t *spent = (zchat_spent_t *) zhashx_lookup (self->spent, address);
        if (spent && s_spent_refilled (self, spent, mono_ms))
            zhashx_delete (self->spent, address);
    }
    zlistx_destroy (&addresses);
}

//  ---------------------------------------------------------------------
//  The hold after a refused message (rate limit, fair share): every later
//  message of the session is refused too, until the sender starts over
//  once the retry time has passed, that is until a message comes that it
//  had sent before (an id at or below the largest it ever sent: libzchat's
//  ids grow with its send order, and after a 429 it sends everything from
//  the first refused message on again, in order; PROTOCOL.md 6.3). A time
//  alone is not enough: what the sender had sent before it heard of the
//  refusal may arrive after the retry time, under load long after, and
//  must not be taken ahead of what was refused; those are first sends,
//  with ids above any before them, so they are held. Any resend ends the
//  hold, not only the refused message's: the sender may have dropped that
//  one (a timeout, or another error). From S_HOLD_MAX_MS after the retry
//  time the next message is taken whatever its id, so a sender that never
//  starts over is let go. The fair share
//  judges SAYs only, so its hold lets DMs through, as it always did. Id 0
//  answers nothing and keeps no order: it neither starts nor ends a hold.

static void
s_hold (zchat_server_t *self, zchat_request_t *req, uint64_t until_ms, bool says)
{
    zchat_session_t *session = req->session;
    if (req->msg->id == 0)
        return;
    //  The session's SAYs taken so far in this group are acknowledged
    //  before the first refusal, and so before the 429s of everything the
    //  hold refuses after it: a flat-out sender has a window's worth on
    //  the way, and their 429s could fill its queue in the ROUTER, which
    //  then drops what comes next. ACKs dropped there were sent again only
    //  at the sender's heartbeat, seconds later.
    if (!session->held)
        zchat_server_settle (self);
    session->hold_says = (!session->held || session->hold_says) && says;
    session->held = true;
    if (until_ms > session->refused_until_ms)
        session->refused_until_ms = until_ms;
}

static bool
s_held (zchat_server_t *self, zchat_request_t *req)
{
    zchat_session_t *session = req->session;
    uint64_t id = req->msg->id;
    bool resend = id <= session->msg_id_max;
    if (id > session->msg_id_max)
        session->msg_id_max = id;
    if (!session->held || id == 0
    ||  (session->hold_says && req->msg->type == ZCHAT_DM))
        return false;
    uint64_t until = session->refused_until_ms;
    if (req->mono_ms >= until && (resend || req->mono_ms >= until + S_HOLD_MAX_MS)) {
        session->held = false;
        return false;
    }
    uint32_t retry_ms = req->mono_ms < until? (uint32_t) (until - req->mono_ms): 1;
    self->rate_limited++;
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "held: a message before this one was refused; send again from it");
    return true;
}

bool
zchat_server_rate_limited (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_server_config_t *c = &self->config;
    if (c->rate_limit == 0)
        return false;
    bool message = req->msg->type == ZCHAT_SAY || req->msg->type == ZCHAT_DM;
    zchat_bucket_t *bucket = message ? &req->session->messages : &req->session->commands;
    uint32_t retry_ms = zchat_bucket_wait (bucket, c->rate_limit, c->rate_burst, 1,
                                           req->mono_ms);
    if (retry_ms == 0) {
        zchat_bucket_charge (bucket, 1);
        return false;
    }
    if (message)
        s_hold (self, req, req->mono_ms + retry_ms, false);
    self->rate_limited++;
    ZCHAT_DEBUG ("zchat: %s is over the rate limit", req->session->nick);
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "rate limited: at most %u %s per second (burst %u)",
                        c->rate_limit, message ? "messages" : "room commands",
                        c->rate_burst);
    return true;
}


//  ---------------------------------------------------------------------
//  Fair share, on by default (config.fair_share, --fair-share): a session
//  may always send fair_share SAYs a second; past that, while other
//  sessions send too, at most that many more than twice what they send on
//  average, and the excess is refused with 429, holding the sender (see
//  s_held) for the rest of the period and until it starts over. A
//  sender alone, or senders that send alike, are not held back; one that
//  floods beside people who talk is held to about the floor, so that what
//  everyone else receives stays what the room's members can read. Counted
//  over all rooms (the broker's capacity is what they share) in periods of
//  S_FAIR_PERIOD_MS of the monotonic clock, with a tenth of the floor
//  each. It judges by counts, so the last of several flat-out senders can
//  be refused while the others finish; libzchat then sends the refused
//  SAYs again in order after the retry time, which costs that sender a
//  pause, not an error.
//
//  A sender none of whose others sent in the last period (it had the
//  broker to itself, or it and they were all silent) has nothing to be
//  judged by there, and its count in this one says only how long it was
//  alone. It is judged instead by what it and the others sent since
//  the period's second sender came, once that is S_FAIR_COMPANY_MS old:
//  a flooder is then held back within milliseconds of people starting to
//  talk, not a period later, while a flat-out sender that started first
//  sends about what a flat-out newcomer does and goes on. The wait lets
//  the newcomer's first batches arrive: one SAYS from a peer carries
//  hundreds of SAYs, so by count alone the first sender is a batch or
//  two ahead at first.

static bool
s_fair_refused (zchat_server_t *self, zchat_request_t *req)
{
    if (self->config.fair_share == 0)
        return false;
    uint64_t floor = self->config.fair_share * S_FAIR_PERIOD_MS / 1000;
    if (floor == 0)
        floor = 1;
    uint64_t period = req->mono_ms / S_FAIR_PERIOD_MS;
    if (self->fair_period != period) {
        bool last = self->fair_period + 1 == period;
        self->fair_prev_total = last? self->fair_total: 0;
        self->fair_prev_senders = last? self->fair_senders: 0;
        self->fair_period = period;
        self->fair_total = 0;
        self->fair_senders = 0;
    }
    zchat_session_t *session = req->session;
    if (session->fair_period != period) {
        session->fair_prev_count = session->fair_period + 1 == period?
                                   session->fair_count: 0;
        session->fair_period = period;
        session->fair_count = 0;
        session->fair_company_seen = false;
    }
    if (session->fair_count == 0
    &&  ++self->fair_senders == 2) {
        self->fair_company_ms = req->mono_ms;
        self->fair_company_total = self->fair_total;
    }
    //  This session has sent nothing since the second sender came (or is
    //  it), so its count now is its count then
    if (self->fair_senders >= 2 && !session->fair_company_seen) {
        session->fair_company_seen = true;
        session->fair_company_base = session->fair_count;
    }
    //  A flood is more than the floor plus twice what the others send on
    //  average, both in the last period and so far in this one (if they
    //  have sent in it yet): flat-out senders that started a little apart
    //  differ in one period but not the next, and within a period by no
    //  more than a batch or two, which the floor absorbs; people talking
    //  beside a flood send little in both
    uint64_t mine = session->fair_count;
    uint64_t prev = self->fair_prev_senders - (session->fair_prev_count? 1: 0);
    uint64_t prev_total = self->fair_prev_total - session->fair_prev_count;
    uint64_t cur = self->fair_senders - 1;
    uint64_t cur_total = self->fair_total - mine;
    bool over = false;
    if (prev > 0)
        over = mine * prev >= floor * prev + 2 * prev_total
            && (cur == 0 || mine * cur >= floor * cur + 2 * cur_total);
    else
    if (cur > 0 && req->mono_ms >= self->fair_company_ms + S_FAIR_COMPANY_MS) {
        uint64_t mine_since = mine - session->fair_company_base;
        uint64_t others_since = self->fair_total - self->fair_company_total
                              - mine_since;
        over = mine_since * cur >= floor * cur + 2 * others_since;
    }
    //  A refusal holds the sender's SAYs for the rest of the period and
    //  until it starts over (s_held), like the rate limit: the refused
    //  ones are a suffix of its stream, so sending them all again next
    //  period keeps its order
    if (over) {
        uint32_t retry_ms = (uint32_t) (S_FAIR_PERIOD_MS - req->mono_ms % S_FAIR_PERIOD_MS);
        s_hold (self, req, req->mono_ms + retry_ms, true);
        self->rate_limited++;
        ZCHAT_DEBUG ("zchat: %s is over its fair share", session->nick);
        zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                            "fair share: past %u messages a second, at most twice what"
                            " the other senders send", self->config.fair_share);
        return true;
    }
    session->fair_count++;
    self->fair_total++;
    return false;
}

//  The query budget of the request's address, shared by its sessions;
//  NULL for a session without an address (ipc), or out of memory.
static zchat_bucket_t *
s_shared_queries (zchat_server_t *self, zchat_request_t *req)
{
    if (!self->spent || !req->session->address)
        return NULL;
    zchat_spent_t *spent = s_spent_of (self, req->session->address, req->mono_ms);
    return spent? &spent->shared: NULL;
}

bool
zchat_server_query_refused (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_server_config_t *c = &self->config;
    if (c->query_rate == 0)
        return false;
    uint64_t rate = (uint64_t) c->query_rate * 1024;
    uint64_t burst = (uint64_t) c->query_burst * 1024;
    uint32_t retry_ms = zchat_bucket_wait (&req->session->queries, rate, burst, 1,
                                           req->mono_ms);
    zchat_bucket_t *shared = s_shared_queries (self, req);
    uint32_t shared_ms = shared? zchat_bucket_wait (shared, rate * ZCHAT_QUERY_SHARE,
                                                    burst * ZCHAT_QUERY_SHARE, 1,
                                                    req->mono_ms): 0;
    if (retry_ms == 0 && shared_ms == 0)
        return false;
    self->rate_limited++;
    //  Told the later of the two times: asking before it is refused again
    if (shared_ms > retry_ms) {
        ZCHAT_DEBUG ("zchat: %s is over the query budget of %s", req->session->nick,
                     req->session->address);
        zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, shared_ms,
                            "rate limited: history, member and room lists and topics"
                            " at most %" PRIu64 " KiB per second (burst %" PRIu64
                            " KiB) for all sessions from your address",
                            (uint64_t) c->query_rate * ZCHAT_QUERY_SHARE,
                            (uint64_t) c->query_burst * ZCHAT_QUERY_SHARE);
        return true;
    }
    ZCHAT_DEBUG ("zchat: %s is over its query budget", req->session->nick);
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "rate limited: history, member and room lists and topics"
                        " at most %u KiB per second (burst %u KiB)",
                        c->query_rate, c->query_burst);
    return true;
}

void
zchat_server_query_charge (zchat_server_t *self, zchat_request_t *req, size_t size)
{
    if (self->config.query_rate == 0)
        return;
    zchat_bucket_charge (&req->session->queries, size + ZCHAT_QUERY_OVERHEAD);
    zchat_bucket_t *shared = s_shared_queries (self, req);
    if (shared)
        zchat_bucket_charge (shared, size + ZCHAT_QUERY_OVERHEAD);
}


//  ---------------------------------------------------------------------
//  The staged group

//  Grow *array (of *limit elements of size each) to hold one more than
//  count. Returns 0, or -1 if out of memory (unchanged).
static int
s_grow (void **array, size_t *limit, size_t count, size_t size)
{
    if (count < *limit)
        return 0;
    size_t grown = *limit? *limit * 2: 64;
    void *bigger = realloc (*array, grown * size);
    if (!bigger)
        return -1;
    *array = bigger;
    *limit = grown;
    return 0;
}

//  Make *buffer hold bytes more than size, doubling from 64 KiB. Returns
//  0, or -1 if out of memory (unchanged).
static int
s_grow_bytes (uint8_t **buffer, size_t *limit, size_t size, size_t bytes)
{
    if (*limit - size >= bytes)
        return 0;
    size_t grown = *limit? *limit: 64 * 1024;
    while (grown - size < bytes)
        grown *= 2;
    uint8_t *bigger = (uint8_t *) realloc (*buffer, grown);
    if (!bigger)
        return -1;
    *buffer = bigger;
    *limit = grown;
    return 0;
}

//  Make the arena hold bytes more than it does, doubling from 64 KiB (a
//  new arena if the last one was lent). Returns 0, or -1 if out of memory.
static int
s_arena_reserve (zchat_server_t *self, size_t bytes)
{
    if (self->arena_limit - self->arena_size >= bytes)
        return 0;
    size_t grown = self->arena_limit? self->arena_limit: 64 * 1024;
    while (grown - self->arena_size < bytes)
        grown *= 2;
    if (!self->arena_block)
        self->arena_block = zchat_arena_new (grown);
    else
    if (zchat_arena_grow (&self->arena_block, grown))
        return -1;
    if (!self->arena_block)
        return -1;
    self->arena = zchat_arena_data (self->arena_block);
    self->arena_limit = zchat_arena_capacity (self->arena_block);
    return 0;
}

//  Make room for one more staged SAY of a sender with a peer_size
//  envelope, with arena bytes for its message or its original's room.
//  Returns 0, or -1 if out of memory.
static int
s_group_reserve (zchat_server_t *self, size_t bytes, size_t peer_size)
{
    if (s_grow ((void **) &self->staged, &self->staged_limit, self->staged_count,
                sizeof (zchat_staged_t))
    ||  s_grow ((void **) &self->runs, &self->run_limit, self->run_count,
                sizeof (zchat_run_t))
    ||  s_grow ((void **) &self->senders, &self->sender_limit, self->sender_count,
                sizeof (zchat_sender_t))
    ||  s_arena_reserve (self, bytes)
    ||  s_grow_bytes (&self->peers, &self->peers_limit, self->peers_size, peer_size))
        return -1;
    return 0;
}

//  Release the rooms the group pinned and empty it.
static void
s_group_clear (zchat_server_t *self)
{
    for (size_t i = 0; i < self->run_count; i++) {
        zchat_room_t *room = self->runs [i].room;
        assert (room->pins > 0);
        room->pins--;
        zchat_server_room_release (self, &room);
    }
    self->staged_count = 0;
    self->stored_count = 0;
    self->run_count = 0;
    self->sender_count = 0;
    self->arena_size = 0;
    if (self->arena_block && zchat_arena_lent (self->arena_block)) {
        //  Publications still hold its bytes: never written again, it
        //  goes when they do, and the next group takes another
        zchat_arena_destroy (&self->arena_block);
        self->arena = NULL;
        self->arena_limit = 0;
    }
    self->peers_size = 0;
    self->group_open = false;
    //  Rooms and sessions marked with the old generation are no longer in it
    self->group_gen++;
}

//  The group is lost (the store failed): nothing of it was stored. If it
//  has not gone out yet, every sender in it gets ERROR 500 for each of
//  its requests, and the rooms hand out their seqs again from the last
//  committed one, so no hole appears.
static void
s_group_fail (zchat_server_t *self, bool answered)
{
    if (answered) {
        //  Already acknowledged and published (durability off): they are
        //  lost, and their seqs stay used (a later message must not reuse
        //  a seq that subscribers have seen), leaving a hole in history.
        zsys_error ("zchat: storage failed; %zu acknowledged messages (durability"
                    " off) were not stored", self->staged_count);
        s_group_clear (self);
        return;
    }
    zsys_error ("zchat: storage failed; %zu staged messages refused with 500",
                self->staged_count);
    for (size_t i = 0; i < self->run_count; i++)
        self->runs [i].room->staged_seq = self->runs [i].room->last_seq;
    for (size_t i = 0; i < self->sender_count; i++) {
        const zchat_sender_t *sender = &self->senders [i];
        for (size_t at = sender->head; at != S_NONE; at = self->staged [at].next) {
            size_t size = zchat_server_encode_error (self, self->staged [at].id,
                                                     ZCHAT_ERR_INTERNAL, 0,
                                                     "storage failed, message not"
                                                     " stored; send it again");
            zchat_server_send (self, self->peers + sender->peer_at, sender->peer_size,
                               size);
        }
    }
    s_group_clear (self);
}

//  Add a stored message to its room's open run, or start a run for it.
//  The arena has room for it (s_group_reserve): a run of its own if it
//  does not fit the last one, or that one is no longer the arena's end.
static void
s_run_add (zchat_server_t *self, zchat_room_t *room, uint64_t seq, uint64_t ts,
           const char *nick, uint8_t kind, const char *text, size_t text_size)
{
    zchat_run_t *run = room->run_gen == self->group_gen? &self->runs [room->run_last]: NULL;
    if (run && !run->closed && run->at + run->buf.size == self->arena_size) {
        run->buf.data = self->arena + run->at;
        run->buf.capacity = S_BATCH_BYTES;
        if (zchat_encode_messages_add (&run->buf, seq, ts, nick, kind, text, text_size)) {
            self->arena_size = run->at + run->buf.size;
            run->last_seq = seq;
            return;
        }
    }
    size_t index = self->run_count++;
    run = &self->runs [index];
    run->room = room;
    run->at = self->arena_size;
    run->closed = false;
    run->last_seq = seq;
    run->next = S_NONE;
    zchat_buf_init (&run->buf, self->arena + run->at, S_BATCH_BYTES);
    zchat_encode_messages_begin (&run->buf, room->name);
    if (!zchat_encode_messages_add (&run->buf, seq, ts, nick, kind, text, text_size)) {
        //  Bigger than a batch: alone, in as much as was reserved
        run->buf.capacity = self->arena_limit - run->at;
        zchat_encode_messages_begin (&run->buf, room->name);
        zchat_encode_messages_add (&run->buf, seq, ts, nick, kind, text, text_size);
        run->closed = true;
    }
    //  It fits by construction: the arena was reserved for it
    assert (run->buf.count == 1);
    self->arena_size = run->at + run->buf.size;
    room->pins++;
    if (room->run_gen == self->group_gen)
        self->runs [room->run_last].next = index;
    else {
        room->run_gen = self->group_gen;
        room->run_first = index;
    }
    room->run_last = index;
}

//  Chain staged entry index behind its session's earlier ones, taking a
//  sender entry (and a copy of the envelope) at its first.
static void
s_sender_add (zchat_server_t *self, zchat_request_t *req, size_t index)
{
    zchat_session_t *session = req->session;
    if (session->sender_gen == self->group_gen) {
        zchat_sender_t *sender = &self->senders [session->sender];
        self->staged [sender->tail].next = index;
        sender->tail = index;
        return;
    }
    zchat_sender_t *sender = &self->senders [self->sender_count];
    sender->peer_at = self->peers_size;
    sender->peer_size = req->peer_size;
    if (req->peer_size)
        memcpy (self->peers + self->peers_size, req->peer, req->peer_size);
    self->peers_size += req->peer_size;
    sender->batch_ack = session->version >= 2;
    sender->run_ack = session->version >= 4;
    sender->head = sender->tail = index;
    session->sender_gen = self->group_gen;
    session->sender = self->sender_count++;
}


//  ---------------------------------------------------------------------
//  The group goes out: MESSAGES per room, ACKS per version 2 sender.

//  Publish a MESSAGES body (runs and merged batches alike): a batch of one
//  goes as its MESSAGE (smaller, and readable by version 1 clients).
static void
s_publish_batch (zchat_server_t *self, const zchat_room_t *room, uint8_t *body,
                 size_t size)
{
    size_t single = zchat_encode_messages_single (body, size);
    if (single) {
        body += 2;
        size = single;
    }
    //  A run in the arena is lent to an output that can send it without a
    //  copy (it stays as it is until the publication gives it back); a
    //  small one costs less copied than counted
    if (self->output.publish_lent && size >= S_LEND_MIN && self->arena_block
    &&  (uintptr_t) body >= (uintptr_t) self->arena
    &&  (uintptr_t) body + size <= (uintptr_t) self->arena + self->arena_size
    &&  zchat_arena_lend (self->arena_block)) {
        self->lent++;
        self->output.publish_lent (self->output.arg, room->topic_frame,
                                   room->topic_frame_size, body, size,
                                   zchat_arena_release, self->arena_block);
        return;
    }
    self->output.publish (self->output.arg, room->topic_frame, room->topic_frame_size,
                          body, size);
}

//  A room's runs go out in order. A big one, or the room's only one, goes
//  as it is, without a copy; small ones (rooms whose messages came
//  interleaved) are merged into batches first, so that interleaving costs
//  a copy rather than frames.
static void
s_publish_room (zchat_server_t *self, zchat_room_t *room)
{
    zchat_buf_t merged;
    zchat_buf_init (&merged, self->buffer, S_BATCH_BYTES);
    zchat_encode_messages_begin (&merged, room->name);
    bool alone = room->run_first == room->run_last;
    for (size_t at = room->run_first; at != S_NONE; at = self->runs [at].next) {
        zchat_run_t *run = &self->runs [at];
        run->buf.data = self->arena + run->at;
        if (!alone && run->buf.size < S_BATCH_BYTES / 2
        &&  zchat_encode_messages_extend (&merged, run->buf.data, run->buf.size))
            continue;
        if (merged.count) {
            s_publish_batch (self, room, merged.data, merged.size);
            zchat_encode_messages_begin (&merged, room->name);
        }
        if (alone || run->buf.size >= S_BATCH_BYTES / 2
        ||  !zchat_encode_messages_extend (&merged, run->buf.data, run->buf.size))
            s_publish_batch (self, room, run->buf.data, run->buf.size);
    }
    if (merged.count)
        s_publish_batch (self, room, merged.data, merged.size);
}

//  The room a staged entry's acknowledgement names.
static const char *
s_ack_room (zchat_server_t *self, const zchat_staged_t *staged)
{
    return staged->room? staged->room->name: (const char *) self->arena + staged->orig_at;
}

//  Send buf (ACKS) to sender: a batch of one as the plain ACK of its entry.
static void
s_acks_out (zchat_server_t *self, const zchat_sender_t *sender, zchat_buf_t *buf,
            size_t last)
{
    if (buf->count == 0)
        return;
    size_t size = buf->size;
    if (buf->count == 1) {
        const zchat_staged_t *staged = &self->staged [last];
        size = zchat_encode_ack (buf, staged->id, s_ack_room (self, staged),
                                 staged->seq, staged->ts);
    }
    zchat_server_send (self, self->peers + sender->peer_at, sender->peer_size, size);
}

//  Version 4: the sender's ACKs as runs, each of SAYs with consecutive
//  ids that were stored in one room with consecutive seqs at one time,
//  which is what a sender's stream under load mostly is; one ACKRUNS item
//  stands for the run's ACKs. A single ACK goes as the plain ACK.
typedef struct {
    uint64_t id, seq, ts;
    uint32_t count;
    const char *room;
} s_ack_run_t;

//  Send buf (ACKRUNS), whose last item is last: a single ACK as the ACK.
static void
s_ackruns_out (zchat_server_t *self, const zchat_sender_t *sender, zchat_buf_t *buf,
               const s_ack_run_t *last)
{
    if (buf->count == 0)
        return;
    size_t size = buf->size;
    if (buf->count == 1 && last->count == 1)
        size = zchat_encode_ack (buf, last->id, last->room, last->seq, last->ts);
    zchat_server_send (self, self->peers + sender->peer_at, sender->peer_size, size);
}

//  Add run to buf, whose last item is *last; a full buf goes out first.
static void
s_ackruns_add (zchat_server_t *self, const zchat_sender_t *sender, zchat_buf_t *buf,
               s_ack_run_t *last, const s_ack_run_t *run)
{
    if (!zchat_encode_ackruns_add (buf, run->id, run->count, run->room, run->seq, run->ts)) {
        s_ackruns_out (self, sender, buf, last);
        zchat_encode_ackruns_begin (buf);
        size_t size = zchat_encode_ackruns_add (buf, run->id, run->count, run->room,
                                                run->seq, run->ts);
        assert (size > 0);      //  one item always fits a batch
    }
    *last = *run;
}

static void
s_ack_sender_runs (zchat_server_t *self, const zchat_sender_t *sender)
{
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, S_BATCH_BYTES);
    zchat_encode_ackruns_begin (&buf);
    s_ack_run_t run = { 0, 0, 0, 0, NULL };
    s_ack_run_t last = run;
    for (size_t at = sender->head; at != S_NONE; at = self->staged [at].next) {
        const zchat_staged_t *staged = &self->staged [at];
        const char *room = s_ack_room (self, staged);
        //  A run never wraps: id 0 after 2^64 - 1 starts another
        if (run.count && run.count < UINT32_MAX
        &&  run.id + run.count > run.id && staged->id == run.id + run.count
        &&  run.seq + run.count > run.seq && staged->seq == run.seq + run.count
        &&  staged->ts == run.ts
        &&  (room == run.room || streq (room, run.room))) {
            run.count++;
            continue;
        }
        if (run.count)
            s_ackruns_add (self, sender, &buf, &last, &run);
        run = (s_ack_run_t) { staged->id, staged->seq, staged->ts, 1, room };
    }
    if (run.count)
        s_ackruns_add (self, sender, &buf, &last, &run);
    s_ackruns_out (self, sender, &buf, &last);
}

static void
s_ack_sender (zchat_server_t *self, const zchat_sender_t *sender)
{
    if (sender->run_ack) {
        s_ack_sender_runs (self, sender);
        return;
    }
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, S_BATCH_BYTES);
    zchat_encode_acks_begin (&buf);
    size_t last = S_NONE;
    for (size_t at = sender->head; at != S_NONE; at = self->staged [at].next) {
        const zchat_staged_t *staged = &self->staged [at];
        const char *room = s_ack_room (self, staged);
        if (!sender->batch_ack
        ||  !zchat_encode_acks_add (&buf, staged->id, room, staged->seq, staged->ts)) {
            //  Version 1, or the batch is full (an ACK is ~60 bytes)
            s_acks_out (self, sender, &buf, last);
            zchat_encode_acks_begin (&buf);
            if (!sender->batch_ack
            ||  !zchat_encode_acks_add (&buf, staged->id, room, staged->seq, staged->ts)) {
                zchat_server_send (self, self->peers + sender->peer_at, sender->peer_size,
                                   zchat_encode_ack (&buf, staged->id, room, staged->seq,
                                                     staged->ts));
                zchat_encode_acks_begin (&buf);
            }
        }
        last = at;
    }
    s_acks_out (self, sender, &buf, last);
}

static void
s_group_emit (zchat_server_t *self)
{
    //  Published now: their seqs may be told to anyone
    for (size_t i = 0; i < self->run_count; i++) {
        zchat_room_t *room = self->runs [i].room;
        if (self->runs [i].last_seq > room->last_seq)
            room->last_seq = self->runs [i].last_seq;
    }
    //  Each room when its first run comes up, so rooms go out in the order
    //  their first messages came
    for (size_t i = 0; i < self->run_count; i++)
        if (self->runs [i].room->run_first == i)
            s_publish_room (self, self->runs [i].room);
    for (size_t i = 0; i < self->sender_count; i++)
        s_ack_sender (self, &self->senders [i]);
}


//  ---------------------------------------------------------------------
//  Commit the staged group and send out its ACKs and MESSAGEs: after the
//  commit, or before it with durability off.

int
zchat_server_flush (zchat_server_t *self)
{
    assert (self);
    if (!self->group_open)
        return 0;
    //  Early only once the store has written down what goes out, so that
    //  a crash before the commit cannot give those seqs out again
    bool early = self->config.ack_before_commit && self->run_count > 0
              && zchat_store_publishing (self->store) == 0;
    if (early)
        s_group_emit (self);
    int rc = 0;
    if (self->fail_commit) {
        //  Fault injection for the self test: a commit that fails.
        self->fail_commit = false;
        zchat_store_rollback (self->store);
        rc = -1;
    }
    else
    if (zchat_store_commit (self->store))
        rc = -1;                //  the store has rolled the group back
    if (rc) {
        s_group_fail (self, early);
        return -1;
    }
    int committed = (int) self->stored_count;
    if (!early)
        s_group_emit (self);
    s_group_clear (self);
    return committed;
}

void
zchat_server_settle (zchat_server_t *self)
{
    if (self->group_open)
        zchat_server_flush (self);
}


//  ---------------------------------------------------------------------
//  SAY: check, stamp (nick, next seq, time), append to the open group and
//  stage its ACK and MESSAGE; they go out when the group commits. A SAY
//  whose (nick, id) was stored before gets the original ACK, consumes no
//  seq and publishes nothing: its ACK is staged too, since the original
//  may itself still be in this group.

//  The SAY of req (or a SAYS item posing as one) to room, NULL if the
//  session is not a member of the room called name.
static void
s_say (zchat_server_t *self, zchat_request_t *req, zchat_room_t *room, const char *name)
{
    const zchat_msg_t *msg = req->msg;
    zchat_session_t *session = req->session;
    if (!room) {
        zchat_server_error (self, req, ZCHAT_ERR_NOT_MEMBER, 0,
                            "not a member of room %s", zchat_server_printable (name));
        return;
    }
    if (msg->text_size > self->config.max_text) {
        zchat_server_error (self, req, ZCHAT_ERR_TOO_LARGE, 0,
                            "text is %zu bytes, the limit is %u",
                            msg->text_size, self->config.max_text);
        return;
    }
    if (s_held (self, req) || zchat_server_rate_limited (self, req)
    ||  s_fair_refused (self, req))
        return;
    if (self->staged_count >= ZCHAT_GROUP_MESSAGES
    ||  self->arena_size >= ZCHAT_GROUP_BYTES)
        zchat_server_flush (self);

    //  A new run (its header, and what a batch has no room for), or a
    //  duplicate's room name
    size_t bytes = S_RUN_HEAD_MAX + S_ITEM_MAX + msg->text_size;
    if (s_group_reserve (self, bytes, req->peer_size)) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    if (!self->group_open) {
        if (zchat_store_begin (self->store)) {
            zsys_warning ("zchat: could not start a store group");
            zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                                "storage failed, message not stored; send it again");
            return;
        }
        self->group_open = true;
    }
    uint64_t seq = room->staged_seq + 1;
    uint64_t ts = req->now_ms;
    char orig_room [ZCHAT_MAX_ROOM + 1] = "";
    uint64_t orig_seq = 0, orig_ts = 0;
    int rc = zchat_store_append (self->store, room->name, seq, ts, session->nick,
                                 msg->kind, msg->text, msg->text_size, msg->id,
                                 orig_room, &orig_seq, &orig_ts);
    if (rc < 0) {
        //  A failed write may have spoiled the whole transaction: give up
        //  the group rather than commit something half-known.
        zchat_store_rollback (self->store);
        s_group_fail (self, false);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "storage failed, message not stored; send it again");
        return;
    }
    size_t index = self->staged_count++;
    zchat_staged_t *staged = &self->staged [index];
    staged->id = msg->id;
    staged->next = S_NONE;
    if (rc == 1) {
        ZCHAT_DEBUG ("zchat: %s resent message %" PRIu64 " (stored as %s #%" PRIu64 ")",
                     session->nick, msg->id, orig_room, orig_seq);
        staged->room = NULL;
        staged->seq = orig_seq;
        staged->ts = orig_ts;
        //  Its room may not be in memory: the name goes with the entry
        size_t size = strlen (orig_room) + 1;
        staged->orig_at = self->arena_size;
        memcpy (self->arena + self->arena_size, orig_room, size);
        self->arena_size += size;
    }
    else {
        staged->room = room;
        staged->seq = seq;
        staged->ts = ts;
        room->staged_seq = seq;
        s_run_add (self, room, seq, ts, session->nick, msg->kind, msg->text,
                   msg->text_size);
        self->stored_count++;
    }
    s_sender_add (self, req, index);
}

void
zchat_server_do_say (zchat_server_t *self, zchat_request_t *req)
{
    s_say (self, req, zchat_room_of (req->session, req->msg->room), req->msg->room);
}


//  ---------------------------------------------------------------------
//  SAYS (version 2): each item exactly as the SAY it stands for, in order,
//  each answered on its own (an ACK, an item of ACKS, or an ERROR with the
//  item's id). One frame for many SAYs is what a busy sender saves; what
//  each SAY costs here stays the same.

void
zchat_server_do_says (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *batch = req->msg;
    //  Only the fields s_say and the error replies read are set: a SAY
    //  view of each item, without copying a whole message per item
    zchat_msg_t say;
    say.type = ZCHAT_SAY;
    zchat_request_t item_req = *req;
    item_req.msg = &say;
    //  A sender's items mostly name the room of the item before: its
    //  membership is looked up once per run of them. (No item can change
    //  it, and a room the session is in stays in memory.)
    char name [ZCHAT_MAX_ROOM + 1] = "";
    size_t name_size = SIZE_MAX;
    zchat_room_t *room = NULL;
    size_t cursor = 0;
    zchat_say_t item;
    while (zchat_msg_next_say (batch, &cursor, &item)) {
        if (item.room_size != name_size || memcmp (item.room, name, name_size) != 0) {
            memcpy (name, item.room, item.room_size);
            name [item.room_size] = 0;
            name_size = item.room_size;
            room = zchat_room_of (req->session, name);
        }
        say.id = item.id;
        say.kind = item.kind;
        say.text = item.text;
        say.text_size = item.text_size;
        s_say (self, &item_req, room, name);
    }
}


//  ---------------------------------------------------------------------
//  DM: deliver to the recipient's peer at once (DMs are not stored), and
//  acknowledge with an empty room and seq 0.
//
//  A DM whose id the session had delivered lately (zchat_session_dm_seen)
//  is a resend whose ACK was lost: it gets that ACK again, ts and all, and
//  is not delivered again. That is checked first, before anything that
//  could refuse it: the recipient may have gone since, or the sender be
//  over its rate limit now, and a refusal would tell the sender that a DM
//  which was delivered was not. It costs no token: nothing is delivered.

void
zchat_server_do_dm (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    zchat_buf_t buf;
    uint64_t ts;
    if (zchat_session_dm_seen (req->session, msg->id, &ts)) {
        ZCHAT_DEBUG ("zchat: %s resent direct message %" PRIu64, req->session->nick,
                     msg->id);
        zchat_buf_init (&buf, self->buffer, self->buffer_size);
        zchat_server_reply (self, req, zchat_encode_ack (&buf, msg->id, "", 0, ts));
        return;
    }
    zchat_session_t *recipient = zchat_sessions_by_nick (self->sessions, msg->nick);
    if (!recipient) {
        zchat_server_error (self, req, ZCHAT_ERR_NO_SUCH_NICK, 0,
                            "no such nick: %s", zchat_server_printable (msg->nick));
        return;
    }
    if (msg->text_size > self->config.max_text) {
        zchat_server_error (self, req, ZCHAT_ERR_TOO_LARGE, 0,
                            "text is %zu bytes, the limit is %u",
                            msg->text_size, self->config.max_text);
        return;
    }
    if (s_held (self, req) || zchat_server_rate_limited (self, req))
        return;
    ts = req->now_ms;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_send (self, recipient->peer, recipient->peer_size,
                       zchat_encode_deliver (&buf, 0, req->session->nick, msg->kind,
                                             ts, msg->text, msg->text_size));
    //  Out of memory only costs the recognition of a resend of this one
    if (zchat_session_dm_remember (req->session, msg->id, ts))
        zsys_warning ("zchat: out of memory: a resend of %s's direct message %" PRIu64
                      " would be delivered again", req->session->nick, msg->id);
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req, zchat_encode_ack (&buf, msg->id, "", 0, ts));
}
