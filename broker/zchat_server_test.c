//  zchat_server_test — the self test of zchat_server: the real protocol,
//  driven with encoded bodies through a zchat_testbed (a real store in a
//  temporary directory, output recorded per peer and per topic).
//
//  Kept apart from zchat_server.c because it is as long as the server;
//  the module tests of its parts (util, session, room) run from here too.

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include "zchat_server_int.h"
#include "zchat_store_int.h"
#include "zchat_testbed.h"
#include "zchat_util.h"

static uint8_t s_body [ZCHAT_MAX_FRAME];
static zchat_buf_t s_buf;
static zchat_msg_t s_msg;
static bool s_verbose = false;

//  Encode with s_buf (the call must use &s_buf) and send from peer.
#define SEND(bed, peer, encode) \
    do { \
        zchat_buf_init (&s_buf, s_body, sizeof (s_body)); \
        size_t size_ = (encode); \
        assert (size_ > 0); \
        zchat_testbed_send ((bed), (peer), s_body, size_); \
    } while (0)

//  Take the next reply to peer; it must have this type and id.
static const zchat_msg_t *
s_reply (zchat_testbed_t *bed, const char *peer, uint8_t type, uint64_t id)
{
    if (!zchat_testbed_take_reply (bed, peer, &s_msg)) {
        fprintf (stderr, "expected %s (id %" PRIu64 ") for peer %s, got nothing\n",
                 zchat_msg_type_name (type), id, peer);
        assert (false);
    }
    if (s_msg.type != type || s_msg.id != id) {
        fprintf (stderr, "expected %s (id %" PRIu64 ") for peer %s, got %s (id %" PRIu64
                 ") code %u \"%s\"\n", zchat_msg_type_name (type), id, peer,
                 zchat_msg_type_name (s_msg.type), s_msg.id, s_msg.code, s_msg.reason);
        assert (false);
    }
    if (s_verbose)
        printf ("   %s <- %s\n", peer, zchat_msg_type_name (type));
    return &s_msg;
}

//  Take the next reply to peer; it must be ERROR code for id.
static const zchat_msg_t *
s_error (zchat_testbed_t *bed, const char *peer, uint64_t id, uint16_t code)
{
    const zchat_msg_t *msg = s_reply (bed, peer, ZCHAT_ERROR, id);
    if (msg->code != code) {
        fprintf (stderr, "expected ERROR %u for %s, got %u \"%s\"\n",
                 code, peer, msg->code, msg->reason);
        assert (false);
    }
    assert (msg->reason [0]);
    return msg;
}

//  Take the next publication on topic; it must have this type.
static const zchat_msg_t *
s_publication (zchat_testbed_t *bed, const char *topic, uint8_t type)
{
    if (!zchat_testbed_take_publication (bed, topic, &s_msg)) {
        fprintf (stderr, "expected %s on %s, got nothing\n",
                 zchat_msg_type_name (type), topic);
        assert (false);
    }
    if (s_msg.type != type) {
        fprintf (stderr, "expected %s on %s, got %s\n", zchat_msg_type_name (type),
                 topic, zchat_msg_type_name (s_msg.type));
        assert (false);
    }
    return &s_msg;
}

//  Take the next EVENT on topic and check it.
static void
s_event (zchat_testbed_t *bed, const char *topic, uint8_t event, const char *nick,
         const char *detail)
{
    const zchat_msg_t *msg = s_publication (bed, topic, ZCHAT_EVENT);
    assert (msg->id == 0);
    assert (msg->event == event);
    assert (streq (msg->nick, nick));
    assert (streq (msg->topic, detail));
    assert (msg->ts == zchat_testbed_now (bed));
}

//  Greet as nick from peer with a version; returns the token (caller's
//  buffer) and the version WELCOME named.
static uint8_t
s_greet_version (zchat_testbed_t *bed, const char *peer, const char *nick, char *token,
                 uint8_t version)
{
    SEND (bed, peer, zchat_encode_hello (&s_buf, 1, version, nick, ""));
    const zchat_msg_t *msg = s_reply (bed, peer, ZCHAT_WELCOME, 1);
    assert (streq (msg->nick, nick));
    assert (msg->flag == 0);
    if (token)
        strcpy (token, msg->token);
    return msg->version;
}

//  Greet as nick from peer; returns the token (caller's buffer).
static void
s_greet (zchat_testbed_t *bed, const char *peer, const char *nick, char *token)
{
    SEND (bed, peer, zchat_encode_hello (&s_buf, 1, ZCHAT_VERSION, nick, ""));
    const zchat_msg_t *msg = s_reply (bed, peer, ZCHAT_WELCOME, 1);
    assert (streq (msg->nick, nick));
    assert (msg->flag == 0);
    if (token)
        strcpy (token, msg->token);
}

static void
s_join (zchat_testbed_t *bed, const char *peer, const char *room, uint64_t id)
{
    SEND (bed, peer, zchat_encode_join (&s_buf, id, room));
    s_reply (bed, peer, ZCHAT_JOINED, id);
}

//  JOIN from peer with a CURVE key.
static void
s_join_from (zchat_testbed_t *bed, const char *peer, const char *key,
             const char *room, uint64_t id)
{
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_join (&s_buf, id, room);
    zchat_testbed_send_from (bed, peer, key, NULL, s_body, size);
    s_reply (bed, peer, ZCHAT_JOINED, id);
}

//  SAY, flush, and take the ACK; returns the seq.
static uint64_t
s_say (zchat_testbed_t *bed, const char *peer, const char *room, uint64_t id,
       const char *text)
{
    SEND (bed, peer, zchat_encode_say (&s_buf, id, room, ZCHAT_KIND_TEXT,
                                       text, strlen (text)));
    assert (zchat_testbed_flush (bed) >= 0);
    const zchat_msg_t *msg = s_reply (bed, peer, ZCHAT_ACK, id);
    assert (streq (msg->room, room));
    return msg->seq;
}


//  Greeting, nick clash, takeover, re-greeting, goodbye, unknown peers.
static void
s_test_sessions (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);

    //  A fresh greeting: every WELCOME field
    SEND (bed, "A", zchat_encode_hello (&s_buf, 7, ZCHAT_VERSION, "alice", ""));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_WELCOME, 7);
    assert (msg->version == ZCHAT_VERSION);
    assert (streq (msg->nick, "alice"));
    assert (strlen (msg->token) == ZCHAT_TOKEN_SIZE);
    assert (strspn (msg->token, "0123456789abcdef") == ZCHAT_TOKEN_SIZE);
    assert (msg->pub_port == 5556);
    assert (streq (msg->endpoint, "tcp://127.0.0.1:5556"));
    assert (msg->heartbeat_ms == 1000);
    assert (msg->timeout_ms == 3000);
    assert (msg->max_text == 4096);
    assert (msg->flag == 0);
    char alice_token [ZCHAT_MAX_TOKEN + 1];
    strcpy (alice_token, msg->token);
    assert (zchat_server_sessions (server) == 1);

    //  Wrong version, invalid nicks, a live nick
    SEND (bed, "B", zchat_encode_hello (&s_buf, 8, 0, "bob", ""));
    msg = s_error (bed, "B", 8, ZCHAT_ERR_VERSION);
    assert (streq (msg->reason, "supported versions: 1 2 3 4 5 6"));
    SEND (bed, "B", zchat_encode_hello (&s_buf, 9, ZCHAT_VERSION, "9lives", ""));
    s_error (bed, "B", 9, ZCHAT_ERR_INVALID);
    SEND (bed, "B", zchat_encode_hello (&s_buf, 10, ZCHAT_VERSION, "bo b", ""));
    s_error (bed, "B", 10, ZCHAT_ERR_INVALID);
    SEND (bed, "B", zchat_encode_hello (&s_buf, 11, ZCHAT_VERSION, "alice", ""));
    msg = s_error (bed, "B", 11, ZCHAT_ERR_NICK_IN_USE);
    assert (strstr (msg->reason, "alice"));
    SEND (bed, "B", zchat_encode_hello (&s_buf, 12, ZCHAT_VERSION, "alice",
                                        "0123456789abcdef0123456789abcdef"));
    s_error (bed, "B", 12, ZCHAT_ERR_NICK_IN_USE);
    assert (zchat_server_sessions (server) == 1);

    //  Requests without a session: 440
    SEND (bed, "B", zchat_encode_ping (&s_buf, 13));
    s_error (bed, "B", 13, ZCHAT_ERR_SESSION);
    SEND (bed, "B", zchat_encode_join (&s_buf, 14, "lobby"));
    s_error (bed, "B", 14, ZCHAT_ERR_SESSION);
    SEND (bed, "B", zchat_encode_say (&s_buf, 15, "lobby", 0, "hi", 2));
    s_error (bed, "B", 15, ZCHAT_ERR_SESSION);
    SEND (bed, "B", zchat_encode_bye (&s_buf, 16));
    s_error (bed, "B", 16, ZCHAT_ERR_SESSION);

    //  bob greets; both join lobby
    char bob_token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "B", "bob", bob_token);
    assert (!streq (bob_token, alice_token));
    s_join (bed, "A", "lobby", 20);
    s_join (bed, "B", "lobby", 21);
    zchat_testbed_clear (bed);

    //  Takeover: alice comes back from a new peer with her token; the
    //  session keeps its rooms and token and her old peer is unknown.
    SEND (bed, "A2", zchat_encode_hello (&s_buf, 30, ZCHAT_VERSION, "alice", alice_token));
    msg = s_reply (bed, "A2", ZCHAT_WELCOME, 30);
    assert (msg->flag == 1);
    assert (streq (msg->token, alice_token));
    assert (zchat_server_sessions (server) == 2);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);   //  no quit, no join
    SEND (bed, "A", zchat_encode_ping (&s_buf, 31));
    s_error (bed, "A", 31, ZCHAT_ERR_SESSION);
    SEND (bed, "A2", zchat_encode_ping (&s_buf, 32));
    msg = s_reply (bed, "A2", ZCHAT_PONG, 32);
    assert (msg->item_count == 1);

    //  A SAY staged before a takeover is acknowledged to the peer that
    //  sent it, before the new peer's WELCOME.
    SEND (bed, "A2", zchat_encode_say (&s_buf, 33, "lobby", 0, "one", 3));
    assert (zchat_testbed_replies (bed, "A2") == 0);
    SEND (bed, "A3", zchat_encode_hello (&s_buf, 34, ZCHAT_VERSION, "alice", alice_token));
    msg = s_reply (bed, "A2", ZCHAT_ACK, 33);
    assert (msg->seq == 1);
    s_reply (bed, "A3", ZCHAT_WELCOME, 34);
    s_publication (bed, "lobby:", ZCHAT_MESSAGE);

    //  Re-greeting on a peer with a session: the old one quits first, so
    //  the same nick is free again (a fresh session, not resumed).
    SEND (bed, "A3", zchat_encode_hello (&s_buf, 35, ZCHAT_VERSION, "alice", ""));
    msg = s_reply (bed, "A3", ZCHAT_WELCOME, 35);
    assert (msg->flag == 0);
    assert (!streq (msg->token, alice_token));
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "alice", "");
    assert (zchat_server_sessions (server) == 2);
    SEND (bed, "A3", zchat_encode_ping (&s_buf, 36));
    msg = s_reply (bed, "A3", ZCHAT_PONG, 36);
    assert (msg->item_count == 0);                  //  rooms went with the old one

    //  BYE: staged SAY acknowledged, then quit, then OK; nick free at once
    SEND (bed, "B", zchat_encode_say (&s_buf, 40, "lobby", 0, "bye all", 7));
    SEND (bed, "B", zchat_encode_bye (&s_buf, 41));
    msg = s_reply (bed, "B", ZCHAT_ACK, 40);
    assert (msg->seq == 2);
    s_reply (bed, "B", ZCHAT_OK, 41);
    s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "bob", "");
    assert (zchat_server_sessions (server) == 1);
    //  Three greetings in a row by the same nick all succeed
    for (int i = 0; i < 3; i++) {
        s_greet (bed, "B", "bob", NULL);
        SEND (bed, "B", zchat_encode_bye (&s_buf, 42));
        s_reply (bed, "B", ZCHAT_OK, 42);
    }
    //  The empty room was freed; joining again continues its numbering
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    SEND (bed, "A3", zchat_encode_join (&s_buf, 43, "lobby"));
    msg = s_reply (bed, "A3", ZCHAT_JOINED, 43);
    assert (msg->seq == 2);
    assert (msg->first_seq == 1);
    assert (msg->members == 1);

    //  NICK: rename announced in every room; clash, invalid, same
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "B", "lobby", 50);
    s_join (bed, "B", "ops", 51);
    zchat_testbed_clear (bed);
    SEND (bed, "B", zchat_encode_nick (&s_buf, 52, "robert"));
    s_reply (bed, "B", ZCHAT_OK, 52);
    s_event (bed, "lobby:", ZCHAT_EVENT_NICK, "bob", "robert");
    s_event (bed, "ops:", ZCHAT_EVENT_NICK, "bob", "robert");
    SEND (bed, "B", zchat_encode_nick (&s_buf, 53, "alice"));
    s_error (bed, "B", 53, ZCHAT_ERR_NICK_IN_USE);
    SEND (bed, "B", zchat_encode_nick (&s_buf, 54, "-x"));
    s_error (bed, "B", 54, ZCHAT_ERR_INVALID);
    SEND (bed, "B", zchat_encode_nick (&s_buf, 55, "robert"));
    s_reply (bed, "B", ZCHAT_OK, 55);
    assert (zchat_testbed_pending (bed) == 0);
    SEND (bed, "A3", zchat_encode_dm (&s_buf, 56, "bob", 0, "hi", 2));
    s_error (bed, "A3", 56, ZCHAT_ERR_NO_SUCH_NICK);
    //  The old nick is free for someone else
    s_greet (bed, "C", "bob", NULL);

    //  Expiry: these version 6 sessions outlive any silence while their
    //  connections are up; once robert's has closed and a check found it
    //  gone, his silence counts, and only he goes, announced as quit
    //  (older versions' silence: s_test_expiry_versions)
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 10000);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 3);
    assert (zchat_testbed_pending (bed) == 0);
    zchat_testbed_close (bed, "B");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    zchat_testbed_advance (bed, 2000);
    SEND (bed, "A3", zchat_encode_ping (&s_buf, 60));
    SEND (bed, "C", zchat_encode_ping (&s_buf, 61));
    zchat_testbed_advance (bed, 1500);          //  robert silent 3.5 s > 3 s
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 2);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "robert", "");
    s_event (bed, "ops:", ZCHAT_EVENT_QUIT, "robert", "");
    assert (zchat_rooms_lookup (server->rooms, "ops") == NULL);
    SEND (bed, "B", zchat_encode_ping (&s_buf, 62));
    s_error (bed, "B", 62, ZCHAT_ERR_SESSION);
    //  A tick at the same time again expires nobody else
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 2);
    zchat_testbed_close (bed, "A3");
    zchat_testbed_close (bed, "C");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 0);

    zchat_testbed_destroy (&bed);
}


//  A refused re-greeting leaves the peer's session as it was (PROTOCOL.md
//  6.1): version, nick syntax, a live nick, a wrong token, a limit. An
//  accepted one ends it first, also when it takes over another session.
static void
s_test_regreeting (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.max_sessions_per_address = 2;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    char alice_token [ZCHAT_MAX_TOKEN + 1];
    char bob_token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "A", "alice", alice_token);
    s_greet (bed, "B", "bob", bob_token);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 3);
    zchat_testbed_clear (bed);

    SEND (bed, "A", zchat_encode_hello (&s_buf, 10, 0, "alice", ""));
    s_error (bed, "A", 10, ZCHAT_ERR_VERSION);
    SEND (bed, "A", zchat_encode_hello (&s_buf, 11, ZCHAT_VERSION, "9bad", ""));
    s_error (bed, "A", 11, ZCHAT_ERR_INVALID);
    SEND (bed, "A", zchat_encode_hello (&s_buf, 12, ZCHAT_VERSION, "bob", ""));
    s_error (bed, "A", 12, ZCHAT_ERR_NICK_IN_USE);
    SEND (bed, "A", zchat_encode_hello (&s_buf, 13, ZCHAT_VERSION, "bob", alice_token));
    s_error (bed, "A", 13, ZCHAT_ERR_NICK_IN_USE);
    //  Untouched: same nick, same rooms, nothing announced
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    assert (zchat_server_sessions (server) == 2);
    SEND (bed, "A", zchat_encode_ping (&s_buf, 14));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_PONG, 14);
    assert (msg->item_count == 1);
    assert (zchat_sessions_by_nick (server->sessions, "alice") != NULL);

    //  The address is full (2 of 2): a new peer is refused, but a peer
    //  re-greeting gives up its own session and fits
    SEND (bed, "C", zchat_encode_hello (&s_buf, 20, ZCHAT_VERSION, "carol", ""));
    s_error (bed, "C", 20, ZCHAT_ERR_LIMIT);
    SEND (bed, "A", zchat_encode_hello (&s_buf, 21, ZCHAT_VERSION, "alicia", ""));
    msg = s_reply (bed, "A", ZCHAT_WELCOME, 21);
    assert (msg->flag == 0);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "alice", "");
    assert (zchat_server_sessions (server) == 2);

    //  The broker is full (a cap in all): a new session is refused, a
    //  re-greeting fits in the one it gives up, a takeover moves one
    server->config.max_sessions = 2;
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_hello (&s_buf, 25, ZCHAT_VERSION, "carol", "");
    zchat_testbed_send_from (bed, "C", NULL, "10.9.9.9", s_body, size);
    msg = s_error (bed, "C", 25, ZCHAT_ERR_LIMIT);
    assert (strstr (msg->reason, "full"));
    zchat_testbed_send_from (bed, "C", NULL, NULL, s_body, size);
    s_error (bed, "C", 25, ZCHAT_ERR_LIMIT);
    SEND (bed, "A", zchat_encode_hello (&s_buf, 26, ZCHAT_VERSION, "alicia", ""));
    s_reply (bed, "A", ZCHAT_WELCOME, 26);
    assert (zchat_server_sessions (server) == 2);

    //  Taking over bob's session from a peer that has one: the peer's own
    //  session ends (quit), bob's moves here with its rooms
    SEND (bed, "A", zchat_encode_hello (&s_buf, 22, ZCHAT_VERSION, "bob", bob_token));
    msg = s_reply (bed, "A", ZCHAT_WELCOME, 22);
    assert (msg->flag == 1);
    assert (zchat_server_sessions (server) == 1);
    SEND (bed, "A", zchat_encode_ping (&s_buf, 23));
    msg = s_reply (bed, "A", ZCHAT_PONG, 23);
    assert (msg->item_count == 1);
    SEND (bed, "B", zchat_encode_ping (&s_buf, 24));
    s_error (bed, "B", 24, ZCHAT_ERR_SESSION);
    zchat_testbed_destroy (&bed);
}


//  Expiry and rate limits run on the monotonic clock: a forward step of
//  the wall clock expires nobody and refills no bucket, a backward step
//  does not stop expiry; timestamps still follow the wall clock.
static void
s_test_clock (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.rate_limit = 1;
    config.rate_burst = 1;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    //  Version 5: a session that silence ends
    s_greet_version (bed, "A", "alice", NULL, 5);
    s_join (bed, "A", "lobby", 2);
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 1000);
    assert (s_say (bed, "A", "lobby", 3, "one") == 1);

    zchat_testbed_step_wall (bed, 3600 * 1000);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 1);
    SEND (bed, "A", zchat_encode_say (&s_buf, 4, "lobby", 0, "two", 3));
    s_error (bed, "A", 4, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 1000);
    SEND (bed, "A", zchat_encode_say (&s_buf, 4, "lobby", 0, "two", 3));
    assert (zchat_testbed_flush (bed) == 1);
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 4);
    assert (msg->ts == zchat_testbed_now (bed));

    zchat_testbed_step_wall (bed, -2 * 3600 * 1000);
    zchat_testbed_advance (bed, 2000);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 1);
    zchat_testbed_advance (bed, 1500);          //  3.5 s of silence
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 0);
    zchat_testbed_destroy (&bed);
}


//  The session of a peer, by nick (it must have one).
static zchat_session_t *
s_session (zchat_testbed_t *bed, const char *nick)
{
    zchat_session_t *session = zchat_sessions_by_nick (zchat_testbed_server (bed)->sessions,
                                                       nick);
    assert (session);
    return session;
}

//  Expiry by version: sessions of versions 1 to 5 end after the session
//  timeout of silence, as they always did; a version 6 session bound to
//  its connection outlives any silence, and the oldest-first walk goes
//  past it to the silent older ones behind it; a version 6 greeting
//  whose connection the broker cannot see (a relayed peer) is answered
//  version 5 and ends by silence.
static void
s_test_expiry_versions (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    //  The bound one first: the oldest, where the walk starts
    assert (s_greet_version (bed, "N", "newest", NULL, ZCHAT_VERSION) == 6);
    assert (s_session (bed, "newest")->fd == zchat_testbed_fd (bed, "N"));
    char nick [16];
    char peer [16];
    for (uint8_t version = 1; version <= 5; version++) {
        snprintf (peer, sizeof (peer), "V%u", version);
        snprintf (nick, sizeof (nick), "old%u", version);
        assert (s_greet_version (bed, peer, nick, NULL, version) == version);
        assert (s_session (bed, nick)->fd == -1);
    }
    zchat_testbed_set_fd (bed, "R", -1);
    assert (s_greet_version (bed, "R", "relayed", NULL, ZCHAT_VERSION) == 5);
    assert (s_greet_version (bed, "R2", "future", NULL, 200) == 6);
    //  One past the timeout, the five old and the relayed go; then ten
    //  timeouts more, and still the bound ones stay, with nothing sent
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 2);
    for (int i = 0; i < 10; i++) {
        zchat_testbed_advance (bed, 3001);
        zchat_testbed_tick (bed);
    }
    assert (zchat_server_sessions (server) == 2);
    assert (zchat_testbed_pending (bed) == 0);
    assert (zchat_testbed_checks (bed, NULL) == 0);
    //  A bound session pings or not as it likes: PONG as ever
    SEND (bed, "N", zchat_encode_ping (&s_buf, 2));
    s_reply (bed, "N", ZCHAT_PONG, 2);
    zchat_testbed_destroy (&bed);
}


//  Connections (version 6): a close heard is checked a moment later, each
//  session bound to the descriptor on its own (a reused descriptor carries
//  a new connection whose session stays); a gone one ends a timeout after
//  the check unless resumed; a greeting read after its own connection's
//  close is checked too; a takeover moves the binding; a new connection's
//  probe is told 440, or rebinds a session that kept its routing id; and
//  an hour's silence gets a check even when no close was heard.
static void
s_test_connections (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    size_t unreached = 0;
    char token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "A", "alice", token);
    s_join (bed, "A", "lobby", 2);
    //  bob's connection has the descriptor alice's had: hers closed, the
    //  kernel gave the number again, and the close is heard after
    zchat_testbed_set_fd (bed, "B", zchat_testbed_fd (bed, "A"));
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "B", "lobby", 3);
    zchat_testbed_clear (bed);
    zchat_testbed_close (bed, "A");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS - 1);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == 0);         //  not yet
    zchat_testbed_advance (bed, 1);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, &unreached) == 2 && unreached == 1);
    //  bob was reached: an unsolicited PONG of no items; alice was not,
    //  and is unbound, her silence counting from the check
    const zchat_msg_t *msg = s_reply (bed, "B", ZCHAT_PONG, 0);
    assert (msg->item_count == 0);
    assert (s_session (bed, "alice")->fd == -1);
    assert (s_session (bed, "bob")->fd == zchat_testbed_fd (bed, "B"));
    assert (zchat_testbed_pending (bed) == 0);
    zchat_testbed_advance (bed, 3000);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 2);
    zchat_testbed_advance (bed, 1);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 1);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "alice", "");

    //  A gone session resumed with its token before the timeout: bound
    //  to the new connection, kept, never announced
    s_greet (bed, "C", "carol", token);
    s_join (bed, "C", "lobby", 4);
    zchat_testbed_clear (bed);
    zchat_testbed_close (bed, "C");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    assert (s_session (bed, "carol")->fd == -1);
    zchat_testbed_advance (bed, 2000);
    SEND (bed, "C2", zchat_encode_hello (&s_buf, 5, ZCHAT_VERSION, "carol", token));
    msg = s_reply (bed, "C2", ZCHAT_WELCOME, 5);
    assert (msg->flag == 1 && msg->version == 6);
    assert (s_session (bed, "carol")->fd == zchat_testbed_fd (bed, "C2"));
    for (int i = 0; i < 5; i++) {
        zchat_testbed_advance (bed, 3001);
        zchat_testbed_tick (bed);
    }
    assert (zchat_server_sessions (server) == 2);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    //  ... and from a relay: version 5, unbound, so silence ends it
    zchat_testbed_set_fd (bed, "C3", -1);
    SEND (bed, "C3", zchat_encode_hello (&s_buf, 6, ZCHAT_VERSION, "carol", token));
    msg = s_reply (bed, "C3", ZCHAT_WELCOME, 6);
    assert (msg->flag == 1 && msg->version == 5);
    assert (s_session (bed, "carol")->fd == -1);
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_tick (bed);
    assert (zchat_server_sessions (server) == 1);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "carol", "");

    //  A greeting read after its own connection's close was heard: checked
    //  as if it had closed then, and gone. A descriptor that closed longer
    //  than a timeout ago says nothing of a new greeting: no check
    zchat_testbed_close (bed, "D");
    SEND (bed, "D", zchat_encode_hello (&s_buf, 7, ZCHAT_VERSION, "dave", ""));
    s_reply (bed, "D", ZCHAT_WELCOME, 7);
    zchat_testbed_close (bed, "E");
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_connect (bed, "E", NULL);
    s_error (bed, "E", 0, ZCHAT_ERR_SESSION);               //  the probe: 440
    s_greet (bed, "E", "erin", NULL);
    size_t unreached_before;
    size_t checks = zchat_testbed_checks (bed, &unreached_before);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, &unreached) == checks + 1);
    assert (unreached == unreached_before + 1);
    assert (s_session (bed, "dave")->fd == -1);
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == checks + 1);
    assert (s_session (bed, "erin")->fd == zchat_testbed_fd (bed, "E"));
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_tick (bed);
    assert (zchat_sessions_by_nick (server->sessions, "dave") == NULL);

    //  A probe under a session's routing id (a DEALER with one of its own,
    //  connected again): no answer, the session bound to the new
    //  connection; the old one's close then concerns nobody
    int old_fd = zchat_testbed_fd (bed, "E");
    zchat_testbed_set_fd (bed, "E", 900);
    zchat_testbed_connect (bed, "E", NULL);
    assert (zchat_testbed_replies (bed, "E") == 0);
    assert (s_session (bed, "erin")->fd == 900);
    checks = zchat_testbed_checks (bed, NULL);
    zchat_testbed_set_fd (bed, "E-old", old_fd);
    zchat_testbed_close (bed, "E-old");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == checks);
    //  Its next connection cannot be bound (a relay's): 440, so that it
    //  greets again and pings as the version before does, rather than
    //  idling unbound until its session ends by silence
    zchat_testbed_set_fd (bed, "E", -1);
    zchat_testbed_connect (bed, "E", NULL);
    assert (s_reply (bed, "E", ZCHAT_ERROR, 0)->code == ZCHAT_ERR_SESSION);
    assert (s_session (bed, "erin")->fd == -1);
    zchat_testbed_set_fd (bed, "E", 900);
    zchat_testbed_connect (bed, "E", NULL);
    assert (zchat_testbed_replies (bed, "E") == 0);
    assert (s_session (bed, "erin")->fd == 900);

    //  An hour's silence, no close heard, the connection gone all the
    //  same: checked at the first expiry walk past the hour, found gone,
    //  ended a timeout later. A bound session that is still there gets
    //  its PONG and stays, and is not checked again within the hour
    SEND (bed, "B", zchat_encode_bye (&s_buf, 9));          //  two bound: erin, frank
    zchat_testbed_lose (bed, "E");
    s_greet (bed, "F", "frank", NULL);
    zchat_testbed_clear (bed);
    checks = zchat_testbed_checks (bed, &unreached_before);
    zchat_testbed_advance (bed, ZCHAT_SERVER_VERIFY_MS - 3002);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == checks);
    zchat_testbed_advance (bed, 3002);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, &unreached) >= checks + 1);
    assert (unreached == unreached_before + 1 && s_session (bed, "erin")->fd == -1);
    zchat_testbed_advance (bed, 3001);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == checks + 2);
    s_reply (bed, "F", ZCHAT_PONG, 0);
    assert (zchat_sessions_by_nick (server->sessions, "erin") == NULL);
    for (int i = 0; i < 10; i++) {
        zchat_testbed_advance (bed, 3001);
        zchat_testbed_tick (bed);
    }
    assert (zchat_testbed_checks (bed, NULL) == checks + 2);
    assert (s_session (bed, "frank")->fd == zchat_testbed_fd (bed, "F"));

    //  Ended sessions leave no trace in the index or the queue: a close
    //  after a goodbye checks nothing
    SEND (bed, "F", zchat_encode_bye (&s_buf, 8));
    s_reply (bed, "F", ZCHAT_OK, 8);
    zchat_testbed_close (bed, "F");
    zchat_testbed_advance (bed, ZCHAT_SERVER_CHECK_MS);
    zchat_testbed_tick (bed);
    assert (zchat_testbed_checks (bed, NULL) == checks + 2);
    zchat_testbed_destroy (&bed);
}


//  The query budget: HISTORY, WHO, ROOMS and TOPIC reads are charged the
//  bytes of their replies; past the budget they get 429 with the time until it is out
//  of debt, while the session's other requests and other sessions go on.
static void
s_test_query_budget (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.query_rate = 1;              //  KiB a second
    config.query_burst = 4;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "big", 2);
    s_join (bed, "B", "big", 3);
    char text [1000];
    memset (text, 'x', sizeof (text));
    for (uint64_t i = 0; i < 8; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, 10 + i, "big", 0, text, sizeof (text)));
    assert (zchat_testbed_flush (bed) == 8);
    zchat_testbed_clear (bed);

    //  One page of ~8 KB takes the 4 KiB burst into debt
    SEND (bed, "A", zchat_encode_history (&s_buf, 20, "big", 0, 0, 0));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_PAGE, 20);
    assert (msg->item_count == 8);
    SEND (bed, "A", zchat_encode_history (&s_buf, 21, "big", 0, 0, 0));
    msg = s_error (bed, "A", 21, ZCHAT_ERR_RATE_LIMITED);
    uint32_t retry_ms = msg->retry_ms;
    assert (retry_ms > 4000 && retry_ms < 5000);    //  ~4.4 KB at 1 KiB/s
    SEND (bed, "A", zchat_encode_who (&s_buf, 22, "big"));
    s_error (bed, "A", 22, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_rooms (&s_buf, 23));
    s_error (bed, "A", 23, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_topic (&s_buf, 23, "elsewhere", false, ""));
    s_error (bed, "A", 23, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_ping (&s_buf, 24));
    s_reply (bed, "A", ZCHAT_PONG, 24);
    SEND (bed, "B", zchat_encode_who (&s_buf, 25, "big"));
    s_reply (bed, "B", ZCHAT_MEMBERS, 25);
    //  Waiting as told is enough, and small replies cost little
    zchat_testbed_advance (bed, retry_ms);
    SEND (bed, "A", zchat_encode_who (&s_buf, 26, "big"));
    s_reply (bed, "A", ZCHAT_MEMBERS, 26);
    zchat_testbed_advance (bed, 1000);
    SEND (bed, "A", zchat_encode_rooms (&s_buf, 27));
    s_reply (bed, "A", ZCHAT_ROOMLIST, 27);
    SEND (bed, "A", zchat_encode_history (&s_buf, 28, "big", 8, 0, 0));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 28);
    assert (msg->item_count == 1);
    //  A TOPIC read of a room not loaded (a store lookup) costs its reply
    //  and the lookup: 4 KiB is a dozen of them
    zchat_testbed_advance (bed, 5000);
    uint64_t id = 100;
    for (; id < 200; id++) {
        SEND (bed, "A", zchat_encode_topic (&s_buf, id, "elsewhere", false, ""));
        zchat_testbed_take_reply (bed, "A", &s_msg);
        assert (s_msg.id == id);
        if (s_msg.type == ZCHAT_ERROR)
            break;
        assert (s_msg.type == ZCHAT_TOPICIS);
    }
    assert (s_msg.code == ZCHAT_ERR_RATE_LIMITED && s_msg.retry_ms > 0);
    assert (id - 100 > 8 && id - 100 < 20);
    zchat_testbed_destroy (&bed);
}


//  The query budget of an address: every query is charged to the
//  session's budget and to one its address's sessions share, four times
//  as big, and refused when either is spent, with the later retry time.
//  Other addresses and sessions without one are not charged to it, and
//  the address's entry goes once refilled, sessions alive or not.
static void
s_test_address_budget (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.query_rate = 1;              //  KiB a second: 4 for the address
    config.query_burst = 4;             //  16 for the address
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    const char *peers [] = { "A", "B", "C", "D" };
    const char *nicks [] = { "alice", "bob", "carol", "dave" };
    for (size_t i = 0; i < 4; i++) {
        s_greet (bed, peers [i], nicks [i], NULL);
        s_join (bed, peers [i], "big", 2);
    }
    char text [1000];
    memset (text, 'x', sizeof (text));
    for (uint64_t i = 0; i < 8; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, 10 + i, "big", 0, text, sizeof (text)));
    assert (zchat_testbed_flush (bed) == 8);
    zchat_testbed_clear (bed);

    //  A page of ~8.5 KB takes a session's 4 KiB into debt and half the
    //  address's 16 KiB; a session's own debt is its own
    SEND (bed, "A", zchat_encode_history (&s_buf, 20, "big", 0, 0, 0));
    s_reply (bed, "A", ZCHAT_PAGE, 20);
    SEND (bed, "A", zchat_encode_history (&s_buf, 21, "big", 0, 0, 0));
    const zchat_msg_t *msg = s_error (bed, "A", 21, ZCHAT_ERR_RATE_LIMITED);
    assert (!strstr (msg->reason, "address"));
    SEND (bed, "B", zchat_encode_history (&s_buf, 22, "big", 0, 0, 0));
    s_reply (bed, "B", ZCHAT_PAGE, 22);
    //  Two pages spent the address: carol's own budget is whole, and she
    //  is refused for the address, until it is out of debt (~150 ms at
    //  4 KiB/s), for any query; other requests go on
    SEND (bed, "C", zchat_encode_history (&s_buf, 23, "big", 0, 0, 0));
    msg = s_error (bed, "C", 23, ZCHAT_ERR_RATE_LIMITED);
    assert (strstr (msg->reason, "address"));
    uint32_t retry_ms = msg->retry_ms;
    assert (retry_ms > 0 && retry_ms < 1000);
    SEND (bed, "C", zchat_encode_who (&s_buf, 24, "big"));
    assert (s_error (bed, "C", 24, ZCHAT_ERR_RATE_LIMITED)->retry_ms == retry_ms);
    SEND (bed, "C", zchat_encode_rooms (&s_buf, 25));
    s_error (bed, "C", 25, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "C", zchat_encode_ping (&s_buf, 26));
    s_reply (bed, "C", ZCHAT_PONG, 26);
    //  Both short: told the later time, alice's own (~1.1 s)
    SEND (bed, "A", zchat_encode_history (&s_buf, 27, "big", 0, 0, 0));
    msg = s_error (bed, "A", 27, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms > retry_ms && !strstr (msg->reason, "address"));

    //  Another address has its own; a session without one (ipc) only its own
    size_t size;
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 30, ZCHAT_VERSION, "frank", "");
    zchat_testbed_send_from (bed, "F", NULL, "10.1.2.3", s_body, size);
    s_reply (bed, "F", ZCHAT_WELCOME, 30);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_join (&s_buf, 31, "big");
    zchat_testbed_send_from (bed, "F", NULL, "10.1.2.3", s_body, size);
    s_reply (bed, "F", ZCHAT_JOINED, 31);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_history (&s_buf, 32, "big", 0, 0, 0);
    zchat_testbed_send_from (bed, "F", NULL, "10.1.2.3", s_body, size);
    s_reply (bed, "F", ZCHAT_PAGE, 32);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 33, ZCHAT_VERSION, "gina", "");
    zchat_testbed_send_from (bed, "G", NULL, NULL, s_body, size);
    s_reply (bed, "G", ZCHAT_WELCOME, 33);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_join (&s_buf, 34, "big");
    zchat_testbed_send_from (bed, "G", NULL, NULL, s_body, size);
    s_reply (bed, "G", ZCHAT_JOINED, 34);
    for (uint64_t id = 35; id < 37; id++) {
        zchat_buf_init (&s_buf, s_body, sizeof (s_body));
        size = zchat_encode_history (&s_buf, id, "big", 0, 0, 0);
        zchat_testbed_send_from (bed, "G", NULL, NULL, s_body, size);
    }
    s_reply (bed, "G", ZCHAT_PAGE, 35);
    msg = s_error (bed, "G", 36, ZCHAT_ERR_RATE_LIMITED);
    assert (!strstr (msg->reason, "address"));
    //  One entry for each address that spent, none for ipc
    assert (zhashx_size (server->spent) == 2);

    //  Waiting as told is enough; then the address is spent again
    zchat_testbed_advance (bed, retry_ms);
    SEND (bed, "C", zchat_encode_history (&s_buf, 40, "big", 0, 0, 0));
    s_reply (bed, "C", ZCHAT_PAGE, 40);
    SEND (bed, "D", zchat_encode_history (&s_buf, 41, "big", 0, 0, 0));
    msg = s_error (bed, "D", 41, ZCHAT_ERR_RATE_LIMITED);
    assert (strstr (msg->reason, "address"));

    //  Refilled (16 KiB at 4 KiB/s, and the debt), the entries go while
    //  their sessions live on: a new one starts full, which is the same
    zchat_testbed_advance (bed, 7000);
    zchat_testbed_tick (bed);
    assert (zhashx_size (server->spent) == 0);
    assert (zchat_sessions_size (server->sessions) == 6);
    SEND (bed, "D", zchat_encode_history (&s_buf, 42, "big", 0, 0, 0));
    s_reply (bed, "D", ZCHAT_PAGE, 42);
    SEND (bed, "A", zchat_encode_history (&s_buf, 43, "big", 0, 0, 0));
    s_reply (bed, "A", ZCHAT_PAGE, 43);
    SEND (bed, "B", zchat_encode_history (&s_buf, 44, "big", 0, 0, 0));
    msg = s_error (bed, "B", 44, ZCHAT_ERR_RATE_LIMITED);
    assert (strstr (msg->reason, "address"));
    assert (zhashx_size (server->spent) == 1);
    zchat_testbed_destroy (&bed);
}


//  A room the store cannot number (a storage error) is not opened: JOIN
//  gets 500 rather than a room that would restart at seq 1 and hand out
//  seqs already taken. Once the store is back, numbering goes on.
static void
s_test_storage_fault (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    zchat_store_t *store = zchat_testbed_store (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    assert (s_say (bed, "A", "lobby", 3, "one") == 1);
    assert (s_say (bed, "A", "lobby", 4, "two") == 2);
    SEND (bed, "A", zchat_encode_leave (&s_buf, 5, "lobby"));
    s_reply (bed, "A", ZCHAT_OK, 5);
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    uint64_t seq = 0;
    assert (zchat_store_room_seq (store, "lobby", &seq) == 0 && seq == 2);
    assert (zchat_store_room_seq (store, "never", &seq) == 0 && seq == 0);

    //  The rooms table goes missing under the store's feet
    int rc = sqlite3_exec (store->db, "ALTER TABLE rooms RENAME TO rooms_away",
                           NULL, NULL, NULL);
    assert (rc == SQLITE_OK);
    assert (zchat_store_room_seq (store, "lobby", &seq) == -1);
    SEND (bed, "A", zchat_encode_join (&s_buf, 6, "lobby"));
    s_error (bed, "A", 6, ZCHAT_ERR_INTERNAL);
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    SEND (bed, "A", zchat_encode_ping (&s_buf, 7));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_PONG, 7);
    assert (msg->item_count == 0);

    rc = sqlite3_exec (store->db, "ALTER TABLE rooms_away RENAME TO rooms",
                       NULL, NULL, NULL);
    assert (rc == SQLITE_OK);
    s_join (bed, "A", "lobby", 8);
    assert (s_msg.seq == 2);
    assert (s_say (bed, "A", "lobby", 9, "three") == 3);
    zchat_testbed_destroy (&bed);
}


//  Run sql on the store's own connection; it must succeed.
static void
s_store_exec (zchat_store_t *store, const char *sql)
{
    int rc = sqlite3_exec (store->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fprintf (stderr, "%s: %s\n", sql, sqlite3_errmsg (store->db));
        assert (false);
    }
}

//  A store that cannot read a room's oldest seq or its topic is answered
//  500, never "history starts at 0" or "no topic": JOIN does not add the
//  session (nor keep the room it loaded), HISTORY is refused even for a
//  range it need not read, a TOPIC read is refused. Once the store reads
//  again, all is as before. Renaming a column breaks exactly the
//  statements that name it: min_ts is named by the chunk lookup, not by
//  the newest seq or a history range; topic only by the topic read.
static void
s_test_read_fault (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    zchat_store_t *store = zchat_testbed_store (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    assert (s_say (bed, "A", "lobby", 3, "one") == 1);
    assert (s_say (bed, "A", "lobby", 4, "two") == 2);
    SEND (bed, "A", zchat_encode_topic (&s_buf, 5, "lobby", true, "kept"));
    s_reply (bed, "A", ZCHAT_TOPICIS, 5);
    zchat_testbed_clear (bed);

    s_store_exec (store, "ALTER TABLE chunks RENAME COLUMN min_ts TO min_ts_away");
    SEND (bed, "B", zchat_encode_join (&s_buf, 10, "lobby"));
    s_error (bed, "B", 10, ZCHAT_ERR_INTERNAL);
    SEND (bed, "A", zchat_encode_who (&s_buf, 11, "lobby"));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_MEMBERS, 11);
    assert (msg->item_count == 1);
    SEND (bed, "A", zchat_encode_history (&s_buf, 12, "lobby", 1, 0, 0));
    s_error (bed, "A", 12, ZCHAT_ERR_INTERNAL);
    SEND (bed, "A", zchat_encode_history (&s_buf, 13, "lobby", 9, 0, 0));
    s_error (bed, "A", 13, ZCHAT_ERR_INTERNAL);
    SEND (bed, "A", zchat_encode_leave (&s_buf, 14, "lobby"));
    s_reply (bed, "A", ZCHAT_OK, 14);
    s_event (bed, "lobby:", ZCHAT_EVENT_LEAVE, "alice", "");
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    SEND (bed, "A", zchat_encode_join (&s_buf, 15, "lobby"));
    s_error (bed, "A", 15, ZCHAT_ERR_INTERNAL);
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    assert (zchat_testbed_pending (bed) == 0);

    s_store_exec (store, "ALTER TABLE chunks RENAME COLUMN min_ts_away TO min_ts");
    SEND (bed, "B", zchat_encode_join (&s_buf, 20, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_JOINED, 20);
    assert (msg->seq == 2 && msg->first_seq == 1 && msg->members == 1);
    assert (streq (msg->topic, "kept"));
    s_event (bed, "lobby:", ZCHAT_EVENT_JOIN, "bob", "");
    SEND (bed, "B", zchat_encode_history (&s_buf, 21, "lobby", 1, 0, 0));
    msg = s_reply (bed, "B", ZCHAT_PAGE, 21);
    assert (msg->first_seq == 1 && msg->seq == 2 && msg->item_count == 2);
    SEND (bed, "B", zchat_encode_leave (&s_buf, 22, "lobby"));
    s_reply (bed, "B", ZCHAT_OK, 22);
    s_event (bed, "lobby:", ZCHAT_EVENT_LEAVE, "bob", "");
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);

    //  The topic cannot be read: a TOPIC read of a room not in memory and
    //  a JOIN that would load the room get 500, and the room is not kept
    //  with its topic forgotten.
    s_store_exec (store, "ALTER TABLE rooms RENAME COLUMN topic TO topic_away");
    SEND (bed, "B", zchat_encode_topic (&s_buf, 30, "lobby", false, ""));
    s_error (bed, "B", 30, ZCHAT_ERR_INTERNAL);
    SEND (bed, "A", zchat_encode_join (&s_buf, 31, "lobby"));
    s_error (bed, "A", 31, ZCHAT_ERR_INTERNAL);
    assert (zchat_rooms_lookup (server->rooms, "lobby") == NULL);
    assert (zchat_testbed_pending (bed) == 0);
    s_store_exec (store, "ALTER TABLE rooms RENAME COLUMN topic_away TO topic");
    SEND (bed, "B", zchat_encode_topic (&s_buf, 32, "lobby", false, ""));
    msg = s_reply (bed, "B", ZCHAT_TOPICIS, 32);
    assert (streq (msg->topic, "kept") && streq (msg->nick, "alice"));
    SEND (bed, "A", zchat_encode_join (&s_buf, 33, "lobby"));
    msg = s_reply (bed, "A", ZCHAT_JOINED, 33);
    assert (msg->seq == 2 && msg->first_seq == 1 && streq (msg->topic, "kept"));
    SEND (bed, "B", zchat_encode_topic (&s_buf, 34, "never", false, ""));
    msg = s_reply (bed, "B", ZCHAT_TOPICIS, 34);
    assert (streq (msg->topic, "") && streq (msg->nick, "") && msg->ts == 0);
    zchat_testbed_destroy (&bed);
}


//  Encode with s_buf and send from peer with a CURVE key.
#define SEND_FROM(bed, peer, key, encode) \
    do { \
        zchat_buf_init (&s_buf, s_body, sizeof (s_body)); \
        size_t size_ = (encode); \
        assert (size_ > 0); \
        zchat_testbed_send_from ((bed), (peer), (key), NULL, s_body, size_); \
    } while (0)

//  Under CURVE, a nick whose owner the store cannot read is answered 500
//  ("try again") by HELLO, a re-greeting and NICK, never taken as
//  unowned: a key at its nick limit is not told it owns too many, and
//  nothing changes (no session, no rename, no binding). Once the store
//  reads again, all is as before. Renaming nick_keys.nick breaks the owner
//  read (and a claim), not the count of a key's nicks.
static void
s_test_owner_fault (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.curve = true;
    config.max_nicks_per_key = 1;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    zchat_store_t *store = zchat_testbed_store (bed);
    const char *key1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    //  Each key owns one nick, its limit; dave's session ends
    SEND_FROM (bed, "D1", key1, zchat_encode_hello (&s_buf, 1, ZCHAT_VERSION, "dave", ""));
    s_reply (bed, "D1", ZCHAT_WELCOME, 1);
    SEND_FROM (bed, "D1", key1, zchat_encode_bye (&s_buf, 2));
    s_reply (bed, "D1", ZCHAT_OK, 2);
    SEND_FROM (bed, "E", key2, zchat_encode_hello (&s_buf, 3, ZCHAT_VERSION, "erin", ""));
    s_reply (bed, "E", ZCHAT_WELCOME, 3);
    zchat_testbed_clear (bed);

    s_store_exec (store, "ALTER TABLE nick_keys RENAME COLUMN nick TO nick_away");
    //  Its owner greets again, another key greets, a session renames and
    //  re-greets: each is 500, each as a read that failed
    SEND_FROM (bed, "D2", key1, zchat_encode_hello (&s_buf, 10, ZCHAT_VERSION, "dave", ""));
    const zchat_msg_t *msg = s_error (bed, "D2", 10, ZCHAT_ERR_INTERNAL);
    assert (strstr (msg->reason, "could not read") && strstr (msg->reason, "try again"));
    SEND_FROM (bed, "D2", key1, zchat_encode_hello (&s_buf, 11, ZCHAT_VERSION, "frank", ""));
    s_error (bed, "D2", 11, ZCHAT_ERR_INTERNAL);
    SEND_FROM (bed, "F", key2, zchat_encode_hello (&s_buf, 12, ZCHAT_VERSION, "dave", ""));
    msg = s_error (bed, "F", 12, ZCHAT_ERR_INTERNAL);
    assert (strstr (msg->reason, "could not read"));
    SEND_FROM (bed, "E", key2, zchat_encode_nick (&s_buf, 13, "dave"));
    s_error (bed, "E", 13, ZCHAT_ERR_INTERNAL);
    SEND_FROM (bed, "E", key2, zchat_encode_hello (&s_buf, 14, ZCHAT_VERSION, "dave", ""));
    s_error (bed, "E", 14, ZCHAT_ERR_INTERNAL);
    assert (zchat_sessions_by_nick (server->sessions, "dave") == NULL);
    assert (zchat_sessions_by_nick (server->sessions, "frank") == NULL);
    assert (zchat_sessions_by_nick (server->sessions, "erin") != NULL);
    assert (zchat_sessions_size (server->sessions) == 1);
    assert (zchat_testbed_pending (bed) == 0);

    s_store_exec (store, "ALTER TABLE nick_keys RENAME COLUMN nick_away TO nick");
    SEND_FROM (bed, "F", key2, zchat_encode_hello (&s_buf, 20, ZCHAT_VERSION, "dave", ""));
    s_error (bed, "F", 20, ZCHAT_ERR_FORBIDDEN);
    SEND_FROM (bed, "D2", key1, zchat_encode_hello (&s_buf, 21, ZCHAT_VERSION, "frank", ""));
    s_error (bed, "D2", 21, ZCHAT_ERR_LIMIT);
    SEND_FROM (bed, "D2", key1, zchat_encode_hello (&s_buf, 22, ZCHAT_VERSION, "dave", ""));
    s_reply (bed, "D2", ZCHAT_WELCOME, 22);
    char owner [ZCHAT_KEY_SIZE + 1];
    assert (zchat_store_nick_owner (store, "dave", owner) == 1 && streq (owner, key1));
    assert (zchat_store_nick_owner (store, "frank", owner) == 0);
    zchat_testbed_destroy (&bed);
}

//  The allow-list of s_test_revoke: every key but the one in arg.
static bool
s_admits_all_but (void *arg, const char *key)
{
    const char *refused = *(const char **) arg;
    return !(refused && streq (key, refused));
}

//  Revocation: once the allow-list loses a key, zchat_server_revoke ends
//  its sessions (quit announced, staged messages out first) and the key
//  cannot greet again; other keys go on.
static void
s_test_revoke (void)
{
    const char *refused = NULL;
    zchat_server_config_t config = zchat_testbed_config ();
    config.curve = true;
    config.admits = s_admits_all_but;
    config.admits_arg = (void *) &refused;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_server_t *server = zchat_testbed_server (bed);
    const char *key1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    const char *peers [] = { "K1", "K2", "K2b" };
    const char *keys [] = { key1, key2, key2 };
    const char *nicks [] = { "keeper", "goner", "goner2" };
    for (int i = 0; i < 3; i++) {
        zchat_buf_init (&s_buf, s_body, sizeof (s_body));
        size_t size = zchat_encode_hello (&s_buf, 1, ZCHAT_VERSION, nicks [i], "");
        zchat_testbed_send_from (bed, peers [i], keys [i], NULL, s_body, size);
        s_reply (bed, peers [i], ZCHAT_WELCOME, 1);
        s_join_from (bed, peers [i], keys [i], "lobby", 2);
    }
    assert (zchat_server_revoke (server, zchat_testbed_now (bed)) == 0);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_say (&s_buf, 3, "lobby", 0, "last", 4);
    zchat_testbed_send_from (bed, "K2", key2, NULL, s_body, size);
    zchat_testbed_clear (bed);

    refused = key2;
    assert (zchat_server_revoke (server, zchat_testbed_now (bed)) == 2);
    assert (zchat_server_sessions (server) == 1);
    s_reply (bed, "K2", ZCHAT_ACK, 3);
    s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    //  Both quit, in the order they were last seen
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "goner2", "");
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "goner", "");
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_ping (&s_buf, 4);
    zchat_testbed_send_from (bed, "K2", key2, NULL, s_body, size);
    s_error (bed, "K2", 4, ZCHAT_ERR_SESSION);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 5, ZCHAT_VERSION, "goner", "");
    zchat_testbed_send_from (bed, "K2", key2, NULL, s_body, size);
    const zchat_msg_t *msg = s_error (bed, "K2", 5, ZCHAT_ERR_FORBIDDEN);
    assert (strstr (msg->reason, "no longer admitted"));
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_ping (&s_buf, 6);
    zchat_testbed_send_from (bed, "K1", key1, NULL, s_body, size);
    s_reply (bed, "K1", ZCHAT_PONG, 6);
    zchat_testbed_destroy (&bed);
}


//  Tagged probes (version 5): published on 0xFF + tag, which only the
//  prober subscribes to, not on the room's topic; untagged ones, and any
//  from a session of an older version, on the room's topic as before.
static void
s_test_tagged_probes (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);              //  version 5
    SEND (bed, "B", zchat_encode_hello (&s_buf, 1, 4, "bob", ""));
    const zchat_msg_t *msg = s_reply (bed, "B", ZCHAT_WELCOME, 1);
    assert (msg->version == 4);
    s_greet (bed, "C", "carol", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 3);
    zchat_testbed_clear (bed);

    //  Tagged, from version 5: on the tag's topic alone, the body as ever
    SEND (bed, "A", zchat_encode_probe (&s_buf, 10, "lobby", "0123456789abcdef"));
    s_reply (bed, "A", ZCHAT_OK, 10);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    msg = s_publication (bed, "\xFF" "0123456789abcdef", ZCHAT_PROBE);
    assert (msg->id == 0 && streq (msg->room, "lobby") && streq (msg->nick, "alice"));
    assert (zchat_testbed_pending (bed) == 0);
    //  A tag is matched whole: this one's topic is not a prefix of it
    SEND (bed, "A", zchat_encode_probe (&s_buf, 11, "lobby", "0123"));
    s_reply (bed, "A", ZCHAT_OK, 11);
    assert (zchat_testbed_publications (bed, "\xFF" "0123456789abcdef") == 0);
    s_publication (bed, "\xFF" "0123", ZCHAT_PROBE);
    //  The longest tag, and one a byte longer: malformed, as any field
    //  over its wire limit (the decoder refuses it, before the broker
    //  could answer 422), and nothing is published
    char tag [ZCHAT_MAX_PROBE_TAG + 2];
    memset (tag, 't', sizeof (tag) - 1);
    tag [ZCHAT_MAX_PROBE_TAG] = 0;
    SEND (bed, "A", zchat_encode_probe (&s_buf, 12, "lobby", tag));
    s_reply (bed, "A", ZCHAT_OK, 12);
    char topic [ZCHAT_MAX_PROBE_TOPIC_FRAME + 1];
    topic [0] = (char) ZCHAT_PROBE_TOPIC;
    strcpy (topic + 1, tag);
    s_publication (bed, topic, ZCHAT_PROBE);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_probe (&s_buf, 13, "lobby", "");
    s_body [size - 1] = ZCHAT_MAX_PROBE_TAG + 1;
    memcpy (s_body + size, tag, ZCHAT_MAX_PROBE_TAG);
    s_body [size + ZCHAT_MAX_PROBE_TAG] = 't';
    zchat_testbed_send (bed, "A", s_body, size + ZCHAT_MAX_PROBE_TAG + 1);
    s_error (bed, "A", 13, ZCHAT_ERR_MALFORMED);
    assert (zchat_testbed_pending (bed) == 0);

    //  Untagged from version 5, with no second string or an empty one: on
    //  the room's topic
    SEND (bed, "A", zchat_encode_probe (&s_buf, 14, "lobby", NULL));
    s_reply (bed, "A", ZCHAT_OK, 14);
    msg = s_publication (bed, "lobby:", ZCHAT_PROBE);
    assert (msg->id == 0 && streq (msg->nick, "alice"));
    SEND (bed, "A", zchat_encode_probe (&s_buf, 15, "lobby", ""));
    s_reply (bed, "A", ZCHAT_OK, 15);
    s_publication (bed, "lobby:", ZCHAT_PROBE);
    assert (zchat_testbed_pending (bed) == 0);

    //  From version 4 a second string means nothing: on the room's topic
    SEND (bed, "B", zchat_encode_probe (&s_buf, 16, "lobby", "0123456789abcdef"));
    s_reply (bed, "B", ZCHAT_OK, 16);
    msg = s_publication (bed, "lobby:", ZCHAT_PROBE);
    assert (msg->id == 0 && streq (msg->room, "lobby") && streq (msg->nick, "bob"));
    assert (zchat_testbed_pending (bed) == 0);

    //  Members only, tag or not
    SEND (bed, "C", zchat_encode_probe (&s_buf, 17, "lobby", "0123456789abcdef"));
    s_error (bed, "C", 17, ZCHAT_ERR_NOT_MEMBER);
    assert (zchat_testbed_pending (bed) == 0);
    zchat_testbed_destroy (&bed);
}

//  Rooms: join, leave, who, rooms, topic, probe.
static void
s_test_rooms (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);

    SEND (bed, "A", zchat_encode_join (&s_buf, 2, "lobby"));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_JOINED, 2);
    assert (streq (msg->room, "lobby"));
    assert (msg->seq == 0 && msg->first_seq == 0);
    assert (msg->members == 1);
    assert (streq (msg->topic, ""));
    s_event (bed, "lobby:", ZCHAT_EVENT_JOIN, "alice", "");
    SEND (bed, "B", zchat_encode_join (&s_buf, 3, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_JOINED, 3);
    assert (msg->members == 2);
    s_event (bed, "lobby:", ZCHAT_EVENT_JOIN, "bob", "");
    //  Joining again: JOINED again, no event
    SEND (bed, "A", zchat_encode_join (&s_buf, 4, "lobby"));
    msg = s_reply (bed, "A", ZCHAT_JOINED, 4);
    assert (msg->members == 2);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    //  Bad room names
    SEND (bed, "A", zchat_encode_join (&s_buf, 5, "no room"));
    s_error (bed, "A", 5, ZCHAT_ERR_INVALID);
    SEND (bed, "A", zchat_encode_join (&s_buf, 6, "a:b"));
    s_error (bed, "A", 6, ZCHAT_ERR_INVALID);
    s_join (bed, "A", "lob", 7);
    s_event (bed, "lob:", ZCHAT_EVENT_JOIN, "alice", "");

    //  WHO: members in join order; only for members
    SEND (bed, "B", zchat_encode_who (&s_buf, 10, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_MEMBERS, 10);
    assert (streq (msg->room, "lobby"));
    assert (msg->item_count == 2);
    size_t cursor = 0;
    zchat_item_t item;
    assert (zchat_msg_next_item (msg, &cursor, &item) && streq (item.nick, "alice"));
    assert (zchat_msg_next_item (msg, &cursor, &item) && streq (item.nick, "bob"));
    SEND (bed, "B", zchat_encode_who (&s_buf, 11, "lob"));
    s_error (bed, "B", 11, ZCHAT_ERR_NOT_MEMBER);

    //  TOPIC: set by a member, announced; read by anyone; 404 to set
    //  from outside; a room never seen reads as no topic.
    SEND (bed, "A", zchat_encode_topic (&s_buf, 20, "lobby", true, "Welcome, all ☺"));
    msg = s_reply (bed, "A", ZCHAT_TOPICIS, 20);
    assert (streq (msg->topic, "Welcome, all ☺"));
    assert (streq (msg->nick, "alice"));
    assert (msg->ts == zchat_testbed_now (bed));
    s_event (bed, "lobby:", ZCHAT_EVENT_TOPIC, "alice", "Welcome, all ☺");
    SEND (bed, "B", zchat_encode_topic (&s_buf, 21, "lobby", false, ""));
    msg = s_reply (bed, "B", ZCHAT_TOPICIS, 21);
    assert (streq (msg->topic, "Welcome, all ☺"));
    assert (streq (msg->nick, "alice"));
    SEND (bed, "B", zchat_encode_topic (&s_buf, 22, "lob", true, "mine"));
    s_error (bed, "B", 22, ZCHAT_ERR_NOT_MEMBER);
    SEND (bed, "B", zchat_encode_topic (&s_buf, 23, "lob", false, ""));
    msg = s_reply (bed, "B", ZCHAT_TOPICIS, 23);
    assert (streq (msg->topic, ""));
    SEND (bed, "B", zchat_encode_topic (&s_buf, 24, "nowhere", false, ""));
    msg = s_reply (bed, "B", ZCHAT_TOPICIS, 24);
    assert (streq (msg->topic, "") && streq (msg->nick, "") && msg->ts == 0);
    SEND (bed, "B", zchat_encode_topic (&s_buf, 25, "bad room", false, ""));
    s_error (bed, "B", 25, ZCHAT_ERR_INVALID);

    //  ROOMS: rooms with members, by name, with counts, seqs, topics
    s_say (bed, "A", "lobby", 30, "hello");
    zchat_testbed_clear (bed);
    SEND (bed, "B", zchat_encode_rooms (&s_buf, 31));
    msg = s_reply (bed, "B", ZCHAT_ROOMLIST, 31);
    assert (msg->item_count == 2);
    cursor = 0;
    assert (zchat_msg_next_item (msg, &cursor, &item));
    assert (streq (item.room, "lob") && item.members == 1 && item.seq == 0);
    assert (zchat_msg_next_item (msg, &cursor, &item));
    assert (streq (item.room, "lobby") && item.members == 2 && item.seq == 1);
    assert (streq (item.topic, "Welcome, all ☺"));

    //  PROBE: published on the room's topic with the nick and id 0 (the
    //  request id is the client's business, not the room's)
    SEND (bed, "B", zchat_encode_probe (&s_buf, 40, "lobby", NULL));
    s_reply (bed, "B", ZCHAT_OK, 40);
    msg = s_publication (bed, "lobby:", ZCHAT_PROBE);
    assert (msg->id == 0);
    assert (streq (msg->room, "lobby") && streq (msg->nick, "bob"));
    SEND (bed, "B", zchat_encode_probe (&s_buf, 41, "lob", NULL));
    s_error (bed, "B", 41, ZCHAT_ERR_NOT_MEMBER);
    assert (zchat_testbed_publications (bed, "lob:") == 0);

    //  LEAVE: OK and announced; again: 404; empty rooms are freed and
    //  drop out of ROOMS; the topic survives in the store.
    SEND (bed, "A", zchat_encode_leave (&s_buf, 50, "lob"));
    s_reply (bed, "A", ZCHAT_OK, 50);
    s_event (bed, "lob:", ZCHAT_EVENT_LEAVE, "alice", "");
    SEND (bed, "A", zchat_encode_leave (&s_buf, 51, "lob"));
    s_error (bed, "A", 51, ZCHAT_ERR_NOT_MEMBER);
    zchat_server_t *server = zchat_testbed_server (bed);
    assert (zchat_rooms_lookup (server->rooms, "lob") == NULL);
    SEND (bed, "A", zchat_encode_leave (&s_buf, 52, "lobby"));
    s_reply (bed, "A", ZCHAT_OK, 52);
    SEND (bed, "B", zchat_encode_leave (&s_buf, 53, "lobby"));
    s_reply (bed, "B", ZCHAT_OK, 53);
    assert (zchat_rooms_size (server->rooms) == 0);
    SEND (bed, "B", zchat_encode_rooms (&s_buf, 54));
    msg = s_reply (bed, "B", ZCHAT_ROOMLIST, 54);
    assert (msg->item_count == 0);
    SEND (bed, "B", zchat_encode_join (&s_buf, 55, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_JOINED, 55);
    assert (msg->seq == 1 && msg->first_seq == 1);
    assert (streq (msg->topic, "Welcome, all ☺"));

    zchat_testbed_destroy (&bed);
}


//  SAY: staging, group commit, seqs, duplicates, DM, PING.
static void
s_test_messages (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 3);
    s_join (bed, "B", "lob", 4);
    zchat_testbed_clear (bed);

    //  Three SAYs: nothing before the flush, then ACKs and MESSAGEs 1, 2, 3
    const char *texts [3] = { "one", "two ☺", "three" };
    for (int i = 0; i < 3; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, 100 + (uint64_t) i, "lobby",
                                          i == 2 ? ZCHAT_KIND_ACTION : ZCHAT_KIND_TEXT,
                                          texts [i], strlen (texts [i])));
    assert (zchat_testbed_pending (bed) == 0);
    uint64_t staged_at = zchat_testbed_now (bed);
    zchat_testbed_advance (bed, 5);
    assert (zchat_testbed_flush (bed) == 3);
    assert (zchat_testbed_flush (bed) == 0);        //  nothing left
    uint64_t ts [3];
    for (int i = 0; i < 3; i++) {
        const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 100 + (uint64_t) i);
        assert (streq (msg->room, "lobby"));
        assert (msg->seq == (uint64_t) i + 1);
        assert (msg->ts == staged_at);
        ts [i] = msg->ts;
        msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
        assert (msg->id == 0);
        assert (streq (msg->room, "lobby"));
        assert (msg->seq == (uint64_t) i + 1);
        assert (msg->ts == staged_at);
        assert (streq (msg->nick, "alice"));
        assert (msg->kind == (i == 2 ? ZCHAT_KIND_ACTION : ZCHAT_KIND_TEXT));
        assert (msg->text_size == strlen (texts [i]));
        assert (memcmp (msg->text, texts [i], msg->text_size) == 0);
    }
    assert (zchat_testbed_publications (bed, "lob:") == 0);
    assert (zchat_testbed_pending (bed) == 0);

    //  A resent SAY: the original ACK, no new seq, nothing published
    zchat_testbed_advance (bed, 1000);
    SEND (bed, "A", zchat_encode_say (&s_buf, 101, "lobby", 0, "two again", 9));
    assert (zchat_testbed_pending (bed) == 0);
    assert (zchat_testbed_flush (bed) == 0);
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 101);
    assert (streq (msg->room, "lobby") && msg->seq == 2 && msg->ts == ts [1]);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    //  ... also when the original is in the same group
    SEND (bed, "A", zchat_encode_say (&s_buf, 200, "lobby", 0, "four", 4));
    SEND (bed, "A", zchat_encode_say (&s_buf, 200, "lobby", 0, "four", 4));
    SEND (bed, "B", zchat_encode_say (&s_buf, 200, "lobby", 0, "bob's four", 10));
    assert (zchat_testbed_flush (bed) == 2);
    msg = s_reply (bed, "A", ZCHAT_ACK, 200);
    assert (msg->seq == 4);
    msg = s_reply (bed, "A", ZCHAT_ACK, 200);
    assert (msg->seq == 4);
    msg = s_reply (bed, "B", ZCHAT_ACK, 200);      //  same id, other nick: new
    assert (msg->seq == 5);
    assert (zchat_testbed_publications (bed, "lobby:") == 2);
    zchat_testbed_clear (bed);

    //  Refused SAYs: not a member, too large; answered at once
    SEND (bed, "A", zchat_encode_say (&s_buf, 300, "lob", 0, "x", 1));
    s_error (bed, "A", 300, ZCHAT_ERR_NOT_MEMBER);
    char *big = (char *) malloc (5000);
    assert (big);
    memset (big, 'x', 5000);
    SEND (bed, "A", zchat_encode_say (&s_buf, 301, "lobby", 0, big, 4097));
    s_error (bed, "A", 301, ZCHAT_ERR_TOO_LARGE);
    SEND (bed, "A", zchat_encode_say (&s_buf, 302, "lobby", 0, big, 4096));
    assert (zchat_testbed_flush (bed) == 1);
    s_reply (bed, "A", ZCHAT_ACK, 302);
    free (big);
    zchat_testbed_clear (bed);

    //  DM: delivered to the recipient's peer only, never published
    SEND (bed, "A", zchat_encode_dm (&s_buf, 400, "bob", ZCHAT_KIND_TEXT, "psst", 4));
    msg = s_reply (bed, "B", ZCHAT_DELIVER, 0);
    assert (streq (msg->nick, "alice"));
    assert (msg->kind == ZCHAT_KIND_TEXT);
    assert (msg->ts == zchat_testbed_now (bed));
    assert (msg->text_size == 4 && memcmp (msg->text, "psst", 4) == 0);
    msg = s_reply (bed, "A", ZCHAT_ACK, 400);
    assert (streq (msg->room, "") && msg->seq == 0);
    assert (zchat_testbed_pending (bed) == 0);      //  nothing on PUB
    SEND (bed, "A", zchat_encode_dm (&s_buf, 401, "nobody", 0, "hi", 2));
    s_error (bed, "A", 401, ZCHAT_ERR_NO_SUCH_NICK);
    SEND (bed, "A", zchat_encode_dm (&s_buf, 402, "bob", 0, "", 0));
    s_reply (bed, "B", ZCHAT_DELIVER, 0);
    s_reply (bed, "A", ZCHAT_ACK, 402);

    //  PING: the newest committed seq of each room, in join order; a
    //  staged message does not count until it is committed.
    SEND (bed, "A", zchat_encode_say (&s_buf, 500, "lobby", 0, "staged", 6));
    SEND (bed, "B", zchat_encode_ping (&s_buf, 501));
    msg = s_reply (bed, "B", ZCHAT_PONG, 501);
    assert (msg->item_count == 2);
    size_t cursor = 0;
    zchat_item_t item;
    assert (zchat_msg_next_item (msg, &cursor, &item));
    assert (streq (item.room, "lobby") && item.seq == 6);
    assert (zchat_msg_next_item (msg, &cursor, &item));
    assert (streq (item.room, "lob") && item.seq == 0);
    assert (zchat_testbed_flush (bed) == 1);
    SEND (bed, "B", zchat_encode_ping (&s_buf, 502));
    msg = s_reply (bed, "B", ZCHAT_PONG, 502);
    cursor = 0;
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 7);

    //  A member who leaves while its message is staged: the room stays
    //  until the group is done, the MESSAGE still goes out, then it is freed.
    zchat_testbed_clear (bed);
    SEND (bed, "B", zchat_encode_say (&s_buf, 600, "lob", 0, "last word", 9));
    SEND (bed, "B", zchat_encode_leave (&s_buf, 601, "lob"));
    s_reply (bed, "B", ZCHAT_ACK, 600);
    s_reply (bed, "B", ZCHAT_OK, 601);
    msg = s_publication (bed, "lob:", ZCHAT_MESSAGE);
    assert (msg->seq == 1);
    s_event (bed, "lob:", ZCHAT_EVENT_LEAVE, "bob", "");
    zchat_server_t *server = zchat_testbed_server (bed);
    assert (zchat_rooms_lookup (server->rooms, "lob") == NULL);

    //  A store failure at commit: ERROR 500 to every staged sender, nothing
    //  published, and the seqs are handed out again without a hole.
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_say (&s_buf, 700, "lobby", 0, "lost", 4));
    SEND (bed, "B", zchat_encode_say (&s_buf, 701, "lobby", 0, "lost too", 8));
    server->fail_commit = true;
    assert (zchat_testbed_flush (bed) == -1);
    s_error (bed, "A", 700, ZCHAT_ERR_INTERNAL);
    s_error (bed, "B", 701, ZCHAT_ERR_INTERNAL);
    assert (zchat_testbed_pending (bed) == 0);
    assert (s_say (bed, "A", "lobby", 700, "kept") == 8);
    assert (zchat_store_last_seq (zchat_testbed_store (bed), "lobby") == 8);

    //  Restart: numbering continues, and a retry is still recognised
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_say (&s_buf, 800, "lobby", 0, "before", 6));
    assert (zchat_testbed_restart (bed) == 0);       //  destroy flushes
    s_reply (bed, "A", ZCHAT_ACK, 800);
    zchat_testbed_clear (bed);
    s_greet (bed, "A", "alice", NULL);
    SEND (bed, "A", zchat_encode_join (&s_buf, 801, "lobby"));
    msg = s_reply (bed, "A", ZCHAT_JOINED, 801);
    assert (msg->seq == 9 && msg->first_seq == 1);
    SEND (bed, "A", zchat_encode_say (&s_buf, 101, "lobby", 0, "two", 3));
    assert (zchat_testbed_flush (bed) == 0);
    msg = s_reply (bed, "A", ZCHAT_ACK, 101);
    assert (msg->seq == 2 && msg->ts == ts [1]);
    assert (s_say (bed, "A", "lobby", 802, "after") == 10);

    zchat_testbed_destroy (&bed);
}


//  DM from peer to nick (at to_peer): delivered there and acknowledged;
//  returns the ACK's ts.
static uint64_t
s_dm (zchat_testbed_t *bed, const char *peer, uint64_t id, const char *nick,
      const char *to_peer, const char *text)
{
    SEND (bed, peer, zchat_encode_dm (&s_buf, id, nick, ZCHAT_KIND_TEXT, text,
                                      strlen (text)));
    const zchat_msg_t *msg = s_reply (bed, to_peer, ZCHAT_DELIVER, 0);
    assert (msg->text_size == strlen (text) && memcmp (msg->text, text, msg->text_size) == 0);
    assert (zchat_testbed_replies (bed, to_peer) == 0);
    msg = s_reply (bed, peer, ZCHAT_ACK, id);
    assert (streq (msg->room, "") && msg->seq == 0);
    return msg->ts;
}

//  DM resent from peer with an id delivered before: the original ACK
//  (its ts), and nothing for anyone else.
static void
s_dm_again (zchat_testbed_t *bed, const char *peer, uint64_t id, const char *nick,
            uint64_t ts)
{
    SEND (bed, peer, zchat_encode_dm (&s_buf, id, nick, ZCHAT_KIND_TEXT, "again", 5));
    const zchat_msg_t *msg = s_reply (bed, peer, ZCHAT_ACK, id);
    assert (zchat_testbed_pending (bed) == 0);      //  not delivered again
    assert (streq (msg->room, "") && msg->seq == 0 && msg->ts == ts);
}

//  A nick is one nick in any ASCII case, shown as its holder spells it:
//  another case of a live nick is in use (HELLO and NICK), a DM to any
//  case reaches the holder, a session may rename itself to another case
//  of its own nick (announced, and shown from then on), a takeover in
//  another case resumes the session under its spelling. With CURVE a
//  binding holds in every case and counts once, and its key may use any
//  case.
static void
s_test_nick_case (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    char token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "A", "alice", token);
    s_greet (bed, "B", "Bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 3);
    zchat_testbed_clear (bed);

    SEND (bed, "C", zchat_encode_hello (&s_buf, 4, ZCHAT_VERSION, "ALICE", ""));
    const zchat_msg_t *msg = s_error (bed, "C", 4, ZCHAT_ERR_NICK_IN_USE);
    assert (streq (msg->reason, "nick ALICE is in use"));
    SEND (bed, "C", zchat_encode_hello (&s_buf, 5, ZCHAT_VERSION, "Alice",
                                        "0123456789abcdef0123456789abcdef"));
    s_error (bed, "C", 5, ZCHAT_ERR_NICK_IN_USE);
    SEND (bed, "B", zchat_encode_nick (&s_buf, 6, "aLICE"));
    s_error (bed, "B", 6, ZCHAT_ERR_NICK_IN_USE);
    assert (zchat_server_sessions (zchat_testbed_server (bed)) == 2);

    //  A DM to any case; the sender as it spells itself
    SEND (bed, "B", zchat_encode_dm (&s_buf, 7, "ALICE", ZCHAT_KIND_TEXT, "yo", 2));
    msg = s_reply (bed, "A", ZCHAT_DELIVER, 0);
    assert (streq (msg->nick, "Bob"));
    s_reply (bed, "B", ZCHAT_ACK, 7);
    s_dm (bed, "A", 8, "bOB", "B", "hi");

    //  Another case of one's own nick: a rename, announced; the same
    //  spelling again changes nothing
    SEND (bed, "A", zchat_encode_nick (&s_buf, 9, "Alice"));
    s_reply (bed, "A", ZCHAT_OK, 9);
    s_event (bed, "lobby:", ZCHAT_EVENT_NICK, "alice", "Alice");
    SEND (bed, "A", zchat_encode_nick (&s_buf, 10, "Alice"));
    s_reply (bed, "A", ZCHAT_OK, 10);
    assert (zchat_testbed_pending (bed) == 0);
    SEND (bed, "B", zchat_encode_who (&s_buf, 11, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_MEMBERS, 11);
    size_t cursor = 0;
    zchat_item_t item;
    assert (zchat_msg_next_item (msg, &cursor, &item) && streq (item.nick, "Alice"));
    assert (zchat_msg_next_item (msg, &cursor, &item) && streq (item.nick, "Bob"));
    s_say (bed, "A", "lobby", 12, "spelled anew");
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (streq (msg->nick, "Alice"));

    //  A takeover in another case: the session, as it is spelled
    SEND (bed, "A2", zchat_encode_hello (&s_buf, 13, ZCHAT_VERSION, "aLiCe", token));
    msg = s_reply (bed, "A2", ZCHAT_WELCOME, 13);
    assert (msg->flag == 1 && streq (msg->nick, "Alice") && streq (msg->token, token));
    assert (zchat_testbed_pending (bed) == 0);

    //  Once it is gone, any case is free, spelled as its new holder likes
    SEND (bed, "A2", zchat_encode_bye (&s_buf, 14));
    s_reply (bed, "A2", ZCHAT_OK, 14);
    s_event (bed, "lobby:", ZCHAT_EVENT_QUIT, "Alice", "");
    s_greet (bed, "C", "ALICE", NULL);
    zchat_testbed_destroy (&bed);

    //  CURVE: key1's "dave" is key1's in every case
    zchat_server_config_t config = zchat_testbed_config ();
    config.curve = true;
    config.max_nicks_per_key = 2;
    bed = zchat_testbed_new (&config, false);
    assert (bed);
    zchat_store_t *store = zchat_testbed_store (bed);
    const char *key1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_hello (&s_buf, 20, ZCHAT_VERSION, "dave", "");
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_WELCOME, 20);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 21, ZCHAT_VERSION, "DAVE", "");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    msg = s_error (bed, "D2", 21, ZCHAT_ERR_FORBIDDEN);
    assert (streq (msg->reason, "nick DAVE is registered to another key"));
    //  The owner in other cases: one nick, still; a second fills the limit
    const char *renames [] = { "Dave", "DAVE", "dave2", "Dave2" };
    for (uint64_t i = 0; i < 4; i++) {
        zchat_buf_init (&s_buf, s_body, sizeof (s_body));
        size = zchat_encode_nick (&s_buf, 22 + i, renames [i]);
        zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
        s_reply (bed, "D1", ZCHAT_OK, 22 + i);
        assert (zchat_store_nick_count (store, key1) == (i < 2? 1: 2));
    }
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 26, "dave3");
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_error (bed, "D1", 26, ZCHAT_ERR_LIMIT);
    //  Offline, and after a restart: key2 may have no case of either
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_bye (&s_buf, 27);
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_OK, 27);
    assert (zchat_testbed_restart (bed) == 0);
    const char *taken [] = { "dave", "Dave", "DAVE2", "dAVE2" };
    for (uint64_t i = 0; i < 4; i++) {
        zchat_buf_init (&s_buf, s_body, sizeof (s_body));
        size = zchat_encode_hello (&s_buf, 30 + i, ZCHAT_VERSION, taken [i], "");
        zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
        s_error (bed, "D2", 30 + i, ZCHAT_ERR_FORBIDDEN);
    }
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 34, ZCHAT_VERSION, "dAvE", "");
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    msg = s_reply (bed, "D1", ZCHAT_WELCOME, 34);
    assert (streq (msg->nick, "dAvE"));
    char owner [ZCHAT_KEY_SIZE + 1];
    assert (zchat_store_nick_owner (zchat_testbed_store (bed), "DaVe", owner) == 1);
    assert (streq (owner, key1));
    zchat_testbed_destroy (&bed);
}


//  A resent DM (same id, same session) is acknowledged as the first was
//  and delivered once: also after a takeover and a rename, when the
//  recipient has gone, when the sender is over its rate limit; a refused
//  DM is not remembered; the newest ZCHAT_DM_RECENT are; a new session
//  starts with none.
static void
s_test_dm_retry (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.rate_limit = 2;
    config.rate_burst = 2;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    char token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "A", "alice", token);
    s_greet (bed, "B", "bob", NULL);
    s_greet (bed, "C", "carol", NULL);

    //  Distinct ids are delivered each; the same id again only answered
    uint64_t ts1 = s_dm (bed, "A", 400, "bob", "B", "one");
    zchat_testbed_advance (bed, 1000);
    uint64_t ts2 = s_dm (bed, "A", 401, "bob", "B", "two");
    assert (ts2 > ts1);
    zchat_testbed_advance (bed, 1000);
    s_dm_again (bed, "A", 400, "bob", ts1);
    s_dm_again (bed, "A", 401, "bob", ts2);
    //  The same id from another session is its own DM
    s_dm (bed, "C", 400, "bob", "B", "carol's");

    //  The session resumed from another peer, then renamed: still known
    SEND (bed, "A2", zchat_encode_hello (&s_buf, 30, ZCHAT_VERSION, "alice", token));
    assert (s_reply (bed, "A2", ZCHAT_WELCOME, 30)->flag == 1);
    s_dm_again (bed, "A2", 400, "bob", ts1);
    SEND (bed, "A2", zchat_encode_nick (&s_buf, 31, "alicia"));
    s_reply (bed, "A2", ZCHAT_OK, 31);
    s_dm_again (bed, "A2", 401, "bob", ts2);

    //  Over the rate limit: a resend is still answered with its ACK; the
    //  refused DM is not remembered, so its resend is delivered, once
    zchat_testbed_advance (bed, 1000);
    s_dm (bed, "A2", 402, "bob", "B", "three");
    s_dm (bed, "A2", 403, "bob", "B", "four");
    SEND (bed, "A2", zchat_encode_dm (&s_buf, 404, "bob", 0, "five", 4));
    uint32_t retry_ms = s_error (bed, "A2", 404, ZCHAT_ERR_RATE_LIMITED)->retry_ms;
    assert (retry_ms > 0);
    s_dm_again (bed, "A2", 400, "bob", ts1);
    zchat_testbed_advance (bed, retry_ms);
    uint64_t ts5 = s_dm (bed, "A2", 404, "bob", "B", "five");
    s_dm_again (bed, "A2", 404, "bob", ts5);

    //  The recipient has gone: a resend is still the ACK it was, not 405
    SEND (bed, "B", zchat_encode_bye (&s_buf, 40));
    s_reply (bed, "B", ZCHAT_OK, 40);
    s_dm_again (bed, "A2", 400, "nobody", ts1);
    zchat_testbed_destroy (&bed);

    //  The bound: the newest ZCHAT_DM_RECENT ids are known; past it the
    //  oldest is forgotten, and its resend is delivered again. Id 0
    //  answers nothing and is never taken for a resend.
    bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    uint64_t ts [ZCHAT_DM_RECENT + 1];
    for (uint64_t i = 0; i < ZCHAT_DM_RECENT; i++) {
        ts [i] = s_dm (bed, "A", 1000 + i, "bob", "B", "many");
        zchat_testbed_advance (bed, 1);
    }
    s_dm_again (bed, "A", 1000, "bob", ts [0]);
    s_dm_again (bed, "A", 1000 + ZCHAT_DM_RECENT - 1, "bob", ts [ZCHAT_DM_RECENT - 1]);
    ts [ZCHAT_DM_RECENT] = s_dm (bed, "A", 1000 + ZCHAT_DM_RECENT, "bob", "B", "one more");
    s_dm (bed, "A", 1000, "bob", "B", "forgotten");
    s_dm_again (bed, "A", 1000 + ZCHAT_DM_RECENT, "bob", ts [ZCHAT_DM_RECENT]);
    s_dm (bed, "A", 0, "bob", "B", "id 0");
    s_dm (bed, "A", 0, "bob", "B", "id 0");
    //  A new session (a goodbye, an expiry, a re-greeting) starts afresh
    SEND (bed, "A", zchat_encode_bye (&s_buf, 50));
    s_reply (bed, "A", ZCHAT_OK, 50);
    s_greet (bed, "A", "alice", NULL);
    s_dm (bed, "A", 1000 + ZCHAT_DM_RECENT, "bob", "B", "new session");
    zchat_testbed_destroy (&bed);
}


//  HISTORY: ranges, tails, paging, byte cap, retention.
static void
s_test_history (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.history_page = 4;
    config.max_text = ZCHAT_MAX_TEXT;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    s_greet (bed, "B", "bob", NULL);

    //  Not a member: 404; empty room: an empty page
    SEND (bed, "B", zchat_encode_history (&s_buf, 3, "lobby", 0, 0, 10));
    s_error (bed, "B", 3, ZCHAT_ERR_NOT_MEMBER);
    SEND (bed, "A", zchat_encode_history (&s_buf, 4, "lobby", 0, 0, 10));
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_PAGE, 4);
    assert (msg->item_count == 0 && msg->first_seq == 0 && msg->seq == 0 && msg->flag == 0);

    for (int i = 1; i <= 10; i++) {
        char text [16];
        snprintf (text, sizeof (text), "m%d", i);
        SEND (bed, "A", zchat_encode_say (&s_buf, 10 + (uint64_t) i, "lobby", 0,
                                          text, strlen (text)));
    }
    assert (zchat_testbed_flush (bed) == 10);
    zchat_testbed_clear (bed);

    //  Checks a page: its items are seqs first..first+count-1, in order.
    #define CHECK_PAGE(id, first, count, more) \
        do { \
            msg = s_reply (bed, "A", ZCHAT_PAGE, (id)); \
            assert (streq (msg->room, "lobby")); \
            assert (msg->first_seq == 1 && msg->seq == 10); \
            assert (msg->item_count == (count)); \
            assert (msg->flag == (more)); \
            size_t cursor_ = 0; \
            zchat_item_t item_; \
            for (uint64_t s_ = (first); s_ < (uint64_t) (first) + (count); s_++) { \
                assert (zchat_msg_next_item (msg, &cursor_, &item_)); \
                assert (item_.seq == s_); \
                assert (streq (item_.nick, "alice")); \
                char text_ [32]; \
                snprintf (text_, sizeof (text_), "m%" PRIu64, s_); \
                assert (item_.text_size == strlen (text_)); \
                assert (memcmp (item_.text, text_, item_.text_size) == 0); \
            } \
            assert (!zchat_msg_next_item (msg, &cursor_, &item_)); \
        } while (0)

    //  A range within the page size; a range over it (more); the rest
    SEND (bed, "A", zchat_encode_history (&s_buf, 20, "lobby", 2, 4, 100));
    CHECK_PAGE (20, 2, 3, 0);
    SEND (bed, "A", zchat_encode_history (&s_buf, 21, "lobby", 1, 0, 100));
    CHECK_PAGE (21, 1, 4, 1);
    SEND (bed, "A", zchat_encode_history (&s_buf, 22, "lobby", 5, 0, 100));
    CHECK_PAGE (22, 5, 4, 1);
    SEND (bed, "A", zchat_encode_history (&s_buf, 23, "lobby", 9, 0, 100));
    CHECK_PAGE (23, 9, 2, 0);
    //  The client's own limit below the page size
    SEND (bed, "A", zchat_encode_history (&s_buf, 24, "lobby", 1, 0, 2));
    CHECK_PAGE (24, 1, 2, 1);
    //  Tails: the last 3; the last 3 up to 6; the last 6 (over a page:
    //  served from its start, more)
    SEND (bed, "A", zchat_encode_history (&s_buf, 25, "lobby", 0, 0, 3));
    CHECK_PAGE (25, 8, 3, 0);
    SEND (bed, "A", zchat_encode_history (&s_buf, 26, "lobby", 0, 6, 3));
    CHECK_PAGE (26, 4, 3, 0);
    SEND (bed, "A", zchat_encode_history (&s_buf, 27, "lobby", 0, 0, 6));
    CHECK_PAGE (27, 5, 4, 1);
    //  Limit 0 means the page size
    SEND (bed, "A", zchat_encode_history (&s_buf, 28, "lobby", 0, 0, 0));
    CHECK_PAGE (28, 7, 4, 0);
    //  Past the end, reversed, beyond newest
    SEND (bed, "A", zchat_encode_history (&s_buf, 29, "lobby", 11, 0, 10));
    CHECK_PAGE (29, 11, 0, 0);
    SEND (bed, "A", zchat_encode_history (&s_buf, 30, "lobby", 6, 5, 10));
    CHECK_PAGE (30, 6, 0, 0);
    SEND (bed, "A", zchat_encode_history (&s_buf, 31, "lobby", 10, 99, 10));
    CHECK_PAGE (31, 10, 1, 0);

    //  History does not commit the open group: a staged message is not in
    //  the page (which ends at the newest committed seq) and is answered
    //  when its group commits, not before
    SEND (bed, "A", zchat_encode_say (&s_buf, 40, "lobby", 0, "m11", 3));
    SEND (bed, "A", zchat_encode_history (&s_buf, 41, "lobby", 1, 0, 10));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 41);
    assert (msg->item_count == 4 && msg->seq == 10 && msg->flag == 1);
    assert (zchat_testbed_server (bed)->group_open);
    assert (zchat_testbed_replies (bed, "A") == 0);
    assert (zchat_testbed_flush (bed) == 1);
    s_reply (bed, "A", ZCHAT_ACK, 40);
    SEND (bed, "A", zchat_encode_history (&s_buf, 42, "lobby", 11, 0, 10));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 42);
    assert (msg->item_count == 1 && msg->seq == 11);
    zchat_testbed_clear (bed);
    //  A room whose only messages are staged: an empty page, first_seq 0
    s_join (bed, "A", "fresh", 43);
    SEND (bed, "A", zchat_encode_say (&s_buf, 44, "fresh", 0, "new", 3));
    SEND (bed, "A", zchat_encode_history (&s_buf, 45, "fresh", 0, 0, 10));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 45);
    assert (msg->item_count == 0 && msg->seq == 0 && msg->first_seq == 0);
    assert (zchat_testbed_flush (bed) == 1);
    zchat_testbed_clear (bed);

    //  Byte cap: big texts fill a page before the item limit does
    zchat_server_t *server = zchat_testbed_server (bed);
    server->config.history_page = 100;
    char *big = (char *) malloc (ZCHAT_MAX_TEXT);
    assert (big);
    memset (big, 'y', ZCHAT_MAX_TEXT);
    for (int i = 0; i < 12; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, 50 + (uint64_t) i, "lobby", 0,
                                          big, ZCHAT_MAX_TEXT));
    free (big);
    assert (zchat_testbed_flush (bed) == 12);
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_history (&s_buf, 60, "lobby", 12, 0, 100));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 60);
    assert (msg->item_count >= 1 && msg->item_count < 12);
    assert (msg->flag == 1);
    assert (msg->items_size <= ZCHAT_PAGE_BYTES);
    size_t got = msg->item_count;
    SEND (bed, "A", zchat_encode_history (&s_buf, 61, "lobby", 12 + got, 0, 100));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 61);
    assert (msg->item_count == 12 - got && msg->flag == 0);

    //  Retention: a tick trims to the newest 5; history and JOINED show it
    server->config.retain_messages = 5;
    zchat_testbed_tick (bed);
    SEND (bed, "A", zchat_encode_history (&s_buf, 70, "lobby", 1, 0, 100));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 70);
    assert (msg->first_seq == 19 && msg->seq == 23);
    size_t cursor = 0;
    zchat_item_t item;
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 19);
    s_join (bed, "B", "lobby", 71);
    assert (s_msg.first_seq == 19 && s_msg.seq == 23);

    zchat_testbed_destroy (&bed);
}


//  HISTORY over a damaged store: a stored message no client could read (a
//  kind the protocol does not know, a nick or text that is not UTF-8) is
//  left out as gone, and the page goes on past it. It used to end the
//  page: a damaged first row gave an empty page without more, which tells
//  the client that the whole range is gone. Here, with pages of 4:
//
//      seq   1  2..5  6     7  8..13  14  15    16  17..20
//            K  ok    text  ok K (6)  ok  nick  ok  K (4)
//
//  (K: a kind the protocol does not know; text, nick: not UTF-8).
static void
s_test_history_damaged (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.history_page = 4;
    config.query_rate = 1;              //  charged, never refused here
    config.query_burst = 1024;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    //  The store takes any kind and any bytes: only the broker's checks
    //  keep them out, so writing past it is what damage looks like.
    zchat_store_t *store = zchat_testbed_store (bed);
    uint64_t ts = zchat_testbed_now (bed);
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 20; seq++) {
        const char *nick = seq == 15 ? "b\xe9" "d" : "alice";
        uint8_t kind = ZCHAT_KIND_TEXT;
        if (seq == 1 || (seq >= 8 && seq <= 13) || seq >= 17)
            kind = (uint8_t) (2 + seq);
        char text [32];
        snprintf (text, sizeof text, seq == 6 ? "m6\xff" : "m%" PRIu64, seq);
        assert (zchat_store_append (store, "scarred", seq, ts + seq, nick, kind, text,
                                    strlen (text), 0, NULL, NULL, NULL) == 0);
    }
    assert (zchat_store_commit (store) == 0);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "scarred", 2);
    assert (s_msg.seq == 20 && s_msg.first_seq == 1);

    //  Asks from..to with limit; the page must carry exactly the seqs in
    //  want (0-terminated) and more.
    #define CHECK_DAMAGED(id, from, to, limit, more, ...) \
        do { \
            SEND (bed, "A", zchat_encode_history (&s_buf, (id), "scarred", (from), (to), \
                                                  (limit))); \
            const zchat_msg_t *msg_ = s_reply (bed, "A", ZCHAT_PAGE, (id)); \
            assert (msg_->first_seq == 1 && msg_->seq == 20); \
            const uint64_t want_ [] = { __VA_ARGS__, 0 }; \
            size_t cursor_ = 0; \
            zchat_item_t item_; \
            for (size_t i_ = 0; want_ [i_]; i_++) { \
                assert (zchat_msg_next_item (msg_, &cursor_, &item_)); \
                assert (item_.seq == want_ [i_]); \
                assert (streq (item_.nick, "alice") && item_.kind == ZCHAT_KIND_TEXT); \
                char text_ [32]; \
                snprintf (text_, sizeof text_, "m%" PRIu64, want_ [i_]); \
                assert (item_.text_size == strlen (text_)); \
                assert (memcmp (item_.text, text_, item_.text_size) == 0); \
            } \
            assert (!zchat_msg_next_item (msg_, &cursor_, &item_)); \
            assert (msg_->flag == (more)); \
        } while (0)

    //  A damaged first row: the good ones after it fill the page, and the
    //  row after a full page means more, damaged or not
    CHECK_DAMAGED (10, 1, 0, 100, 1, 2, 3, 4, 5);
    //  Runs longer than a page do not use up the page: read through to the
    //  end of the range, so no more
    CHECK_DAMAGED (11, 6, 0, 100, 0, 7, 14, 16);
    //  Damaged rows do not count against the client's own limit either
    CHECK_DAMAGED (12, 1, 10, 2, 1, 2, 3);
    CHECK_DAMAGED (13, 6, 0, 1, 1, 7);
    CHECK_DAMAGED (14, 8, 0, 1, 1, 14);
    CHECK_DAMAGED (15, 15, 0, 1, 1, 16);
    //  Nothing readable in the range (a page's worth and more): an empty
    //  page without more, which says that all of it is gone
    CHECK_DAMAGED (16, 17, 0, 100, 0, 0);
    CHECK_DAMAGED (17, 8, 13, 100, 0, 0);
    //  Tails count seqs, damaged or not: the last 6 are 15..20
    CHECK_DAMAGED (18, 0, 0, 6, 0, 16);
    CHECK_DAMAGED (19, 0, 0, 3, 0, 0);
    #undef CHECK_DAMAGED

    //  Rows passed over are charged to the query budget as if served: an
    //  empty page over six damaged rows costs more than its own bytes
    //  (than an empty page over nothing, past the newest seq)
    zchat_session_t *asker = s_session (bed, "alice");
    int64_t level = asker->queries.level;
    SEND (bed, "A", zchat_encode_history (&s_buf, 20, "scarred", 21, 0, 100));
    assert (s_reply (bed, "A", ZCHAT_PAGE, 20)->item_count == 0);
    int64_t bare = level - asker->queries.level;
    level = asker->queries.level;
    SEND (bed, "A", zchat_encode_history (&s_buf, 21, "scarred", 8, 13, 100));
    assert (s_reply (bed, "A", ZCHAT_PAGE, 21)->item_count == 0);
    assert (level - asker->queries.level - bare >= 6 * (8 + 8 + 1 + 5 + 1 + 4 + 2) * 1000);

    //  A client paging through from 1 as PROTOCOL.md 6.4 says (again
    //  from the last seq + 1 while more) gets every readable message, in
    //  no more pages than they fill and one to learn the end: never stuck
    //  on a damaged row, never told that a readable one is gone.
    const uint64_t readable [] = { 2, 3, 4, 5, 7, 14, 16 };
    for (uint16_t limit = 1; limit <= 5; limit++) {
        uint64_t from = 1;
        size_t got = 0;
        size_t pages = 0;
        bool more = true;
        while (more) {
            assert (++pages <= (size_t) ((7 + limit - 1) / limit + 1));
            SEND (bed, "A", zchat_encode_history (&s_buf, 30 + pages, "scarred", from, 0,
                                                  limit));
            const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_PAGE, 30 + pages);
            more = msg->flag != 0;
            assert (!more || msg->item_count > 0);
            size_t cursor = 0;
            zchat_item_t item;
            while (zchat_msg_next_item (msg, &cursor, &item)) {
                assert (got < 7 && item.seq == readable [got]);
                got++;
                from = item.seq + 1;
            }
        }
        assert (got == 7);
    }
    zchat_testbed_destroy (&bed);
}


//  The hold after a refusal: what was on its way is refused however late
//  it comes, until the sender starts over (sends again what it sent
//  before); one that never does is let go 1 s (S_HOLD_MAX_MS) after the
//  retry time.
static void
s_test_hold (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.rate_limit = 10;
    config.rate_burst = 1;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 1000);
    assert (s_say (bed, "A", "lobby", 10, "a") == 1);
    SEND (bed, "A", zchat_encode_say (&s_buf, 11, "lobby", 0, "b", 1));
    const zchat_msg_t *msg = s_error (bed, "A", 11, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 100);
    //  Long after the retry time, with the bucket full again, what was
    //  sent after 11 is still refused: taken, it would go ahead of 11
    zchat_testbed_advance (bed, 500);
    for (uint64_t id = 12; id <= 13; id++) {
        SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "c", 1));
        msg = s_error (bed, "A", id, ZCHAT_ERR_RATE_LIMITED);
        assert (msg->retry_ms == 1);
    }
    //  The sender starts over from 11: taken, and 12 after it
    assert (s_say (bed, "A", "lobby", 11, "b") == 2);
    zchat_testbed_advance (bed, 100);
    assert (s_say (bed, "A", "lobby", 12, "c") == 3);
    //  One that never starts over is let go 1 s after the retry time
    SEND (bed, "A", zchat_encode_say (&s_buf, 14, "lobby", 0, "d", 1));
    s_error (bed, "A", 14, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 1099);
    SEND (bed, "A", zchat_encode_say (&s_buf, 15, "lobby", 0, "e", 1));
    s_error (bed, "A", 15, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 1);
    assert (s_say (bed, "A", "lobby", 16, "f") == 4);
    //  Any resend ends it, not only the refused message's: the sender may
    //  have given that one up (its timeout) and start over from the next
    SEND (bed, "A", zchat_encode_say (&s_buf, 17, "lobby", 0, "g", 1));
    s_error (bed, "A", 17, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_say (&s_buf, 18, "lobby", 0, "h", 1));
    s_error (bed, "A", 18, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 100);
    assert (s_say (bed, "A", "lobby", 18, "h") == 5);

    //  A takeover starts the stream over: another process's ids are its
    //  own, neither held as sends after the refused one...
    char token [ZCHAT_MAX_TOKEN + 1];
    s_greet (bed, "T", "tom", token);
    s_join (bed, "T", "lobby", 2);
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 1000);
    assert (s_say (bed, "T", "lobby", 1000, "i") == 6);
    SEND (bed, "T", zchat_encode_say (&s_buf, 1001, "lobby", 0, "j", 1));
    s_error (bed, "T", 1001, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 100);
    SEND (bed, "T2", zchat_encode_hello (&s_buf, 7, ZCHAT_VERSION, "tom", token));
    s_reply (bed, "T2", ZCHAT_WELCOME, 7);
    assert (s_say (bed, "T2", "lobby", 5000, "k") == 7);
    //  ... nor taken as resends that end a later hold: 22 is below the
    //  old peers' ids, but a send after the refused 21 of this one
    zchat_testbed_advance (bed, 1000);
    SEND (bed, "T3", zchat_encode_hello (&s_buf, 8, ZCHAT_VERSION, "tom", token));
    s_reply (bed, "T3", ZCHAT_WELCOME, 8);
    assert (s_say (bed, "T3", "lobby", 20, "l") == 8);
    SEND (bed, "T3", zchat_encode_say (&s_buf, 21, "lobby", 0, "m", 1));
    s_error (bed, "T3", 21, ZCHAT_ERR_RATE_LIMITED);
    zchat_testbed_advance (bed, 100);
    SEND (bed, "T3", zchat_encode_say (&s_buf, 22, "lobby", 0, "n", 1));
    s_error (bed, "T3", 22, ZCHAT_ERR_RATE_LIMITED);
    assert (s_say (bed, "T3", "lobby", 21, "m") == 9);
    zchat_testbed_destroy (&bed);
}

//  Limits: rate, rooms per session, sessions per address, CURVE nicks.
static void
s_test_limits (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.rate_limit = 2;
    config.rate_burst = 2;
    config.max_rooms = 2;
    config.max_sessions_per_address = 2;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);

    //  Rate: a burst of 2, then 429 with a retry time; refilled later
    s_say (bed, "A", "lobby", 10, "1");
    SEND (bed, "A", zchat_encode_dm (&s_buf, 11, "bob", 0, "2", 1));
    s_reply (bed, "A", ZCHAT_ACK, 11);
    s_reply (bed, "B", ZCHAT_DELIVER, 0);
    SEND (bed, "A", zchat_encode_say (&s_buf, 12, "lobby", 0, "3", 1));
    const zchat_msg_t *msg = s_error (bed, "A", 12, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 500);
    SEND (bed, "A", zchat_encode_dm (&s_buf, 13, "bob", 0, "4", 1));
    s_error (bed, "A", 13, ZCHAT_ERR_RATE_LIMITED);
    assert (zchat_testbed_flush (bed) == 0);
    zchat_testbed_advance (bed, 200);
    SEND (bed, "A", zchat_encode_say (&s_buf, 14, "lobby", 0, "5", 1));
    msg = s_error (bed, "A", 14, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 300);              //  0.4 of 1 message refilled
    zchat_testbed_advance (bed, 300);
    //  A new one is held until the sender starts over from the refused
    //  one, which is taken once the bucket has refilled
    SEND (bed, "A", zchat_encode_say (&s_buf, 15, "lobby", 0, "6", 1));
    s_error (bed, "A", 15, ZCHAT_ERR_RATE_LIMITED);
    assert (s_say (bed, "A", "lobby", 12, "3") == 2);
    //  Other sessions have their own bucket
    SEND (bed, "B", zchat_encode_dm (&s_buf, 16, "alice", 0, "hi", 2));
    s_reply (bed, "B", ZCHAT_ACK, 16);
    s_reply (bed, "A", ZCHAT_DELIVER, 0);

    //  Every command that publishes or writes is charged too (JOIN, TOPIC
    //  set, PROBE, NICK, LEAVE), to a bucket of its own: reads are not,
    //  and messages still pass
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 1000);
    s_join (bed, "A", "ops", 17);
    SEND (bed, "A", zchat_encode_topic (&s_buf, 18, "lobby", true, "t1"));
    s_reply (bed, "A", ZCHAT_TOPICIS, 18);
    SEND (bed, "A", zchat_encode_topic (&s_buf, 19, "lobby", true, "t2"));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_probe (&s_buf, 19, "lobby", NULL));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_probe (&s_buf, 19, "lobby", "t"));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_nick (&s_buf, 19, "alicia"));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_leave (&s_buf, 19, "ops"));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_join (&s_buf, 19, "ops"));
    s_error (bed, "A", 19, ZCHAT_ERR_RATE_LIMITED);
    SEND (bed, "A", zchat_encode_topic (&s_buf, 19, "lobby", false, ""));
    msg = s_reply (bed, "A", ZCHAT_TOPICIS, 19);
    assert (streq (msg->topic, "t1"));
    SEND (bed, "A", zchat_encode_ping (&s_buf, 19));
    s_reply (bed, "A", ZCHAT_PONG, 19);
    s_say (bed, "A", "lobby", 25, "still talking");
    zchat_server_t *server = zchat_testbed_server (bed);
    assert (zchat_sessions_by_nick (server->sessions, "alice"));
    assert (zchat_testbed_pending (bed) == 3);      //  join, topic, message
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 1000);

    //  Rooms per session
    SEND (bed, "A", zchat_encode_join (&s_buf, 21, "dev"));
    msg = s_error (bed, "A", 21, ZCHAT_ERR_LIMIT);
    assert (strstr (msg->reason, "limit"));
    s_join (bed, "A", "ops", 22);                   //  a room already joined is fine
    assert (zchat_rooms_lookup (server->rooms, "dev") == NULL);

    //  Sessions per address: a third from 127.0.0.1 is refused, another
    //  address is fine, and a takeover within the address is fine.
    SEND (bed, "C", zchat_encode_hello (&s_buf, 30, ZCHAT_VERSION, "carol", ""));
    msg = s_error (bed, "C", 30, ZCHAT_ERR_LIMIT);
    assert (strstr (msg->reason, "address"));
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_hello (&s_buf, 31, ZCHAT_VERSION, "carol", "");
    zchat_testbed_send_from (bed, "C", NULL, "10.1.2.3", s_body, size);
    s_reply (bed, "C", ZCHAT_WELCOME, 31);
    SEND (bed, "B", zchat_encode_bye (&s_buf, 32));
    s_reply (bed, "B", ZCHAT_OK, 32);
    s_greet (bed, "B", "bob", NULL);
    zchat_testbed_destroy (&bed);

    //  CURVE: a nick belongs to the first key that used it, across
    //  sessions and restarts; one key may own several nicks.
    config = zchat_testbed_config ();
    config.curve = true;
    config.max_nicks_per_key = 2;
    bed = zchat_testbed_new (&config, false);
    assert (bed);
    const char *key1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 40, ZCHAT_VERSION, "dave", "");
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_WELCOME, 40);
    char owner [ZCHAT_KEY_SIZE + 1];
    assert (zchat_store_nick_owner (zchat_testbed_store (bed), "dave", owner) == 1);
    assert (streq (owner, key1));
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    msg = s_error (bed, "D2", 40, ZCHAT_ERR_FORBIDDEN);
    assert (streq (msg->reason, "nick dave is registered to another key"));
    zchat_testbed_send_from (bed, "D3", NULL, NULL, s_body, size);
    s_error (bed, "D3", 40, ZCHAT_ERR_FORBIDDEN);
    //  key2 greets as erin, then may not rename to dave
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 41, ZCHAT_VERSION, "erin", "");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    s_reply (bed, "D2", ZCHAT_WELCOME, 41);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 42, "dave2");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    s_reply (bed, "D2", ZCHAT_OK, 42);
    //  key2 owns two nicks, its limit: no third, by NICK or by HELLO;
    //  its own nicks are still fine
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 142, "erin3");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    msg = s_error (bed, "D2", 142, ZCHAT_ERR_LIMIT);
    assert (strstr (msg->reason, "limit 2"));
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 143, ZCHAT_VERSION, "erin4", "");
    zchat_testbed_send_from (bed, "D4", key2, NULL, s_body, size);
    s_error (bed, "D4", 143, ZCHAT_ERR_LIMIT);
    assert (zchat_store_nick_owner (zchat_testbed_store (bed), "erin4", owner) == 0);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 144, "erin");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    s_reply (bed, "D2", ZCHAT_OK, 144);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 145, "dave2");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    s_reply (bed, "D2", ZCHAT_OK, 145);
    //  dave leaves; after a restart key2 still cannot have dave, key1 can
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_bye (&s_buf, 43);
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_OK, 43);
    assert (zchat_testbed_restart (bed) == 0);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 44, ZCHAT_VERSION, "dave", "");
    zchat_testbed_send_from (bed, "D2", key2, NULL, s_body, size);
    s_error (bed, "D2", 44, ZCHAT_ERR_FORBIDDEN);
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_WELCOME, 44);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_nick (&s_buf, 45, "dave_bot");
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_OK, 45);
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    s_reply (bed, "D1", ZCHAT_OK, 45);
    assert (zchat_store_nick_owner (zchat_testbed_store (bed), "dave_bot", owner) == 1);
    assert (streq (owner, key1));

    //  A session belongs to its key: another key (or none) on the same
    //  routing id gets 403 for anything, HELLO included, and acts as
    //  nobody; the session's own key goes on as before
    s_join_from (bed, "D1", key1, "lobby", 46);
    zchat_testbed_clear (bed);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_say (&s_buf, 47, "lobby", 0, "as dave", 7);
    zchat_testbed_send_from (bed, "D1", key2, NULL, s_body, size);
    s_error (bed, "D1", 47, ZCHAT_ERR_FORBIDDEN);
    zchat_testbed_send_from (bed, "D1", NULL, NULL, s_body, size);
    s_error (bed, "D1", 47, ZCHAT_ERR_FORBIDDEN);
    assert (zchat_testbed_flush (bed) == 0);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_hello (&s_buf, 48, ZCHAT_VERSION, "mallory", "");
    zchat_testbed_send_from (bed, "D1", key2, NULL, s_body, size);
    s_error (bed, "D1", 48, ZCHAT_ERR_FORBIDDEN);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_bye (&s_buf, 49);
    zchat_testbed_send_from (bed, "D1", key2, NULL, s_body, size);
    s_error (bed, "D1", 49, ZCHAT_ERR_FORBIDDEN);
    assert (zchat_testbed_pending (bed) == 0);
    assert (zchat_sessions_by_nick (zchat_testbed_server (bed)->sessions, "dave_bot"));
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_say (&s_buf, 50, "lobby", 0, "me", 2);
    zchat_testbed_send_from (bed, "D1", key1, NULL, s_body, size);
    assert (zchat_testbed_flush (bed) == 1);
    s_reply (bed, "D1", ZCHAT_ACK, 50);
    zchat_testbed_destroy (&bed);
}


//  Bad input: every kind gets an answer, none a crash.
static void
s_test_bad_input (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    zchat_testbed_clear (bed);

    //  Undecodable: empty, short, bad signature: 400 with id 0
    zchat_testbed_send (bed, "A", s_body, 0);
    s_error (bed, "A", 0, ZCHAT_ERR_MALFORMED);
    zchat_testbed_send (bed, "A", NULL, 0);
    s_error (bed, "A", 0, ZCHAT_ERR_MALFORMED);
    zchat_testbed_send (bed, "A", "ZC", 2);
    s_error (bed, "A", 0, ZCHAT_ERR_MALFORMED);
    zchat_testbed_send (bed, "A", "GET / HTTP/1.1\r\n\r\n", 18);
    s_error (bed, "A", 0, ZCHAT_ERR_MALFORMED);

    //  A good header with a bad rest: 400 echoing the id
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size_t size = zchat_encode_say (&s_buf, 77, "lobby", 0, "hello", 5);
    zchat_testbed_send (bed, "A", s_body, size - 1);               //  truncated
    s_error (bed, "A", 77, ZCHAT_ERR_MALFORMED);
    s_body [size] = 0;
    zchat_testbed_send (bed, "A", s_body, size + 1);               //  trailing
    s_error (bed, "A", 77, ZCHAT_ERR_MALFORMED);
    s_body [size - 1] = 0xFF;                                       //  bad UTF-8
    zchat_testbed_send (bed, "A", s_body, size);
    s_error (bed, "A", 77, ZCHAT_ERR_MALFORMED);
    s_body [size - 1] = 0;                                          //  a NUL
    zchat_testbed_send (bed, "A", s_body, size);
    s_error (bed, "A", 77, ZCHAT_ERR_MALFORMED);
    size = zchat_encode_say (&s_buf, 78, "lobby", 0, "hello", 5);
    s_body [ZCHAT_HEADER_SIZE + 1 + 5] = 7;                         //  bad kind
    zchat_testbed_send (bed, "A", s_body, size);
    s_error (bed, "A", 78, ZCHAT_ERR_MALFORMED);

    //  Unknown types, and types a client never sends: 501
    size = zchat_encode_ping (&s_buf, 79);
    s_body [2] = 99;
    zchat_testbed_send (bed, "A", s_body, size);
    s_error (bed, "A", 79, ZCHAT_ERR_UNKNOWN_COMMAND);
    s_body [2] = 0;
    zchat_testbed_send (bed, "A", s_body, size);
    s_error (bed, "A", 79, ZCHAT_ERR_UNKNOWN_COMMAND);
    SEND (bed, "A", zchat_encode_ok (&s_buf, 80));
    s_error (bed, "A", 80, ZCHAT_ERR_UNKNOWN_COMMAND);
    SEND (bed, "A", zchat_encode_ack (&s_buf, 81, "lobby", 1, 1));
    s_error (bed, "A", 81, ZCHAT_ERR_UNKNOWN_COMMAND);
    SEND (bed, "A", zchat_encode_message (&s_buf, 82, "lobby", 1, 1, "alice", 0, "x", 1));
    s_error (bed, "A", 82, ZCHAT_ERR_UNKNOWN_COMMAND);
    SEND (bed, "A", zchat_encode_event (&s_buf, 83, "lobby", 1, ZCHAT_EVENT_JOIN, "x", ""));
    s_error (bed, "A", 83, ZCHAT_ERR_UNKNOWN_COMMAND);
    SEND (bed, "A", zchat_encode_welcome (&s_buf, 84, 1, "alice", "t", 1, "e", 1, 1, 1, false));
    s_error (bed, "A", 84, ZCHAT_ERR_UNKNOWN_COMMAND);
    //  ... also from a peer without a session
    SEND (bed, "Z", zchat_encode_ok (&s_buf, 85));
    s_error (bed, "Z", 85, ZCHAT_ERR_UNKNOWN_COMMAND);

    //  A nick over 32 bytes cannot even be decoded: 400
    s_body [0] = 'Z'; s_body [1] = 'C'; s_body [2] = ZCHAT_HELLO;
    memset (s_body + 3, 0, 8);
    s_body [10] = 86;
    s_body [11] = 1;
    s_body [12] = 40;
    memset (s_body + 13, 'n', 40);
    s_body [53] = 0;
    zchat_testbed_send (bed, "Z", s_body, 54);
    s_error (bed, "Z", 86, ZCHAT_ERR_MALFORMED);

    //  An oversize peer blob is dropped without an answer
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    size = zchat_encode_ping (&s_buf, 87);
    uint8_t *blob = (uint8_t *) calloc (1, ZCHAT_MAX_PEER + 1);
    assert (blob);
    zchat_server_handle (zchat_testbed_server (bed), blob, ZCHAT_MAX_PEER + 1, -1, NULL,
                         NULL, s_body, size, zchat_testbed_now (bed));
    //  ... the largest allowed works, and an empty one too
    zchat_server_handle (zchat_testbed_server (bed), blob, ZCHAT_MAX_PEER, -1, NULL,
                         NULL, s_body, size, zchat_testbed_now (bed));
    zchat_server_handle (zchat_testbed_server (bed), blob, 0, -1, NULL,
                         NULL, s_body, size, zchat_testbed_now (bed));
    free (blob);
    assert (zchat_testbed_pending (bed) == 2);
    zchat_testbed_clear (bed);

    //  The session is still fine
    assert (s_say (bed, "A", "lobby", 90, "still here") == 1);
    zchat_testbed_destroy (&bed);
}


//  A small PRNG, so that the random test replays exactly (xorshift64*).
static uint64_t
s_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

//  10,000 random and mutated bodies from greeted and unknown peers; the
//  testbed checks that every output decodes. Nothing may crash.
static void
s_test_random (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.max_rooms = 3;
    config.rate_limit = 1000;
    config.rate_burst = 100;
    config.history_page = 10;
    zchat_testbed_t *bed = zchat_testbed_new (&config, true);
    assert (bed);
    const char *peers [] = { "A", "B", "C", "D" };
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 3);

    //  Valid bodies of every client request, to mutate
    uint8_t samples [16][128];
    size_t sample_size [16];
    size_t samples_count = 0;
    #define SAMPLE(encode) \
        do { \
            zchat_buf_init (&s_buf, samples [samples_count], 128); \
            sample_size [samples_count] = (encode); \
            assert (sample_size [samples_count] > 0); \
            samples_count++; \
        } while (0)
    SAMPLE (zchat_encode_hello (&s_buf, 1, 1, "carol", ""));
    SAMPLE (zchat_encode_join (&s_buf, 2, "lobby"));
    SAMPLE (zchat_encode_leave (&s_buf, 3, "lobby"));
    SAMPLE (zchat_encode_say (&s_buf, 4, "lobby", 0, "hello", 5));
    SAMPLE (zchat_encode_dm (&s_buf, 5, "alice", 1, "hi", 2));
    SAMPLE (zchat_encode_nick (&s_buf, 6, "dave"));
    SAMPLE (zchat_encode_who (&s_buf, 7, "lobby"));
    SAMPLE (zchat_encode_rooms (&s_buf, 8));
    SAMPLE (zchat_encode_topic (&s_buf, 9, "lobby", true, "t"));
    SAMPLE (zchat_encode_history (&s_buf, 10, "lobby", 0, 0, 5));
    SAMPLE (zchat_encode_probe (&s_buf, 11, "lobby", NULL));
    SAMPLE (zchat_encode_ping (&s_buf, 12));
    SAMPLE (zchat_encode_bye (&s_buf, 13));
    SAMPLE (zchat_encode_join (&s_buf, 14, "ops"));
    SAMPLE (zchat_encode_probe (&s_buf, 15, "lobby", "0123456789abcdef"));

    uint64_t state = 0x5EED5EED12345678ULL;
    uint8_t body [256];
    for (int round = 0; round < 10000; round++) {
        uint64_t r = s_random (&state);
        size_t size;
        if (r % 3 == 0) {
            //  Pure noise, sometimes with a valid signature
            size = (size_t) (s_random (&state) % sizeof (body));
            for (size_t i = 0; i < size; i++)
                body [i] = (uint8_t) s_random (&state);
            if (size >= 2 && (r & 8)) {
                body [0] = 'Z';
                body [1] = 'C';
            }
        }
        else {
            //  A valid body with a few bytes changed, cut or extended
            size_t which = (size_t) (s_random (&state) % samples_count);
            size = sample_size [which];
            memcpy (body, samples [which], size);
            int flips = (int) (s_random (&state) % 4);
            for (int i = 0; i < flips && size > 0; i++)
                body [s_random (&state) % size] = (uint8_t) s_random (&state);
            if (r & 16)
                size = (size_t) (s_random (&state) % (size + 1));
            else
            if ((r & 32) && size < sizeof (body))
                body [size++] = (uint8_t) s_random (&state);
        }
        zchat_testbed_send (bed, peers [(r >> 8) % 4], body, size);
        if (round % 7 == 0)
            assert (zchat_testbed_flush (bed) >= 0);
        if (round % 500 == 0) {
            zchat_testbed_advance (bed, 1000);
            zchat_testbed_tick (bed);
            zchat_testbed_clear (bed);
        }
    }
    assert (zchat_testbed_flush (bed) >= 0);
    zchat_testbed_clear (bed);

    //  The fuzz entry point runs its sample and random inputs the same way
    uint8_t input [4096];
    size_t input_size = zchat_testbed_fuzz_sample (input, sizeof (input));
    assert (input_size > 0);
    assert (zchat_testbed_fuzz (input, input_size) == 0);
    input [0] |= 0x30;          //  the same under CURVE, with keys
    assert (zchat_testbed_fuzz (input, input_size) == 0);
    for (int round = 0; round < 200; round++) {
        size_t size = (size_t) (s_random (&state) % sizeof (input));
        for (size_t i = 0; i < size; i++)
            input [i] = (uint8_t) s_random (&state);
        assert (zchat_testbed_fuzz (input, size) == 0);
    }
    zchat_testbed_destroy (&bed);
}


//  ---------------------------------------------------------------------
//  Self test

//  Durability off (ack_before_commit): a group goes out before it is
//  committed rather than after, so a failed commit loses acknowledged
//  messages; they are still numbered, stored, recognised when resent,
//  served by history, and kept across a restart.
static void
s_test_durability_off (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.ack_before_commit = true;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 2);
    zchat_testbed_clear (bed);

    //  ACKs and MESSAGEs at the flush, which commits them too
    SEND (bed, "A", zchat_encode_say (&s_buf, 10, "lobby", ZCHAT_KIND_TEXT, "one", 3));
    SEND (bed, "B", zchat_encode_say (&s_buf, 11, "lobby", ZCHAT_KIND_ACTION, "two", 3));
    assert (zchat_testbed_pending (bed) == 0);
    assert (zchat_testbed_flush (bed) == 2);
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 10);
    assert (msg->seq == 1);
    msg = s_reply (bed, "B", ZCHAT_ACK, 11);
    assert (msg->seq == 2);
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == 1 && streq (msg->nick, "alice"));
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == 2 && streq (msg->nick, "bob"));
    assert (zchat_store_last_seq (zchat_testbed_store (bed), "lobby") == 2);
    //  A resend: the original ACK, nothing published, no seq used
    SEND (bed, "A", zchat_encode_say (&s_buf, 10, "lobby", ZCHAT_KIND_TEXT, "one", 3));
    assert (zchat_testbed_flush (bed) == 0);
    msg = s_reply (bed, "A", ZCHAT_ACK, 10);
    assert (msg->seq == 1);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    //  Newest seq for PING and a joiner alike
    SEND (bed, "A", zchat_encode_ping (&s_buf, 12));
    msg = s_reply (bed, "A", ZCHAT_PONG, 12);
    assert (msg->item_count == 1);
    size_t cursor = 0;
    zchat_item_t item;
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 2);
    SEND (bed, "B", zchat_encode_join (&s_buf, 13, "lobby"));
    msg = s_reply (bed, "B", ZCHAT_JOINED, 13);
    assert (msg->seq == 2 && msg->first_seq == 1);

    //  History serves what went out, not what is still staged
    zchat_testbed_clear (bed);
    SEND (bed, "B", zchat_encode_say (&s_buf, 14, "lobby", ZCHAT_KIND_TEXT, "three", 5));
    SEND (bed, "A", zchat_encode_history (&s_buf, 15, "lobby", 0, 0, 10));
    assert (zchat_testbed_server (bed)->group_open);
    msg = s_reply (bed, "A", ZCHAT_PAGE, 15);
    assert (msg->first_seq == 1 && msg->seq == 2 && msg->item_count == 2);
    cursor = 0;
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 1);
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 2);
    assert (item.kind == ZCHAT_KIND_ACTION && streq (item.nick, "bob"));
    assert (zchat_testbed_flush (bed) == 1);
    msg = s_reply (bed, "B", ZCHAT_ACK, 14);
    assert (msg->seq == 3);

    //  A resend of a committed message, and after a restart
    zchat_testbed_clear (bed);
    SEND (bed, "B", zchat_encode_say (&s_buf, 11, "lobby", ZCHAT_KIND_ACTION, "two", 3));
    SEND (bed, "A", zchat_encode_say (&s_buf, 16, "lobby", ZCHAT_KIND_TEXT, "four", 4));
    assert (zchat_testbed_restart (bed) == 0);      //  destroy flushes
    s_reply (bed, "B", ZCHAT_ACK, 11);
    s_reply (bed, "A", ZCHAT_ACK, 16);
    zchat_testbed_clear (bed);
    assert (zchat_store_last_seq (zchat_testbed_store (bed), "lobby") == 4);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 17);
    assert (s_msg.seq == 4);
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_say (&s_buf, 16, "lobby", ZCHAT_KIND_TEXT, "four", 4));
    assert (zchat_testbed_flush (bed) == 0);
    msg = s_reply (bed, "A", ZCHAT_ACK, 16);
    assert (msg->seq == 4);

    //  A failed commit: what it held was acknowledged and published all
    //  the same, and is lost; numbering goes on past it, so no published
    //  seq is ever given to another message
    zchat_server_t *server = zchat_testbed_server (bed);
    SEND (bed, "A", zchat_encode_say (&s_buf, 18, "lobby", ZCHAT_KIND_TEXT, "lost", 4));
    server->fail_commit = true;
    assert (zchat_testbed_flush (bed) == -1);
    msg = s_reply (bed, "A", ZCHAT_ACK, 18);
    assert (msg->seq == 5);
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == 5);
    SEND (bed, "A", zchat_encode_say (&s_buf, 19, "lobby", ZCHAT_KIND_TEXT, "next", 4));
    assert (zchat_testbed_flush (bed) == 1);
    msg = s_reply (bed, "A", ZCHAT_ACK, 19);
    assert (msg->seq == 6);
    SEND (bed, "A", zchat_encode_history (&s_buf, 20, "lobby", 4, 0, 10));
    msg = s_reply (bed, "A", ZCHAT_PAGE, 20);
    assert (msg->seq == 6 && msg->item_count == 2);
    cursor = 0;
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 4);
    assert (zchat_msg_next_item (msg, &cursor, &item) && item.seq == 6);
    //  Published groups are written down first (zchat_store_publishing)
    char *record = zsys_sprintf ("%s/%s", zchat_testbed_dir (bed), ZCHAT_PUBLISHED_FILE);
    assert (record);
    assert (access (record, F_OK) == 0);
    zchat_testbed_destroy (&bed);

    //  A group that cannot be written down first waits for its commit, as
    //  with durability on: a failed commit then refuses it (500), and
    //  nothing went out
    bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    zchat_testbed_clear (bed);
    zstr_free (&record);
    record = zsys_sprintf ("%s/%s", zchat_testbed_dir (bed), ZCHAT_PUBLISHED_FILE);
    assert (record);
    assert (mkdir (record, 0700) == 0);
    SEND (bed, "A", zchat_encode_say (&s_buf, 3, "lobby", ZCHAT_KIND_TEXT, "held", 4));
    zchat_testbed_server (bed)->fail_commit = true;
    assert (zchat_testbed_flush (bed) == -1);
    msg = s_reply (bed, "A", ZCHAT_ERROR, 3);
    assert (msg->code == ZCHAT_ERR_INTERNAL);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    //  and a commit that works acknowledges and publishes after it
    SEND (bed, "A", zchat_encode_say (&s_buf, 4, "lobby", ZCHAT_KIND_TEXT, "held", 4));
    assert (zchat_testbed_flush (bed) == 1);
    msg = s_reply (bed, "A", ZCHAT_ACK, 4);
    assert (msg->seq == 1);
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == 1);
    assert (rmdir (record) == 0);
    zstr_free (&record);
    zchat_testbed_destroy (&bed);
}

//  Durability off, a failed commit, then the room emptied (freed from
//  memory) and joined again before any commit succeeds: its numbering
//  still goes on past the published seq, which a subscriber may have seen.
static void
s_test_unsafe_reopen (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.ack_before_commit = true;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "solo", 2);
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_say (&s_buf, 3, "solo", ZCHAT_KIND_TEXT, "lost", 4));
    zchat_testbed_server (bed)->fail_commit = true;
    assert (zchat_testbed_flush (bed) == -1);
    const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 3);
    assert (msg->seq == 1);
    SEND (bed, "A", zchat_encode_leave (&s_buf, 4, "solo"));
    s_reply (bed, "A", ZCHAT_OK, 4);
    SEND (bed, "A", zchat_encode_join (&s_buf, 5, "solo"));
    msg = s_reply (bed, "A", ZCHAT_JOINED, 5);
    assert (msg->seq == 1);
    SEND (bed, "A", zchat_encode_say (&s_buf, 6, "solo", ZCHAT_KIND_TEXT, "next", 4));
    assert (zchat_testbed_flush (bed) == 1);
    msg = s_reply (bed, "A", ZCHAT_ACK, 6);
    assert (msg->seq == 2);
    zchat_testbed_destroy (&bed);
}

//  Batching: a group goes out as one MESSAGES per room and one ACKS per
//  version 2 sender; a version 1 sender gets its ACKs one by one; a group
//  of one goes out as a plain ACK and MESSAGE; a message too big to share
//  a batch goes alone, in its place in the order.
static void
s_test_batches (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.max_text = 65536;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    SEND (bed, "C", zchat_encode_hello (&s_buf, 1, 1, "carol", ""));
    const zchat_msg_t *msg = s_reply (bed, "C", ZCHAT_WELCOME, 1);
    assert (msg->version == 1);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 2);
    s_join (bed, "C", "lobby", 2);
    s_join (bed, "A", "ops", 3);
    zchat_testbed_clear (bed);

    //  A group of one: no batch
    size_t batches = zchat_testbed_batches (bed);
    s_say (bed, "A", "lobby", 10, "alone");
    s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (zchat_testbed_batches (bed) == batches);

    //  alice x3 in lobby, bob, alice in ops, carol x2, alice again:
    //  MESSAGES for lobby (7), ops alone; ACKS for alice (5) and bob alone,
    //  carol (version 1) two ACKs
    const char *peers [] = { "A", "A", "B", "A", "A", "C", "C", "A" };
    const char *rooms [] = { "lobby", "lobby", "lobby", "lobby", "ops", "lobby",
                             "lobby", "lobby" };
    for (int i = 0; i < 8; i++) {
        char text [16];
        snprintf (text, sizeof text, "m%d", i);
        SEND (bed, peers [i], zchat_encode_say (&s_buf, 20 + (uint64_t) i, rooms [i],
                                                 ZCHAT_KIND_TEXT, text, strlen (text)));
    }
    assert (zchat_testbed_flush (bed) == 8);
    assert (zchat_testbed_batches (bed) == batches + 2);
    uint64_t seq = 2;
    for (int i = 0; i < 8; i++) {
        msg = s_reply (bed, peers [i], ZCHAT_ACK, 20 + (uint64_t) i);
        assert (streq (msg->room, rooms [i]));
        if (streq (rooms [i], "lobby"))
            assert (msg->seq == seq++);
        else
            assert (msg->seq == 1);
    }
    for (uint64_t expect = 2; expect < seq; expect++) {
        msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
        assert (msg->seq == expect);
    }
    msg = s_publication (bed, "ops:", ZCHAT_MESSAGE);
    assert (msg->seq == 1 && streq (msg->nick, "alice"));
    assert (zchat_testbed_pending (bed) == 0);

    //  Texts too big to share a 64 KiB batch go alone, in seq order:
    //  small, BIG, small, BIG, small, small: only the last two share
    const size_t sizes [6] = { 5, 65536, 5, 65536, 5, 5 };
    char *big = (char *) malloc (65536);
    assert (big);
    memset (big, 'b', 65536);
    zchat_buf_t big_buf;
    uint8_t *big_body = (uint8_t *) malloc (70000);
    assert (big_body);
    for (int i = 0; i < 6; i++) {
        zchat_buf_init (&big_buf, big_body, 70000);
        size_t size = zchat_encode_say (&big_buf, 40 + (uint64_t) i, "lobby", 0, big,
                                        sizes [i]);
        assert (size > 0);
        zchat_testbed_send (bed, "A", big_body, size);
    }
    batches = zchat_testbed_batches (bed);
    assert (zchat_testbed_flush (bed) == 6);
    for (int i = 0; i < 6; i++) {
        msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
        assert (msg->seq == seq + (uint64_t) i);
        assert (msg->text_size == sizes [i]);
    }
    for (int i = 0; i < 6; i++) {
        msg = s_reply (bed, "A", ZCHAT_ACK, 40 + (uint64_t) i);
        assert (msg->seq == seq + (uint64_t) i);
    }
    //  One ACKS, and one MESSAGES (the last two)
    assert (zchat_testbed_batches (bed) == batches + 2);
    seq += 6;

    //  SAYS: each item as its own SAY, in order: a refused one answered
    //  with ERROR under its own id at once, the others staged and
    //  acknowledged with the group; an empty SAYS does nothing
    zchat_testbed_clear (bed);
    zchat_buf_init (&s_buf, s_body, sizeof (s_body));
    zchat_encode_says_begin (&s_buf);
    zchat_encode_says_add (&s_buf, 60, "lobby", ZCHAT_KIND_TEXT, "s0", 2);
    zchat_encode_says_add (&s_buf, 61, "nowhere", ZCHAT_KIND_TEXT, "s1", 2);
    zchat_encode_says_add (&s_buf, 62, "lobby", ZCHAT_KIND_ACTION, "s2", 2);
    size_t says_size = zchat_encode_says_add (&s_buf, 63, "ops", ZCHAT_KIND_TEXT, "s3", 2);
    assert (says_size > 0);
    zchat_testbed_send (bed, "A", s_body, says_size);
    s_error (bed, "A", 61, ZCHAT_ERR_NOT_MEMBER);
    assert (zchat_testbed_pending (bed) == 0);
    assert (zchat_testbed_flush (bed) == 3);
    msg = s_reply (bed, "A", ZCHAT_ACK, 60);
    assert (msg->seq == seq && streq (msg->room, "lobby"));
    msg = s_reply (bed, "A", ZCHAT_ACK, 62);
    assert (msg->seq == seq + 1);
    msg = s_reply (bed, "A", ZCHAT_ACK, 63);
    assert (msg->seq == 2 && streq (msg->room, "ops"));
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == seq && streq (msg->nick, "alice") && msg->text_size == 2);
    msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
    assert (msg->seq == seq + 1 && msg->kind == ZCHAT_KIND_ACTION);
    s_publication (bed, "ops:", ZCHAT_MESSAGE);
    //  Resent as a SAYS again: the original ACKs, nothing new
    zchat_testbed_send (bed, "A", s_body, says_size);
    s_error (bed, "A", 61, ZCHAT_ERR_NOT_MEMBER);
    assert (zchat_testbed_flush (bed) == 0);
    msg = s_reply (bed, "A", ZCHAT_ACK, 60);
    assert (msg->seq == seq);
    assert (zchat_testbed_publications (bed, "lobby:") == 0);
    zchat_testbed_clear (bed);
    SEND (bed, "A", zchat_encode_says_begin (&s_buf));
    assert (zchat_testbed_flush (bed) == 0);
    assert (zchat_testbed_pending (bed) == 0);
    //  Before a greeting: 440 like any command
    SEND (bed, "Z", zchat_encode_says_begin (&s_buf));
    assert (zchat_testbed_pending (bed) == 1);
    zchat_testbed_clear (bed);
    free (big);
    free (big_body);
    zchat_testbed_destroy (&bed);
}

//  ACKRUNS (version 4): a sender's ACKs go as runs of consecutive ids
//  stored with consecutive seqs, broken where another sender's message
//  came between, or another room's; a version 3 sender in the same group
//  gets ACKS; a single ACK goes plain. The testbed checks that no run
//  could have been longer and reads each run as the ACKs it stands for.
static void
s_test_ackruns (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    SEND (bed, "D", zchat_encode_hello (&s_buf, 1, 3, "dave", ""));
    const zchat_msg_t *msg = s_reply (bed, "D", ZCHAT_WELCOME, 1);
    assert (msg->version == 3);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "D", "lobby", 2);
    s_join (bed, "A", "ops", 3);
    zchat_testbed_clear (bed);

    //  alice 100-102, dave 200-201, alice 103-104 in lobby, alice 105 in
    //  ops, alice 106 in lobby: alice's runs are 100-102, 103-104, 105,
    //  106; dave's two ACKs go as an ACKS
    const char *peers [] = { "A", "A", "A", "D", "D", "A", "A", "A", "A" };
    const uint64_t ids [] = { 100, 101, 102, 200, 201, 103, 104, 105, 106 };
    const char *rooms [] = { "lobby", "lobby", "lobby", "lobby", "lobby", "lobby",
                             "lobby", "ops", "lobby" };
    for (int i = 0; i < 9; i++)
        SEND (bed, peers [i], zchat_encode_say (&s_buf, ids [i], rooms [i],
                                                 ZCHAT_KIND_TEXT, "x", 1));
    size_t batches = zchat_testbed_batches (bed);
    assert (zchat_testbed_flush (bed) == 9);
    size_t runs = 0;
    assert (zchat_testbed_ackruns (bed, &runs) == 1 && runs == 4);
    //  alice's ACKRUNS, dave's ACKS, lobby's MESSAGES (ops has one)
    assert (zchat_testbed_batches (bed) == batches + 3);
    uint64_t seq = 1;
    for (int i = 0; i < 9; i++) {
        msg = s_reply (bed, peers [i], ZCHAT_ACK, ids [i]);
        assert (streq (msg->room, rooms [i]));
        assert (msg->seq == (streq (rooms [i], "ops")? 1: seq++));
    }
    zchat_testbed_clear (bed);

    //  One SAY alone: a plain ACK; a run of one beside another room's
    //  run goes as an item
    s_say (bed, "A", "lobby", 107, "alone");
    assert (zchat_testbed_ackruns (bed, NULL) == 1);
    SEND (bed, "A", zchat_encode_say (&s_buf, 108, "ops", ZCHAT_KIND_TEXT, "y", 1));
    SEND (bed, "A", zchat_encode_say (&s_buf, 109, "lobby", ZCHAT_KIND_TEXT, "z", 1));
    assert (zchat_testbed_flush (bed) == 2);
    assert (zchat_testbed_ackruns (bed, &runs) == 2 && runs == 6);
    msg = s_reply (bed, "A", ZCHAT_ACK, 108);
    assert (streq (msg->room, "ops") && msg->seq == 2);
    msg = s_reply (bed, "A", ZCHAT_ACK, 109);
    assert (streq (msg->room, "lobby") && msg->seq == seq + 1);
    //  The last id, then id 0 (which answers nothing but is taken): two
    //  runs, not one that wraps
    SEND (bed, "A", zchat_encode_say (&s_buf, UINT64_MAX, "lobby", ZCHAT_KIND_TEXT, "a", 1));
    SEND (bed, "A", zchat_encode_say (&s_buf, 0, "lobby", ZCHAT_KIND_TEXT, "b", 1));
    assert (zchat_testbed_flush (bed) == 2);
    assert (zchat_testbed_ackruns (bed, &runs) == 3 && runs == 8);
    msg = s_reply (bed, "A", ZCHAT_ACK, UINT64_MAX);
    assert (msg->seq == seq + 2);
    msg = s_reply (bed, "A", ZCHAT_ACK, 0);
    assert (msg->seq == seq + 3);
    zchat_testbed_destroy (&bed);
}

//  Lent runs: a MESSAGES run of 2 KiB or more goes to an output that can
//  take it without a copy; the testbed holds each loan and checks it
//  unchanged when it gives it back, so a group written into an arena
//  still lent would fail here. Loans that are held pin at most
//  ZCHAT_ARENA_OUT_MAX arenas: then runs are copied, until loans come back.
static void
s_test_lent_runs (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    zchat_testbed_clear (bed);
    size_t out = zchat_arena_out ();
    char text [1000];
    uint64_t id = 100, seq = 1;
    for (int group = 0; group < ZCHAT_ARENA_OUT_MAX + 2; group++) {
        for (int i = 0; i < 4; i++) {
            memset (text, 'a' + group, sizeof text);
            SEND (bed, "A", zchat_encode_say (&s_buf, id + (uint64_t) i, "lobby",
                                               ZCHAT_KIND_TEXT, text, sizeof text));
        }
        assert (zchat_testbed_flush (bed) == 4);
        for (int i = 0; i < 4; i++) {
            const zchat_msg_t *msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
            assert (msg->seq == seq + (uint64_t) i && msg->text_size == sizeof text);
            assert (msg->text [0] == 'a' + group && msg->text [999] == 'a' + group);
            s_reply (bed, "A", ZCHAT_ACK, id + (uint64_t) i);
        }
        id += 4;
        seq += 4;
        //  Each group lent its run and gave its arena up, until the cap
        size_t lent = (size_t) (group + 1) < ZCHAT_ARENA_OUT_MAX - out?
                      (size_t) group + 1: ZCHAT_ARENA_OUT_MAX - out;
        assert (zchat_testbed_lent (bed, false) == lent);
        assert (zchat_arena_out () == out + lent);
    }
    //  The loans come back: lent again
    size_t lent = zchat_testbed_lent (bed, true);
    assert (zchat_arena_out () == out);
    assert (s_say (bed, "A", "lobby", id, "small") == seq);
    assert (zchat_testbed_lent (bed, false) == lent);      //  too small to lend
    for (int i = 0; i < 4; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, id + 1 + (uint64_t) i, "lobby",
                                           ZCHAT_KIND_TEXT, text, sizeof text));
    assert (zchat_testbed_flush (bed) == 4);
    assert (zchat_testbed_lent (bed, false) == lent + 1);
    zchat_testbed_destroy (&bed);
    assert (zchat_arena_out () == out);
}

//  Lent runs with durability off: a group goes out before its commit, so
//  a commit that fails comes after its runs were lent, and the group must
//  give its arena up all the same, or the next group would write into
//  bytes a publication still holds (the testbed checks each loan
//  unchanged when it gives it back). A duplicate's room name, kept in the
//  same arena behind the lent run, is still read for its ACK.
static void
s_test_lent_runs_early (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.ack_before_commit = true;
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "A", "ops", 3);
    zchat_testbed_clear (bed);
    assert (s_say (bed, "A", "ops", 50, "first") == 1);
    zchat_testbed_clear (bed);
    size_t lent = zchat_testbed_lent (bed, false);
    char text [1000];
    uint64_t id = 100;
    for (int group = 0; group < 3; group++) {
        //  Nine texts in lobby, a run alone in its room (lent), then a
        //  resend of 50; the first and the last commit fail
        memset (text, 'a' + group, sizeof text);
        for (int i = 0; i < 9; i++)
            SEND (bed, "A", zchat_encode_say (&s_buf, id + (uint64_t) i, "lobby",
                                               ZCHAT_KIND_TEXT, text, sizeof text));
        SEND (bed, "A", zchat_encode_say (&s_buf, 50, "ops", ZCHAT_KIND_TEXT, "first", 5));
        bool fail = group != 1;
        zchat_testbed_server (bed)->fail_commit = fail;
        assert (zchat_testbed_flush (bed) == (fail? -1: 9));
        for (int i = 0; i < 9; i++)
            s_reply (bed, "A", ZCHAT_ACK, id + (uint64_t) i);
        const zchat_msg_t *msg = s_reply (bed, "A", ZCHAT_ACK, 50);
        assert (streq (msg->room, "ops") && msg->seq == 1);
        assert (zchat_testbed_lent (bed, false) == lent + (size_t) group + 1);
        zchat_testbed_clear (bed);
        id += 9;
    }
    zchat_testbed_lent (bed, true);
    zchat_testbed_destroy (&bed);
}

//  Runs: a group's messages of a room are encoded into batches as they
//  are staged. One room over several batches, broken by another sender,
//  by a duplicate and by another room; two rooms interleaved message by
//  message, whose small runs are merged. Every message is published
//  once, in seq order, every SAY acknowledged with its id.
static void
s_test_runs (void)
{
    zchat_testbed_t *bed = zchat_testbed_new (NULL, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 2);
    s_join (bed, "A", "ops", 3);
    zchat_testbed_clear (bed);

    char text [65];
    memset (text, 't', 64);
    text [64] = 0;
    size_t batches = zchat_testbed_batches (bed);
    for (uint64_t i = 0; i < 600; i++) {
        snprintf (text, sizeof text, "%03" PRIu64, i);
        text [3] = 't';
        SEND (bed, "A", zchat_encode_say (&s_buf, 1000 + i, "lobby", 0, text, 64));
        if (i == 200 || i == 400)
            SEND (bed, "B", zchat_encode_say (&s_buf, 5000 + i, "lobby", 0, "bob", 3));
        if (i == 300)
            SEND (bed, "A", zchat_encode_say (&s_buf, 1005, "lobby", 0, "again", 5));
        if (i == 500)
            SEND (bed, "A", zchat_encode_say (&s_buf, 9000, "ops", 0, "ops", 3));
    }
    assert (zchat_testbed_flush (bed) == 603);
    //  600 texts of 64 bytes are about 56 KiB: four batches at least, and
    //  alice's 602 ACKs two
    assert (zchat_testbed_batches (bed) >= batches + 7);
    uint64_t seq = 1;
    for (uint64_t i = 0; i < 600; i++) {
        const zchat_msg_t *msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
        assert (msg->seq == seq && streq (msg->nick, "alice"));
        assert (msg->text_size == 64 && strtoul (msg->text, NULL, 10) == i);
        msg = s_reply (bed, "A", ZCHAT_ACK, 1000 + i);
        assert (msg->seq == seq++ && streq (msg->room, "lobby"));
        if (i == 200 || i == 400) {
            msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
            assert (msg->seq == seq++ && streq (msg->nick, "bob"));
        }
        if (i == 300) {
            msg = s_reply (bed, "A", ZCHAT_ACK, 1005);
            assert (msg->seq == 6 && streq (msg->room, "lobby"));
        }
        if (i == 500) {
            msg = s_reply (bed, "A", ZCHAT_ACK, 9000);
            assert (msg->seq == 1 && streq (msg->room, "ops"));
        }
    }
    s_publication (bed, "ops:", ZCHAT_MESSAGE);
    for (uint64_t i = 200; i <= 400; i += 200) {
        const zchat_msg_t *msg = s_reply (bed, "B", ZCHAT_ACK, 5000 + i);
        assert (msg->seq == i + 2 + (i == 400));
    }
    assert (zchat_testbed_pending (bed) == 0);

    //  lobby and ops in turn, 100 each: runs of one message, merged into
    //  one MESSAGES per room; one ACKS
    batches = zchat_testbed_batches (bed);
    for (uint64_t i = 0; i < 200; i++)
        SEND (bed, "A", zchat_encode_say (&s_buf, 10000 + i, i % 2? "ops": "lobby", 0,
                                          text, 64));
    assert (zchat_testbed_flush (bed) == 200);
    assert (zchat_testbed_batches (bed) == batches + 3);
    for (uint64_t i = 0; i < 100; i++) {
        const zchat_msg_t *msg = s_publication (bed, "lobby:", ZCHAT_MESSAGE);
        assert (msg->seq == 603 + i);
        msg = s_publication (bed, "ops:", ZCHAT_MESSAGE);
        assert (msg->seq == 2 + i);
    }
    for (uint64_t i = 0; i < 200; i++)
        s_reply (bed, "A", ZCHAT_ACK, 10000 + i);
    assert (zchat_testbed_pending (bed) == 0);
    zchat_testbed_destroy (&bed);
}

//  count SAYs from peer with ids from *id on; none may be answered yet.
static void
s_flood (zchat_testbed_t *bed, const char *peer, uint64_t *id, int count)
{
    for (int i = 0; i < count; i++)
        SEND (bed, peer, zchat_encode_say (&s_buf, (*id)++, "lobby", 0, "flood", 5));
    assert (zchat_testbed_replies (bed, peer) == 0);
}

//  Fair share (--fair-share): a sender alone is never held back; one that
//  sends more than the floor plus twice the others' average, in the last
//  period and so far in this one (or, if no other sent in the last,
//  since the others came), is refused with 429 until the period ends,
//  for room messages only (its DMs go on); the others never are.
static void
s_test_fair_share (void)
{
    zchat_server_config_t config = zchat_testbed_config ();
    config.fair_share = 50;         //  a floor of 5 in each 100 ms period
    zchat_testbed_t *bed = zchat_testbed_new (&config, false);
    assert (bed);
    s_greet (bed, "A", "alice", NULL);
    s_greet (bed, "B", "bob", NULL);
    s_join (bed, "A", "lobby", 2);
    s_join (bed, "B", "lobby", 2);
    zchat_testbed_clear (bed);
    zchat_testbed_advance (bed, 100 - zchat_testbed_now (bed) % 100);

    //  Nobody else sent in the period before: alice is not held back,
    //  not in the first 10 ms after bob's first SAY either
    uint64_t id = 100;
    s_flood (bed, "A", &id, 20);
    SEND (bed, "B", zchat_encode_say (&s_buf, 500, "lobby", 0, "hi", 2));
    s_flood (bed, "A", &id, 20);
    assert (zchat_testbed_flush (bed) == 41);
    zchat_testbed_clear (bed);

    //  After that she is judged by what was sent since bob came: her 20
    //  are more than 5 + 2 x 1, so she waits for the next period
    zchat_testbed_advance (bed, 9);
    s_flood (bed, "A", &id, 1);
    zchat_testbed_advance (bed, 1);
    uint64_t again = id;            //  where she starts over, as libzchat does
    SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "flood", 5));
    //  What was taken before the refusal is acknowledged before it (the
    //  hold settles the group first), then the 429
    s_reply (bed, "A", ZCHAT_ACK, id - 1);
    const zchat_msg_t *msg = s_error (bed, "A", id++, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 90);
    assert (zchat_testbed_flush (bed) == 0);
    zchat_testbed_clear (bed);

    //  Next period: bob sent 1 in the last one and none yet in this one,
    //  so alice may have 5 + 2 x 1
    zchat_testbed_advance (bed, 115);
    id = again;
    s_flood (bed, "A", &id, 7);
    again = id;
    SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "flood", 5));
    for (uint64_t acked = again - 7; acked < again; acked++)
        s_reply (bed, "A", ZCHAT_ACK, acked);
    msg = s_error (bed, "A", id++, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 75);
    //  bob is never held back
    uint64_t bob_id = 501;
    s_flood (bed, "B", &bob_id, 4);
    //  Refused once, alice is held for the rest of the period, though
    //  bob's 4 would allow her more now: what she sends again keeps its
    //  order
    zchat_testbed_advance (bed, 50);
    for (int i = 0; i < 3; i++) {
        SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "flood", 5));
        msg = s_error (bed, "A", id++, ZCHAT_ERR_RATE_LIMITED);
        assert (msg->retry_ms == 25);
        //  Only room messages are judged: alice's DMs go on meanwhile
        //  (their ids follow her SAYs', as libzchat's do)
        s_dm (bed, "A", id++, "bob", "B", "psst");
    }
    assert (zchat_testbed_flush (bed) == 4);        //  bob's; alice's went first
    zchat_testbed_clear (bed);

    //  Next period: bob sent 4 in the last one, so alice may have
    //  5 + 2 x 4 = 13 until bob speaks in this one. She starts over from
    //  her first refused SAY: until she does, she is held (what was on
    //  its way must not be taken ahead of it)
    zchat_testbed_advance (bed, 25);
    SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "late", 4));
    msg = s_error (bed, "A", id, ZCHAT_ERR_RATE_LIMITED);
    assert (msg->retry_ms == 1);
    id = again;
    s_flood (bed, "A", &id, 13);
    again = id;
    SEND (bed, "A", zchat_encode_say (&s_buf, id, "lobby", 0, "flood", 5));
    for (uint64_t acked = again - 13; acked < again; acked++)
        s_reply (bed, "A", ZCHAT_ACK, acked);
    s_error (bed, "A", id++, ZCHAT_ERR_RATE_LIMITED);
    assert (zchat_testbed_flush (bed) == 0);
    zchat_testbed_clear (bed);

    //  bob silent for a whole period: alice is alone again
    zchat_testbed_advance (bed, 200);
    id = again;
    s_flood (bed, "A", &id, 30);
    assert (zchat_testbed_flush (bed) == 30);
    zchat_testbed_clear (bed);

    //  bob comes and sends as much as she does: judged since he came,
    //  neither is ahead, so neither is held back
    s_flood (bed, "B", &bob_id, 16);
    s_flood (bed, "A", &id, 15);
    zchat_testbed_advance (bed, 10);
    for (int i = 0; i < 10; i++) {
        s_flood (bed, "A", &id, 1);
        s_flood (bed, "B", &bob_id, 1);
    }
    assert (zchat_testbed_flush (bed) == 51);
    zchat_testbed_destroy (&bed);
}

void
zchat_server_test (bool verbose)
{
    s_verbose = verbose;
    printf (" * zchat_server: ");
    if (verbose)
        printf ("\n");
    zchat_util_test (verbose);
    zchat_session_test (verbose);
    zchat_room_test (verbose);

    //  The tests provoke errors on purpose: keep their debug lines out
    //  unless asked for.
    bool was_verbose = zchat_log_verbose ();
    zchat_log_set_verbose (verbose);
    s_test_sessions ();
    s_test_regreeting ();
    s_test_clock ();
    s_test_expiry_versions ();
    s_test_connections ();
    s_test_query_budget ();
    s_test_address_budget ();
    s_test_storage_fault ();
    s_test_read_fault ();
    s_test_owner_fault ();
    s_test_revoke ();
    s_test_durability_off ();
    s_test_unsafe_reopen ();
    s_test_batches ();
    s_test_ackruns ();
    s_test_lent_runs ();
    s_test_lent_runs_early ();
    s_test_runs ();
    s_test_fair_share ();
    s_test_hold ();
    s_test_rooms ();
    s_test_tagged_probes ();
    s_test_messages ();
    s_test_nick_case ();
    s_test_dm_retry ();
    s_test_history ();
    s_test_history_damaged ();
    s_test_limits ();
    s_test_bad_input ();
    s_test_random ();
    zchat_log_set_verbose (was_verbose);
    printf ("OK\n");
}
