/* Threads: single-flight across pthreads, and get/set/remove hammering a
 * cache with a getter while another thread frees it. Run under valgrind
 * and AddressSanitizer by `make test`. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

static atomic_int loads;
static atomic_int bad;

/* The value of key k is "value-of:" + k. */
static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  atomic_fetch_add(&loads, 1);
  if (len == 4 && memcmp(key, "slow", 4) == 0) usleep(200 * 1000);
  uint8_t buf[64];
  if (len > sizeof buf - 9) return CACHE_LOADER_FAILED;
  memcpy(buf, "value-of:", 9);
  memcpy(buf + 9, key, len);
  return cache_sink_set(sink, buf, len + 9, 0);
}

static cache *shared;
static pthread_barrier_t start;

static void *stampede(void *arg) {
  (void)arg;
  pthread_barrier_wait(&start);
  cache_value *v = NULL;
  if (cache_get(shared, (const uint8_t *)"slow", 4, &v) != CACHE_OK ||
      cache_value_len(v) != 13 || memcmp(cache_value_data(v), "value-of:slow", 13) != 0)
    atomic_fetch_add(&bad, 1);
  cache_value_free(v);
  return NULL;
}

static void test_stampede(void) {
  enum { N = 16 };
  pthread_t t[N];
  CHECK_STATUS(cache_new("stampede", 1 << 20, getter, NULL, NULL, &shared), CACHE_OK);
  atomic_store(&loads, 0);
  pthread_barrier_init(&start, NULL, N);
  for (int i = 0; i < N; i++) pthread_create(&t[i], NULL, stampede, NULL);
  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);
  CHECK(atomic_load(&bad) == 0);
  CHECK(atomic_load(&loads) == 1);
  cache_stats s;
  cache_stats_get(shared, &s);
  CHECK(s.loads_deduped == 1);
  CHECK(s.gets == N);
  cache_free(shared);
}

struct worker {
  int id;
  atomic_int closed_seen;
  int ops;
};

static atomic_int stop;

/* Every answer must be a documented status, and every value the right
 * one for its key: the getter's, or what some thread set for that key. */
static void *hammer(void *arg) {
  struct worker *w = arg;
  unsigned x = (unsigned)w->id * 2654435761u + 1;
  while (!atomic_load(&stop)) {
    x = x * 1103515245u + 12345u;
    char key[16];
    int klen = snprintf(key, sizeof key, "k%u", (x >> 8) % 200);
    int op = (int)((x >> 20) % 10);
    int st;
    if (op < 7) {
      cache_value *v = NULL;
      st = cache_get(shared, (const uint8_t *)key, (size_t)klen, &v);
      if (st == CACHE_OK) {
        size_t n = cache_value_len(v);
        const uint8_t *d = cache_value_data(v);
        int from_getter = n == (size_t)klen + 9 && memcmp(d, "value-of:", 9) == 0 &&
                          memcmp(d + 9, key, (size_t)klen) == 0;
        int from_set = n == (size_t)klen + 4 && memcmp(d, "set:", 4) == 0 &&
                       memcmp(d + 4, key, (size_t)klen) == 0;
        if (!from_getter && !from_set) atomic_fetch_add(&bad, 1);
        cache_value_free(v);
      }
    } else if (op < 9) {
      char val[24];
      int vlen = snprintf(val, sizeof val, "set:%s", key);
      st = cache_set(shared, (const uint8_t *)key, (size_t)klen, (const uint8_t *)val, (size_t)vlen,
                     (x & 1) ? 0 : 5);
    } else {
      st = cache_remove(shared, (const uint8_t *)key, (size_t)klen);
    }
    if (st == CACHE_CLOSED) {
      atomic_fetch_add(&w->closed_seen, 1);
    } else if (st != CACHE_OK) {
      atomic_fetch_add(&bad, 1);
      fprintf(stderr, "unexpected status %d: %s\n", st, cache_last_error());
    }
    w->ops++;
    if (atomic_load(&w->closed_seen) > 100) break;
  }
  return NULL;
}

static void test_free_while_hammered(int rounds) {
  enum { N = 4 };
  for (int r = 0; r < rounds; r++) {
    struct worker w[N];
    pthread_t t[N];
    /* A small budget, so that eviction runs under the hammering too. */
    CHECK_STATUS(cache_new("hammer", 2048, getter, NULL, NULL, &shared), CACHE_OK);
    atomic_store(&stop, 0);
    for (int i = 0; i < N; i++) {
      w[i].id = i + r * N;
      atomic_store(&w[i].closed_seen, 0);
      w[i].ops = 0;
      pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    usleep(r == 0 ? 200 * 1000 : 20 * 1000);
    cache_free(shared); /* while the workers are inside calls */
    usleep(20 * 1000);
    atomic_store(&stop, 1);
    int total_ops = 0, closed = 0;
    for (int i = 0; i < N; i++) {
      pthread_join(t[i], NULL);
      total_ops += w[i].ops;
      closed += atomic_load(&w[i].closed_seen);
    }
    CHECK(total_ops > 0);
    CHECK(closed > 0); /* everyone noticed the free as CACHE_CLOSED */
  }
  CHECK(atomic_load(&bad) == 0);
}

/* Values made on one thread, read and freed on another. */
static cache_value *handed[64];

static void *free_elsewhere(void *arg) {
  (void)arg;
  for (int i = 0; i < 64; i++) {
    if (cache_value_len(handed[i]) != 13) atomic_fetch_add(&bad, 1);
    cache_value_free(handed[i]);
    if (cache_value_data(handed[i]) != NULL) atomic_fetch_add(&bad, 1);
  }
  return NULL;
}

static void test_values_cross_threads(void) {
  CHECK_STATUS(cache_new("values", 1 << 20, getter, NULL, NULL, &shared), CACHE_OK);
  for (int i = 0; i < 64; i++)
    CHECK_STATUS(cache_get(shared, (const uint8_t *)"slow", 4, &handed[i]), CACHE_OK);
  pthread_t t;
  pthread_create(&t, NULL, free_elsewhere, NULL);
  pthread_join(t, NULL);
  CHECK(atomic_load(&bad) == 0);
  cache_free(shared);
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 20;
  test_stampede();
  test_values_cross_threads();
  test_free_while_hammered(rounds);
  return checks_report("test_threads");
}
