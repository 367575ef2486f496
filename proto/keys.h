/*  keys - CURVE key files, the coordinator's key directory, and when CURVE is required
 *
 *  Remote deployments authenticate and encrypt with ZeroMQ CURVE (Curve25519 via
 *  libsodium). A key file is text: exactly 40 Z85 characters (32 key bytes), optionally
 *  followed by one newline, nothing else. The parser is strict (length, alphabet, no
 *  stray bytes) because key files are input like any other.
 *
 *      NAME.key   the secret key, mode 0600 (refused if group or others may read it);
 *                 the public key is derived from it, so the two can never disagree
 *      NAME.pub   the public key, safe to copy anywhere
 *
 *  The coordinator's directory (lmpress coordinator --curve-dir DIR):
 *
 *      DIR/server.key        the coordinator's secret key (server.pub goes to every peer)
 *      DIR/workers/NAME.pub     public keys allowed to join as workers
 *      DIR/clients/NAME.pub     public keys allowed to submit, query and cancel jobs
 *
 *  The directory a key sits in is its role; the file name (without .pub) is its name in
 *  logs. A worker or a CLI client holds its own NAME.key and the coordinator's server.pub.
 *  A key listed in both directories, or twice, is refused when the directory is loaded.
 *  The directory is read once, when the coordinator starts.
 *
 *  All functions are thread-safe (no global state).
 */
#ifndef LMP_PROTO_KEYS_H
#define LMP_PROTO_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "proto/wire.h"  /* defines: enum lmp_peer */

#define LMP_KEY_Z85_LEN  40   /* characters of one Z85-encoded 32-byte key */
#define LMP_KEY_FILE_MAX 4096 /* bytes: larger key files are refused unread */
#define LMP_KEY_NAME_MAX 64   /* bytes of an authorized key's name (file stem) */
#define LMP_KEYS_MAX     4096 /* authorized keys per coordinator */

/* One Z85 key as text, NUL-terminated. */
struct lmp_key {
    char z85[LMP_KEY_Z85_LEN + 1];
};

/* A peer's CURVE settings: its own key pair and the coordinator's public key. */
struct lmp_curve_client {
    struct lmp_key public_key, secret_key, server_key;
};

/* One authorized public key. */
struct lmp_authorized_key {
    struct lmp_key key;
    uint8_t        raw[32];                /* decoded: what ZAP requests carry */
    enum lmp_peer  role;                   /* LMP_PEER_WORKER or LMP_PEER_CLI */
    char           name[LMP_KEY_NAME_MAX]; /* file stem: "node7" for workers/node7.pub */
};

/* The coordinator's CURVE settings (lmp_curve_server_load / _release). */
struct lmp_curve_server {
    struct lmp_key             public_key, secret_key;
    struct lmp_authorized_key *keys; /* (n_keys) */
    size_t                     n_keys;
};

/* True if this libzmq was built with CURVE (zmq_has("curve")). */
bool lmp_curve_available(void);

/* Parse the contents of a key file (len bytes, borrowed): exactly LMP_KEY_Z85_LEN Z85
 * characters, then nothing or a single "\n". path names the file in messages.
 * RET LMP_OK with *key filled, or LMP_EFORMAT ("key file 'x.pub': ..."). */
enum lmp_status lmp_key_parse(const char *text, size_t len, const char *path, struct lmp_key *key,
                              struct lmp_err *err);

/* Read and parse a public key file. RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_EFORMAT. */
enum lmp_status lmp_key_load_public(const char *path, struct lmp_key *key, struct lmp_err *err);

/* Read a secret key file and derive its public key (public_key may be NULL).
 * RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_EFORMAT, or LMP_EINVAL when group or others may
 * read the file ("chmod 600 it"). */
enum lmp_status lmp_key_load_secret(const char *path, struct lmp_key *secret_key,
                                    struct lmp_key *public_key, struct lmp_err *err);

/* Write a new key pair: base.key (secret, mode 0600) and base.pub (public). Existing files
 * are refused (LMP_EINVAL) unless force. Each file is written to a temporary name and
 * renamed, so a reader never sees half a key. public_key (may be NULL) gets the new key.
 * RET LMP_OK, LMP_EINVAL, LMP_EIO, LMP_EUNSUP (no CURVE in libzmq). */
enum lmp_status lmp_key_generate(const char *base, bool force, struct lmp_key *public_key,
                                 struct lmp_err *err);

/* Load a client's settings: its secret key file and the coordinator's public key file.
 * RET as lmp_key_load_secret / lmp_key_load_public, or LMP_EUNSUP (no CURVE). */
enum lmp_status lmp_curve_client_load(const char *key_path, const char *server_key_path,
                                      struct lmp_curve_client *c, struct lmp_err *err);

/* Load the coordinator's directory (layout above) into *s (released with
 * lmp_curve_server_release, also after a failure). Any bad file refuses the whole
 * directory: the message names the file. RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_EFORMAT,
 * LMP_EINVAL (duplicate key, too many keys, unsafe mode), LMP_EUNSUP (no CURVE). */
enum lmp_status lmp_curve_server_load(const char *dir, struct lmp_curve_server *s,
                                      struct lmp_err *err);

void lmp_curve_server_release(struct lmp_curve_server *s);

/* A new random key pair in memory (an ephemeral identity; nothing is written).
 * RET LMP_OK, LMP_EUNSUP (no CURVE in libzmq), LMP_EIO. */
enum lmp_status lmp_key_pair_new(struct lmp_key *public_key, struct lmp_key *secret_key,
                                 struct lmp_err *err);

/* Authorize key for role (LMP_PEER_WORKER or LMP_PEER_CLI) under name, as the file
 * DIR/workers/NAME.pub or DIR/clients/NAME.pub would: for a coordinator whose keys are
 * made in memory (s zeroed, then s->public_key / secret_key set, then the peers added;
 * released with lmp_curve_server_release). RET LMP_OK, LMP_EFORMAT (not a Z85 key),
 * LMP_EINVAL (bad name, key already listed or the server's own, too many), LMP_ENOMEM. */
enum lmp_status lmp_curve_server_add(struct lmp_curve_server *s, const struct lmp_key *key,
                                     enum lmp_peer role, const char *name, struct lmp_err *err);

/* The authorized key whose 32 bytes are raw, or NULL. */
const struct lmp_authorized_key *lmp_curve_server_find(const struct lmp_curve_server *s,
                                                       const uint8_t                  raw[32]);

/* True if a bind endpoint only accepts connections from this host: ipc://, inproc://, or
 * tcp:// on 127.0.0.0/8, [::1] or localhost. "tcp://0.0.0.0:7070", a wildcard "*" host, other
 * addresses and interface names are not. */
bool lmp_endpoint_is_local(const char *endpoint);

/* The policy for a coordinator's bind: LMP_OK when the endpoint is local, CURVE is on, or
 * insecure is set; else LMP_EINVAL with a one-line message that says what to do. */
enum lmp_status lmp_bind_check(const char *endpoint, bool curve, bool insecure,
                               struct lmp_err *err);

#endif /* LMP_PROTO_KEYS_H */
