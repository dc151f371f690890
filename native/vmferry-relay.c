/*
 * vmferry-relay: the tunnel relay of one migration, natively (issue 16 point 3).
 *
 * Speaks the front door's tunnel protocol (src/transport/tunnel-policy.ts): TLS 1.3
 * with mutual authentication under the deployment CA, `GET /v1/tunnel/<id>` with the
 * x-vmferry-token header, the 101 reply, and refusals shaped like refusal(). One
 * thread per connection, so multifd channels use every core.
 *
 *   destination: listens on a TCP port of its own, relays each admitted connection
 *                to the destination QEMU's unix socket.
 *   source:      listens on the unix socket the source QEMU migrates to, opens one
 *                tunnel connection per QEMU connection; the first is relayed end to
 *                end before the next is accepted (QEMU 7.2 takes it as the main channel).
 *
 * After the head exchange each connection seals its own TLS 1.3 records on the sending
 * direction (see "the sealed send path") and opens them on the receiving direction
 * (see "the open receive path"); OpenSSL keeps the handshake.
 *
 * Configuration (with the token and the private key) comes on stdin, never argv:
 * records `NAME LENGTH\n<LENGTH bytes>\n` until EOF. Events go to stdout as JSON
 * lines. SIGTERM (or the agent's death) ends the process and every connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MAX_HEAD 16384
#define MAX_FIELD (1 << 20)
#define UP_BUFFER (256 * 1024)
#define DOWN_BUFFER (1024 * 1024)
#define TLS_READ_BUFFER (256 * 1024)

/* ---- configuration ---- */

static struct {
  int destination;
  char *ca, *cert, *key, *crl, *ciphers;
  char *migration_id, *token, *peer_cn, *tunnel_roles;
  /* destination */
  char *listen_host;
  int listen_port;
  char *target_path;
  int max_connections;
  /* source */
  char *listen_path;
  long socket_uid, socket_gid;
  char *remote_host;
  int remote_port;
  /* both */
  int handshake_timeout_ms;
  int linger_ms;
  int write_batch;   /* bytes of TLS records buffered to leave in one write(2); 0: one write per record */
  int cork;          /* TCP_CORK while a chunk from QEMU is written, so records fill whole segments */
  int down_batch;    /* drain many records into one write to QEMU */
  int up_buffer;     /* bytes read from QEMU per TLS write (sealed: per batch of records) */
  int sealed;        /* the sending direction seals its own records after the head exchange (see sealer) */
  int key_update_records; /* sealed: records under one key before a KeyUpdate */
  int key_update_requested; /* sealed: our KeyUpdates ask the peer to update too (tests) */
  int open;          /* the receiving direction opens its own records after the head exchange (see opener) */
} cfg = {
    .listen_port = 0,
    .max_connections = 1,
    .socket_uid = -1,
    .socket_gid = -1,
    .handshake_timeout_ms = 15000,
    .linger_ms = 5000,
    .write_batch = 4 * (16384 + 256),
    .down_batch = 1,
    .up_buffer = UP_BUFFER,
    .sealed = 1,
    /* Far below AES-GCM's 2^24.5 full records per key (RFC 8446 5.5): 64 GiB per key. */
    .key_update_records = 1 << 22,
    .open = 1,
};

static SSL_CTX *ctx;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static int admitted;      /* destination: connections that passed every check */
static int unsettled;     /* connections in their handshake */
static atomic_llong total_from_qemu, total_to_qemu;
static int signal_pipe[2];
static struct stat bound; /* source: the socket file we made; removed at exit only if it is still ours */
static int settled_pipe[2];

static void die(const char *fmt, ...);
static void on_keylog(const SSL *ssl, const char *line);
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg);
static int sealer_index = -1;

/* ---- JSON output ---- */

struct text {
  char *p;
  size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = (t->cap == 0 ? 256 : t->cap);
    while (t->len + n + 1 > cap) cap *= 2;
    char *p = realloc(t->p, cap);
    if (p == NULL) abort();
    t->p = p;
    t->cap = cap;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
  t->p[t->len] = 0;
}

static void puts_(struct text *t, const char *s) { put(t, s, strlen(s)); }

static void putf(struct text *t, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) put(t, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* JSON.stringify of the latin1 string `s` (as Node decodes HTTP head bytes), UTF-8 encoded. */
static void put_json_latin1(struct text *t, const unsigned char *s, size_t n) {
  put(t, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    char esc[8];
    switch (c) {
      case '"': put(t, "\\\"", 2); break;
      case '\\': put(t, "\\\\", 2); break;
      case '\b': put(t, "\\b", 2); break;
      case '\f': put(t, "\\f", 2); break;
      case '\n': put(t, "\\n", 2); break;
      case '\r': put(t, "\\r", 2); break;
      case '\t': put(t, "\\t", 2); break;
      default:
        if (c < 0x20) {
          snprintf(esc, sizeof esc, "\\u%04x", c);
          put(t, esc, 6);
        } else if (c >= 0x80) {
          esc[0] = (char)(0xc0 | (c >> 6));
          esc[1] = (char)(0x80 | (c & 0x3f));
          put(t, esc, 2);
        } else {
          put(t, (const char *)&c, 1);
        }
    }
  }
  put(t, "\"", 1);
}

/* JSON string of UTF-8 text (certificate names, messages we build): escapes only what JSON needs. */
static void put_json(struct text *t, const char *s) {
  put(t, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      put(t, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      put(t, esc, 6);
    } else {
      put(t, (const char *)p, 1);
    }
  }
  put(t, "\"", 1);
}

static void emit(struct text *t) {
  put(t, "\n", 1);
  pthread_mutex_lock(&out_lock);
  size_t off = 0;
  while (off < t->len) {
    ssize_t n = write(1, t->p + off, t->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += (size_t)n;
  }
  pthread_mutex_unlock(&out_lock);
  free(t->p);
  t->p = NULL;
  t->len = t->cap = 0;
}

static void die(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  struct text t = {0};
  puts_(&t, "{\"type\":\"error\",\"reason\":");
  put_json(&t, buf);
  puts_(&t, "}");
  emit(&t);
  exit(1);
}

static void openssl_error(char *buf, size_t size) {
  unsigned long e = ERR_get_error();
  if (e == 0) {
    snprintf(buf, size, "%s", "connection closed");
    return;
  }
  ERR_error_string_n(e, buf, size);
  ERR_clear_error();
}

/* ---- stdin configuration ---- */

static char *read_all(int fd, size_t *len) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n + 1 >= cap) {
      if (cap > 16 * MAX_FIELD) die("configuration on stdin is too large");
      cap *= 2;
      buf = realloc(buf, cap);
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("cannot read the configuration: %s", strerror(errno));
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

static int to_int(const char *name, const char *v, long min, long max) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno != 0 || *v == 0 || *end != 0 || x < min || x > max) die("configuration %s: bad number %s", name, v);
  return (int)x;
}

static void read_config(void) {
  size_t len;
  char *all = read_all(0, &len);
  size_t i = 0;
  while (i < len) {
    char *nl = memchr(all + i, '\n', len - i);
    if (nl == NULL) die("configuration: a record without its length line");
    *nl = 0;
    char *space = strchr(all + i, ' ');
    if (space == NULL) die("configuration: bad record header");
    *space = 0;
    const char *name = all + i;
    long n = strtol(space + 1, NULL, 10);
    size_t start = (size_t)(nl - all) + 1;
    if (n < 0 || n > MAX_FIELD || start + (size_t)n + 1 > len) die("configuration %s: bad length", name);
    char *value = strndup(all + start, (size_t)n);
    i = start + (size_t)n + 1;
    if (!strcmp(name, "mode")) cfg.destination = !strcmp(value, "destination");
    else if (!strcmp(name, "ca")) cfg.ca = value;
    else if (!strcmp(name, "cert")) cfg.cert = value;
    else if (!strcmp(name, "key")) cfg.key = value;
    else if (!strcmp(name, "crl")) cfg.crl = value;
    else if (!strcmp(name, "ciphers")) cfg.ciphers = value;
    else if (!strcmp(name, "migration_id")) cfg.migration_id = value;
    else if (!strcmp(name, "token")) cfg.token = value;
    else if (!strcmp(name, "peer_cn")) cfg.peer_cn = value;
    else if (!strcmp(name, "tunnel_roles")) cfg.tunnel_roles = value;
    else if (!strcmp(name, "listen_host")) cfg.listen_host = value;
    else if (!strcmp(name, "listen_port")) cfg.listen_port = to_int(name, value, 0, 65535);
    else if (!strcmp(name, "target_path")) cfg.target_path = value;
    else if (!strcmp(name, "max_connections")) cfg.max_connections = to_int(name, value, 1, 1024);
    else if (!strcmp(name, "listen_path")) cfg.listen_path = value;
    else if (!strcmp(name, "socket_uid")) cfg.socket_uid = to_int(name, value, 0, 1 << 30);
    else if (!strcmp(name, "socket_gid")) cfg.socket_gid = to_int(name, value, 0, 1 << 30);
    else if (!strcmp(name, "remote_host")) cfg.remote_host = value;
    else if (!strcmp(name, "remote_port")) cfg.remote_port = to_int(name, value, 1, 65535);
    else if (!strcmp(name, "handshake_timeout_ms")) cfg.handshake_timeout_ms = to_int(name, value, 100, 600000);
    else if (!strcmp(name, "linger_ms")) cfg.linger_ms = to_int(name, value, 0, 600000);
    else if (!strcmp(name, "write_batch")) cfg.write_batch = to_int(name, value, 0, 16 << 20);
    else if (!strcmp(name, "cork")) cfg.cork = to_int(name, value, 0, 1);
    else if (!strcmp(name, "down_batch")) cfg.down_batch = to_int(name, value, 0, 1);
    else if (!strcmp(name, "up_buffer")) cfg.up_buffer = to_int(name, value, 16384, 4 << 20);
    else if (!strcmp(name, "sealed")) cfg.sealed = to_int(name, value, 0, 1);
    else if (!strcmp(name, "key_update_records")) cfg.key_update_records = to_int(name, value, 1, 1 << 23);
    else if (!strcmp(name, "key_update_requested")) cfg.key_update_requested = to_int(name, value, 0, 1);
    else if (!strcmp(name, "open")) cfg.open = to_int(name, value, 0, 1);
    else die("configuration: unknown record %s", name);
  }
  OPENSSL_cleanse(all, len);
  free(all);
  const char *missing = cfg.ca == NULL ? "ca" : cfg.cert == NULL ? "cert" : cfg.key == NULL ? "key"
                        : cfg.migration_id == NULL ? "migration_id" : cfg.token == NULL ? "token"
                        : cfg.peer_cn == NULL ? "peer_cn" : NULL;
  if (missing == NULL && cfg.destination)
    missing = cfg.listen_host == NULL ? "listen_host" : cfg.target_path == NULL ? "target_path" : NULL;
  if (missing == NULL && !cfg.destination)
    missing = cfg.listen_path == NULL ? "listen_path" : cfg.remote_host == NULL ? "remote_host"
              : cfg.remote_port == 0 ? "remote_port" : NULL;
  if (missing != NULL) die("configuration: %s is missing", missing);
  if (cfg.tunnel_roles == NULL) cfg.tunnel_roles = strdup("host");
  if (strlen(cfg.token) == 0) die("configuration: empty token");
}

/* ---- TLS context ---- */

static BIO *mem_bio(const char *pem) { return BIO_new_mem_buf(pem, -1); }

static void setup_tls(void) {
  ctx = SSL_CTX_new(cfg.destination ? TLS_server_method() : TLS_client_method());
  if (ctx == NULL) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (cfg.ciphers != NULL && SSL_CTX_set_ciphersuites(ctx, cfg.ciphers) != 1)
    die("bad TLS 1.3 cipher suites %s", cfg.ciphers);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);
  /* What the sealed send path needs to know of each connection (struct sealer). */
  sealer_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  SSL_CTX_set_keylog_callback(ctx, on_keylog);
  SSL_CTX_set_msg_callback(ctx, on_message);

  BIO *b = mem_bio(cfg.cert);
  X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
  if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1) die("cannot use the certificate");
  X509_free(leaf);
  X509 *extra;
  while ((extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) SSL_CTX_add0_chain_cert(ctx, extra);
  ERR_clear_error();
  BIO_free(b);
  b = mem_bio(cfg.key);
  EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  BIO_free(b);
  if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
    die("cannot use the private key");
  EVP_PKEY_free(key);
  OPENSSL_cleanse(cfg.key, strlen(cfg.key));

  /* Only the deployment CA: no system roots. */
  X509_STORE *store = X509_STORE_new();
  b = mem_bio(cfg.ca);
  X509 *ca;
  int cas = 0;
  while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    X509_STORE_add_cert(store, ca);
    X509_free(ca);
    cas++;
  }
  ERR_clear_error();
  BIO_free(b);
  if (cas == 0) die("no CA certificate in the configuration");
  if (cfg.crl != NULL && cfg.crl[0] != 0) {
    b = mem_bio(cfg.crl);
    X509_CRL *crl;
    int crls = 0;
    while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
      X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      crls++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (crls == 0) die("the CRL is not a PEM certificate revocation list");
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  SSL_CTX_set_cert_store(ctx, store);
  SSL_CTX_set_verify(ctx, cfg.destination ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     NULL);
}

/* Node's names of certificate verification errors (node_crypto's X509_ERROR_CODE_MAPPINGS). */
static const char *verify_code(long v) {
  switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return "UNABLE_TO_GET_ISSUER_CERT";
    case X509_V_ERR_UNABLE_TO_GET_CRL: return "UNABLE_TO_GET_CRL";
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE: return "UNABLE_TO_DECRYPT_CERT_SIGNATURE";
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE: return "UNABLE_TO_DECRYPT_CRL_SIGNATURE";
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "CERT_SIGNATURE_FAILURE";
    case X509_V_ERR_CRL_SIGNATURE_FAILURE: return "CRL_SIGNATURE_FAILURE";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
    case X509_V_ERR_CRL_NOT_YET_VALID: return "CRL_NOT_YET_VALID";
    case X509_V_ERR_CRL_HAS_EXPIRED: return "CRL_HAS_EXPIRED";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "CERT_CHAIN_TOO_LONG";
    case X509_V_ERR_CERT_REVOKED: return "CERT_REVOKED";
    case X509_V_ERR_INVALID_CA: return "INVALID_CA";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return "PATH_LENGTH_EXCEEDED";
    case X509_V_ERR_INVALID_PURPOSE: return "INVALID_PURPOSE";
    case X509_V_ERR_CERT_UNTRUSTED: return "CERT_UNTRUSTED";
    case X509_V_ERR_CERT_REJECTED: return "CERT_REJECTED";
    default: return X509_verify_cert_error_string(v);
  }
}

/* The one value of a subject field, as UTF-8; NULL when it is absent or repeated (like commonNameOf, roleOf). */
static char *only_entry(X509_NAME *name, int nid) {
  int at = X509_NAME_get_index_by_NID(name, nid, -1);
  if (at < 0 || X509_NAME_get_index_by_NID(name, nid, at) >= 0) return NULL;
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
  if (n < 0) return NULL;
  char *out = strndup((char *)utf8, (size_t)n);
  OPENSSL_free(utf8);
  return out;
}

struct peer {
  char *cn;   /* "" when absent */
  char *role; /* NULL when absent or not a vmferry role */
};

static void peer_of(SSL *ssl, struct peer *p) {
  p->cn = NULL;
  p->role = NULL;
  X509 *cert = SSL_get0_peer_certificate(ssl);
  if (cert != NULL && SSL_get_verify_result(ssl) == X509_V_OK) {
    X509_NAME *subject = X509_get_subject_name(cert);
    p->cn = only_entry(subject, NID_commonName);
    char *ou = only_entry(subject, NID_organizationalUnitName);
    if (ou != NULL && (!strcmp(ou, "host") || !strcmp(ou, "operator") || !strcmp(ou, "viewer") ||
                       !strcmp(ou, "metrics")))
      p->role = ou;
    else
      free(ou);
  }
  if (p->cn == NULL) p->cn = strdup("");
}

static int role_may_tunnel(const char *role) {
  if (role == NULL) return 0;
  char *roles = strdup(cfg.tunnel_roles), *save = NULL;
  int ok = 0;
  for (char *r = strtok_r(roles, ",", &save); r != NULL; r = strtok_r(NULL, ",", &save))
    if (!strcmp(r, role)) ok = 1;
  free(roles);
  return ok;
}

/* ---- time and non-blocking I/O ---- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Waits for `events` on fd until `deadline`; 0 on timeout. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

/* Drives an SSL call that may want I/O until it completes or `deadline` passes. */
static int ssl_wait(SSL *ssl, int r, long long deadline) {
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ) return wait_fd(SSL_get_fd(ssl), POLLIN, deadline) ? 1 : -2;
  if (e == SSL_ERROR_WANT_WRITE) return wait_fd(SSL_get_fd(ssl), POLLOUT, deadline) ? 1 : -2;
  return -1;
}

/* Writes all of `s` on a TLS connection (refusals, requests, the 101): 0 on success. */
static int ssl_write_all(SSL *ssl, const char *s, size_t n, long long deadline) {
  size_t off = 0;
  while (off < n) {
    int r = SSL_write(ssl, s + off, (int)(n - off));
    if (r > 0) {
      off += (size_t)r;
      continue;
    }
    if (ssl_wait(ssl, r, deadline) != 1) return -1;
  }
  BIO *w = SSL_get_wbio(ssl);
  while (BIO_flush(w) != 1) {
    if (!BIO_should_retry(w) || !wait_fd(SSL_get_fd(ssl), POLLOUT, deadline)) return -1;
  }
  return 0;
}

/* Puts a buffering BIO before the socket: several TLS records leave in one write(2). */
static void batch_records(SSL *ssl, int fd) {
  BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE);
  if (!cfg.write_batch) {
    SSL_set_bio(ssl, sock, sock);
    return;
  }
  BIO *buffer = BIO_new(BIO_f_buffer());
  BIO_set_write_buffer_size(buffer, cfg.write_batch);
  BIO_push(buffer, sock);
  BIO_up_ref(sock);
  SSL_set_bio(ssl, sock, buffer);
}

/* ---- the sealed send path ---- */

/*
 * After the head exchange the sending direction leaves OpenSSL's record layer: QEMU's
 * stream is read straight into record-shaped slots of one buffer, each TLS 1.3 record
 * is sealed in place (RFC 8446 5.2) and a batch of them leaves in one write(2), so no
 * byte is copied between QEMU's socket and the TCP socket. OpenSSL keeps the handshake
 * (and the receiving direction when the open path is off). Its write BIO then goes nowhere:
 * OpenSSL 3.0 answers a peer's KeyUpdate with update_requested from inside SSL_read, and
 * that answer is sent
 * from here instead, under our sequence; any other record OpenSSL writes (an alert)
 * fails the connection rather than desynchronise it.
 */
#define RECORD_HEADER 5
#define RECORD_PLAIN 16384
#define RECORD_TAG 16
#define RECORD_SLOT (RECORD_HEADER + RECORD_PLAIN + 1 + RECORD_TAG)
#define KEY_UPDATE_RECORD (RECORD_HEADER + 5 + 1 + RECORD_TAG)
#define ALERT_RECORD (RECORD_HEADER + 2 + 1 + RECORD_TAG)
/* Room before the first slot for a KeyUpdate record, so it leaves in the same write. */
#define CONTROL_ROOM 64

struct sealer {
  /* Seen through the callbacks during the handshake and the head exchange. */
  unsigned char secret[EVP_MAX_MD_SIZE]; /* our application traffic secret */
  size_t secret_len;
  long long records_before; /* application-data records OpenSSL wrote: our first sequence number */
  int openssl_updated;      /* OpenSSL wrote a KeyUpdate or a ticket: the secret or the count is not ours */
  int update_owed;          /* the peer asked for a KeyUpdate (update_requested) */
  int taken;                /* from here on every record of this direction is ours */
  int openssl_wrote;        /* OpenSSL wrote something other than a KeyUpdate after the takeover */
  /* After the takeover. */
  EVP_CIPHER_CTX *aead;
  const EVP_MD *md;
  const char *cipher_name;
  size_t key_len;
  unsigned char iv[12];
  uint64_t seq;
  long long under_key; /* records sealed under the current key */
  long long key_updates;
  /* The receiving direction (the open receive path), seen through the same callbacks. */
  unsigned char peer_secret[EVP_MAX_MD_SIZE]; /* the peer's application traffic secret */
  size_t peer_secret_len;
  long long records_read; /* records OpenSSL opened since the handshake: the peer's next sequence number */
  int peer_updated;       /* OpenSSL read a KeyUpdate: the peer's secret is no longer the one we saw */
  int opened;             /* from here on every record of the peer is opened here */
  EVP_CIPHER_CTX *open_aead;
  unsigned char read_iv[12];
  uint64_t read_seq;
  long long key_updates_received;
};

static int unhex(const char *s, size_t n, unsigned char *out) {
  for (size_t i = 0; i < n; i++) {
    int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]), lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return 1;
}

/*
 * The keylog lines of both application traffic secrets, ours (sending) and the peer's
 * (receiving): "<LABEL> <client random> <secret>", hex. Kept in memory only.
 */
static void on_keylog(const SSL *ssl, const char *line) {
  struct sealer *s = SSL_get_ex_data(ssl, sealer_index);
  static const char server[] = "SERVER_TRAFFIC_SECRET_0 ", client[] = "CLIENT_TRAFFIC_SECRET_0 ";
  size_t label_len = sizeof server - 1;
  if (s == NULL) return;
  int sending;
  if (strncmp(line, server, label_len) == 0) sending = SSL_is_server(ssl);
  else if (strncmp(line, client, label_len) == 0) sending = !SSL_is_server(ssl);
  else return;
  unsigned char *secret = sending ? s->secret : s->peer_secret;
  size_t *secret_len = sending ? &s->secret_len : &s->peer_secret_len;
  const char *random_hex = line + label_len, *space = strchr(random_hex, ' ');
  unsigned char random[SSL3_RANDOM_SIZE], ours[SSL3_RANDOM_SIZE];
  if (space == NULL || space - random_hex != 2 * SSL3_RANDOM_SIZE || !unhex(random_hex, SSL3_RANDOM_SIZE, random))
    return;
  if (SSL_get_client_random(ssl, ours, sizeof ours) != sizeof ours || CRYPTO_memcmp(random, ours, sizeof ours) != 0)
    return;
  size_t hex_len = strlen(space + 1);
  if (hex_len % 2 != 0 || hex_len / 2 > sizeof s->secret || !unhex(space + 1, hex_len / 2, secret)) return;
  *secret_len = hex_len / 2;
}

/* Counts the records OpenSSL writes and notices the post-handshake messages that change keys. */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                       void *arg) {
  struct sealer *s = SSL_get_ex_data(ssl, sealer_index);
  const unsigned char *b = buf;
  if (s == NULL) return;
  if (!write_p) {
    /* Every record OpenSSL decrypts; reset when the handshake ends (handshake_done). */
    if (content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1) s->records_read++;
    if (content_type == SSL3_RT_HANDSHAKE && len >= 5 && b[0] == SSL3_MT_KEY_UPDATE) {
      s->peer_updated = 1;
      if (b[4] == SSL_KEY_UPDATE_REQUESTED) s->update_owed = 1;
    }
  } else if (s->taken) {
    /* Into the null BIO: OpenSSL's own answer to a KeyUpdate request becomes ours; anything else is lost. */
    if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && b[0] == SSL3_MT_KEY_UPDATE) s->update_owed = 1;
    else if (content_type == SSL3_RT_HANDSHAKE || content_type == SSL3_RT_ALERT ||
             (content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 && b[0] == SSL3_RT_APPLICATION_DATA))
      s->openssl_wrote = 1;
  } else if (content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 && b[0] == SSL3_RT_APPLICATION_DATA) {
    s->records_before++;
  } else if (content_type == SSL3_RT_HANDSHAKE && len >= 1 &&
             (b[0] == SSL3_MT_KEY_UPDATE || b[0] == SSL3_MT_NEWSESSION_TICKET)) {
    s->openssl_updated = 1;
  }
}

/* HKDF-Expand-Label(secret, label, "", out_len) of RFC 8446 7.1. */
static int expand_label(const EVP_MD *md, const unsigned char *secret, size_t secret_len, const char *label,
                        unsigned char *out, size_t out_len) {
  unsigned char info[2 + 1 + 255 + 1];
  size_t label_len = strlen(label);
  info[0] = (unsigned char)(out_len >> 8);
  info[1] = (unsigned char)out_len;
  info[2] = (unsigned char)(6 + label_len);
  memcpy(info + 3, "tls13 ", 6);
  memcpy(info + 9, label, label_len);
  info[9 + label_len] = 0; /* empty context */
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
  EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0),
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + label_len),
      OSSL_PARAM_construct_end(),
  };
  int ok = kctx != NULL && EVP_KDF_derive(kctx, out, out_len, params) == 1;
  EVP_KDF_CTX_free(kctx);
  EVP_KDF_free(kdf);
  return ok;
}

/* Key and IV of `secret` (RFC 8446 7.3), the key into the AEAD context. */
static int derive_key(const struct sealer *s, const unsigned char *secret, EVP_CIPHER_CTX *aead, unsigned char *iv,
                      int encrypt) {
  unsigned char key[32];
  int ok = expand_label(s->md, secret, s->secret_len, "key", key, s->key_len) &&
           expand_label(s->md, secret, s->secret_len, "iv", iv, 12) &&
           EVP_CipherInit_ex(aead, NULL, NULL, key, NULL, encrypt) == 1;
  OPENSSL_cleanse(key, sizeof key);
  return ok;
}

static int install_key(struct sealer *s) {
  s->seq = 0;
  s->under_key = 0;
  return derive_key(s, s->secret, s->aead, s->iv, 1);
}

/* The peer's next secret (a KeyUpdate it sent, RFC 8446 7.2), its key and IV, sequence 0. */
static int update_read_key(struct sealer *s) {
  unsigned char next[EVP_MAX_MD_SIZE];
  int ok = expand_label(s->md, s->peer_secret, s->secret_len, "traffic upd", next, s->secret_len);
  memcpy(s->peer_secret, next, s->secret_len);
  OPENSSL_cleanse(next, sizeof next);
  s->read_seq = 0;
  return ok && derive_key(s, s->peer_secret, s->open_aead, s->read_iv, 0);
}

/*
 * Takes the sending direction over from OpenSSL: NULL when done, else why it stays on
 * SSL_write (the sealed path off, a suite without an AEAD we seal, a secret not seen).
 */
static const char *take_over(SSL *ssl, struct sealer *s) {
  if (!cfg.sealed) return "off";
  const SSL_CIPHER *suite = SSL_get_current_cipher(ssl);
  const char *name;
  switch (suite != NULL ? SSL_CIPHER_get_protocol_id(suite) : 0) {
    case 0x1301: name = "AES-128-GCM"; s->key_len = 16; break;
    case 0x1302: name = "AES-256-GCM"; s->key_len = 32; break;
    case 0x1303: name = "ChaCha20-Poly1305"; s->key_len = 32; break;
    default: return "a TLS 1.3 suite the relay does not seal";
  }
  s->cipher_name = name;
  s->md = SSL_CIPHER_get_handshake_digest(suite);
  if (s->md == NULL || s->secret_len == 0 || s->secret_len != (size_t)EVP_MD_get_size(s->md))
    return "no traffic secret";
  if (s->openssl_updated) return "OpenSSL updated its keys";
  if (BIO_wpending(SSL_get_wbio(ssl)) > 0) return "records still buffered";
  EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, name, NULL);
  s->aead = EVP_CIPHER_CTX_new();
  int ok = cipher != NULL && s->aead != NULL && EVP_EncryptInit_ex(s->aead, cipher, NULL, NULL, NULL) == 1 &&
           install_key(s);
  EVP_CIPHER_free(cipher);
  if (!ok) return "the AEAD cannot be set up";
  s->seq = (uint64_t)s->records_before;
  s->taken = 1;
  SSL_set0_wbio(ssl, BIO_new(BIO_s_null())); /* frees the buffering BIO; the socket stays the read BIO */
  return NULL;
}

/*
 * Takes the receiving direction over from OpenSSL, at a record boundary: NULL when done,
 * else why it stays on SSL_read. Read-ahead is off until here, so with nothing pending
 * OpenSSL holds no byte of the peer's stream.
 */
static const char *open_over(SSL *ssl, struct sealer *s) {
  if (!cfg.open) return "off";
  if (!s->taken) return "the send path is not sealed";
  if (s->peer_secret_len == 0 || s->peer_secret_len != s->secret_len) return "no traffic secret of the peer";
  if (s->peer_updated) return "OpenSSL updated the peer's keys";
  if (SSL_has_pending(ssl)) return "OpenSSL holds bytes of the peer";
  EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, s->cipher_name, NULL);
  s->open_aead = EVP_CIPHER_CTX_new();
  int ok = cipher != NULL && s->open_aead != NULL && EVP_DecryptInit_ex(s->open_aead, cipher, NULL, NULL, NULL) == 1 &&
           derive_key(s, s->peer_secret, s->open_aead, s->read_iv, 0);
  EVP_CIPHER_free(cipher);
  if (!ok) return "the AEAD cannot be set up";
  s->read_seq = (uint64_t)s->records_read;
  s->opened = 1;
  return NULL;
}

static void sealer_end(struct sealer *s) {
  EVP_CIPHER_CTX_free(s->aead);
  s->aead = NULL;
  EVP_CIPHER_CTX_free(s->open_aead);
  s->open_aead = NULL;
  OPENSSL_cleanse(s->secret, sizeof s->secret);
  OPENSSL_cleanse(s->iv, sizeof s->iv);
  OPENSSL_cleanse(s->peer_secret, sizeof s->peer_secret);
  OPENSSL_cleanse(s->read_iv, sizeof s->read_iv);
}

/*
 * Seals the record at `rec` whose `len` bytes of plaintext already sit at rec + 5, in
 * place: inner content type, AEAD with nonce iv ^ seq and the header as additional
 * data, tag. Returns the record's size, 0 if the AEAD failed.
 */
static size_t seal_record(struct sealer *s, unsigned char *rec, size_t len, unsigned char type) {
  size_t inner = len + 1, size = RECORD_HEADER + inner + RECORD_TAG;
  unsigned char nonce[12];
  int n;
  rec[RECORD_HEADER + len] = type;
  rec[0] = SSL3_RT_APPLICATION_DATA;
  rec[1] = 3;
  rec[2] = 3;
  rec[3] = (unsigned char)((inner + RECORD_TAG) >> 8);
  rec[4] = (unsigned char)(inner + RECORD_TAG);
  memcpy(nonce, s->iv, sizeof nonce);
  for (int i = 0; i < 8; i++) nonce[4 + i] ^= (unsigned char)(s->seq >> (56 - 8 * i));
  unsigned char *body = rec + RECORD_HEADER;
  if (EVP_EncryptInit_ex(s->aead, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate(s->aead, NULL, &n, rec, RECORD_HEADER) != 1 ||
      EVP_EncryptUpdate(s->aead, body, &n, body, (int)inner) != 1 || (size_t)n != inner ||
      EVP_EncryptFinal_ex(s->aead, body + inner, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(s->aead, EVP_CTRL_AEAD_GET_TAG, RECORD_TAG, body + inner) != 1)
    return 0;
  s->seq++;
  s->under_key++;
  return size;
}

/* A KeyUpdate record at `rec` under the current key, then the next key (RFC 8446 4.6.3, 7.2). */
static int key_update(struct sealer *s, unsigned char *rec) {
  unsigned char *m = rec + RECORD_HEADER;
  m[0] = SSL3_MT_KEY_UPDATE;
  m[1] = 0;
  m[2] = 0;
  m[3] = 1;
  /* An answer to the peer's request must not ask again (RFC 8446 4.6.3). */
  m[4] = cfg.key_update_requested && !s->update_owed ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
  if (seal_record(s, rec, 5, SSL3_RT_HANDSHAKE) != KEY_UPDATE_RECORD) return 0;
  unsigned char next[EVP_MAX_MD_SIZE];
  int ok = expand_label(s->md, s->secret, s->secret_len, "traffic upd", next, s->secret_len);
  memcpy(s->secret, next, s->secret_len);
  OPENSSL_cleanse(next, sizeof next);
  s->update_owed = 0;
  s->key_updates++;
  return ok && install_key(s);
}

/* close_notify (RFC 8446 6.1) at `rec`. */
static int close_notify(struct sealer *s, unsigned char *rec) {
  rec[RECORD_HEADER] = SSL3_AL_WARNING;
  rec[RECORD_HEADER + 1] = SSL_AD_CLOSE_NOTIFY;
  return seal_record(s, rec, 2, SSL3_RT_ALERT) == ALERT_RECORD;
}

/* ---- the open receive path ---- */

/*
 * After the head exchange the receiving direction leaves OpenSSL's record layer too:
 * one large recv from the TCP socket, each complete record checked and decrypted in
 * place (RFC 8446 5.2: outer type application_data, legacy version 0x0303, length
 * 17..2^14+256, nonce iv ^ seq, the header as additional data), its tag verified before
 * any byte of it is used, and the data of many records leaves for QEMU in one writev
 * pointing into the buffer. Inner types: data for QEMU, close_notify (the end), a
 * KeyUpdate (the peer's next key; an answer owed to update_requested goes to the sealed
 * send path); anything else fails the connection, and nothing from the failing record
 * on reaches QEMU.
 */
#define RECORD_CIPHERTEXT_MAX (RECORD_PLAIN + 256)
#define RECORD_MAX (RECORD_HEADER + RECORD_CIPHERTEXT_MAX)
#define OPEN_IOV 256
#define WHY_SIZE 160

struct opened_in {
  struct sealer *sealer;
  unsigned char *buf;
  size_t cap;
  size_t head;       /* the next record to open */
  size_t len;        /* bytes received */
  struct iovec iov[OPEN_IOV]; /* opened data waiting for QEMU: iov[first, count) */
  int first, count;
  int eof;           /* close_notify opened */
  char *why;         /* WHY_SIZE bytes that outlive relay(): the reason it returns */
};

/* Opens the record at `rec` with `inner` bytes of ciphertext and its tag after them, in place. */
static int open_record(struct sealer *s, unsigned char *rec, size_t inner) {
  unsigned char nonce[12];
  int n;
  memcpy(nonce, s->read_iv, sizeof nonce);
  for (int i = 0; i < 8; i++) nonce[4 + i] ^= (unsigned char)(s->read_seq >> (56 - 8 * i));
  unsigned char *body = rec + RECORD_HEADER;
  if (EVP_DecryptInit_ex(s->open_aead, NULL, NULL, NULL, nonce) != 1 ||
      EVP_DecryptUpdate(s->open_aead, NULL, &n, rec, RECORD_HEADER) != 1 ||
      EVP_DecryptUpdate(s->open_aead, body, &n, body, (int)inner) != 1 || (size_t)n != inner ||
      EVP_CIPHER_CTX_ctrl(s->open_aead, EVP_CTRL_AEAD_SET_TAG, RECORD_TAG, body + inner) != 1 ||
      EVP_DecryptFinal_ex(s->open_aead, body + inner, &n) != 1)
    return 0;
  s->read_seq++;
  return 1;
}

/* Opens every complete record from in->head while there is room to queue its data: NULL, or why the connection fails. */
static const char *open_records(struct opened_in *in) {
  struct sealer *s = in->sealer;
  while (!in->eof && in->count < OPEN_IOV) {
    size_t avail = in->len - in->head;
    if (avail < RECORD_HEADER) return NULL;
    unsigned char *rec = in->buf + in->head;
    size_t length = (size_t)rec[3] << 8 | rec[4];
    if (rec[0] != SSL3_RT_APPLICATION_DATA || rec[1] != 3 || rec[2] != 3) {
      snprintf(in->why, WHY_SIZE, "bad record: type %d, version 0x%02x%02x, not TLS 1.3 application_data",
               rec[0], rec[1], rec[2]);
      return in->why;
    }
    if (length > RECORD_CIPHERTEXT_MAX) {
      snprintf(in->why, WHY_SIZE, "record overflow: a TLS record of %zu bytes", length);
      return in->why;
    }
    if (length < 1 + RECORD_TAG) {
      snprintf(in->why, WHY_SIZE, "bad record: a TLS record of %zu bytes, shorter than its tag", length);
      return in->why;
    }
    if (avail < RECORD_HEADER + length) return NULL;
    size_t inner = length - RECORD_TAG;
    if (inner > RECORD_PLAIN + 1) {
      snprintf(in->why, WHY_SIZE, "record overflow: %zu bytes of plaintext in a TLS record", inner);
      return in->why;
    }
    if (!open_record(s, rec, inner)) return "bad record MAC: a TLS record from the peer did not authenticate";
    in->head += RECORD_HEADER + length;
    unsigned char *body = rec + RECORD_HEADER;
    size_t n = inner;
    while (n > 0 && body[n - 1] == 0) n--;
    if (n == 0) return "unexpected message: a TLS record without a content type";
    unsigned char type = body[--n];
    if (type == SSL3_RT_APPLICATION_DATA) {
      if (n > 0) in->iov[in->count++] = (struct iovec){body, n};
    } else if (type == SSL3_RT_ALERT) {
      if (n != 2) return "unexpected message: a malformed TLS alert";
      if (body[1] != SSL_AD_CLOSE_NOTIFY) {
        snprintf(in->why, WHY_SIZE, "the peer sent TLS alert %d (%s)", body[1],
                 SSL_alert_desc_string_long(body[1]));
        return in->why;
      }
      in->eof = 1;
    } else if (type == SSL3_RT_HANDSHAKE) {
      /* Only a KeyUpdate, alone in its record: no handshake message may span a key change. */
      if (n != 5 || body[0] != SSL3_MT_KEY_UPDATE || body[1] != 0 || body[2] != 0 || body[3] != 1 ||
          (body[4] != SSL_KEY_UPDATE_NOT_REQUESTED && body[4] != SSL_KEY_UPDATE_REQUESTED))
        return "unexpected message: a TLS handshake message other than KeyUpdate after the handshake";
      if (body[4] == SSL_KEY_UPDATE_REQUESTED) s->update_owed = 1;
      if (!update_read_key(s)) return "updating the peer's TLS key failed";
      s->key_updates_received++;
    } else {
      snprintf(in->why, WHY_SIZE, "unexpected message: a TLS record of content type %d", type);
      return in->why;
    }
  }
  return NULL;
}

/* Makes room at the buffer's end once QEMU has taken every opened byte. */
static void open_compact(struct opened_in *in) {
  if (in->first < in->count) return;
  in->first = in->count = 0;
  if (in->head == in->len) {
    in->head = in->len = 0;
  } else if (in->cap - in->len < RECORD_MAX) {
    memmove(in->buf, in->buf + in->head, in->len - in->head);
    in->len -= in->head;
    in->head = 0;
  }
}

/* ---- the relay loop ---- */

struct counters {
  long long from_qemu, to_qemu;
  int sealed;            /* the sending direction sealed its own records */
  long long key_updates; /* KeyUpdates the sealed path sent */
  int opened;            /* the receiving direction opened its own records */
  long long key_updates_received; /* KeyUpdates the open path applied */
  char why[WHY_SIZE];             /* the open path's reason when it failed the connection */
};

/* Sealed records waiting to leave: records[start, end) of a buffer of `slots` record slots. */
struct sealed_out {
  struct sealer *sealer;
  unsigned char *records;
  int slots;
  size_t start, end;
};

#define SLOT(o, i) ((o)->records + CONTROL_ROOM + (size_t)(i) * RECORD_SLOT)

/*
 * One readv from QEMU straight into the slots' plaintext, each record sealed in place;
 * a KeyUpdate goes first when one is due. >0: bytes read; 0: QEMU ended; <0: errno.
 */
static ssize_t read_and_seal(int plain, struct sealed_out *o) {
  struct sealer *s = o->sealer;
  int due = s->update_owed || s->under_key >= cfg.key_update_records;
  long long room = due ? cfg.key_update_records : cfg.key_update_records - s->under_key;
  int slots = room < o->slots ? (int)room : o->slots;
  struct iovec iov[slots];
  for (int i = 0; i < slots; i++) iov[i] = (struct iovec){SLOT(o, i) + RECORD_HEADER, RECORD_PLAIN};
  ssize_t n = readv(plain, iov, slots);
  if (n <= 0) return n < 0 ? -errno : 0;
  o->start = o->end = CONTROL_ROOM;
  if (due) {
    o->start -= KEY_UPDATE_RECORD;
    if (!key_update(s, o->records + o->start)) return -EPROTO;
  }
  for (size_t done = 0, i = 0; done < (size_t)n; i++) {
    size_t len = (size_t)n - done < RECORD_PLAIN ? (size_t)n - done : RECORD_PLAIN;
    size_t size = seal_record(s, SLOT(o, i), len, SSL3_RT_APPLICATION_DATA);
    if (size == 0) return -EPROTO;
    o->end += size; /* only the last slot can be short, so the records are contiguous */
    done += len;
  }
  return n;
}

/*
 * Relays plain <-> TLS until both directions have ended, or either fails.
 * An end on one side is passed on (close_notify and FIN, or FIN to QEMU); after
 * the first end the other direction has linger_ms to finish.
 */
static const char *relay(int plain, SSL *ssl, struct counters *c) {
  int net = SSL_get_fd(ssl);
  struct sealed_out out = {.sealer = SSL_get_ex_data(ssl, sealer_index), .slots = cfg.up_buffer / RECORD_PLAIN};
  int sealed = out.sealer != NULL && take_over(ssl, out.sealer) == NULL;
  BIO *wbio = SSL_get_wbio(ssl);
  c->sealed = sealed;
  if (sealed) out.records = malloc(CONTROL_ROOM + (size_t)out.slots * RECORD_SLOT);
  char *up = sealed ? NULL : malloc((size_t)cfg.up_buffer);
  char *down = malloc(DOWN_BUFFER);
  struct opened_in in = {.sealer = out.sealer, .buf = (unsigned char *)down, .cap = DOWN_BUFFER, .why = c->why};
  int opened = sealed && open_over(ssl, out.sealer) == NULL;
  if (!opened) SSL_set_read_ahead(ssl, 1);
  c->opened = opened;
  size_t down_cap = cfg.down_batch ? DOWN_BUFFER : 16 * 1024;
  size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
  int plain_eof = 0, tls_eof = 0, plain_shut = 0;
  int closing = 0; /* 1: close_notify to send, 2: sent (perhaps still buffered), 3: FIN sent */
  int write_wants = 0, read_wants = 0; /* POLLIN/POLLOUT an SSL call or a sealed write is waiting for */
  int corked = 0;
  long long linger_until = 0;
  const char *error = NULL;

  for (;;) {
    int progress = 1;
    while (progress && error == NULL) {
      progress = 0;
      if (sealed) {
        /* QEMU -> TLS, sealed here: read a batch of records, seal them, one write */
        if (out.start == out.end && !plain_eof) {
          ssize_t n = read_and_seal(plain, &out);
          if (n > 0) {
            c->from_qemu += n;
            atomic_fetch_add(&total_from_qemu, n);
            progress = 1;
          } else if (n == 0) {
            plain_eof = 1;
            out.end = CONTROL_ROOM;
            out.start = out.end - ALERT_RECORD;
            if (!close_notify(out.sealer, out.records + out.start)) error = "sealing a TLS record failed";
            closing = 2;
            progress = 1;
          } else if (n == -EPROTO) {
            error = "sealing a TLS record failed";
          } else if (n != -EAGAIN && n != -EINTR) {
            error = "QEMU's connection failed";
          }
        }
        if (out.start < out.end && error == NULL) {
          write_wants = 0;
          ssize_t n = write(net, out.records + out.start, out.end - out.start);
          if (n > 0) {
            out.start += (size_t)n;
            if (out.start == out.end) out.start = out.end = 0;
            progress = 1;
          } else if (n < 0 && errno == EAGAIN) {
            write_wants = POLLOUT;
          } else if (n < 0 && errno != EINTR) {
            error = "the tunnel connection failed";
          }
        }
        if (closing == 2 && out.start == out.end && error == NULL) {
          closing = 3;
          shutdown(net, SHUT_WR);
          progress = 1;
        }
      } else {
        /* QEMU -> TLS through OpenSSL: one large read, one SSL_write of it (several records) */
        if (up_off == up_len && !plain_eof) {
          ssize_t n = read(plain, up, (size_t)cfg.up_buffer);
          if (n > 0) {
            up_len = (size_t)n;
            up_off = 0;
            progress = 1;
            if (cfg.cork && !corked) {
              int one = 1;
              setsockopt(net, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
              corked = 1;
            }
          } else if (n == 0) {
            plain_eof = 1;
            closing = 1;
            progress = 1;
          } else if (errno != EAGAIN && errno != EINTR) {
            error = "QEMU's connection failed";
          }
        }
        if (up_off < up_len) {
          write_wants = 0;
          int r = SSL_write(ssl, up + up_off, (int)(up_len - up_off));
          if (r > 0) {
            up_off += (size_t)r;
            c->from_qemu += r;
            atomic_fetch_add(&total_from_qemu, r);
            if (up_off == up_len) up_off = up_len = 0;
            progress = 1;
          } else {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) write_wants = POLLOUT;
            else if (e == SSL_ERROR_WANT_READ) write_wants = POLLIN;
            else error = "the tunnel connection failed";
          }
        }
        if (closing == 1 && up_len == 0 && error == NULL) {
          write_wants = 0;
          int r = SSL_shutdown(ssl);
          if (r >= 0) {
            closing = 2;
            progress = 1;
          } else {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) write_wants = POLLOUT;
            else if (e == SSL_ERROR_WANT_READ) write_wants = POLLIN;
            else closing = 2;
          }
        }
        if (up_len == 0 && BIO_wpending(wbio) > 0 && error == NULL) {
          if (BIO_flush(wbio) == 1) progress = 1;
          else if (!BIO_should_retry(wbio)) error = "the tunnel connection failed";
        }
        if (closing == 2 && BIO_wpending(wbio) == 0 && error == NULL) {
          closing = 3;
          shutdown(net, SHUT_WR);
          progress = 1;
        }
      }
      if (opened) {
        read_wants = 0;
        /* TLS -> QEMU, opened here: one recv, every complete record opened in place, one writev */
        if (!tls_eof && error == NULL) {
          error = open_records(&in);
          open_compact(&in);
          if (error == NULL && !in.eof && in.count < OPEN_IOV && in.len < in.cap) {
            read_wants = 0;
            ssize_t n = recv(net, in.buf + in.len, in.cap - in.len, 0);
            if (n > 0) {
              in.len += (size_t)n;
              progress = 1;
              error = open_records(&in);
            } else if (n == 0) {
              /* The end without close_notify, like SSL_OP_IGNORE_UNEXPECTED_EOF; inside a record, not. */
              if (in.len > in.head) error = "the tunnel connection ended inside a TLS record";
              in.eof = 1;
              progress = 1;
            } else if (errno == EAGAIN) {
              read_wants = POLLIN;
            } else if (errno != EINTR) {
              error = "the tunnel connection failed";
            }
          }
          if (in.eof && error == NULL) {
            tls_eof = 1;
            progress = 1;
          }
        }
        if (in.first < in.count && error == NULL) {
          ssize_t n = writev(plain, in.iov + in.first, in.count - in.first);
          if (n > 0) {
            c->to_qemu += n;
            atomic_fetch_add(&total_to_qemu, n);
            for (size_t left = (size_t)n; left > 0;) {
              struct iovec *v = &in.iov[in.first];
              if (left >= v->iov_len) {
                left -= v->iov_len;
                in.first++;
              } else {
                v->iov_base = (char *)v->iov_base + left;
                v->iov_len -= left;
                left = 0;
              }
            }
            open_compact(&in);
            progress = 1;
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            error = "QEMU's connection failed";
          }
        }
        down_len = in.first < in.count; /* what the shutdown and poll below wait on */
      }
      /* TLS -> QEMU through OpenSSL: as many records as fit, then one write */
      while (!opened && !tls_eof && down_len < down_cap && error == NULL) {
        read_wants = 0;
        int r = SSL_read(ssl, down + down_len, (int)(down_cap - down_len));
        if (r > 0) {
          down_len += (size_t)r;
          progress = 1;
          continue;
        }
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN) {
          tls_eof = 1;
          progress = 1;
        } else if (e == SSL_ERROR_WANT_READ) {
          read_wants = POLLIN;
        } else if (e == SSL_ERROR_WANT_WRITE) {
          if (sealed) error = "OpenSSL wanted to write on the direction the relay seals";
          else read_wants = POLLOUT;
        } else {
          error = "the tunnel connection failed";
        }
        break;
      }
      if (sealed && out.sealer->openssl_wrote && error == NULL)
        error = "OpenSSL wrote a TLS record (an alert) on the direction the relay seals";
      if (!opened && down_off < down_len && error == NULL) {
        ssize_t n = write(plain, down + down_off, down_len - down_off);
        if (n > 0) {
          down_off += (size_t)n;
          c->to_qemu += n;
          atomic_fetch_add(&total_to_qemu, n);
          if (down_off == down_len) down_off = down_len = 0;
          progress = 1;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          error = "QEMU's connection failed";
        }
      }
      if (tls_eof && down_len == 0 && !plain_shut) {
        plain_shut = 1;
        shutdown(plain, SHUT_WR);
        progress = 1;
      }
    }
    if (corked) {
      int zero = 0;
      setsockopt(net, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
      corked = 0;
    }
    if (error != NULL) break;
    if (closing == 3 && plain_shut) break;
    if ((plain_eof || tls_eof) && linger_until == 0) linger_until = now_ms() + cfg.linger_ms;
    /* Only sockets something waits on: a hung-up socket polled for nothing would spin. */
    int up_idle = sealed ? out.start == out.end : up_len == 0;
    short plain_events = (short)((!plain_eof && up_idle ? POLLIN : 0) | (down_len > 0 ? POLLOUT : 0));
    short net_events = (short)(write_wants | read_wants | (BIO_wpending(wbio) > 0 ? POLLOUT : 0));
    struct pollfd p[2] = {{.fd = plain_events ? plain : -1, .events = plain_events},
                          {.fd = net_events ? net : -1, .events = net_events}};
    int timeout = -1;
    if (linger_until != 0) {
      long long left = linger_until - now_ms();
      if (left <= 0) break;
      timeout = (int)left;
    }
    if (poll(p, 2, timeout) < 0 && errno != EINTR) {
      error = "poll failed";
      break;
    }
  }
  if (sealed) {
    c->key_updates = out.sealer->key_updates;
    c->key_updates_received = out.sealer->key_updates_received;
    sealer_end(out.sealer);
  }
  free(out.records);
  free(up);
  free(down);
  ERR_clear_error();
  return error;
}

/* ---- events ---- */

static void event_closed(const char *role, const struct counters *c, const char *error, int index) {
  struct text t = {0};
  putf(&t, "{\"type\":\"tunnel-connection-closed\",\"role\":\"%s\",\"migrationId\":", role);
  put_json(&t, cfg.migration_id);
  putf(&t, ",\"bytesFromQemu\":%lld,\"bytesToQemu\":%lld", c->from_qemu, c->to_qemu);
  if (index >= 0) putf(&t, ",\"index\":%d", index);
  putf(&t, ",\"sendPath\":\"%s\",\"keyUpdatesSent\":%lld", c->sealed ? "sealed" : "ssl-write", c->key_updates);
  putf(&t, ",\"receivePath\":\"%s\",\"keyUpdatesReceived\":%lld", c->opened ? "opened" : "ssl-read",
       c->key_updates_received);
  if (error != NULL) {
    puts_(&t, ",\"error\":");
    put_json(&t, error);
  }
  puts_(&t, "}");
  emit(&t);
}

static void event_opened(const char *role, int index) {
  struct text t = {0};
  putf(&t, "{\"type\":\"tunnel-connection-opened\",\"role\":\"%s\",\"migrationId\":", role);
  put_json(&t, cfg.migration_id);
  if (index >= 0) putf(&t, ",\"index\":%d", index);
  puts_(&t, "}");
  emit(&t);
}

/* ---- destination ---- */

struct conn {
  int fd;
  int index;
  char remote[80];
};

static const char *status_text(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    default: return "Error";
  }
}

static const char *code_of(int status) {
  switch (status) {
    case 400: return "VMF_ERR_USAGE";
    case 403: return "VMF_ERR_AUTH";
    case 404: return "VMF_ERR_NOT_FOUND";
    case 429: return "VMF_ERR_LIMIT";
    default: return "VMF_ERR_PEER";
  }
}

/* refusal() of tunnel-policy.ts: the status, `{code, message}` and Connection: close. */
static void refuse(SSL *ssl, int status, const char *message, long long deadline) {
  struct text body = {0};
  putf(&body, "{\"code\":\"%s\",\"message\":", code_of(status));
  put_json(&body, message);
  puts_(&body, "}\n");
  struct text all = {0};
  putf(&all,
       "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
       status, status_text(status), body.len);
  put(&all, body.p, body.len);
  if (ssl_write_all(ssl, all.p, all.len, deadline) == 0) {
    SSL_shutdown(ssl);
    BIO_flush(SSL_get_wbio(ssl));
  }
  free(body.p);
  free(all.p);
}

static void event_refused(const char *migration_id, int status, const char *reason, const char *cn,
                          const char *remote) {
  struct text t = {0};
  puts_(&t, "{\"type\":\"tunnel-refused\"");
  if (migration_id != NULL) {
    puts_(&t, ",\"migrationId\":");
    put_json(&t, migration_id);
  }
  putf(&t, ",\"status\":%d,\"reason\":", status);
  put_json(&t, reason);
  puts_(&t, ",\"peerCommonName\":");
  put_json(&t, cn);
  puts_(&t, ",\"remoteAddress\":");
  put_json(&t, remote);
  puts_(&t, "}");
  emit(&t);
}

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

struct request {
  const char *target;
  size_t target_len;
  const char *upgrade;
  size_t upgrade_len;
  int has_upgrade;
  const char *token;
  size_t token_len;
  int tokens;
};

/* Parses an HTTP/1.1 request head (without its final CRLF CRLF); 0 when it is not one. */
static int parse_head(char *head, size_t len, struct request *r) {
  memset(r, 0, sizeof *r);
  char *end = head + len;
  char *line_end = memmem(head, len, "\r\n", 2);
  if (line_end == NULL) line_end = end;
  char *p = head;
  while (p < line_end && is_tchar((unsigned char)*p)) p++;
  if (p == head || p >= line_end || *p != ' ') return 0;
  char *target = ++p;
  while (p < line_end && *p != ' ') {
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) return 0;
    p++;
  }
  if (p == target || p >= line_end) return 0;
  r->target = target;
  r->target_len = (size_t)(p - target);
  p++;
  if (line_end - p != 8 || (memcmp(p, "HTTP/1.1", 8) && memcmp(p, "HTTP/1.0", 8))) return 0;
  p = line_end;
  while (p < end) {
    p += 2;
    char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (eol == NULL) eol = end;
    char *colon = p;
    while (colon < eol && is_tchar((unsigned char)*colon)) colon++;
    if (colon == p || colon >= eol || *colon != ':') return 0;
    size_t name_len = (size_t)(colon - p);
    char *v = colon + 1, *v_end = eol;
    for (char *q = v; q < v_end; q++)
      if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f) return 0;
    while (v < v_end && (*v == ' ' || *v == '\t')) v++;
    while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
    if (name_len == 7 && !strncasecmp(p, "upgrade", 7) && !r->has_upgrade) {
      r->has_upgrade = 1;
      r->upgrade = v;
      r->upgrade_len = (size_t)(v_end - v);
    } else if (name_len == 15 && !strncasecmp(p, "x-vmferry-token", 15)) {
      r->tokens++;
      r->token = v;
      r->token_len = (size_t)(v_end - v);
    }
    p = eol;
  }
  return 1;
}

static int tokens_equal(const char *given, size_t given_len) {
  /* Compared as SHA-256 digests: constant time whatever the lengths. */
  unsigned char a[32], b[32];
  EVP_Digest(given, given_len, a, NULL, EVP_sha256(), NULL);
  EVP_Digest(cfg.token, strlen(cfg.token), b, NULL, EVP_sha256(), NULL);
  return CRYPTO_memcmp(a, b, 32) == 0;
}

static int valid_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._~-", c) != NULL;
}

static void connect_error(char *buf, size_t size, int err, const char *path) {
  const char *name = err == ENOENT ? "ENOENT" : err == ECONNREFUSED ? "ECONNREFUSED" : err == EACCES ? "EACCES"
                     : err == EAGAIN ? "EAGAIN" : strerror(err);
  snprintf(buf, size, "cannot connect to the destination QEMU: connect %s %s", name, path);
}

static void *destination_connection(void *arg) {
  struct conn *cn = arg;
  int fd = cn->fd;
  long long deadline = now_ms() + cfg.handshake_timeout_ms;
  SSL *ssl = SSL_new(ctx);
  struct sealer sealer = {0};
  SSL_set_ex_data(ssl, sealer_index, &sealer);
  SSL_set_read_ahead(ssl, 0); /* until the open path takes over at a record boundary (open_over) */
  batch_records(ssl, fd);
  SSL_set_accept_state(ssl);
  struct peer peer = {0};
  char *head = malloc(MAX_HEAD + 1);
  size_t got = 0;
  int settled = 0;
  for (;;) {
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
      sealer.records_read = 0; /* the handshake's records were under the handshake keys */
      break;
    }
    int w = ssl_wait(ssl, r, deadline);
    if (w == 1) continue;
    char why[256], reason[512];
    long v = SSL_get_verify_result(ssl);
    if (w == -2) snprintf(why, sizeof why, "TLS handshake timeout");
    else openssl_error(why, sizeof why);
    if (v != X509_V_OK)
      snprintf(reason, sizeof reason, "%s (client certificate: %s)", why, verify_code(v));
    else
      snprintf(reason, sizeof reason, "%s", why);
    struct text t = {0};
    puts_(&t, "{\"type\":\"tls-handshake-failed\",\"reason\":");
    put_json(&t, reason);
    puts_(&t, ",\"remoteAddress\":");
    put_json(&t, cn->remote);
    puts_(&t, "}");
    emit(&t);
    goto done;
  }
  peer_of(ssl, &peer);
  /* The request head: at most MAX_HEAD bytes, within the same deadline. */
  char *end = NULL;
  for (;;) {
    int r = SSL_read(ssl, head + got, (int)(MAX_HEAD + 1 - got));
    if (r > 0) {
      got += (size_t)r;
      end = memmem(head, got, "\r\n\r\n", 4);
      if (end != NULL) break;
      if (got > MAX_HEAD) {
        refuse(ssl, 400, "not an HTTP/1.1 request: headers too large", deadline);
        goto done;
      }
      continue;
    }
    int w = ssl_wait(ssl, r, deadline);
    if (w != 1) goto done; /* closed, failed or timed out before a whole request: nothing to answer */
  }
  struct request req;
  size_t head_len = (size_t)(end - head);
  if (!parse_head(head, head_len, &req)) {
    refuse(ssl, 400, "not an HTTP/1.1 request: malformed", deadline);
    goto done;
  }
  /* decideTunnelRequest, in its order. */
  struct text reason = {0};
  int status = 0;
  char id[129];
  id[0] = 0;
  if (!req.has_upgrade || req.upgrade_len != 14 || strncasecmp(req.upgrade, "vmferry-tunnel", 14)) {
    puts_(&reason, "unsupported upgrade ");
    if (req.has_upgrade) put_json_latin1(&reason, (const unsigned char *)req.upgrade, req.upgrade_len);
    else puts_(&reason, "undefined");
    status = 400;
  } else {
    size_t path_len = req.target_len;
    const char *q = memchr(req.target, '?', req.target_len);
    if (q != NULL) path_len = (size_t)(q - req.target);
    size_t prefix = strlen("/v1/tunnel/");
    int ok = path_len > prefix && path_len - prefix <= 128 && !memcmp(req.target, "/v1/tunnel/", prefix);
    for (size_t i = prefix; ok && i < path_len; i++) ok = valid_id_char(req.target[i]);
    if (!ok) {
      puts_(&reason, "no tunnel endpoint ");
      put_json_latin1(&reason, (const unsigned char *)req.target, req.target_len);
      status = 404;
    } else {
      memcpy(id, req.target + prefix, path_len - prefix);
      id[path_len - prefix] = 0;
      status = 403;
      if (!role_may_tunnel(peer.role)) {
        puts_(&reason, peer.role != NULL ? peer.role : "a certificate without a role");
        puts_(&reason, " ");
        put_json(&reason, peer.cn);
        puts_(&reason, " may not open tunnels (");
        for (const char *r = cfg.tunnel_roles; *r; r++) {
          if (*r == ',') puts_(&reason, ", ");
          else put(&reason, r, 1);
        }
        puts_(&reason, " only)");
      } else if (strcmp(id, cfg.migration_id) != 0) {
        putf(&reason, "migration %s has no prepared tunnel", id);
      } else if (req.tokens != 1 || !tokens_equal(req.token, req.token_len)) {
        putf(&reason, "wrong tunnel token for migration %s", id);
      } else if (strcmp(peer.cn, cfg.peer_cn) != 0) {
        puts_(&reason, "peer ");
        put_json(&reason, peer.cn);
        puts_(&reason, " is not ");
        put_json(&reason, cfg.peer_cn);
        putf(&reason, ", the peer of migration %s", id);
      } else {
        status = 0;
      }
    }
  }
  if (status != 0) {
    const char *message = status == 403 ? "tunnel refused" : reason.p;
    event_refused(NULL, status, reason.p, peer.cn, cn->remote);
    refuse(ssl, status, message, deadline);
    free(reason.p);
    goto done;
  }
  free(reason.p);
  pthread_mutex_lock(&state_lock);
  int admit = admitted < cfg.max_connections;
  if (admit) admitted++;
  pthread_mutex_unlock(&state_lock);
  if (!admit) {
    char message[256];
    snprintf(message, sizeof message, "migration %s already has all its tunnel connections", cfg.migration_id);
    event_refused(cfg.migration_id, 429, message, peer.cn, cn->remote);
    refuse(ssl, 429, message, deadline);
    goto done;
  }
  int qemu = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", cfg.target_path);
  if (connect(qemu, (struct sockaddr *)&addr, sizeof addr) != 0) {
    char message[512];
    connect_error(message, sizeof message, errno, cfg.target_path);
    close(qemu);
    event_refused(cfg.migration_id, 502, message, peer.cn, cn->remote);
    refuse(ssl, 502, message, deadline);
    goto done;
  }
  nonblocking(qemu);
  static const char switching[] =
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: vmferry-tunnel\r\n\r\n";
  if (ssl_write_all(ssl, switching, sizeof switching - 1, deadline) != 0) {
    close(qemu);
    goto done;
  }
  pthread_mutex_lock(&state_lock);
  unsettled--;
  settled = 1;
  pthread_mutex_unlock(&state_lock);
  event_opened("destination", -1);
  struct counters c = {0};
  /* Tunnel bytes that came with the request go first. */
  size_t extra = got - head_len - 4;
  const char *error = NULL;
  size_t off = 0;
  while (off < extra) {
    ssize_t n = write(qemu, end + 4 + off, extra - off);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EAGAIN && wait_fd(qemu, POLLOUT, now_ms() + cfg.handshake_timeout_ms)) continue;
    error = "QEMU's connection failed";
    break;
  }
  c.to_qemu += (long long)off;
  atomic_fetch_add(&total_to_qemu, (long long)off);
  if (error == NULL) error = relay(qemu, ssl, &c);
  close(qemu);
  event_closed("destination", &c, error, -1);
done:
  if (!settled) {
    pthread_mutex_lock(&state_lock);
    unsettled--;
    pthread_mutex_unlock(&state_lock);
  }
  free(head);
  free(peer.cn);
  free(peer.role);
  SSL_free(ssl);
  sealer_end(&sealer);
  close(fd);
  free(cn);
  OPENSSL_thread_stop();
  return NULL;
}

/* ---- source ---- */

static void event_connect_failed(int index, const char *reason) {
  struct text t = {0};
  puts_(&t, "{\"type\":\"source-connect-failed\",\"migrationId\":");
  put_json(&t, cfg.migration_id);
  putf(&t, ",\"index\":%d,\"reason\":", index);
  put_json(&t, reason);
  puts_(&t, "}");
  emit(&t);
}

static void settle(int index) {
  if (index != 0) return;
  char b = 1;
  while (write(settled_pipe[1], &b, 1) < 0 && errno == EINTR);
}

static int dial(long long deadline, char *why, size_t size) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
  char port[8];
  snprintf(port, sizeof port, "%d", cfg.remote_port);
  int e = getaddrinfo(cfg.remote_host, port, &hints, &res);
  if (e != 0) {
    snprintf(why, size, "%s", gai_strerror(e));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int r = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (r != 0 && errno == EINPROGRESS) {
    if (!wait_fd(fd, POLLOUT, deadline)) {
      snprintf(why, size, "connect timeout");
      close(fd);
      return -1;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    r = err == 0 ? 0 : -1;
    errno = err;
  }
  if (r != 0) {
    snprintf(why, size, "connect %s %s:%d", errno == ECONNREFUSED ? "ECONNREFUSED" : strerror(errno),
             cfg.remote_host, cfg.remote_port);
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void *source_connection(void *arg) {
  struct conn *cn = arg;
  int qemu = cn->fd, index = cn->index;
  long long deadline = now_ms() + cfg.handshake_timeout_ms;
  char where[300], why[512], reason[1024];
  snprintf(where, sizeof where, "%s:%d", cfg.remote_host, cfg.remote_port);
  SSL *ssl = NULL;
  struct sealer sealer = {0};
  int net = dial(deadline, why, sizeof why);
  if (net < 0) {
    snprintf(reason, sizeof reason, "tunnel connection to %s failed: %s", where, why);
    goto failed;
  }
  ssl = SSL_new(ctx);
  SSL_set_ex_data(ssl, sealer_index, &sealer);
  SSL_set_read_ahead(ssl, 0); /* until the open path takes over at a record boundary (open_over) */
  batch_records(ssl, net);
  SSL_set_connect_state(ssl);
  for (;;) {
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
      sealer.records_read = 0; /* the handshake's records were under the handshake keys */
      break;
    }
    int w = ssl_wait(ssl, r, deadline);
    if (w == 1) continue;
    long v = SSL_get_verify_result(ssl);
    if (w == -2) snprintf(why, sizeof why, "no tunnel to %s within %d ms", where, cfg.handshake_timeout_ms);
    else if (v != X509_V_OK) snprintf(why, sizeof why, "%s", verify_code(v));
    else openssl_error(why, sizeof why);
    if (w == -2) snprintf(reason, sizeof reason, "%s", why);
    else snprintf(reason, sizeof reason, "tunnel connection to %s failed: %s", where, why);
    goto failed;
  }
  struct peer peer;
  peer_of(ssl, &peer);
  if (strcmp(peer.cn, cfg.peer_cn) != 0 || peer.role == NULL || strcmp(peer.role, "host") != 0) {
    struct text t = {0};
    if (strcmp(peer.cn, cfg.peer_cn) != 0) {
      puts_(&t, "the remote agent is ");
      put_json(&t, peer.cn);
      puts_(&t, ", not ");
      put_json(&t, cfg.peer_cn);
    } else {
      puts_(&t, "the remote agent ");
      put_json(&t, peer.cn);
      puts_(&t, " has a ");
      puts_(&t, peer.role != NULL ? peer.role : "role-less");
      puts_(&t, " certificate, not a host's");
    }
    snprintf(reason, sizeof reason, "%s", t.p);
    free(t.p);
    free(peer.cn);
    free(peer.role);
    goto failed;
  }
  free(peer.cn);
  free(peer.role);
  struct text req = {0};
  putf(&req, "GET /v1/tunnel/%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: vmferry-tunnel\r\n",
       cfg.migration_id, where);
  puts_(&req, "x-vmferry-token: ");
  puts_(&req, cfg.token);
  puts_(&req, "\r\n\r\n");
  int sent = ssl_write_all(ssl, req.p, req.len, deadline);
  OPENSSL_cleanse(req.p, req.len);
  free(req.p);
  if (sent != 0) {
    snprintf(reason, sizeof reason, "%s closed the tunnel connection before accepting it", where);
    goto failed;
  }
  char *head = malloc(MAX_HEAD + 1);
  size_t got = 0;
  char *end = NULL;
  for (;;) {
    int r = SSL_read(ssl, head + got, (int)(MAX_HEAD - got));
    if (r > 0) {
      got += (size_t)r;
      head[got] = 0;
      if (end == NULL) end = memmem(head, got, "\r\n\r\n", 4);
      if (end != NULL && !strncmp(head, "HTTP/1.1 101 ", 13)) break;
      if (end != NULL) {
        /* A refusal: read its body (Content-Length, or up to the close) for the report. */
        const char *cl = strcasestr(head, "\r\nContent-Length:");
        size_t want = cl != NULL ? (size_t)atol(cl + 17) : MAX_HEAD;
        if (got - (size_t)(end + 4 - head) >= want || got >= MAX_HEAD) break;
      } else if (got >= MAX_HEAD) {
        break;
      }
      continue;
    }
    int w = ssl_wait(ssl, r, deadline);
    if (w == 1) continue;
    break;
  }
  if (end == NULL) {
    snprintf(reason, sizeof reason,
             got >= MAX_HEAD ? "%s answered the tunnel request with no HTTP reply"
                             : "%s closed the tunnel connection before accepting it",
             where);
    free(head);
    goto failed;
  }
  if (strncmp(head, "HTTP/1.1 101 ", 13) != 0) {
    int status = atoi(head + 9);
    char *body = end + 4;
    size_t blen = strlen(body);
    while (blen > 0 && (body[blen - 1] == '\n' || body[blen - 1] == '\r' || body[blen - 1] == ' ')) blen--;
    body[blen] = 0;
    snprintf(reason, sizeof reason, "%s refused the tunnel: %d %s", where, status, body);
    free(head);
    goto failed;
  }
  settle(index);
  event_opened("source", index);
  struct counters c = {0};
  nonblocking(qemu);
  const char *error = NULL;
  size_t extra = got - (size_t)(end + 4 - head), off = 0;
  while (off < extra) {
    ssize_t n = write(qemu, end + 4 + off, extra - off);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EAGAIN && wait_fd(qemu, POLLOUT, now_ms() + cfg.handshake_timeout_ms)) continue;
    error = "QEMU's connection failed";
    break;
  }
  free(head);
  c.to_qemu += (long long)off;
  atomic_fetch_add(&total_to_qemu, (long long)off);
  if (error == NULL) error = relay(qemu, ssl, &c);
  event_closed("source", &c, error, index);
  goto out;
failed:
  event_connect_failed(index, reason);
  settle(index);
out:
  if (ssl != NULL) SSL_free(ssl);
  sealer_end(&sealer);
  if (net >= 0) close(net);
  close(qemu);
  pthread_mutex_lock(&state_lock);
  unsettled--;
  pthread_mutex_unlock(&state_lock);
  free(cn);
  OPENSSL_thread_stop();
  return NULL;
}

/* ---- main ---- */

static void on_signal(int sig) {
  (void)sig;
  char b = 1;
  ssize_t r = write(signal_pipe[1], &b, 1);
  (void)r;
}

static void spawn(void *(*fn)(void *), struct conn *c) {
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  if (pthread_create(&t, &attr, fn, c) != 0) {
    close(c->fd);
    free(c);
    pthread_mutex_lock(&state_lock);
    unsettled--;
    pthread_mutex_unlock(&state_lock);
  }
  pthread_attr_destroy(&attr);
}

static int listen_tcp(void) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST},
                  *res;
  char port[8];
  snprintf(port, sizeof port, "%d", cfg.listen_port);
  if (getaddrinfo(cfg.listen_host, port, &hints, &res) != 0) die("cannot listen on %s", cfg.listen_host);
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0)
    die("cannot listen on %s:%d: %s", cfg.listen_host, cfg.listen_port, strerror(errno));
  freeaddrinfo(res);
  return fd;
}

static int listen_unix(void) {
  struct stat st;
  if (lstat(cfg.listen_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) die("socket path %s exists and is not a socket", cfg.listen_path);
    unlink(cfg.listen_path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(cfg.listen_path) >= sizeof addr.sun_path) die("socket path %s is too long", cfg.listen_path);
  strcpy(addr.sun_path, cfg.listen_path);
  /* Owner-only from the moment it exists (listenPrivate). */
  mode_t old = umask(0177);
  int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
  umask(old);
  if (r != 0 || listen(fd, 64) != 0) die("cannot listen on %s: %s", cfg.listen_path, strerror(errno));
  if (cfg.socket_uid >= 0 && chown(cfg.listen_path, (uid_t)cfg.socket_uid, (gid_t)cfg.socket_gid) != 0)
    die("cannot give %s to uid %ld: %s", cfg.listen_path, cfg.socket_uid, strerror(errno));
  lstat(cfg.listen_path, &bound);
  return fd;
}

static void describe_remote(int fd, struct sockaddr_storage *ss, char *out, size_t size) {
  (void)fd;
  char host[64] = "local socket";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) snprintf(out, size, "%s:%d", host, port);
  else snprintf(out, size, "%s", host);
}

int main(void) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  if (pipe2(signal_pipe, O_CLOEXEC) != 0 || pipe2(settled_pipe, O_CLOEXEC) != 0) die("pipe failed");
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  read_config();
  setup_tls();
  int listener = cfg.destination ? listen_tcp() : listen_unix();
  struct text t = {0};
  if (cfg.destination) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(listener, (struct sockaddr *)&ss, &len);
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    putf(&t, "{\"type\":\"ready\",\"pid\":%d,\"port\":%d,\"openssl\":", getpid(), port);
  } else {
    putf(&t, "{\"type\":\"ready\",\"pid\":%d,\"path\":", getpid());
    put_json(&t, cfg.listen_path);
    puts_(&t, ",\"openssl\":");
  }
  put_json(&t, OpenSSL_version(OPENSSL_VERSION));
  puts_(&t, "}");
  emit(&t);

  int next_index = 0, first_settled = 0;
  /* Room for the tunnel's connections and a few that are refused: nobody else needs this port. */
  int most_unsettled = cfg.destination ? cfg.max_connections + 4 : 1024;
  for (;;) {
    struct pollfd p[3] = {{.fd = signal_pipe[0], .events = POLLIN},
                          {.fd = settled_pipe[0], .events = POLLIN},
                          {.fd = listener, .events = POLLIN}};
    /* Source: the first QEMU connection is relayed end to end before the next is accepted. */
    int n = (!cfg.destination && next_index > 0 && !first_settled) ? 2 : 3;
    if (poll(p, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll failed: %s", strerror(errno));
    }
    if (p[0].revents & POLLIN) break;
    if (p[1].revents & POLLIN) {
      char b;
      if (read(settled_pipe[0], &b, 1) == 1) first_settled = 1;
    }
    if (n < 3 || !(p[2].revents & POLLIN)) continue;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(listener, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    pthread_mutex_lock(&state_lock);
    int room = unsettled < most_unsettled;
    if (room) unsettled++;
    pthread_mutex_unlock(&state_lock);
    if (!room) {
      close(fd);
      continue;
    }
    struct conn *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->index = next_index++;
    describe_remote(fd, &ss, c->remote, sizeof c->remote);
    if (cfg.destination) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      nonblocking(fd);
    }
    spawn(cfg.destination ? destination_connection : source_connection, c);
  }
  close(listener);
  /* A retry may have bound a new relay's socket at the same path meanwhile: that one is not ours. */
  struct stat now;
  if (!cfg.destination && lstat(cfg.listen_path, &now) == 0 && now.st_ino == bound.st_ino && now.st_dev == bound.st_dev)
    unlink(cfg.listen_path);
  struct text bye = {0};
  putf(&bye, "{\"type\":\"closed\",\"bytesFromQemu\":%lld,\"bytesToQemu\":%lld}", atomic_load(&total_from_qemu),
       atomic_load(&total_to_qemu));
  emit(&bye);
  _exit(0);
}
