/* Pool options: the builder, the environment, and that a timeout set from C
 * is the one a get waits on a silent peer; the server's limits set from C
 * and from the environment are the ones it enforces; membership from DNS
 * (peers_from) against a tiny DNS server in a thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  return cache_sink_set(sink, key, len, 0);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A peer that accepts connections (the kernel does, from the backlog) and
 * never answers. */
static int silent_peer(char *url, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  listen(fd, 64);
  getsockname(fd, (struct sockaddr *)&a, &len);
  snprintf(url, cap, "http://127.0.0.1:%d", ntohs(a.sin_port));
  return fd;
}

/* A connection to a pool's port. */
static int connect_to(const cache_pool *p) {
  int port = atoi(strrchr(cache_pool_url(p), ':') + 1);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(connect(s, (struct sockaddr *)&sin, sizeof sin) == 0);
  return s;
}

/* Seconds until the server closes `s` (reads return 0 or fail), or -1 if it
 * is still open after `wait` seconds. */
static double closed_after(int s, double wait) {
  double t0 = now_s();
  char buf[512];
  while (now_s() - t0 < wait) {
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    int left_ms = (int)((wait - (now_s() - t0)) * 1000) + 1;
    if (poll(&pfd, 1, left_ms) <= 0) continue;
    if (read(s, buf, sizeof buf) <= 0) return now_s() - t0;
  }
  return -1;
}

/* Sends `head` and then `body` (`len` bytes) on a new connection; the
 * status of the answer (0: none). */
static int status_of(const cache_pool *p, const char *head, const char *body, size_t len) {
  int s = connect_to(p);
  char resp[512] = {0};
  CHECK(write(s, head, strlen(head)) == (ssize_t)strlen(head));
  if (len) CHECK(write(s, body, len) == (ssize_t)len);
  ssize_t got = 0, r;
  while (got < (ssize_t)sizeof resp - 1 && (r = read(s, resp + got, sizeof resp - 1 - (size_t)got)) > 0) got += r;
  close(s);
  return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : 0;
}

/* Sends a GET on a new connection; the status of the answer (0: none). */
static int get_status(const cache_pool *p, const char *path) {
  char req[256];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  return status_of(p, req, NULL, 0);
}

/* Sends a batch request for `n` keys ("a", "b", ...) of `group` on a new
 * connection (the GetManyRequest written by hand: field 2, one byte each);
 * the status of the answer (0: none). */
static int batch_status(const cache_pool *p, const char *group, int n) {
  char body[64], req[256];
  size_t len = 0;
  for (int i = 0; i < n && len + 3 <= sizeof body; i++) {
    body[len++] = 0x12;
    body[len++] = 1;
    body[len++] = (char)('a' + i);
  }
  snprintf(req, sizeof req,
           "POST /_groupcache/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           "Content-Length: %zu\r\n\r\n",
           group, len);
  return status_of(p, req, body, len);
}

static void server_limits(void) {
  cache_pool_options *o = cache_pool_options_new();
  /* Out of range: refused, naming the limit. */
  CHECK_STATUS(cache_pool_options_set_server_workers(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "server_workers") != NULL);
  CHECK_STATUS(cache_pool_options_set_server_workers(o, 5000), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_max_connections(o, 2000000), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_max_body_bytes(o, 10), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_body_budget_bytes(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_max_header_bytes(o, 100), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_header_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_idle_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_body_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_server_workers(NULL, 4), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_max_batch_keys(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "max_batch_keys") != NULL);
  CHECK_STATUS(cache_pool_options_set_max_batch_keys(o, 2000000), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_max_batch_keys(NULL, 4), CACHE_INVALID_ARGUMENT);
  /* In range. */
  CHECK_STATUS(cache_pool_options_set_max_connections(o, 0), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_max_body_bytes(o, 1 << 20), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_body_budget_bytes(o, 4 << 20), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_max_header_bytes(o, 16384), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_idle_timeout_ms(o, 5000), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_body_timeout_ms(o, 1000), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_server_workers(o, 4), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_max_connections(o, 2), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_header_timeout_ms(o, 300), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_max_batch_keys(o, 3), CACHE_OK);
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p), CACHE_OK);
  cache_pool_options_free(o);
  cache *c = NULL;
  CHECK_STATUS(cache_new("lim", 1 << 20, getter, NULL, p, &c), CACHE_OK);
  /* A client that sends nothing is closed at the 300 ms head deadline. */
  int s = connect_to(p);
  double took = closed_after(s, 3);
  close(s);
  CHECK(took >= 0.2 && took < 1.5);
  if (!(took >= 0.2 && took < 1.5)) fprintf(stderr, "silent client closed after %.3f s\n", took);
  /* Two stalled clients fill max_connections 2; a third gets served, in
   * the place of the longest-waiting one. */
  int a = connect_to(p);
  CHECK(write(a, "GET /_groupcache/lim/k HTTP/1.1\r\nHost:", 38) == 38);
  usleep(20000);
  int b = connect_to(p);
  CHECK(write(b, "GET /_groupcache/lim/k HTTP/1.1\r\nHost:", 38) == 38);
  usleep(20000);
  CHECK(get_status(p, "/_groupcache/lim/third") == 200);
  /* max_batch_keys 3: a batch of 3 keys is answered, one of 4 refused. */
  CHECK(batch_status(p, "lim", 3) == 200);
  CHECK(batch_status(p, "lim", 4) == 400);
  took = closed_after(a, 0.25);
  CHECK(took >= 0 && took < 0.25); /* made room */
  close(a);
  close(b);
  cache_free(c);
  cache_pool_free(p);

  /* From the environment: out of range or malformed is refused, naming the
   * variable; a valid value is enforced. */
  setenv("GROUPCACHE_SERVER_WORKERS", "0", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_SERVER_WORKERS") != NULL);
  unsetenv("GROUPCACHE_SERVER_WORKERS");
  setenv("GROUPCACHE_BODY_BUDGET_BYTES", "lots", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_BODY_BUDGET_BYTES") != NULL);
  unsetenv("GROUPCACHE_BODY_BUDGET_BYTES");
  setenv("GROUPCACHE_MAX_BATCH_KEYS", "0", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_MAX_BATCH_KEYS") != NULL);
  setenv("GROUPCACHE_MAX_BATCH_KEYS", "2", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  CHECK_STATUS(cache_new("envb", 1 << 20, getter, NULL, p, &c), CACHE_OK);
  CHECK(batch_status(p, "envb", 2) == 200);
  CHECK(batch_status(p, "envb", 3) == 400);
  cache_free(c);
  cache_pool_free(p);
  unsetenv("GROUPCACHE_MAX_BATCH_KEYS");
  setenv("GROUPCACHE_HEADER_TIMEOUT_MS", "300", 1);
  setenv("GROUPCACHE_MAX_CONNECTIONS", "64", 1);
  setenv("GROUPCACHE_MAX_BODY_BYTES", "1048576", 1);
  setenv("GROUPCACHE_IDLE_TIMEOUT_MS", "5000", 1);
  setenv("GROUPCACHE_BODY_TIMEOUT_MS", "1000", 1);
  setenv("GROUPCACHE_MAX_HEADER_BYTES", "16384", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  s = connect_to(p);
  took = closed_after(s, 3);
  close(s);
  CHECK(took >= 0.2 && took < 1.5);
  cache_pool_free(p);
  unsetenv("GROUPCACHE_HEADER_TIMEOUT_MS");
  unsetenv("GROUPCACHE_MAX_CONNECTIONS");
  unsetenv("GROUPCACHE_MAX_BODY_BYTES");
  unsetenv("GROUPCACHE_IDLE_TIMEOUT_MS");
  unsetenv("GROUPCACHE_BODY_TIMEOUT_MS");
  unsetenv("GROUPCACHE_MAX_HEADER_BYTES");
}

/* The drain: cache_pool_free keeps the node serving for drain_ms, GET
 * /healthz answering 503 (tests/python/test_health.py and src/peers/tests/health_route.rs
 * watch the 503 from another thread); 0 is no drain. From the options and
 * from GROUPCACHE_DRAIN_MS. */
static void drain(void) {
  cache_pool_options *o = cache_pool_options_new();
  CHECK(o != NULL);
  CHECK_STATUS(cache_pool_options_set_drain_ms(NULL, 100), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_drain_ms(o, 0), CACHE_OK);
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p), CACHE_OK);
  CHECK(get_status(p, "/healthz") == 200);
  double t0 = now_s();
  cache_pool_free(p);
  CHECK(now_s() - t0 < 0.5);
  CHECK_STATUS(cache_pool_options_set_drain_ms(o, 300), CACHE_OK);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p), CACHE_OK);
  cache_pool_options_free(o);
  CHECK(get_status(p, "/healthz") == 200);
  t0 = now_s();
  cache_pool_free(p);
  CHECK(now_s() - t0 >= 0.3);

  setenv("GROUPCACHE_DRAIN_MS", "soon", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_DRAIN_MS") != NULL);
  setenv("GROUPCACHE_DRAIN_MS", "200", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  t0 = now_s();
  cache_pool_free(p);
  CHECK(now_s() - t0 >= 0.2);
  unsetenv("GROUPCACHE_DRAIN_MS");
}

/* A DNS server of a few lines on 127.0.0.1 (UDP): "nodes.dns.test" has the
 * A records 127.0.2.71 and 127.0.2.72 and no AAAA record; every other name
 * does not exist. Enough for the pool's resolver. */
struct dns_server {
  int fd;
  volatile int stop;
  int queries;
  char addr[32];
};

static size_t dns_answer(const uint8_t *q, size_t n, uint8_t *out) {
  if (n < 17) return 0;
  size_t i = 12; /* the question's name: labels up to a 0 */
  char name[256] = {0};
  size_t len = 0;
  while (i < n && q[i] != 0) {
    size_t l = q[i++];
    if (i + l > n || len + l + 1 >= sizeof name) return 0;
    if (len) name[len++] = '.';
    memcpy(name + len, q + i, l);
    len += l;
    i += l;
  }
  if (i + 5 > n) return 0;
  size_t qend = i + 5; /* the 0, type, class */
  int qtype = (q[i + 1] << 8) | q[i + 2];
  int known = strcmp(name, "nodes.dns.test") == 0;
  memcpy(out, q, qend);
  out[2] = 0x84 | (q[2] & 0x01); /* a response, authoritative, RD as asked */
  out[3] = known ? 0x00 : 0x03;  /* NOERROR or NXDOMAIN */
  out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
  size_t o = qend;
  if (known && qtype == 1) {
    out[7] = 2;
    for (int k = 0; k < 2; k++) {
      const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 2, (uint8_t)(71 + k)};
      memcpy(out + o, rr, sizeof rr);
      o += sizeof rr;
    }
  }
  return o;
}

static void *dns_serve(void *arg) {
  struct dns_server *d = arg;
  uint8_t q[512], a[600];
  while (!d->stop) {
    struct pollfd pfd = {.fd = d->fd, .events = POLLIN};
    if (poll(&pfd, 1, 50) <= 0) continue;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(d->fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
    if (n <= 0) continue;
    size_t m = dns_answer(q, (size_t)n, a);
    if (m) {
      __atomic_add_fetch(&d->queries, 1, __ATOMIC_SEQ_CST);
      sendto(d->fd, a, m, 0, (struct sockaddr *)&from, fl);
    }
  }
  return NULL;
}

static void dns_start(struct dns_server *d, pthread_t *t) {
  d->fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  CHECK(bind(d->fd, (struct sockaddr *)&a, sizeof a) == 0);
  getsockname(d->fd, (struct sockaddr *)&a, &len);
  snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", ntohs(a.sin_port));
  d->stop = 0;
  d->queries = 0;
  CHECK(pthread_create(t, NULL, dns_serve, d) == 0);
}

static void peers_from(void) {
  struct dns_server d;
  pthread_t t;
  dns_start(&d, &t);
  cache_pool_options *o = cache_pool_options_new();
  /* Bad values are refused at once, saying why. */
  CHECK_STATUS(cache_pool_options_set_peers_from(o, "dns+http://nodes.dns.test"), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "a port is needed") != NULL);
  CHECK_STATUS(cache_pool_options_set_peers_from(o, "http://nodes.dns.test:80"), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "unknown scheme") != NULL);
  CHECK_STATUS(cache_pool_options_set_peers_refresh_ms(o, 99), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_nameserver(o, "dns.example:53"), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_peers_from(NULL, "dns+http://x.y:1"), CACHE_INVALID_ARGUMENT);
  /* NULL unsets. */
  CHECK_STATUS(cache_pool_options_set_peers_from(o, NULL), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_nameserver(o, NULL), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_peers_from(o, "dns+http://nodes.dns.test:8001-8002"), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_peers_refresh_ms(o, 100), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_nameserver(o, d.addr), CACHE_OK);
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new_with_options("127.0.2.71:0", NULL, o, &p), CACHE_OK);
  cache_pool_options_free(o);
  /* The membership, found before cache_pool_new returned. */
  const char *want =
      "http://127.0.2.71:8001\nhttp://127.0.2.71:8002\nhttp://127.0.2.72:8001\nhttp://127.0.2.72:8002\n";
  char list[256];
  size_t n = 0;
  CHECK_STATUS(cache_pool_peers(p, list, 8, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == strlen(want));
  CHECK_STATUS(cache_pool_peers(p, NULL, 0, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, &n), CACHE_OK);
  CHECK(n == strlen(want) && strcmp(list, want) == 0);
  CHECK_STATUS(cache_pool_peers(p, NULL, 4, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_peers(NULL, list, sizeof list, &n), CACHE_INVALID_ARGUMENT);
  /* Both ways of setting peers: refused, saying so. */
  const char *urls[1] = {"http://127.0.2.71:8001"};
  CHECK_STATUS(cache_pool_set_peers(p, urls, 1), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "peers_from") != NULL);
  /* The counters, at the end of struct cache_stats. */
  cache *c = NULL;
  CHECK_STATUS(cache_new("dns", 1 << 20, getter, NULL, p, &c), CACHE_OK);
  cache_stats s;
  memset(&s, 0xff, sizeof s);
  CHECK_STATUS(cache_stats_get_sized(c, &s, sizeof s), CACHE_OK);
  CHECK(s.peers == 4 && s.membership_changes == 1);
  /* It keeps asking, every 100 ms. */
  int before = __atomic_load_n(&d.queries, __ATOMIC_SEQ_CST);
  usleep(450000);
  CHECK(__atomic_load_n(&d.queries, __ATOMIC_SEQ_CST) >= before + 4);
  CHECK_STATUS(cache_stats_get_sized(c, &s, sizeof s), CACHE_OK);
  CHECK(s.peers == 4 && s.membership_changes == 1);
  cache_free(c);
  cache_pool_free(p);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, &n), CACHE_CLOSED);

  /* A static pool reports its set_peers list and counts changes. */
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, &n), CACHE_OK);
  CHECK(n == 0 && list[0] == 0);
  const char *two[2] = {"http://127.0.0.1:1", "http://127.0.0.1:2"};
  CHECK_STATUS(cache_pool_set_peers(p, two, 2), CACHE_OK);
  CHECK_STATUS(cache_pool_set_peers(p, two, 2), CACHE_OK); /* the same: no change */
  CHECK_STATUS(cache_new("dns", 1 << 20, getter, NULL, p, &c), CACHE_OK);
  CHECK_STATUS(cache_stats_get_sized(c, &s, sizeof s), CACHE_OK);
  CHECK(s.peers == 2 && s.membership_changes == 1);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, &n), CACHE_OK);
  CHECK(strcmp(list, "http://127.0.0.1:1\nhttp://127.0.0.1:2\n") == 0);
  cache_free(c);
  cache_pool_free(p);

  /* The environment. */
  setenv("GROUPCACHE_PEERS_FROM", "dns+http://nodes.dns.test:8001", 1);
  setenv("GROUPCACHE_NAMESERVER", d.addr, 1);
  setenv("GROUPCACHE_PEERS_REFRESH_MS", "250", 1);
  CHECK_STATUS(cache_pool_new("127.0.2.72:0", NULL, &p), CACHE_OK);
  CHECK_STATUS(cache_pool_peers(p, list, sizeof list, &n), CACHE_OK);
  CHECK(strcmp(list, "http://127.0.2.71:8001\nhttp://127.0.2.72:8001\n") == 0);
  cache_pool_free(p);
  const struct {
    const char *var, *value, *why;
  } bad[] = {
      {"GROUPCACHE_PEERS_FROM", "dns+http://nodes.dns.test:0", "the port \"0\""},
      {"GROUPCACHE_PEERS_FROM", "", "empty"},
      {"GROUPCACHE_PEERS_REFRESH_MS", "99", "100"},
      {"GROUPCACHE_NAMESERVER", "localhost", "IP:PORT"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *keep = getenv(bad[i].var) ? strdup(getenv(bad[i].var)) : NULL;
    setenv(bad[i].var, bad[i].value, 1);
    CHECK_STATUS(cache_pool_new("127.0.2.72:0", NULL, &p), CACHE_INVALID_ARGUMENT);
    CHECK(strstr(cache_last_error(), bad[i].var) != NULL && strstr(cache_last_error(), bad[i].why) != NULL);
    setenv(bad[i].var, keep, 1);
    free(keep);
  }
  unsetenv("GROUPCACHE_PEERS_FROM");
  unsetenv("GROUPCACHE_NAMESERVER");
  unsetenv("GROUPCACHE_PEERS_REFRESH_MS");
  d.stop = 1;
  pthread_join(t, NULL);
  close(d.fd);
}

int main(void) {
  /* The builder and its checks. */
  cache_pool_options *o = cache_pool_options_new();
  CHECK(o != NULL);
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_replicas(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_base_path(o, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_timeout_ms(NULL, 5), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o, 200), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(o, 100), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_replicas(o, 50), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_base_path(o, "no-slashes"), CACHE_OK);
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_base_path(o, "/_groupcache/"), CACHE_OK);

  /* A node whose other member never answers: gets of that member's keys
   * fall back to a local load after the 200 ms timeout, not 2 s. */
  char silent_url[64];
  int fd = silent_peer(silent_url, sizeof silent_url);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p), CACHE_OK);
  cache_pool_options_free(o);
  cache_pool_options_free(NULL);
  const char *urls[2] = {cache_pool_url(p), silent_url};
  CHECK_STATUS(cache_pool_set_peers(p, urls, 2), CACHE_OK);
  cache *c = NULL;
  CHECK_STATUS(cache_new("opts", 1 << 20, getter, NULL, p, &c), CACHE_OK);
  /* Find a key the silent peer owns. */
  char key[16], owner[64];
  size_t n;
  int k = 0;
  for (; k < 1000; k++) {
    snprintf(key, sizeof key, "k%d", k);
    cache_pool_owner(p, (const uint8_t *)key, strlen(key), owner, sizeof owner, &n);
    if (strcmp(owner, silent_url) == 0) break;
  }
  CHECK(k < 1000);
  uint8_t buf[32];
  double t0 = now_s();
  CHECK_STATUS(cache_get_into(c, (const uint8_t *)key, strlen(key), buf, sizeof buf, &n), CACHE_OK);
  double took = now_s() - t0;
  CHECK(n == strlen(key) && memcmp(buf, key, n) == 0);
  CHECK(took >= 0.15 && took < 1.5);
  if (!(took >= 0.15 && took < 1.5)) fprintf(stderr, "the fallback took %.3f s\n", took);
  cache_stats s;
  cache_stats_get(c, &s);
  CHECK(s.peer_errors == 1 && s.local_loads == 1);
  cache_free(c);
  cache_pool_free(p);
  close(fd);

  /* A shared secret: signed requests work, a wrong secret is refused (so
   * the asking node loads locally), an unsigned request gets a bare 401. */
  {
    cache_pool *a = NULL, *b = NULL, *x = NULL;
    cache *ca = NULL, *cb = NULL, *cx = NULL;
    cache_pool_options *so = cache_pool_options_new();
    CHECK_STATUS(cache_pool_options_set_secret(so, ""), CACHE_INVALID_ARGUMENT);
    CHECK_STATUS(cache_pool_options_set_secret(so, "s3cret"), CACHE_OK);
    CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, so, &a), CACHE_OK);
    CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, so, &b), CACHE_OK);
    CHECK_STATUS(cache_pool_options_set_secret(so, "wrong"), CACHE_OK);
    CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, so, &x), CACHE_OK);
    cache_pool_options_free(so);
    char ua[64], ub[64], ux[64];
    snprintf(ua, sizeof ua, "%s", cache_pool_url(a));
    snprintf(ub, sizeof ub, "%s", cache_pool_url(b));
    snprintf(ux, sizeof ux, "%s", cache_pool_url(x));
    const char *ab[2] = {ua, ub}, *xb[2] = {ux, ub};
    CHECK_STATUS(cache_pool_set_peers(a, ab, 2), CACHE_OK);
    CHECK_STATUS(cache_pool_set_peers(b, ab, 2), CACHE_OK);
    CHECK_STATUS(cache_pool_set_peers(x, xb, 2), CACHE_OK);
    CHECK_STATUS(cache_new("sec", 1 << 20, getter, NULL, a, &ca), CACHE_OK);
    CHECK_STATUS(cache_new("sec", 1 << 20, getter, NULL, b, &cb), CACHE_OK);
    CHECK_STATUS(cache_new("sec", 1 << 20, getter, NULL, x, &cx), CACHE_OK);
    /* Keys b owns, asked through a (same secret) and x (wrong secret). */
    int n_b = 0;
    for (int i = 0; i < 200 && n_b < 20; i++) {
      char key[16], owner[64];
      size_t n;
      snprintf(key, sizeof key, "s%d", i);
      cache_pool_owner(a, (const uint8_t *)key, strlen(key), owner, sizeof owner, &n);
      if (strcmp(owner, ub) != 0) continue;
      cache_pool_owner(x, (const uint8_t *)key, strlen(key), owner, sizeof owner, &n);
      if (strcmp(owner, ub) != 0) continue;
      n_b++;
      CHECK_STATUS(cache_get_into(ca, (const uint8_t *)key, strlen(key), buf, sizeof buf, &n), CACHE_OK);
      CHECK_STATUS(cache_get_into(cx, (const uint8_t *)key, strlen(key), buf, sizeof buf, &n), CACHE_OK);
    }
    CHECK(n_b > 0);
    cache_stats sa, sx, sb;
    cache_stats_get(ca, &sa);
    cache_stats_get(cx, &sx);
    cache_stats_get(cb, &sb);
    CHECK(sa.peer_loads == (uint64_t)n_b && sa.peer_errors == 0 && sa.local_loads == 0);
    CHECK(sx.peer_errors == (uint64_t)n_b && sx.local_loads == (uint64_t)n_b);
    CHECK(sb.server_requests == (uint64_t)n_b); /* x's requests never reached the cache */
    /* An unsigned request straight to b's port. */
    int port = atoi(strrchr(ub, ':') + 1);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(s, (struct sockaddr *)&sin, sizeof sin) == 0);
    const char *req = "GET /_groupcache/sec/s1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(write(s, req, strlen(req)) == (ssize_t)strlen(req));
    char resp[512] = {0};
    ssize_t got = 0, r;
    while (got < (ssize_t)sizeof resp - 1 && (r = read(s, resp + got, sizeof resp - 1 - (size_t)got)) > 0) got += r;
    close(s);
    CHECK(strncmp(resp, "HTTP/1.1 401", 12) == 0);
    CHECK(strstr(resp, "s1") == NULL); /* learns nothing */
    cache_free(ca);
    cache_free(cb);
    cache_free(cx);
    cache_pool_free(a);
    cache_pool_free(b);
    cache_pool_free(x);
  }

  /* The environment: read by cache_pool_new, a malformed value refused. */
  setenv("GROUPCACHE_TIMEOUT_MS", "soon", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_TIMEOUT_MS") != NULL);
  CHECK(cache_pool_options_new() == NULL);
  setenv("GROUPCACHE_TIMEOUT_MS", "250", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  cache_pool_free(p);
  unsetenv("GROUPCACHE_TIMEOUT_MS");
  setenv("GROUPCACHE_SECRET", "", 1);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
  unsetenv("GROUPCACHE_SECRET");
  /* Numbers out of range are refused with the variable's name, never
   * wrapped or clamped (4294967346 is 2^32 + 50, which a 32-bit wrap would
   * read as 50; 0 ms was once raised to 1 ms silently). */
  {
    const struct {
      const char *var, *value;
    } bad[] = {
        {"GROUPCACHE_REPLICAS", "0"},          {"GROUPCACHE_REPLICAS", "10001"},
        {"GROUPCACHE_REPLICAS", "4294967346"}, {"GROUPCACHE_REPLICAS", "-1"},
        {"GROUPCACHE_REPLICAS", "5x"},         {"GROUPCACHE_TIMEOUT_MS", "0"},
        {"GROUPCACHE_TIMEOUT_MS", "-5"},       {"GROUPCACHE_TIMEOUT_MS", "4294967296"},
        {"GROUPCACHE_CONNECT_TIMEOUT_MS", "0"}, {"GROUPCACHE_CONNECT_TIMEOUT_MS", "1e3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      setenv(bad[i].var, bad[i].value, 1);
      p = NULL;
      CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_INVALID_ARGUMENT);
      CHECK(p == NULL);
      CHECK(strstr(cache_last_error(), bad[i].var) != NULL);
      CHECK(cache_pool_options_new() == NULL);
      CHECK(strstr(cache_last_error(), bad[i].var) != NULL);
      unsetenv(bad[i].var);
    }
    setenv("GROUPCACHE_REPLICAS", "10000", 1);
    setenv("GROUPCACHE_CONNECT_TIMEOUT_MS", "1", 1);
    CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
    cache_pool_free(p);
    unsetenv("GROUPCACHE_REPLICAS");
    unsetenv("GROUPCACHE_CONNECT_TIMEOUT_MS");
  }
  server_limits();
  drain();
  peers_from();
  return checks_report("test_options");
}
