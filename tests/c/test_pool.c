/* Pools: three nodes in one process, as a C program would run them. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

#define NODES 3
#define KEYS 300

static atomic_int loads_per_node[NODES];
static atomic_int loads_per_key[KEYS];
static char db_version = 'a';

/* user_data is the node index. The value of key "kN" is "N:<version>". */
static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  int node = (int)(intptr_t)ud;
  atomic_fetch_add(&loads_per_node[node], 1);
  char k[32];
  if (len >= sizeof k) return CACHE_LOADER_FAILED;
  memcpy(k, key, len);
  k[len] = 0;
  if (strncmp(k, "nope", 4) == 0) return CACHE_NOT_FOUND;
  int n = atoi(k + 1);
  if (n >= 0 && n < KEYS) atomic_fetch_add(&loads_per_key[n], 1);
  char v[48];
  int vlen = snprintf(v, sizeof v, "%s:%c", k, db_version);
  return cache_sink_set(sink, (const uint8_t *)v, (size_t)vlen, 0);
}

static int get_str(cache *c, const char *key, char *out, size_t cap) {
  size_t n = 0;
  int st = cache_get_into(c, (const uint8_t *)key, strlen(key), (uint8_t *)out, cap - 1, &n);
  out[st == CACHE_OK ? n : 0] = 0;
  return st;
}

/* TLS between two nodes: a PKI made by tests/tls/make-certs.sh (run from
 * the repository's root, as make does), mutual TLS and a secret. */
static void tls_cluster(void) {
  char dir[] = "/tmp/gc-pki-XXXXXX", cmd[256], cert[128], key[128], ca[128], key2[128];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(cmd, sizeof cmd, "bash tests/tls/make-certs.sh %s", dir);
  CHECK(system(cmd) == 0);
  snprintf(cert, sizeof cert, "%s/node.pem", dir);
  snprintf(key, sizeof key, "%s/node.key", dir);
  snprintf(key2, sizeof key2, "%s/node2.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);

  cache_pool_options *o = cache_pool_options_new();
  CHECK(o != NULL);
  cache_pool *p[2] = {NULL, NULL}, *bad = NULL;
  /* A certificate without its key, and one with another key: refused. */
  CHECK_STATUS(cache_pool_options_set_tls_cert(o, cert), CACHE_OK);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &bad), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_key(o, key2), CACHE_OK);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &bad), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "node2.key") != NULL);
  CHECK_STATUS(cache_pool_options_set_tls_key(o, ""), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_key(NULL, key), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_key(o, key), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_tls_ca(o, ca), CACHE_OK);
  /* tls_server_name: checked by the setter; node.pem names localhost, so
   * the cluster below (127.0.0.1 URLs) works checked by that name. */
  CHECK_STATUS(cache_pool_options_set_tls_server_name(o, ""), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_server_name(o, "bad name"), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_server_name(NULL, "localhost"), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_tls_server_name(o, "elsewhere.example"), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_tls_server_name(o, NULL), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_tls_server_name(o, "localhost"), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_secret(o, "s"), CACHE_OK);
  /* Handshakes are slow under valgrind: no fallback load for slowness. */
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o, 30000), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(o, 30000), CACHE_OK);
  char urls_buf[2][64];
  const char *urls[2];
  cache *c[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &p[i]), CACHE_OK);
    const char *u = cache_pool_url(p[i]);
    CHECK(u != NULL && strncmp(u, "https://127.0.0.1:", 18) == 0);
    snprintf(urls_buf[i], sizeof urls_buf[i], "%s", u ? u : "");
    urls[i] = urls_buf[i];
  }
  cache_pool_options_free(o);
  const char *http_url[] = {"http://127.0.0.1:1"};
  CHECK_STATUS(cache_pool_set_peers(p[0], http_url, 1), CACHE_INVALID_ARGUMENT);
  for (int i = 0; i < 2; i++) {
    CHECK_STATUS(cache_pool_set_peers(p[i], urls, 2), CACHE_OK);
    CHECK_STATUS(cache_new("tls", 1 << 20, getter, (void *)(intptr_t)i, p[i], &c[i]), CACHE_OK);
  }
  atomic_store(&loads_per_node[0], 0);
  atomic_store(&loads_per_node[1], 0);
  char buf[64];
  int bad_gets = 0;
  for (int node = 0; node < 2; node++)
    for (int k = 0; k < 40; k++) {
      char k_[16];
      snprintf(k_, sizeof k_, "t%d", k);
      if (get_str(c[node], k_, buf, sizeof buf) != CACHE_OK || strncmp(buf, k_, strlen(k_)) != 0) bad_gets++;
    }
  CHECK(bad_gets == 0);
  /* Each key loaded once, by its owner; both answered the other over TLS. */
  CHECK(atomic_load(&loads_per_node[0]) + atomic_load(&loads_per_node[1]) == 40);
  for (int i = 0; i < 2; i++) {
    cache_stats s;
    CHECK_STATUS(cache_stats_get(c[i], &s), CACHE_OK);
    CHECK(s.server_requests > 0 && s.peer_loads > 0 && s.peer_errors == 0);
    cache_free(c[i]);
    cache_pool_free(p[i]);
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  /* getter() counted these keys too ("t5" as key 5): start main() afresh. */
  for (int k = 0; k < KEYS; k++) atomic_store(&loads_per_key[k], 0);
  for (int i = 0; i < NODES; i++) atomic_store(&loads_per_node[i], 0);
}

int main(void) {
  tls_cluster();
  cache_pool *pools[NODES];
  cache *caches[NODES];
  /* Copies: a pool's URL string is valid only until that pool is freed,
   * and node 2 is freed below while the others keep the list. */
  char url_buf[NODES][64];
  const char *urls[NODES];
  for (int i = 0; i < NODES; i++) {
    CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &pools[i]), CACHE_OK);
    const char *u = cache_pool_url(pools[i]);
    CHECK(u != NULL && strncmp(u, "http://127.0.0.1:", 17) == 0);
    snprintf(url_buf[i], sizeof url_buf[i], "%s", u ? u : "");
    urls[i] = url_buf[i];
  }
  for (int i = 0; i < NODES; i++) {
    CHECK_STATUS(cache_pool_set_peers(pools[i], urls, NODES), CACHE_OK);
    CHECK_STATUS(cache_new("users", 1 << 20, getter, (void *)(intptr_t)i, pools[i], &caches[i]), CACHE_OK);
  }
  /* A name is unique within a pool, and free again once its cache is. */
  cache *dup = NULL;
  CHECK_STATUS(cache_new("users", 1, NULL, NULL, pools[0], &dup), CACHE_ALREADY_EXISTS);
  CHECK_STATUS(cache_new("other", 1, NULL, NULL, pools[0], &dup), CACHE_OK);
  cache_free(dup);
  CHECK_STATUS(cache_new("other", 1, NULL, NULL, pools[0], &dup), CACHE_OK);
  cache_free(dup);

  /* Every node gets every key; each key is loaded exactly once, cluster-wide. */
  char buf[64], want[64];
  int bad = 0;
  for (int round = 0; round < 2; round++)
    for (int node = 0; node < NODES; node++)
      for (int k = 0; k < KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", k);
        snprintf(want, sizeof want, "k%d:a", k);
        if (get_str(caches[node], key, buf, sizeof buf) != CACHE_OK || strcmp(buf, want) != 0) bad++;
      }
  CHECK(bad == 0);
  int once = 1;
  for (int k = 0; k < KEYS; k++) once &= atomic_load(&loads_per_key[k]) == 1;
  CHECK(once);
  for (int i = 0; i < NODES; i++) CHECK(atomic_load(&loads_per_node[i]) > KEYS / 10); /* keys are spread */
  cache_stats s;
  CHECK_STATUS(cache_stats_get(caches[0], &s), CACHE_OK);
  CHECK(s.peer_loads > 0 && s.server_requests > 0 && s.peer_errors == 0);

  /* Every node names the same owner for a key, and it is one of the three. */
  int agree = 1;
  for (int k = 0; k < KEYS; k++) {
    char key[16], owner[NODES][64];
    size_t n;
    snprintf(key, sizeof key, "k%d", k);
    for (int node = 0; node < NODES; node++)
      CHECK_STATUS(cache_pool_owner(pools[node], (const uint8_t *)key, strlen(key), owner[node], 64, &n), CACHE_OK);
    agree &= strcmp(owner[0], owner[1]) == 0 && strcmp(owner[1], owner[2]) == 0;
    agree &= strcmp(owner[0], urls[0]) == 0 || strcmp(owner[0], urls[1]) == 0 || strcmp(owner[0], urls[2]) == 0;
  }
  CHECK(agree);
  size_t need = 0;
  CHECK_STATUS(cache_pool_owner(pools[0], (const uint8_t *)"k1", 2, NULL, 0, &need), CACHE_BUFFER_TOO_SMALL);
  CHECK(need == strlen(urls[0]));

  /* Not found at the owner is final everywhere. */
  for (int node = 0; node < NODES; node++)
    CHECK_STATUS(get_str(caches[node], "nope1", buf, sizeof buf), CACHE_NOT_FOUND);

  /* set on one node is seen on every node; remove makes every node reload. */
  CHECK_STATUS(cache_set(caches[1], (const uint8_t *)"k7", 2, (const uint8_t *)"seven", 5, 0), CACHE_OK);
  for (int node = 0; node < NODES; node++) {
    CHECK_STATUS(get_str(caches[node], "k7", buf, sizeof buf), CACHE_OK);
    CHECK(strcmp(buf, "seven") == 0);
  }
  db_version = 'b';
  for (int k = 0; k < 20; k++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", k);
    CHECK_STATUS(cache_remove(caches[k % NODES], (const uint8_t *)key, strlen(key)), CACHE_OK);
  }
  bad = 0;
  for (int node = 0; node < NODES; node++)
    for (int k = 0; k < 20; k++) {
      char key[16];
      snprintf(key, sizeof key, "k%d", k);
      snprintf(want, sizeof want, "k%d:b", k);
      if (get_str(caches[node], key, buf, sizeof buf) != CACHE_OK || strcmp(buf, want) != 0) bad++;
    }
  CHECK(bad == 0);

  /* Bad arguments and a taken port. */
  cache_pool *p = NULL;
  const char *bad_urls[] = {"http://127.0.0.1:1", NULL};
  const char *bad_url[] = {"not a url"};
  CHECK_STATUS(cache_pool_new(NULL, NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new("no such address", NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new(urls[0] + 7, NULL, &p), CACHE_IO); /* "127.0.0.1:PORT" is taken */
  CHECK_STATUS(cache_pool_set_peers(pools[0], bad_urls, 2), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(pools[0], bad_url, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(pools[0], NULL, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(NULL, urls, NODES), CACHE_INVALID_ARGUMENT);
  CHECK(cache_pool_url(NULL) == NULL);

  /* Kill node 2: the others still answer every key (loading locally). */
  cache_free(caches[2]);
  cache_pool_free(pools[2]);
  cache_pool_free(pools[2]); /* double free: a no-op */
  CHECK(cache_pool_url(pools[2]) == NULL);
  CHECK_STATUS(cache_pool_set_peers(pools[2], urls, NODES), CACHE_CLOSED);
  CHECK_STATUS(cache_new("late", 1, NULL, NULL, pools[2], &dup), CACHE_CLOSED);
  db_version = 'c';
  bad = 0;
  for (int k = 100; k < 160; k++) {
    char key[16];
    snprintf(key, sizeof key, "z%d", k);
    if (get_str(caches[k % 2], key, buf, sizeof buf) != CACHE_OK) bad++;
  }
  CHECK(bad == 0);
  CHECK_STATUS(cache_stats_get(caches[0], &s), CACHE_OK);
  CHECK(s.peer_errors > 0); /* some of those keys were node 2's */

  for (int i = 0; i < 2; i++) {
    cache_free(caches[i]);
    cache_pool_free(pools[i]);
  }
  return checks_report("test_pool");
}
