/* fork(): what a prefork server does to the library, from C.
 *
 * A peer node runs in its own process (forked before the library is used).
 * The parent makes a node, does one remote get (a keep-alive connection to
 * the peer now exists), keeps gets and sets running on three threads and a
 * load stuck in a getter on a fourth, then forks four workers. Each worker
 * must get exactly its own values for keys the peer owns and keys the
 * parent owns (the parent serves those: a child serves nothing), must not
 * wait for the parent's stuck load, and must free what it inherited
 * quickly. Afterwards the parent keeps working and serving.
 * Each child has an alarm: a hang ends it with SIGALRM, which the parent
 * reports as a failure. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

#define WORKERS 4
#define KEYS_PER_WORKER 200

static pid_t parent_pid;
static atomic_int release_slow;
static atomic_int slow_entered;
static atomic_int stop_churn;

/* The value of `key` at the node tagged `tag` ('A' or 'B'): "<tag>:<key>". */
static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  char tag = (char)(intptr_t)ud;
  char v[128];
  if (len > 100) return CACHE_LOADER_FAILED;
  int n = snprintf(v, sizeof v, "%c:%.*s", tag, (int)len, (const char *)key);
  return cache_sink_set(sink, (const uint8_t *)v, (size_t)n, 0);
}

/* For the pool-less cache: "slow" blocks in the parent until released. */
static int32_t slow_getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  if (len == 4 && memcmp(key, "slow", 4) == 0 && getpid() == parent_pid) {
    atomic_store(&slow_entered, 1);
    while (!atomic_load(&release_slow)) usleep(1000);
  }
  return cache_sink_set(sink, key, len, 0);
}

static int get_str(cache *c, const char *key, char *out, size_t cap) {
  size_t n = 0;
  int st = cache_get_into(c, (const uint8_t *)key, strlen(key), (uint8_t *)out, cap - 1, &n);
  out[st == CACHE_OK ? n : 0] = 0;
  return st;
}

/* The n-th key with `prefix` that `url` owns, into `out`. */
static void owned_key(cache_pool *p, const char *url, const char *prefix, int n, char *out, size_t cap) {
  char owner[256];
  for (int i = 0;; i++) {
    size_t len = 0;
    snprintf(out, cap, "%s-%d", prefix, i);
    if (cache_pool_owner(p, (const uint8_t *)out, strlen(out), owner, sizeof owner, &len) != CACHE_OK) abort();
    if (strcmp(owner, url) == 0 && n-- == 0) return;
  }
}

static int expect(cache *c, const char *key, char tag) {
  char got[256], want[256];
  snprintf(want, sizeof want, "%c:%s", tag, key);
  return get_str(c, key, got, sizeof got) == CACHE_OK && strcmp(got, want) == 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the peer process ---- */

static void run_peer(int to_parent, int from_parent) {
  cache_pool *p = NULL;
  cache *c = NULL;
  if (cache_pool_new("127.0.0.1:0", NULL, &p) != CACHE_OK) _exit(10);
  if (cache_new("fork", 1 << 20, getter, (void *)(intptr_t)'B', p, &c) != CACHE_OK) _exit(11);
  const char *url = cache_pool_url(p);
  if (write(to_parent, url, strlen(url) + 1) < 0) _exit(12);
  char other[256];
  ssize_t n = read(from_parent, other, sizeof other - 1);
  if (n <= 0) _exit(13);
  other[n] = 0;
  const char *urls[2] = {other, url};
  if (cache_pool_set_peers(p, urls, 2) != CACHE_OK) _exit(14);
  char ok = 1;
  if (write(to_parent, &ok, 1) < 0) _exit(15);
  /* Serve until the parent closes the pipe. */
  while (read(from_parent, &ok, 1) > 0) {
  }
  cache_free(c);
  cache_pool_free(p);
  _exit(0);
}

/* ---- the forking parent ---- */

static cache_pool *pool;
static cache *shared_cache, *solo;
static const char *peer_url, *self_url;

static void *churn(void *arg) {
  int t = (int)(intptr_t)arg;
  char key[64];
  for (int i = 0; !atomic_load(&stop_churn); i++) {
    snprintf(key, sizeof key, "churn-%d-%d", t, i % 300);
    char owner[256];
    size_t len = 0;
    cache_pool_owner(pool, (const uint8_t *)key, strlen(key), owner, sizeof owner, &len);
    char tag = strcmp(owner, peer_url) == 0 ? 'B' : 'A';
    if (!expect(shared_cache, key, tag)) {
      fprintf(stderr, "churn: wrong value for %s\n", key);
      abort();
    }
    if (i % 7 == 0) { /* sets the value the owner's getter would give */
      char v[128];
      int n = snprintf(v, sizeof v, "%c:%s", tag, key);
      cache_set(shared_cache, (const uint8_t *)key, strlen(key), (const uint8_t *)v, (size_t)n, 0);
    }
  }
  return NULL;
}

static void *slow_get(void *arg) {
  (void)arg;
  char v[16];
  get_str(solo, "slow", v, sizeof v);
  return NULL;
}

static void child(int w) {
  alarm(getenv("FORK_ALARM") ? atoi(getenv("FORK_ALARM")) : 30);
  checks_passed = checks_failed = 0;
  char key[64];
  for (int i = 0; i < KEYS_PER_WORKER; i++) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "w%d", w);
    owned_key(pool, peer_url, prefix, i, key, sizeof key);
    CHECK(expect(shared_cache, key, 'B'));
  }
  for (int i = 0; i < 20; i++) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "p%d", w);
    owned_key(pool, self_url, prefix, i, key, sizeof key);
    CHECK(expect(shared_cache, key, 'A'));
  }
  /* The parent's load of "slow" is stuck; the child loads it itself. */
  char v[16];
  double t0 = now_s();
  CHECK_STATUS(get_str(solo, "slow", v, sizeof v), CACHE_OK);
  CHECK(strcmp(v, "slow") == 0);
  CHECK(now_s() - t0 < 1.0);
  /* A set in the child reaches the owner through the child's connections. */
  owned_key(pool, peer_url, "childset", w, key, sizeof key);
  CHECK_STATUS(cache_set(shared_cache, (const uint8_t *)key, strlen(key), (const uint8_t *)"B:x", 3, 0), CACHE_OK);
  t0 = now_s();
  cache_free(shared_cache);
  cache_free(solo);
  cache_pool_free(pool);
  double freed = now_s() - t0;
  CHECK(freed < 0.5);
  if (freed >= 0.5) fprintf(stderr, "child %d: freeing took %.3f s\n", w, freed);
  _exit(checks_failed == 0 ? 0 : 1);
}

/* A raw HTTP GET of our own server: the parent still serves after forking. */
static int http_get_contains(const char *url, const char *path, const char *want) {
  int port = atoi(strrchr(url, ':') + 1);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 0;
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  if (write(s, req, (size_t)n) != n) return 0;
  char buf[4096];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof buf - 1 && (r = read(s, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
  close(s);
  buf[got] = 0;
  return strncmp(buf, "HTTP/1.1 200", 12) == 0 && memmem(buf, got, want, strlen(want)) != NULL;
}

int main(void) {
  int to_parent[2], from_parent[2];
  if (pipe(to_parent) || pipe(from_parent)) return 2;
  pid_t peer = fork();
  if (peer == 0) {
    close(to_parent[0]);
    close(from_parent[1]);
    run_peer(to_parent[1], from_parent[0]);
  }
  close(to_parent[1]);
  close(from_parent[0]);
  parent_pid = getpid();

  char purl[256];
  ssize_t n = read(to_parent[0], purl, sizeof purl);
  CHECK(n > 0);
  if (n <= 0) return checks_report("fork");
  peer_url = purl;
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &pool), CACHE_OK);
  self_url = cache_pool_url(pool);
  CHECK_STATUS(cache_new("fork", 1 << 20, getter, (void *)(intptr_t)'A', pool, &shared_cache), CACHE_OK);
  CHECK_STATUS(cache_new("solo", 1 << 20, slow_getter, NULL, NULL, &solo), CACHE_OK);
  const char *urls[2] = {self_url, peer_url};
  CHECK_STATUS(cache_pool_set_peers(pool, urls, 2), CACHE_OK);
  CHECK(write(from_parent[1], self_url, strlen(self_url)) > 0);
  char ok;
  CHECK(read(to_parent[0], &ok, 1) == 1);

  /* One remote get: this thread now has a keep-alive connection to B. */
  char key[64];
  owned_key(pool, peer_url, "first", 0, key, sizeof key);
  CHECK(expect(shared_cache, key, 'B'));

  pthread_t churners[3], slow;
  for (int t = 0; t < 3; t++) pthread_create(&churners[t], NULL, churn, (void *)(intptr_t)t);
  pthread_create(&slow, NULL, slow_get, NULL);
  while (!atomic_load(&slow_entered)) usleep(1000);
  usleep(200 * 1000);

  pid_t kids[WORKERS];
  for (int w = 0; w < WORKERS; w++) {
    kids[w] = fork();
    if (kids[w] == 0) child(w);
  }
  for (int w = 0; w < WORKERS; w++) {
    int st = 0;
    CHECK(waitpid(kids[w], &st, 0) == kids[w]);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
      fprintf(stderr, "worker %d: %s %d\n", w, WIFSIGNALED(st) ? "killed by signal" : "exit status",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  }
  atomic_store(&stop_churn, 1);
  for (int t = 0; t < 3; t++) pthread_join(churners[t], NULL);
  atomic_store(&release_slow, 1);
  pthread_join(slow, NULL);

  /* The parent keeps working: remote and local keys, and its server. */
  for (int i = 0; i < 20; i++) {
    owned_key(pool, peer_url, "after", i, key, sizeof key);
    CHECK(expect(shared_cache, key, 'B'));
    owned_key(pool, self_url, "mine", i, key, sizeof key);
    CHECK(expect(shared_cache, key, 'A'));
  }
  owned_key(pool, self_url, "served", 0, key, sizeof key);
  char path[128], want[128];
  snprintf(path, sizeof path, "/_groupcache/fork/%s", key);
  snprintf(want, sizeof want, "A:%s", key);
  CHECK(http_get_contains(self_url, path, want));

  cache_free(shared_cache);
  cache_free(solo);
  cache_pool_free(pool);
  close(from_parent[1]);
  int st = 0;
  CHECK(waitpid(peer, &st, 0) == peer && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return checks_report("fork");
}
