//  zchat_auth — CURVE for the broker: its certificate and the ZAP handler
//  (see zchat_auth.h).
//
//  The ZAP handler is an actor (its own thread) with a REP socket on
//  libzmq's fixed ZAP endpoint. libzmq's I/O thread asks it about each
//  CURVE handshake (RFC 27) and waits for the answer, so the handler never
//  blocks on anything but its two sockets. The allow-list is a hash of Z85
//  public keys owned by the actor; the broker's thread reads the directory
//  (so that its errors land where the operator looks) and hands the actor a
//  finished table, which the actor swaps in.

#include "zchat_auth.h"
#include "zchat_log.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZAP_ENDPOINT        "inproc://zeromq.zap.01"
#define KEY_TEXT_SIZE       40          //  Z85 of a 32-byte key
#define KEY_BINARY_SIZE     32
//  Refusals are logged at info level, but a flood of bad handshakes must
//  not turn into a flood of log lines: at most this many per second.
#define REFUSALS_LOGGED_PER_S   10
//  Largest file read as a certificate.
#define MAX_CERT_FILE       65536

struct _zchat_auth_t {
    zcert_t *cert;                  //  the broker's own keypair
    zactor_t *zap;                  //  the ZAP handler
    char *allow_dir;                //  NULL: admit any key
    zhashx_t *keys;                 //  the broker thread's copy of the
                                    //  admitted keys (the actor has its own)
};

//  The actor's state; lives on the actor's stack.
typedef struct {
    zsock_t *pipe;
    zsock_t *handler;               //  REP on the ZAP endpoint
    bool bound;
    bool allow_any;
    zhashx_t *keys;                 //  Z85 key -> certificate name
    int64_t log_window;             //  start of the current second
    unsigned log_count;             //  refusals logged in it
    unsigned log_suppressed;        //  refusals not logged in it
} zap_t;

//  ---------------------------------------------------------------------
//  zhashx item helpers: the allow-list owns copies of certificate names.

static void *
s_string_dup (const void *item)
{
    return strdup ((const char *) item);
}

static void
s_string_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static bool
s_ends_with (const char *text, const char *suffix)
{
    size_t text_size = strlen (text);
    size_t suffix_size = strlen (suffix);
    return text_size >= suffix_size
        && streq (text + text_size - suffix_size, suffix);
}

//  ---------------------------------------------------------------------
//  Read a file of at most MAX_CERT_FILE bytes into a new string, or return
//  NULL. The bound keeps a stray big file in the directory from costing
//  memory; a certificate is a few hundred bytes.

static char *
s_read_small_file (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char *text = (char *) zmalloc (MAX_CERT_FILE + 1);
    assert (text);
    size_t size = fread (text, 1, MAX_CERT_FILE + 1, file);
    bool failed = ferror (file) || size > MAX_CERT_FILE;
    fclose (file);
    if (failed) {
        free (text);
        return NULL;
    }
    text [size] = 0;
    return text;
}

//  ---------------------------------------------------------------------
//  Add the public key of the certificate file at path to keys, if it is a
//  public certificate. A file holding a secret key is skipped with a
//  warning: whoever can read the allow-list directory must not learn
//  anybody's secret.

static void
s_allow_list_add (zhashx_t *keys, const char *path)
{
    //  Parsed from memory: czmq's zconfig_load leaks on a file that does
    //  not parse, and complains about it on stderr; a file that does not
    //  even mention a public key is not worth parsing.
    char *text = s_read_small_file (path);
    zconfig_t *root = text && strstr (text, "public-key")? zconfig_str_load (text): NULL;
    free (text);
    if (!root) {
        ZCHAT_DEBUG ("allow-list: skipping %s (not a certificate)", path);
        return;
    }
    const char *key = zconfig_get (root, "curve/public-key", NULL);
    uint8_t binary [KEY_BINARY_SIZE];
    if (zconfig_get (root, "curve/secret-key", NULL))
        zsys_warning ("allow-list: skipping %s: it holds a secret key, "
                      "which does not belong in the allow-list", path);
    else
    if (key && strlen (key) == KEY_TEXT_SIZE && zmq_z85_decode (binary, key)) {
        const char *name = zconfig_get (root, "metadata/name", "");
        zhashx_update (keys, key, (void *) name);
        ZCHAT_DEBUG ("allow-list: admitting %s (%s) from %s", key, name, path);
    }
    else
        ZCHAT_DEBUG ("allow-list: skipping %s (no valid public key)", path);
    zconfig_destroy (&root);
}

//  ---------------------------------------------------------------------
//  Read every public certificate in dir into a new table of keys. Returns
//  the table (the caller's), or NULL with one line in error.

static zhashx_t *
s_allow_list_load (const char *dir, char *error, size_t error_size)
{
    DIR *handle = opendir (dir);
    if (!handle) {
        snprintf (error, error_size, "cannot read allow-list directory %s: %s",
                  dir, strerror (errno));
        return NULL;
    }
    zhashx_t *keys = zhashx_new ();
    assert (keys);
    zhashx_set_duplicator (keys, s_string_dup);
    zhashx_set_destructor (keys, s_string_free);

    struct dirent *entry;
    while ((entry = readdir (handle)) != NULL) {
        if (entry->d_name [0] == '.')
            continue;               //  ., .. and editor droppings
        char *path = zsys_sprintf ("%s/%s", dir, entry->d_name);
        assert (path);
        struct stat status;
        if (stat (path, &status) == 0 && S_ISREG (status.st_mode)) {
            if (s_ends_with (entry->d_name, "_secret"))
                zsys_warning ("allow-list: skipping %s: secret certificates "
                              "do not belong in the allow-list", path);
            else
                s_allow_list_add (keys, path);
        }
        zstr_free (&path);
    }
    closedir (handle);
    return keys;
}

//  ---------------------------------------------------------------------
//  Log a refused handshake, at most REFUSALS_LOGGED_PER_S times a second.

static void
s_zap_log_refusal (zap_t *self, const char *key, const char *address,
                   const char *why)
{
    int64_t now = zclock_mono ();
    if (now - self->log_window >= 1000) {
        if (self->log_suppressed)
            zsys_info ("refused %u more handshakes", self->log_suppressed);
        self->log_window = now;
        self->log_count = 0;
        self->log_suppressed = 0;
    }
    if (self->log_count < REFUSALS_LOGGED_PER_S) {
        self->log_count++;
        zsys_info ("refused CURVE key %s from %s: %s", key, address, why);
    }
    else
        self->log_suppressed++;
}

//  ---------------------------------------------------------------------
//  Answer one ZAP request. A REP socket must answer every request it
//  receives, so even a request we cannot parse gets a reply (500).

static void
s_zap_answer (zap_t *self)
{
    zmsg_t *request = zmsg_recv (self->handler);
    if (!request)
        return;                     //  interrupted

    //  RFC 27: version, request id, domain, address, identity, mechanism,
    //  then the mechanism's credentials (CURVE: the 32-byte client key).
    zframe_t *version = zmsg_pop (request);
    zframe_t *request_id = zmsg_pop (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *identity = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credential = zmsg_pop (request);

    const char *status = "500";
    const char *status_text = "Internal error";
    char key [KEY_TEXT_SIZE + 1] = "";

    if (!version || zframe_size (version) != 3
    ||  memcmp (zframe_data (version), "1.0", 3) != 0 || !request_id)
        zsys_error ("ZAP: malformed request from libzmq");
    else
    if (!mechanism || !streq (mechanism, "CURVE")
    ||  !credential || zframe_size (credential) != KEY_BINARY_SIZE) {
        status = "400";
        status_text = "CURVE required";
        s_zap_log_refusal (self, "(none)", address? address: "?",
                           "not a CURVE handshake");
    }
    else {
        zmq_z85_encode (key, zframe_data (credential), KEY_BINARY_SIZE);
        if (!domain || !streq (domain, ZCHAT_ZAP_DOMAIN)) {
            status = "400";
            status_text = "Unknown domain";
            s_zap_log_refusal (self, key, address? address: "?", "wrong ZAP domain");
        }
        else
        if (self->allow_any || (self->keys && zhashx_lookup (self->keys, key))) {
            status = "200";
            status_text = "OK";
            ZCHAT_DEBUG ("admitted CURVE key %s from %s", key, address? address: "?");
        }
        else {
            status = "400";
            status_text = "No access";
            s_zap_log_refusal (self, key, address? address: "?",
                               "not in the allow-list");
        }
    }
    //  The user id of an admitted peer is its key: libzmq attaches it to
    //  every message from that peer as the "User-Id" property.
    zmsg_t *reply = zmsg_new ();
    assert (reply);
    zmsg_addstr (reply, "1.0");
    if (request_id)
        zmsg_append (reply, &request_id);
    else
        zmsg_addmem (reply, NULL, 0);
    zmsg_addstr (reply, status);
    zmsg_addstr (reply, status_text);
    zmsg_addstr (reply, streq (status, "200")? key: "");
    zmsg_addmem (reply, NULL, 0);           //  no metadata
    if (zmsg_send (&reply, self->handler) != 0)
        zsys_error ("ZAP: cannot send a reply: %s", zmq_strerror (zmq_errno ()));
    zmsg_destroy (&reply);

    zframe_destroy (&version);
    zframe_destroy (&request_id);
    zframe_destroy (&identity);
    zframe_destroy (&credential);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zmsg_destroy (&request);
}

//  ---------------------------------------------------------------------
//  Handle a command from the broker's thread. Returns true on $TERM.
//    KEYS + pointer: a zhashx_t of keys to admit (the actor takes it), or
//                    NULL to admit any key; answered with a signal, 0 if
//                    the handler is serving, 1 if it could not bind.

static bool
s_zap_command (zap_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return false;               //  interrupted; $TERM will come
    bool terminate = false;
    char *command = zmsg_popstr (msg);
    if (command && streq (command, "$TERM"))
        terminate = true;
    else
    if (command && streq (command, "KEYS")) {
        zframe_t *frame = zmsg_pop (msg);
        zhashx_t *keys = NULL;
        assert (frame && zframe_size (frame) == sizeof (keys));
        memcpy (&keys, zframe_data (frame), sizeof (keys));
        zframe_destroy (&frame);
        zhashx_destroy (&self->keys);
        self->keys = keys;
        self->allow_any = (keys == NULL);
        zsock_signal (self->pipe, self->bound? 0: 1);
    }
    else
        zsys_error ("ZAP: unknown command %s", command? command: "(none)");
    zstr_free (&command);
    zmsg_destroy (&msg);
    return terminate;
}

//  ---------------------------------------------------------------------
//  The ZAP handler actor. It stops only on $TERM, never on a signal: the
//  broker still accepts handshakes while it flushes on its way out.

static void
s_zap_actor (zsock_t *pipe, void *args)
{
    (void) args;
    zap_t self = { .pipe = pipe };
    self.handler = zsock_new (ZMQ_REP);
    self.bound = self.handler && zsock_bind (self.handler, ZAP_ENDPOINT) == 0;
    zsock_signal (pipe, 0);

    zpoller_t *poller = zpoller_new (pipe, NULL);
    assert (poller);
    if (self.bound)
        zpoller_add (poller, self.handler);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            if (s_zap_command (&self))
                break;
        }
        else
        if (which == self.handler)
            s_zap_answer (&self);
        else
        if (zmq_errno () != EINTR)
            break;                  //  the context is gone
    }
    zpoller_destroy (&poller);
    //  Closing a socket frees its inproc endpoint only later, in libzmq's
    //  reaper thread; unbinding frees it now, so that a new handler can
    //  bind at once.
    if (self.bound)
        zsock_unbind (self.handler, ZAP_ENDPOINT);
    zsock_destroy (&self.handler);
    zhashx_destroy (&self.keys);
}

//  ---------------------------------------------------------------------
//  Hand the actor a new table of keys (NULL: any key). Returns 0, or -1 if
//  the handler is not serving.

static int
s_auth_set_keys (zchat_auth_t *self, zhashx_t *keys)
{
    //  The broker's thread keeps a copy, for zchat_auth_admits.
    zhashx_t *copy = keys? zhashx_dup (keys): NULL;
    if (keys && !copy) {
        zhashx_destroy (&keys);
        return -1;
    }
    //  The pointer travels as a frame; the actor owns the table from here.
    if (zstr_sendm (self->zap, "KEYS") != 0
    ||  zmq_send (zsock_resolve (self->zap), &keys, sizeof (keys), 0) == -1) {
        zhashx_destroy (&keys);
        zhashx_destroy (&copy);
        return -1;
    }
    if (zsock_wait (self->zap) != 0) {
        zhashx_destroy (&copy);
        return -1;
    }
    zhashx_destroy (&self->keys);
    self->keys = copy;
    return 0;
}

//  ---------------------------------------------------------------------
//  Load the broker's certificate and start the ZAP handler.

zchat_auth_t *
zchat_auth_new (const char *cert_path, const char *allow_dir,
                char *error, size_t error_size)
{
    assert (cert_path);
    assert (error && error_size > 0);
    zchat_auth_t *self = (zchat_auth_t *) zmalloc (sizeof (zchat_auth_t));
    assert (self);
    zhashx_t *keys = NULL;

    if (!zsys_has_curve ()) {
        snprintf (error, error_size, "this libzmq has no CURVE support");
        goto failed;
    }
    if (access (cert_path, R_OK) != 0) {
        snprintf (error, error_size, "cannot read certificate %s: %s",
                  cert_path, strerror (errno));
        goto failed;
    }
    self->cert = zcert_load (cert_path);
    if (!self->cert) {
        snprintf (error, error_size, "%s is not a czmq certificate", cert_path);
        goto failed;
    }
    //  A public certificate loads too, with a secret key of zeros.
    const uint8_t *secret = zcert_secret_key (self->cert);
    uint8_t zeros [KEY_BINARY_SIZE] = { 0 };
    if (memcmp (secret, zeros, KEY_BINARY_SIZE) == 0) {
        snprintf (error, error_size, "certificate %s holds no secret key "
                  "(give the broker's _secret file)", cert_path);
        goto failed;
    }
    if (allow_dir) {
        self->allow_dir = strdup (allow_dir);
        assert (self->allow_dir);
        keys = s_allow_list_load (allow_dir, error, error_size);
        if (!keys)
            goto failed;
        size_t count = zhashx_size (keys);
        if (count == 0)
            zsys_warning ("allow-list %s holds no public certificate: "
                          "no client can connect", allow_dir);
        else
            zsys_info ("allow-list %s: %zu keys", allow_dir, count);
    }
    //  Signals must reach the broker's own thread, where they wake its
    //  poller; the actor inherits this mask, so it never sees them.
    sigset_t block, saved;
    sigemptyset (&block);
    sigaddset (&block, SIGINT);
    sigaddset (&block, SIGTERM);
    sigaddset (&block, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &block, &saved);
    self->zap = zactor_new (s_zap_actor, NULL);
    pthread_sigmask (SIG_SETMASK, &saved, NULL);
    if (!self->zap) {
        snprintf (error, error_size, "cannot start the ZAP handler");
        goto failed;
    }
    int rc = s_auth_set_keys (self, keys);
    keys = NULL;                    //  the actor's now
    if (rc != 0) {
        snprintf (error, error_size, "cannot start the ZAP handler: %s is "
                  "taken (another authenticator in this process?)", ZAP_ENDPOINT);
        goto failed;
    }
    return self;

failed:
    zhashx_destroy (&keys);
    zchat_auth_destroy (&self);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Stop the ZAP handler and free the certificate.

void
zchat_auth_destroy (zchat_auth_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        zchat_auth_t *self = *self_p;
        zactor_destroy (&self->zap);
        zcert_destroy (&self->cert);
        zhashx_destroy (&self->keys);
        free (self->allow_dir);
        free (self);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------
//  Make sock a CURVE server with the broker's key in the zchat domain.

int
zchat_auth_secure (zchat_auth_t *self, zsock_t *sock)
{
    assert (self);
    assert (sock);
    void *handle = zsock_resolve (sock);
    int on = 1;
    if (zmq_setsockopt (handle, ZMQ_CURVE_PUBLICKEY,
                        zcert_public_key (self->cert), KEY_BINARY_SIZE) != 0
    ||  zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY,
                        zcert_secret_key (self->cert), KEY_BINARY_SIZE) != 0
    ||  zmq_setsockopt (handle, ZMQ_CURVE_SERVER, &on, sizeof (on)) != 0
    ||  zmq_setsockopt (handle, ZMQ_ZAP_DOMAIN, ZCHAT_ZAP_DOMAIN,
                        strlen (ZCHAT_ZAP_DOMAIN)) != 0)
        return -1;
    return 0;
}

//  ---------------------------------------------------------------------
//  The broker's public key in Z85.

const char *
zchat_auth_public_key (zchat_auth_t *self)
{
    assert (self);
    return zcert_public_txt (self->cert);
}

//  ---------------------------------------------------------------------
//  Read the allow-list again.

int
zchat_auth_reload (zchat_auth_t *self)
{
    assert (self);
    if (!self->allow_dir)
        return 0;
    char error [256];
    zhashx_t *keys = s_allow_list_load (self->allow_dir, error, sizeof (error));
    if (!keys) {
        zsys_error ("%s; keeping the previous allow-list", error);
        return -1;
    }
    int count = (int) zhashx_size (keys);
    if (s_auth_set_keys (self, keys) != 0) {
        zsys_error ("cannot hand the new allow-list to the ZAP handler");
        return -1;
    }
    return count;
}

//  ---------------------------------------------------------------------
//  Is key admitted now?

bool
zchat_auth_admits (zchat_auth_t *self, const char *key)
{
    assert (self);
    if (!self->allow_dir)
        return true;
    return key && self->keys && zhashx_lookup (self->keys, key) != NULL;
}


//  ---------------------------------------------------------------------
//  Self test helpers

//  Sends one message from a fresh DEALER (CURVE client with client_cert,
//  or plaintext if NULL) and returns the User-Id the ROUTER saw, or NULL
//  if nothing arrived in time. The caller frees the result.
static char *
s_try_connect (zsock_t *router, const char *endpoint, zcert_t *server_cert,
               zcert_t *client_cert)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    if (client_cert) {
        zcert_apply (client_cert, dealer);
        zsock_set_curve_serverkey (dealer, zcert_public_txt (server_cert));
    }
    int rc = zsock_connect (dealer, "%s", endpoint);
    assert (rc == 0);
    zsock_set_sndtimeo (dealer, 500);
    zstr_send (dealer, "hello");

    char *user_id = NULL;
    zpoller_t *poller = zpoller_new (router, NULL);
    assert (poller);
    if (zpoller_wait (poller, 500) == router) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        rc = zmq_msg_recv (&msg, zsock_resolve (router), 0);    //  id
        assert (rc >= 0);
        rc = zmq_msg_recv (&msg, zsock_resolve (router), 0);    //  body
        assert (rc == 5);
        const char *property = zmq_msg_gets (&msg, "User-Id");
        user_id = strdup (property? property: "");
        zmq_msg_close (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    return user_id;
}

void
zchat_auth_test (bool verbose)
{
    printf (" * zchat_auth: ");
    if (verbose)
        printf ("\n");
    if (!zsys_has_curve ()) {
        printf ("skipped (no CURVE)\n");
        return;
    }
    char *dir = zsys_sprintf ("/tmp/zchat_auth_test.%d", (int) getpid ());
    char *allow = zsys_sprintf ("%s/allow", dir);
    char *server_path = zsys_sprintf ("%s/server", dir);
    char *server_secret = zsys_sprintf ("%s/server_secret", dir);
    char *alice_path = zsys_sprintf ("%s/allow/alice", dir);
    char *bob_path = zsys_sprintf ("%s/allow/bob", dir);
    char *junk_path = zsys_sprintf ("%s/allow/junk.txt", dir);
    char *junk2_path = zsys_sprintf ("%s/allow/junk2", dir);
    char *junk3_path = zsys_sprintf ("%s/allow/junk3", dir);
    int rc = zsys_dir_create ("%s", allow);
    assert (rc == 0);

    zcert_t *server = zcert_new ();
    zcert_t *alice = zcert_new ();
    zcert_t *bob = zcert_new ();
    zcert_set_meta (alice, "name", "alice");
    rc = zcert_save (server, server_path);
    assert (rc == 0);
    rc = zcert_save_public (alice, alice_path);
    assert (rc == 0);
    FILE *junk = fopen (junk_path, "w");
    assert (junk);
    //  Not a certificate, then one that does not parse, then one with a
    //  bad key: all skipped
    fprintf (junk, "not a certificate\n");
    fclose (junk);
    junk = fopen (junk2_path, "w");
    assert (junk);
    fprintf (junk, "curve\n  public-key = \"unterminated\n   x x x\n");
    fclose (junk);
    junk = fopen (junk3_path, "w");
    assert (junk);
    fprintf (junk, "curve\n    public-key = \"short\"\n");
    fclose (junk);
    char error [256];

    //  Bad certificates are refused with a reason
    zchat_auth_t *auth = zchat_auth_new ("/nonexistent/cert", NULL,
                                         error, sizeof (error));
    assert (auth == NULL);
    assert (strstr (error, "cannot read certificate"));
    auth = zchat_auth_new (alice_path, NULL, error, sizeof (error));
    assert (auth == NULL);
    assert (strstr (error, "no secret key"));
    auth = zchat_auth_new (server_secret, "/nonexistent/dir", error, sizeof (error));
    assert (auth == NULL);
    assert (strstr (error, "allow-list"));

    //  Allow-list: alice gets in with her key as User-Id; bob and a
    //  plaintext client get nothing through
    auth = zchat_auth_new (server_secret, allow, error, sizeof (error));
    assert (auth);
    assert (streq (zchat_auth_public_key (auth), zcert_public_txt (server)));
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    rc = zchat_auth_secure (auth, router);
    assert (rc == 0);
    rc = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (rc > 0);
    char *endpoint = zsock_last_endpoint (router);

    char *user_id = s_try_connect (router, endpoint, server, alice);
    assert (user_id && streq (user_id, zcert_public_txt (alice)));
    zstr_free (&user_id);
    user_id = s_try_connect (router, endpoint, server, bob);
    assert (user_id == NULL);
    user_id = s_try_connect (router, endpoint, server, NULL);
    assert (user_id == NULL);
    assert (zchat_auth_admits (auth, zcert_public_txt (alice)));
    assert (!zchat_auth_admits (auth, zcert_public_txt (bob)));
    assert (!zchat_auth_admits (auth, NULL));

    //  After a reload bob is in too
    rc = zcert_save_public (bob, bob_path);
    assert (rc == 0);
    rc = zchat_auth_reload (auth);
    assert (rc == 2);
    user_id = s_try_connect (router, endpoint, server, bob);
    assert (user_id && streq (user_id, zcert_public_txt (bob)));
    zstr_free (&user_id);
    assert (zchat_auth_admits (auth, zcert_public_txt (bob)));
    //  ... and after another without alice, she is out
    rc = unlink (alice_path);
    assert (rc == 0);
    rc = zchat_auth_reload (auth);
    assert (rc == 1);
    assert (!zchat_auth_admits (auth, zcert_public_txt (alice)));
    assert (zchat_auth_admits (auth, zcert_public_txt (bob)));
    zsock_destroy (&router);
    zstr_free (&endpoint);
    zchat_auth_destroy (&auth);
    assert (auth == NULL);
    zchat_auth_destroy (&auth);

    //  Allow-any: any key gets in, still with its key as User-Id
    auth = zchat_auth_new (server_secret, NULL, error, sizeof (error));
    if (!auth)
        printf ("%s\n", error);
    assert (auth);
    assert (zchat_auth_reload (auth) == 0);
    assert (zchat_auth_admits (auth, zcert_public_txt (bob)));
    router = zsock_new (ZMQ_ROUTER);
    assert (router);
    rc = zchat_auth_secure (auth, router);
    assert (rc == 0);
    rc = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (rc > 0);
    endpoint = zsock_last_endpoint (router);
    zcert_t *carol = zcert_new ();
    user_id = s_try_connect (router, endpoint, server, carol);
    assert (user_id && streq (user_id, zcert_public_txt (carol)));
    zstr_free (&user_id);
    user_id = s_try_connect (router, endpoint, server, NULL);
    assert (user_id == NULL);
    zsock_destroy (&router);
    zstr_free (&endpoint);
    zchat_auth_destroy (&auth);

    zcert_destroy (&server);
    zcert_destroy (&alice);
    zcert_destroy (&bob);
    zcert_destroy (&carol);
    unlink (alice_path);
    unlink (bob_path);
    unlink (junk_path);
    unlink (junk2_path);
    unlink (junk3_path);
    unlink (server_path);
    unlink (server_secret);
    rmdir (allow);
    rmdir (dir);
    zstr_free (&dir);
    zstr_free (&allow);
    zstr_free (&server_path);
    zstr_free (&server_secret);
    zstr_free (&alice_path);
    zstr_free (&bob_path);
    zstr_free (&junk_path);
    zstr_free (&junk2_path);
    zstr_free (&junk3_path);
    printf ("OK\n");
}
