/* A stuck getter and the load timeout: the getter blocks on a condition
 * until released; a second thread waiting on that load gets CACHE_TIMEOUT
 * once the load is older than the timeout; a later get loads the key again,
 * and the stuck load's late result is not cached over the newer one. Once
 * with a cache_options object, once with GROUPCACHE_LOAD_TIMEOUT_MS and
 * plain cache_new. Run plain, under valgrind and under ASan by make test-c.
 *
 * The timeouts are long (about a second) because the waiter must reach the
 * load before its deadline, on a loaded machine too: one that arrives
 * after it rightly starts a load of its own instead of timing out. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int entered, released, calls;

/* The first call blocks until released and loads "stale"; later calls
 * answer at once with "fresh". */
static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  (void)key;
  (void)len;
  pthread_mutex_lock(&mu);
  int first = ++calls == 1;
  if (first) {
    entered = 1;
    pthread_cond_broadcast(&cv);
    while (!released) pthread_cond_wait(&cv, &mu);
  }
  pthread_mutex_unlock(&mu);
  const char *v = first ? "stale" : "fresh";
  return cache_sink_set(sink, (const uint8_t *)v, strlen(v), 0);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct get {
  cache *c;
  cache_status status;
  char value[16];
  char error[256];
  double took;
};

static void *get_k(void *arg) {
  struct get *g = arg;
  cache_value *v = NULL;
  double t0 = now_s();
  g->status = cache_get(g->c, (const uint8_t *)"k", 1, &v);
  g->took = now_s() - t0;
  snprintf(g->error, sizeof g->error, "%s", cache_last_error());
  if (g->status == CACHE_OK) {
    size_t n = cache_value_len(v);
    if (n >= sizeof g->value) n = sizeof g->value - 1;
    memcpy(g->value, cache_value_data(v), n);
    g->value[n] = 0;
    cache_value_free(v);
  }
  return NULL;
}

static void expect_value(cache *c, const char *want) {
  struct get g = {.c = c};
  get_k(&g);
  CHECK_STATUS(g.status, CACHE_OK);
  CHECK(strcmp(g.value, want) == 0);
}

static void stuck_scenario(cache *c, double timeout_s) {
  pthread_mutex_lock(&mu);
  entered = released = calls = 0;
  pthread_mutex_unlock(&mu);

  /* The leader: its getter is stuck. */
  struct get leader = {.c = c};
  pthread_t tl;
  pthread_create(&tl, NULL, get_k, &leader);
  pthread_mutex_lock(&mu);
  while (!entered) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);

  /* A second thread waits on that load and gives up after the timeout. */
  struct get waiter = {.c = c};
  pthread_t tw;
  pthread_create(&tw, NULL, get_k, &waiter);
  pthread_join(tw, NULL);
  CHECK_STATUS(waiter.status, CACHE_TIMEOUT);
  CHECK(strstr(waiter.error, "load timeout") != NULL);
  CHECK(waiter.took >= timeout_s / 2);
  CHECK(waiter.took < timeout_s + 30);

  /* Abandoned: a later get loads the key again, without waiting. */
  expect_value(c, "fresh");
  pthread_mutex_lock(&mu);
  CHECK(calls == 2);
  /* The stuck getter returns at last: its own caller gets what it loaded. */
  released = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(tl, NULL);
  CHECK_STATUS(leader.status, CACHE_OK);
  CHECK(strcmp(leader.value, "stale") == 0);
  /* ...and did not overwrite the newer value, which stays cached. */
  expect_value(c, "fresh");
  pthread_mutex_lock(&mu);
  CHECK(calls == 2);
  pthread_mutex_unlock(&mu);
}

int main(void) {
  alarm(120); /* a waiter pinned by the stuck load fails the test, not hangs it */
  unsetenv("GROUPCACHE_LOAD_TIMEOUT_MS");

  /* The options object: a handle, checked on every use. */
  cache_options *o = cache_options_new();
  CHECK(o != NULL);
  CHECK_STATUS(cache_options_set_load_timeout_ms(NULL, 5), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_load_timeout_ms(o, 1000), CACHE_OK);
  cache *c = NULL;
  CHECK_STATUS(cache_new_with_options("stuck", 1 << 20, getter, NULL, NULL, o, &c), CACHE_OK);
  cache_options_free(o);
  /* Freed, then freed again: a no-op, and unusable. */
  cache_options_free(o);
  cache_options_free(NULL);
  CHECK_STATUS(cache_options_set_load_timeout_ms(o, 5), CACHE_INVALID_ARGUMENT);
  cache *bad = NULL;
  CHECK_STATUS(cache_new_with_options("bad", 1 << 20, getter, NULL, NULL, o, &bad), CACHE_INVALID_ARGUMENT);
  CHECK(bad == NULL);
  stuck_scenario(c, 1.0);
  cache_free(c);

  /* The environment: plain cache_new (and NULL options) read it. */
  setenv("GROUPCACHE_LOAD_TIMEOUT_MS", "soon", 1);
  CHECK(cache_options_new() == NULL);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_LOAD_TIMEOUT_MS") != NULL);
  CHECK_STATUS(cache_new("env", 1 << 20, getter, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  setenv("GROUPCACHE_LOAD_TIMEOUT_MS", "800", 1);
  CHECK_STATUS(cache_new("env", 1 << 20, getter, NULL, NULL, &c), CACHE_OK);
  stuck_scenario(c, 0.8);
  cache_free(c);
  unsetenv("GROUPCACHE_LOAD_TIMEOUT_MS");

  return checks_report("test_load_timeout");
}
