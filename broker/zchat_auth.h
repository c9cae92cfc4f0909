//  zchat_auth — CURVE for the broker: its certificate, and the ZAP handler
//  that decides which client keys may connect.
//
//  With CURVE on, both broker sockets are CURVE servers in the ZAP domain
//  "zchat". libzmq asks the ZAP handler about every handshake, on either
//  socket; the handler admits a key if it is in the allow-list (the public
//  certificates of one directory) or, in allow-any mode, every key. An
//  admitted connection's messages carry the client's public key in Z85 as
//  their "User-Id" property: the identity the broker trusts, instead of
//  anything in the payload.
//
//  czmq's zauth would do the admission too, but in allow-any mode it hands
//  libzmq an empty user id, which would leave the broker unable to bind
//  nicknames to keys; hence this small handler of our own. The allow-list
//  is read once at start and again on zchat_auth_reload (the broker calls
//  it on SIGHUP), so what is admitted changes only when the operator says.

#ifndef ZCHAT_AUTH_H_INCLUDED
#define ZCHAT_AUTH_H_INCLUDED

#include <czmq.h>

#define ZCHAT_ZAP_DOMAIN    "zchat"

typedef struct _zchat_auth_t zchat_auth_t;

//  Load the broker's certificate from cert_path (czmq format; the secret
//  file, or a public file whose _secret sibling exists) and start the ZAP
//  handler. allow_dir is a directory of public certificates to admit, or
//  NULL to admit any key. Call it before any socket it secures binds; at
//  most one per process (libzmq has one ZAP endpoint per context). On
//  failure returns NULL and writes one line into error.
zchat_auth_t *
    zchat_auth_new (const char *cert_path, const char *allow_dir,
                    char *error, size_t error_size);

//  Stop the ZAP handler and free the certificate; nulls *self_p. Safe on
//  NULL. Destroy it after the sockets it secures.
void
    zchat_auth_destroy (zchat_auth_t **self_p);

//  Make sock a CURVE server with the broker's key in the zchat ZAP domain.
//  Call before binding. Returns 0, or -1 if libzmq refused an option.
int
    zchat_auth_secure (zchat_auth_t *self, zsock_t *sock);

//  The broker's public key in Z85 (40 characters); borrowed.
const char *
    zchat_auth_public_key (zchat_auth_t *self);

//  Read the allow-list directory again and replace the admitted keys with
//  what it now holds. Returns the number of keys admitted, or -1 if the
//  directory could not be read (the old list stays in force). In allow-any
//  mode does nothing and returns 0. ZAP asks only at a handshake: peers
//  already connected stay connected whatever the new list says, so the
//  broker ends the sessions of keys no longer admitted itself (see
//  zchat_auth_admits).
int
    zchat_auth_reload (zchat_auth_t *self);

//  True if key (Z85) is admitted now: in the allow-list as last loaded,
//  or any key in allow-any mode. For the broker's own thread.
bool
    zchat_auth_admits (zchat_auth_t *self, const char *key);

//  Self test; asserts on failure.
void
    zchat_auth_test (bool verbose);

#endif
