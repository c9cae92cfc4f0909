//  zchat_server_session — the session commands: HELLO (greeting, takeover,
//  re-greeting), BYE, NICK, PING; and the end of a session.

#include "zchat_server_int.h"
#include "zchat_util.h"

//  Write a fresh token of ZCHAT_TOKEN_SIZE hex digits. Returns 0 or -1.
static int
s_new_token (char *token)
{
    uint8_t random [ZCHAT_TOKEN_SIZE / 2];
    if (zchat_random_bytes (random, sizeof (random)))
        return -1;
    static const char hex [] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof (random); i++) {
        token [2 * i] = hex [random [i] >> 4];
        token [2 * i + 1] = hex [random [i] & 15];
    }
    token [ZCHAT_TOKEN_SIZE] = 0;
    return 0;
}

//  Under CURVE a nick belongs, in every case, to the first key that used
//  it in any case (zchat_store.c), and a key may
//  bind at most max_nicks_per_key nicks (bindings are permanent until an
//  operator releases them). Returns 0 if the request's key may use nick
//  (*claim true if the nick is unowned and must be claimed once the rest
//  succeeded), or -1 after answering 403, 452 or 500.
static int
s_check_owner (zchat_server_t *self, zchat_request_t *req, const char *nick,
               bool *claim)
{
    *claim = false;
    if (!self->config.curve)
        return 0;
    if (!req->user_id || strlen (req->user_id) != ZCHAT_KEY_SIZE) {
        //  The loop gives every CURVE peer's key; failing closed keeps a
        //  wiring mistake from handing out nicks to nobody in particular.
        zchat_server_error (self, req, ZCHAT_ERR_FORBIDDEN, 0,
                            "this broker requires an authenticated CURVE key");
        return -1;
    }
    //  The handshake admitted the key, but the allow-list may have lost it
    //  since: a connection outlives a reload.
    if (self->config.admits
    &&  !self->config.admits (self->config.admits_arg, req->user_id)) {
        zchat_server_error (self, req, ZCHAT_ERR_FORBIDDEN, 0,
                            "your key is no longer admitted");
        return -1;
    }
    //  An owner that cannot be read is not "unowned": taken as that, a
    //  key at its limit would be refused its own nick (452), and another
    //  key's nick would get as far as a claim. Answer "try again".
    char owner [ZCHAT_KEY_SIZE + 1];
    int bound = zchat_store_nick_owner (self->store, nick, owner);
    if (bound < 0) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "could not read who owns nick %s, try again", nick);
        return -1;
    }
    if (bound == 1) {
        if (streq (owner, req->user_id))
            return 0;
        zchat_server_error (self, req, ZCHAT_ERR_FORBIDDEN, 0,
                            "nick %s is registered to another key", nick);
        return -1;
    }
    uint32_t most = self->config.max_nicks_per_key;
    if (most) {
        int64_t owned = zchat_store_nick_count (self->store, req->user_id);
        if (owned < 0) {
            zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                                "could not read your key's nicks, try again");
            return -1;
        }
        if (owned >= most) {
            zchat_server_error (self, req, ZCHAT_ERR_LIMIT, 0,
                                "your key already owns %" PRId64 " nicks (limit %u);"
                                " use one of them, or ask the operator to release one",
                                owned, most);
            return -1;
        }
    }
    *claim = true;
    return 0;
}

//  Bind nick to the request's key. Returns 0, or -1 after answering 500.
static int
s_claim (zchat_server_t *self, zchat_request_t *req, const char *nick)
{
    if (zchat_store_nick_claim (self->store, nick, req->user_id) == 0)
        return 0;
    zsys_warning ("zchat: could not bind nick %s to its key", nick);
    zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                        "could not register nick %s, try again", nick);
    return -1;
}

//  ---------------------------------------------------------------------
//  Bind a version 6 session to the request's connection.

bool
zchat_server_bind (zchat_server_t *self, zchat_session_t *session,
                   const zchat_request_t *req)
{
    if (session->version < ZCHAT_VERSION_BOUND || req->fd < 0
    ||  zchat_sessions_bind (self->sessions, session, req->fd) != 0) {
        zchat_sessions_bind (self->sessions, session, -1);
        return false;
    }
    //  The close of a connection with this descriptor, heard lately, may
    //  have been this one's (its greeting read after): check it as if it
    //  had closed now. Or it was another's, and the check finds this one
    //  there: one unsolicited PONG.
    uint64_t closed_ms = zchat_sessions_closed_ms (self->sessions, req->fd);
    if (closed_ms && closed_ms <= req->mono_ms
    &&  req->mono_ms - closed_ms <= self->config.timeout_ms)
        zchat_sessions_check (self->sessions, session, req->mono_ms + ZCHAT_SERVER_CHECK_MS);
    return true;
}

//  A greeting's session: bound to its connection if its version asks for
//  it, and if it cannot be (a relayed peer: the descriptor would be the
//  relay's, and its close says nothing of this client), it speaks the
//  version before, whose sessions end by silence, and its client pings.
static void
s_bind_or_downgrade (zchat_server_t *self, zchat_session_t *session,
                     const zchat_request_t *req)
{
    if (!zchat_server_bind (self, session, req) && session->version >= ZCHAT_VERSION_BOUND)
        session->version = ZCHAT_VERSION_BOUND - 1;
}

//  ---------------------------------------------------------------------
//  Check a bound session's connection.

void
zchat_server_check (zchat_server_t *self, zchat_session_t *session,
                    uint64_t mono_ms, uint64_t now_ms)
{
    assert (session->fd >= 0);
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    size_t size = zchat_encode_pong_begin (&buf, 0);
    assert (size > 0);
    if (self->output.reaches (self->output.arg, session->peer, session->peer_size,
                              self->buffer, size)) {
        session->alive_ms = mono_ms;
        return;
    }
    zchat_sessions_bind (self->sessions, session, -1);
    zchat_sessions_requeue (self->sessions, session, mono_ms);
    zchat_server_log (self, now_ms, "zchat: session %s lost its connection;"
                      " it ends in %.1f s unless resumed", session->nick,
                      self->config.timeout_ms / 1000.0);
}

static void
s_welcome (zchat_server_t *self, zchat_request_t *req, zchat_session_t *session,
           bool resumed)
{
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    const zchat_server_config_t *c = &self->config;
    zchat_server_reply (self, req,
        zchat_encode_welcome (&buf, req->msg->id, session->version, session->nick,
                              session->token, c->pub_port, c->pub_endpoint,
                              c->heartbeat_ms, c->timeout_ms, c->max_text, resumed));
}


//  ---------------------------------------------------------------------
//  HELLO: start a session, or take one over with its token.
//
//  Order matters. Everything that can refuse the greeting is checked
//  first, without touching anything (version, nick syntax, key ownership,
//  the nick's holder and token, limits, a token to issue): a refused HELLO
//  leaves a session this peer already has as it was (PROTOCOL.md §6.1).
//  Only then does that session end (a re-greeting abandons it) and the
//  new one start or the held one move here. A peer re-greeting with its
//  own session's nick is not refused for it: that nick is freed as its
//  session ends, and the limits count the session it gives up.

void
zchat_server_do_hello (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    const zchat_server_config_t *c = &self->config;
    //  HELLO names the newest version the client speaks; we use the
    //  newest both speak. Version 2 only adds ACKS (to that session) and
    //  MESSAGES (on PUB, which a version 1 client skips and fetches again
    //  with HISTORY as a gap), so version 1 clients still work. Version 3
    //  only lets the client send bigger requests, which the ROUTER takes
    //  from everyone; version 4 only acknowledges that session in runs
    //  (ACKRUNS); version 5 only publishes that session's tagged PROBEs
    //  on their tag's topic (an untagged one still goes to the room);
    //  version 6 only binds that session to its connection, so that its
    //  client need not ping while idle (a peer whose connection we cannot
    //  see is answered 5: zchat_server_bind).
    if (msg->version < ZCHAT_VERSION_MIN) {
        char supported [64] = "supported versions:";
        for (int version = ZCHAT_VERSION_MIN; version <= ZCHAT_VERSION; version++) {
            size_t used = strlen (supported);
            snprintf (supported + used, sizeof (supported) - used, " %d", version);
        }
        zchat_server_error (self, req, ZCHAT_ERR_VERSION, 0, "%s", supported);
        return;
    }
    uint8_t version = msg->version < ZCHAT_VERSION? msg->version: ZCHAT_VERSION;
    if (!zchat_nick_valid (msg->nick)) {
        zchat_server_error (self, req, ZCHAT_ERR_INVALID, 0,
                            "invalid nick: 1-%d of A-Z a-z 0-9 _ - [ ] { } | ^ `,"
                            " not starting with a digit or -", ZCHAT_MAX_NICK);
        return;
    }
    bool claim;
    if (s_check_owner (self, req, msg->nick, &claim))
        return;

    //  The holder is found in any case of the nick. A takeover resumes the
    //  session under the spelling it has, which WELCOME names.
    zchat_session_t *leaving = req->session;
    zchat_session_t *holder = zchat_sessions_by_nick (self->sessions, msg->nick);
    if (holder == leaving)
        holder = NULL;
    if (holder && (msg->token [0] == 0 || !zchat_secret_equal (holder->token, msg->token))) {
        zchat_server_error (self, req, ZCHAT_ERR_NICK_IN_USE, 0,
                            "nick %s is in use", msg->nick);
        return;
    }
    //  Sessions from this address once the leaving one is gone; a takeover
    //  within one address changes nothing there.
    size_t at_address = zchat_sessions_at_address (self->sessions, req->address);
    if (leaving && leaving->address && req->address
    &&  streq (leaving->address, req->address))
        at_address--;
    bool same_address = holder && holder->address && req->address
                     && streq (holder->address, req->address);
    if (c->max_sessions_per_address && req->address && !same_address
    &&  at_address >= c->max_sessions_per_address) {
        zchat_server_error (self, req, ZCHAT_ERR_LIMIT, 0,
                            "too many sessions from your address (limit %u)",
                            c->max_sessions_per_address);
        return;
    }
    //  A takeover moves a session; only a new one counts against the cap.
    if (!holder && c->max_sessions
    &&  zchat_sessions_size (self->sessions) - (leaving ? 1 : 0) >= c->max_sessions) {
        zchat_server_error (self, req, ZCHAT_ERR_LIMIT, 0,
                            "the broker is full (limit %u sessions)", c->max_sessions);
        return;
    }
    char token [ZCHAT_TOKEN_SIZE + 1];
    if (!holder && s_new_token (token)) {
        zsys_error ("zchat: no random bytes for a session token");
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "could not make a session token");
        return;
    }
    //  Staged messages go out before anything below ends or moves a
    //  session, and before a claim writes to the store outside the group.
    zchat_server_settle (self);
    if (claim && s_claim (self, req, msg->nick))
        return;
    if (leaving) {
        zchat_server_end_session (self, &leaving, "greeted again", req->now_ms);
        req->session = NULL;
    }
    if (holder) {
        //  Takeover: the session moves here with its rooms and token. Its
        //  old peer is forgotten.
        if (zchat_sessions_move (self->sessions, holder, req->peer, req->peer_size,
                                 req->address)) {
            zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
            return;
        }
        zchat_sessions_touch (self->sessions, holder, req->mono_ms);
        //  The hold keeps one peer's stream in order (PROTOCOL.md 6.3); the
        //  old peer's messages are refused from now on, and the new one's
        //  ids need not follow its: another process draws its own, which
        //  would be held for a second, or taken as resends ending a later
        //  hold early. Its stream starts here.
        holder->held = false;
        holder->msg_id_max = 0;
        if (req->user_id)
            snprintf (holder->key, sizeof (holder->key), "%s", req->user_id);
        holder->version = version;
        s_bind_or_downgrade (self, holder, req);
        req->session = holder;
        zchat_server_log (self, req->now_ms, "zchat: session %s resumed from %s",
                          holder->nick, req->address ? req->address : "a new peer");
        s_welcome (self, req, holder, true);
        return;
    }
    zchat_session_t *session = zchat_sessions_add (self->sessions, req->peer,
                                                   req->peer_size, msg->nick, token,
                                                   req->address, req->mono_ms);
    if (!session) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    if (req->user_id)
        snprintf (session->key, sizeof (session->key), "%s", req->user_id);
    session->version = version;
    s_bind_or_downgrade (self, session, req);
    zchat_server_rate_init (self, session, req->mono_ms);
    req->session = session;
    zchat_server_log (self, req->now_ms, "zchat: session %s started from %s",
                      session->nick, req->address ? req->address : "(unknown address)");
    s_welcome (self, req, session, false);
}


//  ---------------------------------------------------------------------
//  BYE: end the session at once and answer OK.

void
zchat_server_do_bye (zchat_server_t *self, zchat_request_t *req)
{
    //  The sender's staged messages are acknowledged before its OK.
    zchat_server_settle (self);
    zchat_server_end_session (self, &req->session, "said goodbye", req->now_ms);
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req, zchat_encode_ok (&buf, req->msg->id));
}


//  ---------------------------------------------------------------------
//  PING: PONG with the newest committed seq of each of the session's
//  rooms, so a client can see it missed the tail of a stream.

void
zchat_server_do_ping (zchat_server_t *self, zchat_request_t *req)
{
    zchat_session_t *session = req->session;
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    size_t size = zchat_encode_pong_begin (&buf, req->msg->id);
    //  An add that does not fit is taken back and the list stays valid.
    for (size_t i = 0; i < session->room_count && size; i++) {
        size_t added = zchat_encode_pong_add (&buf, session->rooms [i]->name,
                                              session->rooms [i]->last_seq);
        if (added == 0)
            break;
        size = added;
    }
    zchat_server_reply (self, req, size);
}


//  ---------------------------------------------------------------------
//  NICK: rename the session; announced in each of its rooms.

void
zchat_server_do_nick (zchat_server_t *self, zchat_request_t *req)
{
    zchat_session_t *session = req->session;
    const char *nick = req->msg->nick;
    if (!zchat_nick_valid (nick)) {
        zchat_server_error (self, req, ZCHAT_ERR_INVALID, 0,
                            "invalid nick: 1-%d of A-Z a-z 0-9 _ - [ ] { } | ^ `,"
                            " not starting with a digit or -", ZCHAT_MAX_NICK);
        return;
    }
    zchat_buf_t buf;
    if (streq (nick, session->nick)) {
        zchat_buf_init (&buf, self->buffer, self->buffer_size);
        zchat_server_reply (self, req, zchat_encode_ok (&buf, req->msg->id));
        return;
    }
    //  Nicks are one in any case: the session finds itself under another
    //  case of its own nick, which is a rename like any other (the new
    //  spelling is announced and shown from then on).
    zchat_session_t *holder = zchat_sessions_by_nick (self->sessions, nick);
    if (holder && holder != session) {
        zchat_server_error (self, req, ZCHAT_ERR_NICK_IN_USE, 0, "nick %s is in use", nick);
        return;
    }
    if (zchat_server_rate_limited (self, req))
        return;
    bool claim;
    if (s_check_owner (self, req, nick, &claim))
        return;
    //  Messages staged under the old nick are published under it, before
    //  the rename is announced.
    zchat_server_settle (self);
    if (claim && s_claim (self, req, nick))
        return;

    char old_nick [ZCHAT_MAX_NICK + 1];
    strcpy (old_nick, session->nick);
    if (zchat_sessions_rename (self->sessions, session, nick)) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < session->room_count; i++)
        zchat_server_event (self, session->rooms [i], ZCHAT_EVENT_NICK,
                            old_nick, nick, req->now_ms);
    zchat_server_log (self, req->now_ms, "zchat: session %s is now %s", old_nick, nick);
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req, zchat_encode_ok (&buf, req->msg->id));
}


//  ---------------------------------------------------------------------
//  End a session: quit announced in each of its rooms, rooms left empty
//  are freed, the nick is free at once.

void
zchat_server_end_session (zchat_server_t *self, zchat_session_t **session_p,
                          const char *why, uint64_t now_ms)
{
    zchat_session_t *session = *session_p;
    if (!session)
        return;
    zchat_room_t *room;
    while ((room = zchat_room_part_last (session))) {
        zchat_server_event (self, room, ZCHAT_EVENT_QUIT, session->nick, "", now_ms);
        zchat_server_room_release (self, &room);
    }
    zchat_server_log (self, now_ms, "zchat: session %s ended: %s", session->nick, why);
    zchat_server_rate_keep (self, session, self->clock_given ? self->mono_ms : now_ms);
    zchat_sessions_remove (self->sessions, session_p);
}
