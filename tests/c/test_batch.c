/* Batches from C: a batch getter in cache_options (chunks counted through
 * the stats), cache_get_many's per-key statuses, values and messages,
 * cache_values_alloc, concurrent misses without a batch getter (a barrier
 * only concurrent getter calls pass), the new options and their
 * environment variables, and bad arguments. Run plain, under valgrind and
 * under ASan by make test-c. */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "groupcache.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int batch_calls;
static size_t largest_call;
static cache_batch_sink *kept_sink;
/* What went wrong inside batch getter calls (which may run on the
 * library's threads, where CHECK's counters must not be touched). */
static int getter_errors;

static int starts_with(const uint8_t *k, size_t len, const char *prefix) {
  size_t n = strlen(prefix);
  return len >= n && memcmp(k, prefix, n) == 0;
}

/* "no*" keys are left unset, "bad*" failed alone; a call with a "down" key
 * fails as a whole; the others get "v:" + key. */
static int32_t batch_getter(void *ud, const uint8_t *const *keys, const size_t *lens, size_t n,
                            cache_batch_sink *sink) {
  size_t i;
  int bad = ud != (void *)&batch_calls;
  int32_t status = CACHE_OK;
  /* Misuse is refused, never a crash. */
  bad |= cache_batch_sink_set(sink, n, (const uint8_t *)"x", 1, 0) != CACHE_INVALID_ARGUMENT;
  bad |= cache_batch_sink_fail(sink, 0, NULL) != CACHE_INVALID_ARGUMENT;
  bad |= cache_batch_sink_set(NULL, 0, (const uint8_t *)"x", 1, 0) != CACHE_INVALID_ARGUMENT;
  bad |= cache_batch_sink_set(sink, 0, NULL, 3, 0) != CACHE_INVALID_ARGUMENT;
  for (i = 0; i < n && status == CACHE_OK; i++) {
    char v[64];
    if (starts_with(keys[i], lens[i], "down") || lens[i] > 32) {
      status = CACHE_LOADER_FAILED;
    } else if (starts_with(keys[i], lens[i], "no")) {
      continue;
    } else if (starts_with(keys[i], lens[i], "bad")) {
      bad |= cache_batch_sink_fail(sink, i, "bad row") != CACHE_OK;
    } else {
      memcpy(v, "v:", 2);
      memcpy(v + 2, keys[i], lens[i]);
      bad |= cache_batch_sink_set(sink, i, (const uint8_t *)v, lens[i] + 2, 0) != CACHE_OK;
    }
  }
  pthread_mutex_lock(&mu);
  batch_calls++;
  if (n > largest_call) largest_call = n;
  kept_sink = sink;
  getter_errors += bad;
  pthread_mutex_unlock(&mu);
  return status;
}

static cache *batch_cache(const char *name, uint32_t chunk) {
  cache *c = NULL;
  cache_options *o = cache_options_new();
  CHECK(o != NULL);
  CHECK_STATUS(cache_options_set_batch_getter(o, batch_getter, &batch_calls), CACHE_OK);
  if (chunk) CHECK_STATUS(cache_options_set_batch_chunk_keys(o, chunk), CACHE_OK);
  CHECK_STATUS(cache_new_with_options(name, 1 << 24, NULL, NULL, NULL, o, &c), CACHE_OK);
  cache_options_free(o);
  return c;
}

/* n keys "<prefix><i>" in one malloc'd block; *ptrs and *lens point in. */
struct keys {
  char (*buf)[32];
  const uint8_t **ptrs;
  size_t *lens;
  int32_t *statuses;
  cache_value **values;
  cache_value **messages;
  size_t n;
};

static struct keys make_keys(size_t n, const char *prefix) {
  struct keys k;
  size_t i;
  k.n = n;
  k.buf = calloc(n, sizeof *k.buf);
  k.ptrs = calloc(n, sizeof *k.ptrs);
  k.lens = calloc(n, sizeof *k.lens);
  k.statuses = calloc(n, sizeof *k.statuses);
  k.values = calloc(n, sizeof *k.values);
  k.messages = calloc(n, sizeof *k.messages);
  for (i = 0; i < n; i++) {
    snprintf(k.buf[i], sizeof k.buf[i], "%s%zu", prefix, i);
    k.ptrs[i] = (const uint8_t *)k.buf[i];
    k.lens[i] = strlen(k.buf[i]);
  }
  return k;
}

static void set_key(struct keys *k, size_t i, const char *key) {
  snprintf(k->buf[i], sizeof k->buf[i], "%s", key);
  k->lens[i] = strlen(key);
}

static void free_results(struct keys *k) {
  size_t i;
  for (i = 0; i < k->n; i++) {
    cache_value_free(k->values[i]);
    cache_value_free(k->messages[i]);
    k->values[i] = k->messages[i] = NULL;
  }
}

static void free_keys(struct keys *k) {
  free_results(k);
  free(k->buf);
  free(k->ptrs);
  free(k->lens);
  free(k->statuses);
  free(k->values);
  free(k->messages);
}

static int value_is(cache_value *v, const char *want) {
  return v && cache_value_len(v) == strlen(want) && memcmp(cache_value_data(v), want, strlen(want)) == 0;
}

static void test_chunks_and_stats(void) {
  cache *c = batch_cache("chunks", 256);
  struct keys k = make_keys(600, "k");
  size_t i, ok = 0;
  cache_stats s;
  batch_calls = 0;
  largest_call = 0;
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, k.messages), CACHE_OK);
  for (i = 0; i < k.n; i++) {
    char want[40];
    snprintf(want, sizeof want, "v:%s", k.buf[i]);
    ok += k.statuses[i] == CACHE_OK && value_is(k.values[i], want) && k.messages[i] == NULL;
  }
  CHECK(ok == 600);
  CHECK(batch_calls == 3);
  CHECK(largest_call == 256);
  CHECK_STATUS(cache_stats_get_sized(c, &s, sizeof s), CACHE_OK);
  CHECK(s.batch_loads == 3);
  CHECK(s.batch_loaded_keys == 600);
  CHECK(s.local_loads == 600);
  CHECK(s.peer_batch_requests == 0 && s.server_batch_requests == 0);
  free_results(&k);
  /* Warm: hits only, no call; messages may be NULL. */
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, NULL), CACHE_OK);
  CHECK(batch_calls == 3);
  CHECK(k.statuses[599] == CACHE_OK && value_is(k.values[599], "v:k599"));
  CHECK_STATUS(cache_stats_get_sized(c, &s, sizeof s), CACHE_OK);
  CHECK(s.cache_hits == 600);
  free_keys(&k);
  cache_free(c);
}

static void test_mixed_results(void) {
  cache *c = batch_cache("mixed", 0);
  struct keys k = make_keys(6, "");
  char longkey[CACHE_MAX_KEY_LEN + 1];
  memset(longkey, 'x', sizeof longkey);
  set_key(&k, 0, "a");
  set_key(&k, 1, "no-such");
  set_key(&k, 2, "bad1");
  set_key(&k, 3, "");
  set_key(&k, 4, "a");
  k.ptrs[5] = (const uint8_t *)longkey;
  k.lens[5] = sizeof longkey;
  batch_calls = 0;
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, k.messages), CACHE_OK);
  CHECK(k.statuses[0] == CACHE_OK && value_is(k.values[0], "v:a"));
  CHECK(k.statuses[1] == CACHE_NOT_FOUND && k.values[1] == NULL && k.messages[1] == NULL);
  CHECK(k.statuses[2] == CACHE_LOADER_FAILED && k.values[2] == NULL);
  CHECK(k.messages[2] && cache_value_len(k.messages[2]) >= 7 &&
        memmem(cache_value_data(k.messages[2]), cache_value_len(k.messages[2]), "bad row", 7));
  CHECK(k.statuses[3] == CACHE_OK && value_is(k.values[3], "v:"));
  CHECK(k.statuses[4] == CACHE_OK && value_is(k.values[4], "v:a"));
  CHECK(k.statuses[5] == CACHE_INVALID_ARGUMENT && k.messages[5] != NULL);
  CHECK(batch_calls == 1);
  free_results(&k);
  /* A call that fails as a whole fails its own keys. */
  set_key(&k, 1, "down");
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, 3, k.statuses, k.values, k.messages), CACHE_OK);
  CHECK(k.statuses[0] == CACHE_OK); /* cached by the first call */
  CHECK(k.statuses[1] == CACHE_LOADER_FAILED && k.statuses[2] == CACHE_LOADER_FAILED);
  CHECK(k.messages[1] && memmem(cache_value_data(k.messages[1]), cache_value_len(k.messages[1]),
                                "status 3", 8));
  free_keys(&k);
  /* The sink of a finished call is refused. */
  CHECK_STATUS(cache_batch_sink_set(kept_sink, 0, (const uint8_t *)"x", 1, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_batch_sink_fail(kept_sink, 0, "late"), CACHE_INVALID_ARGUMENT);
  /* cache_get with only a batch getter: one key a call. */
  {
    cache_value *v = NULL;
    batch_calls = 0;
    largest_call = 0;
    CHECK_STATUS(cache_get(c, (const uint8_t *)"single", 6, &v), CACHE_OK);
    CHECK(value_is(v, "v:single"));
    cache_value_free(v);
    CHECK(batch_calls == 1 && largest_call == 1);
    CHECK_STATUS(cache_get(c, (const uint8_t *)"nope", 4, &v), CACHE_NOT_FOUND);
  }
  cache_free(c);
}

/* ---- without a batch getter: the getter runs several keys at once ---- */

static int arrived, met;

static int32_t barrier_getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  struct timespec deadline;
  int ok = 1;
  (void)ud;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 30;
  pthread_mutex_lock(&mu);
  arrived++;
  pthread_cond_broadcast(&cv);
  while (arrived < 4 && ok) ok = pthread_cond_timedwait(&cv, &mu, &deadline) == 0 || arrived >= 4;
  if (ok) met++;
  pthread_mutex_unlock(&mu);
  return cache_sink_set(sink, key, len, 0);
}

static void test_concurrent_misses(void) {
  cache *c = NULL;
  cache_options *o = cache_options_new();
  struct keys k = make_keys(4, "c");
  size_t i;
  CHECK_STATUS(cache_options_set_miss_concurrency(o, 4), CACHE_OK);
  CHECK_STATUS(cache_new_with_options("conc", 1 << 20, barrier_getter, NULL, NULL, o, &c), CACHE_OK);
  cache_options_free(o);
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, NULL), CACHE_OK);
  CHECK(met == 4); /* all four getter calls were in at once */
  for (i = 0; i < k.n; i++) CHECK(k.statuses[i] == CACHE_OK && value_is(k.values[i], k.buf[i]));
  free_keys(&k);
  cache_free(c);
}

/* ---- cache_values_alloc ---- */

static void *copy_alloc(const uint8_t *data, ptrdiff_t len) {
  char *p = malloc((size_t)len + 1);
  if (len) memcpy(p, data, (size_t)len);
  p[len] = 0;
  return p;
}

static int32_t store_in(void *ctx, ptrdiff_t i, void *obj) {
  ((char **)ctx)[i] = obj;
  return 0;
}

static void test_values_alloc(void) {
  cache *c = batch_cache("alloc", 0);
  struct keys k = make_keys(3, "z");
  char *objs[3] = {0};
  int i;
  set_key(&k, 1, "no-z");
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, NULL), CACHE_OK);
  CHECK(cache_values_alloc(k.values, k.n, copy_alloc, store_in, objs) == 0);
  CHECK(objs[0] && strcmp(objs[0], "v:z0") == 0);
  CHECK(objs[1] && strcmp(objs[1], "") == 0); /* NULL value: alloc(NULL, 0) */
  CHECK(objs[2] && strcmp(objs[2], "v:z2") == 0);
  CHECK(k.values[0] == NULL && k.values[2] == NULL);
  for (i = 0; i < 3; i++) free(objs[i]);
  /* Bad arguments: -1, and the values are still freed (valgrind checks). */
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, NULL), CACHE_OK);
  CHECK(cache_values_alloc(k.values, k.n, NULL, store_in, objs) == -1);
  CHECK(k.values[0] == NULL && k.values[2] == NULL);
  CHECK(cache_values_alloc(NULL, 2, copy_alloc, store_in, objs) == -1);
  CHECK(cache_values_alloc(NULL, 0, copy_alloc, store_in, objs) == 0);
  free_keys(&k);
  cache_free(c);
}

/* ---- bad arguments and options ---- */

static void test_bad_arguments(void) {
  cache *c = batch_cache("bad", 0);
  struct keys k = make_keys(2, "b");
  cache_options *o = cache_options_new();
  const uint8_t *null_key[1] = {NULL};
  size_t one[1] = {1};
  CHECK_STATUS(cache_get_many(NULL, k.ptrs, k.lens, 2, k.statuses, k.values, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, NULL, k.lens, 2, k.statuses, k.values, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, k.ptrs, NULL, 2, k.statuses, k.values, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, 2, NULL, k.values, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, 2, k.statuses, NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, null_key, one, 1, k.statuses, k.values, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_many(c, NULL, NULL, 0, NULL, NULL, NULL), CACHE_OK);
  CHECK_STATUS(cache_options_set_batch_chunk_keys(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_batch_chunk_keys(o, 65537), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_batch_chunk_keys(o, 65536), CACHE_OK);
  CHECK_STATUS(cache_options_set_miss_concurrency(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_miss_concurrency(o, 1025), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_miss_concurrency(o, 1024), CACHE_OK);
  CHECK_STATUS(cache_options_set_batch_getter(o, NULL, NULL), CACHE_OK);
  CHECK_STATUS(cache_options_set_batch_getter(NULL, batch_getter, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_options_set_miss_concurrency(NULL, 4), CACHE_INVALID_ARGUMENT);
  cache_options_free(o);
  CHECK_STATUS(cache_options_set_batch_chunk_keys(o, 4), CACHE_INVALID_ARGUMENT); /* freed */
  cache_free(c);
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, 2, k.statuses, k.values, NULL), CACHE_CLOSED);
  CHECK_STATUS(cache_get_many(c, NULL, NULL, 0, NULL, NULL, NULL), CACHE_CLOSED);
  free_keys(&k);
}

static void test_environment(void) {
  cache *c = NULL;
  struct keys k = make_keys(7, "e");
  setenv("GROUPCACHE_BATCH_CHUNK_KEYS", "0", 1);
  CHECK(cache_options_new() == NULL);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_BATCH_CHUNK_KEYS") != NULL);
  setenv("GROUPCACHE_BATCH_CHUNK_KEYS", "3", 1);
  setenv("GROUPCACHE_MISS_CONCURRENCY", "lots", 1);
  CHECK(cache_options_new() == NULL);
  CHECK(strstr(cache_last_error(), "GROUPCACHE_MISS_CONCURRENCY") != NULL);
  CHECK_STATUS(cache_new("env", 1 << 20, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  unsetenv("GROUPCACHE_MISS_CONCURRENCY");
  /* Chunks of 3 from the environment: 7 keys, 3 calls. */
  c = batch_cache("env", 0);
  batch_calls = 0;
  CHECK_STATUS(cache_get_many(c, k.ptrs, k.lens, k.n, k.statuses, k.values, NULL), CACHE_OK);
  CHECK(batch_calls == 3);
  unsetenv("GROUPCACHE_BATCH_CHUNK_KEYS");
  free_keys(&k);
  cache_free(c);
}

int main(void) {
  test_chunks_and_stats();
  test_mixed_results();
  test_concurrent_misses();
  test_values_alloc();
  test_bad_arguments();
  test_environment();
  CHECK(getter_errors == 0);
  return checks_report("test_batch");
}
