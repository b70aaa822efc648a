/* Every function of the C API and every status it documents. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static atomic_int getter_calls;
static cache_sink *saved_sink;
static cache *reentrant_cache;
static int inner_status = -1;

/* Keys decide what the getter does. */
static int32_t getter(void *user_data, const uint8_t *key, size_t len, cache_sink *sink) {
  atomic_fetch_add(&getter_calls, 1);
  CHECK(user_data == (void *)0xfeed);
  if (len == 7 && memcmp(key, "missing", 7) == 0) return CACHE_NOT_FOUND;
  if (len == 6 && memcmp(key, "broken", 6) == 0) {
    cache_sink_fail(sink, "disk on fire");
    return 42;
  }
  if (len == 6 && memcmp(key, "status", 6) == 0) return 42;
  if (len == 6 && memcmp(key, "silent", 6) == 0) return CACHE_OK;
  if (len == 5 && memcmp(key, "twice", 5) == 0) {
    cache_sink_set(sink, (const uint8_t *)"first", 5, 0);
    return cache_sink_set(sink, (const uint8_t *)"second", 6, 0);
  }
  if (len == 9 && memcmp(key, "failafter", 9) == 0) {
    cache_sink_set(sink, (const uint8_t *)"value", 5, 0);
    cache_sink_fail(sink, "changed my mind");
    return CACHE_OK;
  }
  if (len == 4 && memcmp(key, "keep", 4) == 0) {
    saved_sink = sink;
  }
  if (len == 9 && memcmp(key, "reentrant", 9) == 0) {
    cache_value *v = NULL;
    inner_status = cache_get(reentrant_cache, key, len, &v);
    return inner_status == CACHE_OK ? CACHE_OK : 3;
  }
  if (len == 3 && memcmp(key, "ttl", 3) == 0) {
    return cache_sink_set(sink, (const uint8_t *)"short-lived", 11, 100);
  }
  /* Default: the value is "v:" + key, binary-safe. */
  uint8_t buf[CACHE_MAX_KEY_LEN + 2];
  buf[0] = 'v';
  buf[1] = ':';
  memcpy(buf + 2, key, len);
  return cache_sink_set(sink, buf, len + 2, 0);
}

static void *test_alloc(const uint8_t *data, ptrdiff_t len) {
  /* Returns a malloc'ed, length-prefixed copy; a miss is a distinct marker. */
  static char miss_marker;
  if (data == NULL) return &miss_marker;
  uint8_t *p = malloc((size_t)len + sizeof(size_t));
  memcpy(p, &len, sizeof(size_t));
  memcpy(p + sizeof(size_t), data, (size_t)len);
  return p;
}

static int value_is(cache_value *v, const void *want, size_t want_len) {
  return v && cache_value_len(v) == want_len && memcmp(cache_value_data(v), want, want_len) == 0;
}

static void test_version_and_errors(void) {
  CHECK(strlen(cache_version()) >= 5); /* "0.1.0"; test_abi checks it against the header */
  CHECK(cache_last_error() != NULL);
}

static void test_null_arguments(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  size_t n = 0;
  cache_stats s;
  CHECK_STATUS(cache_new(NULL, 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "name") != NULL);
  CHECK_STATUS(cache_new("x", 1, NULL, NULL, NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(NULL, K("k"), &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(NULL, K("k"), NULL, 0, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(NULL, K("k"), K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(NULL, K("k")), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_stats_get(NULL, &s), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_sink_set(NULL, K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_sink_fail(NULL, "x"), CACHE_INVALID_ARGUMENT);
  CHECK(cache_value_data(NULL) == NULL);
  CHECK(cache_value_len(NULL) == 0);
  cache_value_free(NULL);
  cache_free(NULL);
  CHECK(cache_lookup_alloc(NULL, K("k"), NULL) == NULL);

  CHECK_STATUS(cache_new("nulls", 1 << 20, NULL, NULL, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("k"), NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, NULL, 3, &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("k"), NULL, 0, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("k"), NULL, 5, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, NULL, 1, K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, K("k"), NULL, 1, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(c, NULL, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_stats_get(c, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, (const uint8_t *)"k", SIZE_MAX, &v), CACHE_INVALID_ARGUMENT);
  /* A NULL key of length 0 is the empty key. */
  CHECK_STATUS(cache_set(c, NULL, 0, NULL, 0, 0), CACHE_OK);
  CHECK_STATUS(cache_get(c, NULL, 0, &v), CACHE_OK);
  CHECK(cache_value_len(v) == 0);
  cache_value_free(v);
  cache_free(c);
}

static void test_names(void) {
  cache *c = NULL;
  char long_name[300];
  memset(long_name, 'n', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = 0;
  CHECK_STATUS(cache_new("", 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_new("a/b", 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_new(long_name, 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_new("\xff\xfe", 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK(c == NULL); /* out is written only on success */
  /* Without a pool, names need not be unique. */
  cache *a = NULL, *b = NULL;
  CHECK_STATUS(cache_new("same", 1, NULL, NULL, NULL, &a), CACHE_OK);
  CHECK_STATUS(cache_new("same", 1, NULL, NULL, NULL, &b), CACHE_OK);
  CHECK(a != b);
  cache_free(a);
  cache_free(b);
}

static void test_loading(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  CHECK_STATUS(cache_new("load", 1 << 20, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  atomic_store(&getter_calls, 0);

  CHECK_STATUS(cache_get(c, K("a"), &v), CACHE_OK);
  CHECK(value_is(v, "v:a", 3));
  cache_value_free(v);
  CHECK_STATUS(cache_get(c, K("a"), &v), CACHE_OK);
  CHECK(value_is(v, "v:a", 3));
  cache_value_free(v);
  CHECK(atomic_load(&getter_calls) == 1);

  /* Binary keys and values, NUL bytes included. */
  const uint8_t bin[] = {0, 1, 0, 255, 0};
  CHECK_STATUS(cache_get(c, bin, sizeof bin, &v), CACHE_OK);
  const uint8_t want[] = {'v', ':', 0, 1, 0, 255, 0};
  CHECK(value_is(v, want, sizeof want));
  cache_value_free(v);

  v = NULL;
  CHECK_STATUS(cache_get(c, K("missing"), &v), CACHE_NOT_FOUND);
  CHECK(v == NULL);
  CHECK_STATUS(cache_get(c, K("broken"), &v), CACHE_LOADER_FAILED);
  CHECK(strstr(cache_last_error(), "disk on fire") != NULL);
  CHECK_STATUS(cache_get(c, K("status"), &v), CACHE_LOADER_FAILED);
  CHECK(strstr(cache_last_error(), "42") != NULL);
  CHECK_STATUS(cache_get(c, K("silent"), &v), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get(c, K("failafter"), &v), CACHE_LOADER_FAILED);
  CHECK(strstr(cache_last_error(), "changed my mind") != NULL);
  CHECK_STATUS(cache_get(c, K("twice"), &v), CACHE_OK);
  CHECK(value_is(v, "second", 6));
  cache_value_free(v);

  /* Failures are not cached: the getter runs again. */
  int before = atomic_load(&getter_calls);
  CHECK_STATUS(cache_get(c, K("missing"), &v), CACHE_NOT_FOUND);
  CHECK_STATUS(cache_get(c, K("broken"), &v), CACHE_LOADER_FAILED);
  CHECK(atomic_load(&getter_calls) == before + 2);

  /* A sink kept past its getter call is refused, not used. */
  CHECK_STATUS(cache_get(c, K("keep"), &v), CACHE_OK);
  cache_value_free(v);
  CHECK_STATUS(cache_sink_set(saved_sink, K("late"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_sink_fail(saved_sink, "late"), CACHE_INVALID_ARGUMENT);

  /* A key over the limit. */
  static uint8_t big_key[CACHE_MAX_KEY_LEN + 1];
  memset(big_key, 'k', sizeof big_key);
  CHECK_STATUS(cache_get(c, big_key, sizeof big_key, &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, big_key, CACHE_MAX_KEY_LEN, &v), CACHE_OK);
  CHECK(cache_value_len(v) == CACHE_MAX_KEY_LEN + 2);
  cache_value_free(v);

  cache_stats s;
  CHECK_STATUS(cache_stats_get(c, &s), CACHE_OK);
  CHECK(s.gets >= 10);
  CHECK(s.cache_hits >= 1);
  CHECK(s.local_loads >= 4);
  CHECK(s.local_load_errs >= 6);
  CHECK(s.main_items >= 4);
  CHECK(s.hot_items == 0);
  cache_free(c);
}

static void test_reentrancy(void) {
  cache_value *v = NULL;
  CHECK_STATUS(cache_new("re", 1 << 20, getter, (void *)0xfeed, NULL, &reentrant_cache), CACHE_OK);
  CHECK_STATUS(cache_get(reentrant_cache, K("reentrant"), &v), CACHE_LOADER_FAILED);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT);
  cache_free(reentrant_cache);
}

static void test_get_into(void) {
  cache *c = NULL;
  uint8_t buf[8];
  size_t n = 0;
  CHECK_STATUS(cache_new("into", 1 << 20, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_get_into(c, K("abc"), buf, sizeof buf, &n), CACHE_OK); /* miss */
  CHECK(n == 5 && memcmp(buf, "v:abc", 5) == 0);
  n = 0;
  CHECK_STATUS(cache_get_into(c, K("abc"), buf, 5, &n), CACHE_OK); /* hit, exact fit */
  CHECK(n == 5);
  CHECK_STATUS(cache_get_into(c, K("abc"), buf, 4, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == 5);
  CHECK_STATUS(cache_get_into(c, K("abcdefgh"), NULL, 0, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == 10);
  CHECK_STATUS(cache_get_into(c, K("missing"), buf, sizeof buf, &n), CACHE_NOT_FOUND);
  cache_free(c);
}

static void test_set_remove_ttl(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  CHECK_STATUS(cache_new("inv", 1 << 20, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  int calls = atomic_load(&getter_calls);
  CHECK_STATUS(cache_contains(c, K("k")), CACHE_NOT_FOUND);
  CHECK(atomic_load(&getter_calls) == calls); /* contains never loads */
  CHECK_STATUS(cache_set(c, K("k"), K("set value"), 0), CACHE_OK);
  CHECK_STATUS(cache_contains(c, K("k")), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("k"), &v), CACHE_OK);
  CHECK(value_is(v, "set value", 9));
  cache_value_free(v);
  CHECK_STATUS(cache_remove(c, K("k")), CACHE_OK);
  CHECK_STATUS(cache_contains(c, K("k")), CACHE_NOT_FOUND);
  CHECK_STATUS(cache_contains(NULL, K("k")), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_contains(c, NULL, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(c, K("k")), CACHE_OK); /* absent: still OK */
  CHECK_STATUS(cache_get(c, K("k"), &v), CACHE_OK);
  CHECK(value_is(v, "v:k", 3)); /* reloaded */
  cache_value_free(v);

  CHECK_STATUS(cache_set(c, K("t"), K("brief"), 50), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("t"), &v), CACHE_OK);
  CHECK(value_is(v, "brief", 5));
  cache_value_free(v);
  usleep(120 * 1000);
  CHECK_STATUS(cache_get(c, K("t"), &v), CACHE_OK);
  CHECK(value_is(v, "v:t", 3));
  cache_value_free(v);

  /* A getter's TTL. */
  CHECK_STATUS(cache_get(c, K("ttl"), &v), CACHE_OK);
  cache_value_free(v);
  int before = atomic_load(&getter_calls);
  usleep(200 * 1000);
  CHECK_STATUS(cache_get(c, K("ttl"), &v), CACHE_OK);
  cache_value_free(v);
  CHECK(atomic_load(&getter_calls) == before + 1);
  cache_free(c);
}

static void test_zero_bytes_and_set_only(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  cache_stats s;
  CHECK_STATUS(cache_new("zero", 0, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  int before = atomic_load(&getter_calls);
  CHECK_STATUS(cache_get(c, K("z"), &v), CACHE_OK);
  cache_value_free(v);
  CHECK_STATUS(cache_get(c, K("z"), &v), CACHE_OK);
  cache_value_free(v);
  CHECK(atomic_load(&getter_calls) == before + 2);
  CHECK_STATUS(cache_stats_get(c, &s), CACHE_OK);
  CHECK(s.main_items == 0 && s.main_bytes == 0);
  cache_free(c);

  CHECK_STATUS(cache_new("setonly", 1 << 20, NULL, NULL, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("x"), &v), CACHE_NOT_FOUND);
  CHECK_STATUS(cache_set(c, K("x"), K("y"), 0), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("x"), &v), CACHE_OK);
  CHECK(value_is(v, "y", 1));
  /* A value outlives its cache. */
  cache_free(c);
  CHECK(value_is(v, "y", 1));
  cache_value_free(v);
}

static void test_lookup_alloc(void) {
  cache *c = NULL;
  CHECK_STATUS(cache_new("alloc", 1 << 20, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  void *miss = test_alloc(NULL, 0);
  int before = atomic_load(&getter_calls);
  CHECK(cache_lookup_alloc(c, K("la"), test_alloc) == miss); /* never loads */
  CHECK(atomic_load(&getter_calls) == before);
  CHECK_STATUS(cache_set(c, K("la"), K("hello"), 0), CACHE_OK);
  uint8_t *p = cache_lookup_alloc(c, K("la"), test_alloc);
  CHECK(p != miss);
  size_t len;
  memcpy(&len, p, sizeof len);
  CHECK(len == 5 && memcmp(p + sizeof(size_t), "hello", 5) == 0);
  free(p);
  CHECK(cache_lookup_alloc(c, NULL, 4, test_alloc) == miss);
  cache_free(c);
  CHECK(cache_lookup_alloc(c, K("la"), test_alloc) == miss);
}

struct stored {
  void *objs[8];
  int calls;
  int fail_at;
};

static int32_t test_store(void *ctx, ptrdiff_t index, void *object) {
  struct stored *st = ctx;
  st->calls++;
  if (index == st->fail_at) return -1;
  st->objs[index] = object;
  return 0;
}

static void *null_alloc(const uint8_t *data, ptrdiff_t len) {
  (void)data;
  (void)len;
  return NULL;
}

static int obj_is(void *p, const char *want) {
  size_t len;
  memcpy(&len, p, sizeof len);
  return len == strlen(want) && memcmp((uint8_t *)p + sizeof(size_t), want, len) == 0;
}

static void test_binding_paths(void) {
  cache *c = NULL;
  void *miss = test_alloc(NULL, 0);
  CHECK_STATUS(cache_new("bind", 1 << 20, getter, (void *)0xfeed, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_set(c, K("a"), K("A"), 0), CACHE_OK);
  CHECK_STATUS(cache_set(c, K("b"), K("BB"), 0), CACHE_OK);

  /* cache_lookup: NULL until a process-wide allocator is set, then as
   * cache_lookup_alloc, freed caches included; it is set once. */
  CHECK(cache_lookup(c, K("a")) == NULL);
  CHECK_STATUS(cache_set_default_alloc(NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set_default_alloc(test_alloc), CACHE_OK);
  CHECK_STATUS(cache_set_default_alloc(test_alloc), CACHE_OK);
  CHECK_STATUS(cache_set_default_alloc(null_alloc), CACHE_ALREADY_EXISTS);
  void *p = cache_lookup(c, K("a"));
  CHECK(p != miss && obj_is(p, "A"));
  free(p);
  CHECK(cache_lookup(c, K("zz")) == miss);
  CHECK(cache_lookup(c, NULL, 3) == miss);

  /* A batch: hits and misses in order, the miss count returned. */
  struct stored st = {.fail_at = -1};
  const char keys[] = "a\nzz\nb";
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 3, '\n', test_alloc, test_store, &st) == 1);
  CHECK(st.calls == 3);
  CHECK(obj_is(st.objs[0], "A") && st.objs[1] == miss && obj_is(st.objs[2], "BB"));
  free(st.objs[0]);
  free(st.objs[2]);
  /* Keys that do not split into n: nothing stored. */
  st = (struct stored){.fail_at = -1};
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 2, '\n', test_alloc, test_store, &st) == -1);
  CHECK(st.calls == 0);
  /* The empty key, and an empty batch. */
  CHECK(cache_lookup_many_alloc(c, NULL, 0, 1, 0, test_alloc, test_store, &st) == 1);
  CHECK(cache_lookup_many_alloc(c, NULL, 0, 0, 0, test_alloc, test_store, &st) == 0);
  /* A store that fails stops the batch; an allocator that fails too. */
  st = (struct stored){.fail_at = 1};
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 3, '\n', test_alloc, test_store, &st) == -1);
  CHECK(st.calls == 2);
  free(st.objs[0]);
  st = (struct stored){.fail_at = -1};
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 3, '\n', null_alloc, test_store, &st) == -1);
  CHECK(st.calls == 0);
  CHECK(cache_lookup_many_alloc(NULL, (const uint8_t *)keys, strlen(keys), 3, '\n', test_alloc, test_store, &st) == -1);
  CHECK(cache_lookup_many_alloc(c, NULL, 3, 1, '\n', test_alloc, test_store, &st) == -1);
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 3, '\n', test_alloc, NULL, &st) == -1);

  cache_free(c);
  /* A freed cache: every key is a miss, nothing crashes. */
  CHECK(cache_lookup(c, K("a")) == miss);
  st = (struct stored){.fail_at = -1};
  CHECK(cache_lookup_many_alloc(c, (const uint8_t *)keys, strlen(keys), 3, '\n', test_alloc, test_store, &st) == 3);
}

static void test_stale_handles(void) {
  cache *old = NULL, *fresh = NULL;
  cache_value *v = NULL;
  cache_stats s;
  size_t n;
  CHECK_STATUS(cache_new("stale", 1 << 20, getter, (void *)0xfeed, NULL, &old), CACHE_OK);
  cache_free(old);
  cache_free(old); /* double free: a no-op */
  CHECK_STATUS(cache_get(old, K("k"), &v), CACHE_CLOSED);
  /* The slot is reused by a new cache; the old handle must not reach it. */
  CHECK_STATUS(cache_new("stale", 1 << 20, getter, (void *)0xfeed, NULL, &fresh), CACHE_OK);
  CHECK(fresh != old);
  CHECK_STATUS(cache_get(old, K("k"), &v), CACHE_CLOSED);
  CHECK_STATUS(cache_get_into(old, K("k"), NULL, 0, &n), CACHE_CLOSED);
  CHECK_STATUS(cache_set(old, K("k"), K("v"), 0), CACHE_CLOSED);
  CHECK_STATUS(cache_remove(old, K("k")), CACHE_CLOSED);
  CHECK_STATUS(cache_contains(old, K("k")), CACHE_CLOSED);
  CHECK_STATUS(cache_stats_get(old, &s), CACHE_CLOSED);
  cache_free(old);
  CHECK_STATUS(cache_get(fresh, K("k"), &v), CACHE_OK);
  cache_value_free(v);
  /* Values too: a freed value is NULL / 0, freeing it again is a no-op,
   * and a newer value never answers to the old handle. */
  cache_value *v1 = NULL, *v2 = NULL;
  CHECK_STATUS(cache_get(fresh, K("k"), &v1), CACHE_OK);
  cache_value_free(v1);
  CHECK(cache_value_data(v1) == NULL && cache_value_len(v1) == 0);
  cache_value_free(v1);
  CHECK_STATUS(cache_get(fresh, K("k"), &v2), CACHE_OK);
  CHECK(v2 != v1);
  CHECK(cache_value_data(v1) == NULL);
  CHECK(value_is(v2, "v:k", 3));
  cache_value_free(v2);
  cache_value_free((cache_value *)&s);
  CHECK(cache_value_len((cache_value *)(uintptr_t)0x1234) == 0);
  /* Pointers that were never handles. */
  CHECK_STATUS(cache_get((cache *)(uintptr_t)0x1234, K("k"), &v), CACHE_CLOSED);
  CHECK_STATUS(cache_get((cache *)&s, K("k"), &v), CACHE_CLOSED);
  cache_free((cache *)&s);
  cache_free(fresh);
}

/* cache_lookup_value: the cache's own copy, no load, and a value that
 * outlives remove, set, eviction and cache_free (valgrind and ASan runs
 * check that nothing is read after it is freed, nor leaked). */
static void test_lookup_value(void) {
  cache *c = NULL;
  CHECK(cache_new("lookup_value", 600, getter, (void *)0xfeed, NULL, &c) == CACHE_OK);
  cache_value_view out = {(const uint8_t *)"untouched", 9};
  atomic_store(&getter_calls, 0);
  CHECK(cache_lookup_value(c, K("a"), &out) == NULL); /* a miss never loads */
  CHECK(atomic_load(&getter_calls) == 0);
  CHECK(out.len == 9 && memcmp(out.data, "untouched", 9) == 0);
  CHECK(cache_lookup_value(NULL, K("a"), &out) == NULL);
  CHECK(cache_lookup_value(c, NULL, 3, &out) == NULL);

  CHECK(cache_set(c, K("a"), (const uint8_t *)"apple", 5, 0) == CACHE_OK);
  CHECK(cache_set(c, K("b"), (const uint8_t *)"banana", 6, 0) == CACHE_OK);
  cache_value *a = cache_lookup_value(c, K("a"), &out);
  CHECK(value_is(a, "apple", 5));
  CHECK(out.data == cache_value_data(a) && out.len == 5);
  cache_value *a2 = cache_lookup_value(c, K("a"), NULL); /* out may be NULL */
  CHECK(a2 != a && cache_value_data(a2) == cache_value_data(a)); /* one copy, shared */
  cache_value *got = NULL;
  CHECK(cache_get(c, K("a"), &got) == CACHE_OK); /* cache_get's hit shares it too */
  CHECK(cache_value_data(got) == cache_value_data(a));
  cache_value_free(got);
  cache_value *b = cache_lookup_value(c, K("b"), &out);
  CHECK(value_is(b, "banana", 6));

  CHECK(cache_remove(c, K("a")) == CACHE_OK);
  CHECK(cache_lookup_value(c, K("a"), NULL) == NULL);
  CHECK(value_is(a, "apple", 5) && value_is(a2, "apple", 5));
  cache_value_free(a);
  CHECK(value_is(a2, "apple", 5));
  CHECK(cache_set(c, K("b"), (const uint8_t *)"blueberry", 9, 0) == CACHE_OK);
  CHECK(value_is(b, "banana", 6));
  /* Evict everything: 600 bytes hold about five of these. */
  char big[100];
  memset(big, 'x', sizeof big);
  char key[16];
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "big%d", i);
    CHECK(cache_set(c, K(key), (const uint8_t *)big, sizeof big, 0) == CACHE_OK);
  }
  cache_value *first = NULL;
  CHECK(cache_set(c, K("big-held"), (const uint8_t *)big, sizeof big, 0) == CACHE_OK);
  first = cache_lookup_value(c, K("big-held"), &out);
  CHECK(first && out.len == sizeof big);
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "more%d", i);
    CHECK(cache_set(c, K(key), (const uint8_t *)big, sizeof big, 0) == CACHE_OK);
  }
  CHECK(cache_lookup_value(c, K("big-held"), NULL) == NULL); /* evicted */
  CHECK(value_is(first, big, sizeof big));
  cache_free(c);
  CHECK(value_is(a2, "apple", 5) && value_is(b, "banana", 6) && value_is(first, big, sizeof big));
  CHECK(cache_lookup_value(c, K("b"), NULL) == NULL); /* a freed cache: NULL */
  cache_value_free(a2);
  cache_value_free(b);
  cache_value_free(first);
  CHECK(cache_value_data(b) == NULL); /* a freed value handle is refused */
}

int main(void) {
  test_version_and_errors();
  test_null_arguments();
  test_names();
  test_loading();
  test_reentrancy();
  test_get_into();
  test_set_remove_ttl();
  test_zero_bytes_and_set_only();
  test_lookup_alloc();
  test_lookup_value();
  test_binding_paths();
  test_stale_handles();
  return checks_report("test_api");
}
