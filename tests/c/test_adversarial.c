/* Adversarial use of the C API: NULLs everywhere, lengths at and past the
 * limits, bad names and URLs, stale and double-freed handles, getters that
 * misbehave, frees racing with calls. Each case runs in a fork()ed child,
 * so a crash (or a hang: 60 s alarm) is counted as a failure of that case
 * instead of ending the run. Every call must end in its documented status.
 *
 *   test_adversarial            all cases
 *   test_adversarial NAME...    only those cases
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "groupcache.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- getters ---- */

static cache *self_cache;          /* the cache a re-entering getter uses */
static cache_sink *stale_sink;     /* a sink kept past its getter call */
static atomic_int getter_calls;
static int inner_status = -1;

static int32_t plain_getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  atomic_fetch_add(&getter_calls, 1);
  uint8_t buf[CACHE_MAX_KEY_LEN + 2] = {'v', ':'};
  memcpy(buf + 2, key, len);
  return cache_sink_set(sink, buf, len + 2, 0);
}

static int is(const uint8_t *key, size_t len, const char *s) {
  return len == strlen(s) && memcmp(key, s, len) == 0;
}

static void *sink_from_other_thread(void *sink) {
  return (void *)(intptr_t)cache_sink_set((cache_sink *)sink, K("x"), 0);
}

static int32_t rude_getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  atomic_fetch_add(&getter_calls, 1);
  if (is(key, len, "twice")) {
    cache_sink_set(sink, K("first"), 0);
    return cache_sink_set(sink, K("second"), 0);
  }
  if (is(key, len, "fail-after-set")) {
    cache_sink_set(sink, K("value"), 0);
    cache_sink_fail(sink, "changed my mind");
    return CACHE_OK;
  }
  if (is(key, len, "set-then-error")) {
    cache_sink_set(sink, K("value"), 0);
    return 77;
  }
  if (is(key, len, "set-then-not-found")) {
    cache_sink_set(sink, K("value"), 0);
    return CACHE_NOT_FOUND;
  }
  if (is(key, len, "nothing")) return CACHE_OK;
  if (is(key, len, "negative")) return -1;
  if (is(key, len, "int-min")) return INT32_MIN;
  if (is(key, len, "fail-null-msg")) {
    inner_status = cache_sink_fail(sink, NULL);
    return CACHE_LOADER_FAILED;
  }
  if (is(key, len, "reenter-same")) {
    cache_value *v = NULL;
    inner_status = cache_get(self_cache, key, len, &v);
    if (inner_status == CACHE_OK) cache_value_free(v);
    return inner_status == CACHE_OK ? CACHE_OK : CACHE_LOADER_FAILED;
  }
  if (is(key, len, "reenter-other")) {
    cache_value *v = NULL;
    inner_status = cache_get(self_cache, K("plain"), &v);
    if (inner_status != CACHE_OK) return CACHE_LOADER_FAILED;
    int32_t st = cache_sink_set(sink, cache_value_data(v), cache_value_len(v), 0);
    cache_value_free(v);
    return st;
  }
  if (is(key, len, "reenter-set-remove")) {
    cache_status a = cache_set(self_cache, key, len, K("from inside"), 0);
    cache_status b = cache_remove(self_cache, key, len);
    inner_status = (a == CACHE_OK && b == CACHE_OK) ? CACHE_OK : 99;
    return cache_sink_set(sink, K("loaded"), 0);
  }
  if (is(key, len, "keep-sink")) {
    stale_sink = sink;
    return cache_sink_set(sink, K("kept"), 0);
  }
  if (is(key, len, "other-thread-sink")) {
    pthread_t t;
    void *r = NULL;
    pthread_create(&t, NULL, sink_from_other_thread, sink);
    pthread_join(t, &r);
    inner_status = (int)(intptr_t)r;
    return cache_sink_set(sink, K("mine"), 0);
  }
  if (is(key, len, "free-own-cache")) {
    cache_free(self_cache);
    return cache_sink_set(sink, K("after free"), 0);
  }
  if (is(key, len, "huge-len")) {
    inner_status = cache_sink_set(sink, (const uint8_t *)"x", SIZE_MAX, 0);
    return cache_sink_set(sink, K("small"), 0);
  }
  if (is(key, len, "null-value")) {
    inner_status = cache_sink_set(sink, NULL, 3, 0);
    return cache_sink_set(sink, NULL, 0, 0); /* the empty value */
  }
  return plain_getter(ud, key, len, sink);
}

static int32_t slow_getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  sleep_ms(5);
  return plain_getter(ud, key, len, sink);
}

static void *alloc_marker(const uint8_t *data, ptrdiff_t len) {
  static char miss;
  if (data == NULL) return &miss;
  char *p = malloc((size_t)len + 1);
  memcpy(p, data, (size_t)len);
  p[len] = 0;
  return p;
}
static char *miss_marker(void) { return alloc_marker(NULL, 0); }
static int32_t store_ignore(void *ctx, ptrdiff_t i, void *obj) {
  (void)ctx;
  (void)i;
  if (obj != miss_marker()) free(obj);
  return 0;
}

/* ---- cases ---- */

static void case_null_pointers(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  size_t n = 0;
  uint8_t buf[16];
  cache_stats st;
  CHECK_STATUS(cache_new(NULL, 1024, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_new("n", 1024, NULL, NULL, NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_new("n", 1024, plain_getter, NULL, NULL, &c), CACHE_OK);
  cache_free(NULL);
  CHECK_STATUS(cache_get(NULL, K("k"), &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, NULL, 1, &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, K("k"), NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, NULL, 0, &v), CACHE_OK); /* the empty key */
  CHECK(cache_value_len(v) == 2);
  cache_value_free(v);
  CHECK_STATUS(cache_get_into(NULL, K("k"), buf, sizeof buf, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, NULL, 1, buf, sizeof buf, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("k"), NULL, 8, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("k"), buf, sizeof buf, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("k"), NULL, 0, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == 3);
  CHECK_STATUS(cache_set(NULL, K("k"), K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, NULL, 1, K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, K("k"), NULL, 1, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, K("k"), NULL, 0, 0), CACHE_OK);
  CHECK_STATUS(cache_get_into(c, K("k"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(n == 0);
  CHECK_STATUS(cache_remove(NULL, K("k")), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(c, NULL, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(c, NULL, 0), CACHE_OK);
  CHECK_STATUS(cache_stats_get(NULL, &st), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_stats_get(c, NULL), CACHE_INVALID_ARGUMENT);
  CHECK(cache_value_data(NULL) == NULL);
  CHECK(cache_value_len(NULL) == 0);
  cache_value_free(NULL);
  CHECK_STATUS(cache_sink_set(NULL, K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_sink_fail(NULL, "m"), CACHE_INVALID_ARGUMENT);
  /* lookups: alloc(NULL, 0) for anything but a hit; NULL alloc is NULL */
  CHECK(cache_lookup_alloc(NULL, K("k"), alloc_marker) == miss_marker());
  CHECK(cache_lookup_alloc(c, NULL, 1, alloc_marker) == miss_marker());
  CHECK(cache_lookup_alloc(c, K("k"), NULL) == NULL);
  CHECK(cache_lookup(c, K("k")) == NULL); /* no default allocator yet */
  CHECK_STATUS(cache_set_default_alloc(NULL), CACHE_INVALID_ARGUMENT);
  CHECK(cache_lookup_many_alloc(NULL, K("a,b"), 2, ',', alloc_marker, store_ignore, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, NULL, 3, 2, ',', alloc_marker, store_ignore, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, K("a,b"), 2, ',', NULL, store_ignore, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, K("a,b"), 2, ',', alloc_marker, NULL, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, K("a,b"), 3, ',', alloc_marker, store_ignore, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, K("a,b"), 0, ',', alloc_marker, store_ignore, NULL) == -1);
  CHECK(cache_lookup_many_alloc(c, NULL, 0, 1, ',', alloc_marker, store_ignore, NULL) == 1);
  /* options */
  CHECK_STATUS(cache_pool_options_set_timeout_ms(NULL, 5), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(NULL, 5), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_replicas(NULL, 5), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_base_path(NULL, "/x/"), CACHE_INVALID_ARGUMENT);
  cache_pool_options *o = cache_pool_options_new();
  CHECK(o != NULL);
  CHECK_STATUS(cache_pool_options_set_base_path(o, NULL), CACHE_INVALID_ARGUMENT);
  cache_pool_options_free(o);
  cache_pool_options_free(NULL);
  /* pools */
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new(NULL, NULL, &p), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, NULL, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, NULL, &p), CACHE_OK);
  CHECK(cache_pool_url(NULL) == NULL);
  CHECK_STATUS(cache_pool_set_peers(NULL, NULL, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(p, NULL, 1), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(p, NULL, SIZE_MAX), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_set_peers(p, NULL, 0), CACHE_OK);
  const char *with_null[2] = {cache_pool_url(p), NULL};
  CHECK_STATUS(cache_pool_set_peers(p, with_null, 2), CACHE_INVALID_ARGUMENT);
  char ubuf[64];
  CHECK_STATUS(cache_pool_owner(NULL, K("k"), ubuf, sizeof ubuf, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_owner(p, NULL, 1, ubuf, sizeof ubuf, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_owner(p, K("k"), NULL, 4, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_owner(p, K("k"), ubuf, sizeof ubuf, NULL), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_owner(p, K("k"), NULL, 0, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == strlen(cache_pool_url(p)));
  cache_pool_free(p);
  cache_pool_free(NULL);
  CHECK_STATUS(cache_log_set(NULL, NULL, 0), CACHE_OK);
  CHECK_STATUS(cache_log_set(NULL, NULL, 6), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_log_set_level(-1), CACHE_INVALID_ARGUMENT);
  CHECK(cache_last_error() != NULL);
  CHECK(cache_version() != NULL);
  cache_free(c);
}

static void case_lengths(void) {
  cache *c = NULL;
  cache_value *v = NULL;
  size_t n = 0;
  uint8_t buf[64];
  static uint8_t key[CACHE_MAX_KEY_LEN + 1];
  memset(key, 'k', sizeof key);
  CHECK_STATUS(cache_new("lengths", 1 << 20, rude_getter, NULL, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_get(c, key, CACHE_MAX_KEY_LEN, &v), CACHE_OK);
  CHECK(cache_value_len(v) == CACHE_MAX_KEY_LEN + 2);
  cache_value_free(v);
  CHECK_STATUS(cache_get(c, key, CACHE_MAX_KEY_LEN + 1, &v), CACHE_INVALID_ARGUMENT);
  /* Lengths near SIZE_MAX with a short buffer: refused before any read. */
  CHECK_STATUS(cache_get(c, key, SIZE_MAX, &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get(c, key, SIZE_MAX / 2 + 1, &v), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, key, SIZE_MAX, buf, sizeof buf, &n), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, key, SIZE_MAX, K("v"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, K("k"), buf, SIZE_MAX, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_set(c, K("k"), buf, ((size_t)4 << 30) + 1, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_remove(c, key, SIZE_MAX), CACHE_INVALID_ARGUMENT);
  CHECK(cache_lookup_alloc(c, key, SIZE_MAX, alloc_marker) == miss_marker());
  /* A cap larger than the buffer is fine while the value fits the buffer. */
  CHECK_STATUS(cache_get_into(c, K("cap"), buf, SIZE_MAX, &n), CACHE_OK);
  CHECK(n == 5 && memcmp(buf, "v:cap", 5) == 0);
  CHECK_STATUS(cache_get_into(c, K("cap"), buf, 4, &n), CACHE_BUFFER_TOO_SMALL);
  CHECK(n == 5);
  /* TTLs at the extremes */
  CHECK_STATUS(cache_set(c, K("t1"), K("v"), INT64_MAX), CACHE_OK);
  CHECK_STATUS(cache_get_into(c, K("t1"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(n == 1 && buf[0] == 'v');
  CHECK_STATUS(cache_set(c, K("t2"), K("v"), INT64_MIN), CACHE_OK);
  CHECK_STATUS(cache_get_into(c, K("t2"), buf, sizeof buf, &n), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("huge-len"), &v), CACHE_OK);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT);
  cache_value_free(v);
  /* max_bytes 0 and UINT64_MAX */
  cache *z = NULL, *m = NULL;
  CHECK_STATUS(cache_new("zero", 0, plain_getter, NULL, NULL, &z), CACHE_OK);
  CHECK_STATUS(cache_get_into(z, K("k"), buf, sizeof buf, &n), CACHE_OK);
  CHECK_STATUS(cache_set(z, K("k"), K("v"), 0), CACHE_OK);
  cache_stats st;
  CHECK_STATUS(cache_stats_get(z, &st), CACHE_OK);
  CHECK(st.main_bytes == 0 && st.hot_bytes == 0);
  CHECK_STATUS(cache_new("max", UINT64_MAX, plain_getter, NULL, NULL, &m), CACHE_OK);
  CHECK_STATUS(cache_get_into(m, K("k"), buf, sizeof buf, &n), CACHE_OK);
  /* pool options at and past their limits */
  cache_pool_options *o = cache_pool_options_new();
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o, UINT32_MAX), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_replicas(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_replicas(o, 10000), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_replicas(o, 10001), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "replicas") != NULL);
  CHECK_STATUS(cache_pool_options_set_replicas(o, UINT32_MAX), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "replicas") != NULL && strstr(cache_last_error(), "4294967295") != NULL);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(o, 0), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "connect_timeout_ms") != NULL);
  cache_pool_options_free(o);
  cache_free(c);
  cache_free(z);
  cache_free(m);
}

static void case_names(void) {
  cache *c = NULL;
  char name[300];
  memset(name, 'n', sizeof name);
  name[CACHE_MAX_NAME_LEN] = 0;
  CHECK_STATUS(cache_new(name, 1, NULL, NULL, NULL, &c), CACHE_OK);
  cache_free(c);
  name[CACHE_MAX_NAME_LEN] = 'n';
  name[CACHE_MAX_NAME_LEN + 1] = 0;
  CHECK_STATUS(cache_new(name, 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  name[sizeof name - 1] = 0;
  CHECK_STATUS(cache_new(name, 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
  const char *bad[] = {"", "a/b", "/", "a\nb", "\t", "\x7f", "\xff", "\xc3", "\xc3\x28",
                       "\xed\xa0\x80" /* a UTF-16 surrogate */, "\xf8\x88\x80\x80\x80",
                       "\xc0\xaf" /* overlong '/' */};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    c = NULL;
    CHECK_STATUS(cache_new(bad[i], 1, NULL, NULL, NULL, &c), CACHE_INVALID_ARGUMENT);
    CHECK(c == NULL);
  }
  /* Fine: non-ASCII UTF-8, spaces, '%', '+', '?' */
  const char *good[] = {"été", "a b", "100%", "a+b", "what?", "日本"};
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    c = NULL;
    CHECK_STATUS(cache_new(good[i], 1, NULL, NULL, p, &c), CACHE_OK);
    cache *dup = NULL;
    CHECK_STATUS(cache_new(good[i], 1, NULL, NULL, p, &dup), CACHE_ALREADY_EXISTS);
    CHECK(dup == NULL);
    cache_free(c);
  }
  cache_pool_free(p);
}

static void case_urls(void) {
  cache_pool *p = NULL, *q = NULL;
  const char *bad_listen[] = {"", "nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:-1",
                              ":::", "http://127.0.0.1:0", "127.0.0.1:0\n"};
  for (size_t i = 0; i < sizeof bad_listen / sizeof *bad_listen; i++) {
    p = NULL;
    int st = cache_pool_new(bad_listen[i], NULL, &p);
    CHECK(st == CACHE_INVALID_ARGUMENT || st == CACHE_IO);
    CHECK(p == NULL);
  }
  const char *bad_url[] = {"", "x", "ftp://h", "https://h", "http://", "http://h?q=1",
                           "http://h:99999", "http:// h", "http://h\n", "\xff"};
  for (size_t i = 0; i < sizeof bad_url / sizeof *bad_url; i++) {
    p = NULL;
    CHECK_STATUS(cache_pool_new("127.0.0.1:0", bad_url[i], &p), CACHE_INVALID_ARGUMENT);
    CHECK(p == NULL);
  }
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  /* The same address again: in use. */
  const char *u = cache_pool_url(p);
  CHECK_STATUS(cache_pool_new(u + strlen("http://"), NULL, &q), CACHE_IO);
  /* A bad list changes nothing. */
  const char *good_then_bad[] = {u, "http://127.0.0.1:1", "https://x"};
  CHECK_STATUS(cache_pool_set_peers(p, good_then_bad, 3), CACHE_INVALID_ARGUMENT);
  /* A port out of range is not "no port" (which would mean port 80). */
  const char *bad_port[] = {u, "http://127.0.0.1:65536"};
  CHECK_STATUS(cache_pool_set_peers(p, bad_port, 2), CACHE_INVALID_ARGUMENT);
  char own[128];
  size_t n = 0;
  for (int i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    CHECK_STATUS(cache_pool_owner(p, K(k), own, sizeof own, &n), CACHE_OK);
    CHECK(strcmp(own, u) == 0);
  }
  const char *long_url_parts = "http://127.0.0.1:1/";
  static char long_url[70000];
  snprintf(long_url, sizeof long_url, "%s", long_url_parts);
  memset(long_url + strlen(long_url_parts), 'a', sizeof long_url - strlen(long_url_parts) - 1);
  const char *longs[] = {u, long_url};
  int st = cache_pool_set_peers(p, longs, 2);
  CHECK(st == CACHE_OK || st == CACHE_INVALID_ARGUMENT);
  /* base paths */
  cache_pool_options *o = cache_pool_options_new();
  const char *bad_base[] = {"", "x", "/x", "x/", "/a?b/", "/a#b/", "/a%20b/", "/a b/"};
  for (size_t i = 0; i < sizeof bad_base / sizeof *bad_base; i++) {
    int s1 = cache_pool_options_set_base_path(o, bad_base[i]);
    if (s1 == CACHE_OK) { /* checked when the pool is made */
      q = NULL;
      CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o, &q), CACHE_INVALID_ARGUMENT);
      CHECK(q == NULL);
    } else {
      CHECK(s1 == CACHE_INVALID_ARGUMENT);
    }
    cache_pool_options_free(o);
    o = cache_pool_options_new();
  }
  cache_pool_options_free(o);
  cache_pool_free(p);
}

static void case_stale_handles(void) {
  cache *c = NULL, *fresh[20];
  cache_value *v = NULL;
  uint8_t buf[16];
  size_t n = 0;
  cache_stats st;
  CHECK_STATUS(cache_new("stale", 1 << 20, plain_getter, NULL, NULL, &c), CACHE_OK);
  CHECK_STATUS(cache_get(c, K("k"), &v), CACHE_OK);
  cache_free(c);
  /* The value outlives its cache. */
  CHECK(cache_value_len(v) == 3 && memcmp(cache_value_data(v), "v:k", 3) == 0);
  cache_value_free(v);
  for (int round = 0; round < 2; round++) {
    CHECK_STATUS(cache_get(c, K("k"), &v), CACHE_CLOSED);
    CHECK_STATUS(cache_get_into(c, K("k"), buf, sizeof buf, &n), CACHE_CLOSED);
    CHECK_STATUS(cache_set(c, K("k"), K("v"), 0), CACHE_CLOSED);
    CHECK_STATUS(cache_remove(c, K("k")), CACHE_CLOSED);
    CHECK_STATUS(cache_stats_get(c, &st), CACHE_CLOSED);
    CHECK(cache_lookup_alloc(c, K("k"), alloc_marker) == miss_marker());
    cache_free(c); /* double free: a no-op */
    cache_free(c);
    /* New caches (the same name too) never revive the old handle. */
    for (int i = 0; i < 20; i++)
      CHECK_STATUS(cache_new("stale", 1 << 20, plain_getter, NULL, NULL, &fresh[i]), CACHE_OK);
    CHECK_STATUS(cache_get(c, K("k"), &v), CACHE_CLOSED);
    for (int i = 0; i < 20; i++) cache_free(fresh[i]);
  }
  /* Pools */
  cache_pool *p = NULL;
  cache *pc = NULL;
  CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &p), CACHE_OK);
  CHECK_STATUS(cache_new("pc", 1 << 20, plain_getter, NULL, p, &pc), CACHE_OK);
  char url[64];
  snprintf(url, sizeof url, "%s", cache_pool_url(p));
  const char *urls[] = {url, "http://127.0.0.1:1"};
  CHECK_STATUS(cache_pool_set_peers(p, urls, 2), CACHE_OK);
  cache_pool_free(p);
  CHECK(cache_pool_url(p) == NULL);
  CHECK_STATUS(cache_pool_set_peers(p, urls, 1), CACHE_CLOSED);
  char ubuf[64];
  CHECK_STATUS(cache_pool_owner(p, K("k"), ubuf, sizeof ubuf, &n), CACHE_CLOSED);
  cache *late = NULL;
  CHECK_STATUS(cache_new("late", 1, NULL, NULL, p, &late), CACHE_CLOSED);
  cache_pool_free(p);
  cache_pool_free(p);
  cache_pool *others[5];
  for (int i = 0; i < 5; i++) CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &others[i]), CACHE_OK);
  CHECK(cache_pool_url(p) == NULL);
  for (int i = 0; i < 5; i++) cache_pool_free(others[i]);
  /* Its cache goes on as a local cache: no peer is asked (the dead peer
     at port 1 would make these fail or be slow). */
  for (int i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    CHECK_STATUS(cache_get_into(pc, K(k), buf, sizeof buf, &n), CACHE_OK);
  }
  CHECK_STATUS(cache_stats_get(pc, &st), CACHE_OK);
  CHECK(st.peer_errors == 0);
  cache_free(pc);
  /* Options are handles too: see case_options_handles. */
}

static void case_options_handles(void) {
  /* A double free after another options object took the first one's place
   * must not free the new one (it did when options were a raw pointer: the
   * new object usually got the freed one's address). */
  cache_pool_options *o1 = cache_pool_options_new();
  CHECK(o1 != NULL);
  CHECK_STATUS(cache_pool_options_set_replicas(o1, 7), CACHE_OK);
  cache_pool_options_free(o1);
  cache_pool_options *o2 = cache_pool_options_new();
  CHECK(o2 != NULL);
  CHECK(o2 != o1); /* a handle is never reused */
  cache_pool_options_free(o1); /* double free: a no-op */
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o2, 300), CACHE_OK);
  CHECK_STATUS(cache_pool_options_set_replicas(o2, 60), CACHE_OK);
  /* The freed handle is refused by every call. */
  CHECK_STATUS(cache_pool_options_set_replicas(o1, 7), CACHE_INVALID_ARGUMENT);
  CHECK(strstr(cache_last_error(), "cache_pool_options") != NULL);
  CHECK_STATUS(cache_pool_options_set_timeout_ms(o1, 7), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_connect_timeout_ms(o1, 7), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_base_path(o1, "/x/"), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_pool_options_set_secret(o1, "s"), CACHE_INVALID_ARGUMENT);
  cache_pool *p = NULL;
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o1, &p), CACHE_INVALID_ARGUMENT);
  CHECK(p == NULL);
  /* The new one is intact and works. */
  CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, o2, &p), CACHE_OK);
  cache_pool_free(p);
  cache_pool_options_free(o2);
  cache_pool_options_free(o2);
  /* Many rounds of new/free/double free: each new object stays live. */
  for (int i = 0; i < 100; i++) {
    cache_pool_options *a = cache_pool_options_new();
    cache_pool_options_free(a);
    cache_pool_options *b = cache_pool_options_new();
    cache_pool_options_free(a);
    CHECK_STATUS(cache_pool_options_set_replicas(b, 1 + (uint32_t)i), CACHE_OK);
    cache_pool_options_free(b);
  }
  /* Values that were never handles: refused, never dereferenced. */
  cache_pool_options *bogus[] = {(cache_pool_options *)(uintptr_t)1, (cache_pool_options *)(uintptr_t)0xdeadbeef,
                                 (cache_pool_options *)(uintptr_t)UINTPTR_MAX, (cache_pool_options *)&p};
  for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
    CHECK_STATUS(cache_pool_options_set_timeout_ms(bogus[i], 5), CACHE_INVALID_ARGUMENT);
    CHECK_STATUS(cache_pool_new_with_options("127.0.0.1:0", NULL, bogus[i], &p), CACHE_INVALID_ARGUMENT);
    cache_pool_options_free(bogus[i]);
  }
}

static void case_getters(void) {
  cache *c = NULL;
  uint8_t buf[64];
  size_t n = 0;
  CHECK_STATUS(cache_new("rude", 1 << 20, rude_getter, NULL, NULL, &c), CACHE_OK);
  self_cache = c;
  CHECK_STATUS(cache_get_into(c, K("twice"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(n == 6 && memcmp(buf, "second", 6) == 0);
  CHECK_STATUS(cache_get_into(c, K("fail-after-set"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK(strstr(cache_last_error(), "changed my mind") != NULL);
  CHECK_STATUS(cache_get_into(c, K("set-then-error"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get_into(c, K("set-then-not-found"), buf, sizeof buf, &n), CACHE_NOT_FOUND);
  CHECK_STATUS(cache_get_into(c, K("nothing"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get_into(c, K("negative"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get_into(c, K("int-min"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get_into(c, K("fail-null-msg"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT);
  /* Failures and "not found" are not cached: the getter runs again. */
  int before = atomic_load(&getter_calls);
  CHECK_STATUS(cache_get_into(c, K("nothing"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK_STATUS(cache_get_into(c, K("set-then-not-found"), buf, sizeof buf, &n), CACHE_NOT_FOUND);
  CHECK(atomic_load(&getter_calls) == before + 2);
  /* Re-entry: its own key is refused (no deadlock), another key works. */
  CHECK_STATUS(cache_get_into(c, K("reenter-same"), buf, sizeof buf, &n), CACHE_LOADER_FAILED);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("reenter-other"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(n == 7 && memcmp(buf, "v:plain", 7) == 0);
  CHECK_STATUS(cache_get_into(c, K("reenter-set-remove"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(inner_status == CACHE_OK);
  /* The remove inside the load cancels its caching: the next get loads. */
  before = atomic_load(&getter_calls);
  CHECK_STATUS(cache_get_into(c, K("reenter-set-remove"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(atomic_load(&getter_calls) == before + 1);
  /* A sink used after its getter returned, or from another thread. */
  CHECK_STATUS(cache_get_into(c, K("keep-sink"), buf, sizeof buf, &n), CACHE_OK);
  CHECK_STATUS(cache_sink_set(stale_sink, K("late"), 0), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_sink_fail(stale_sink, "late"), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_get_into(c, K("other-thread-sink"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT);
  CHECK(n == 4 && memcmp(buf, "mine", 4) == 0);
  CHECK_STATUS(cache_get_into(c, K("null-value"), buf, sizeof buf, &n), CACHE_OK);
  CHECK(inner_status == CACHE_INVALID_ARGUMENT && n == 0);
  /* A getter that frees its own cache: the call in progress finishes. */
  int st = cache_get_into(c, K("free-own-cache"), buf, sizeof buf, &n);
  CHECK(st == CACHE_OK || st == CACHE_CLOSED);
  CHECK_STATUS(cache_get_into(c, K("k"), buf, sizeof buf, &n), CACHE_CLOSED);
  cache_free(c);
}

/* ---- frees racing with calls ---- */

static atomic_int racing_stop, bad_status;

static void *hammer_cache(void *arg) {
  cache *c = (cache *)arg;
  uint8_t buf[64];
  size_t n = 0;
  cache_stats st;
  unsigned i = 0;
  while (!atomic_load(&racing_stop)) {
    char k[16];
    snprintf(k, sizeof k, "k%u", i++ % 97);
    int s;
    cache_value *v = NULL;
    switch (i % 6) {
      case 0: s = cache_get(c, K(k), &v); if (s == CACHE_OK) cache_value_free(v); break;
      case 1: s = cache_get_into(c, K(k), buf, sizeof buf, &n); break;
      case 2: s = cache_set(c, K(k), K("set"), 0); break;
      case 3: s = cache_remove(c, K(k)); break;
      case 4: s = cache_stats_get(c, &st); break;
      default: {
        void *o = cache_lookup_alloc(c, K(k), alloc_marker);
        if (o != miss_marker()) free(o);
        s = CACHE_OK;
      }
    }
    if (s != CACHE_OK && s != CACHE_CLOSED) {
      atomic_fetch_add(&bad_status, 1);
      fprintf(stderr, "racing call returned %d: %s\n", s, cache_last_error());
    }
    if (s == CACHE_CLOSED) break;
  }
  return NULL;
}

static void case_cache_free_races(void) {
  for (int round = 0; round < 20; round++) {
    cache *c = NULL;
    CHECK_STATUS(cache_new("race", 4096, round % 2 ? slow_getter : plain_getter, NULL, NULL, &c), CACHE_OK);
    pthread_t t[6];
    atomic_store(&racing_stop, 0);
    for (int i = 0; i < 6; i++) pthread_create(&t[i], NULL, hammer_cache, c);
    sleep_ms(5 + round % 7);
    cache_free(c);
    sleep_ms(2);
    atomic_store(&racing_stop, 1);
    for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
    cache_free(c);
  }
  CHECK(atomic_load(&bad_status) == 0);
}

struct pool_race {
  cache_pool *p;
  cache *c;
  const char *const *urls;
};

static void *hammer_pool(void *arg) {
  struct pool_race *r = (struct pool_race *)arg;
  char buf[128];
  size_t n = 0;
  unsigned i = 0;
  while (!atomic_load(&racing_stop)) {
    char k[16];
    snprintf(k, sizeof k, "k%u", i++ % 97);
    int s;
    switch (i % 3) {
      case 0: s = cache_pool_owner(r->p, K(k), buf, sizeof buf, &n); break;
      case 1: s = cache_pool_set_peers(r->p, r->urls, 2); break;
      default: s = cache_get_into(r->c, K(k), (uint8_t *)buf, sizeof buf, &n); break;
    }
    (void)cache_pool_url(r->p); /* NULL once freed; not dereferenced */
    if (s != CACHE_OK && s != CACHE_CLOSED) {
      atomic_fetch_add(&bad_status, 1);
      fprintf(stderr, "racing pool call returned %d: %s\n", s, cache_last_error());
    }
  }
  return NULL;
}

static void case_pool_free_races(void) {
  /* Two nodes; node b is freed while threads use it, its cache, and node a
     (whose peer b disappears: a's gets fall back to local loads). */
  for (int round = 0; round < 6; round++) {
    cache_pool *a = NULL, *b = NULL;
    cache *ca = NULL, *cb = NULL;
    CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &a), CACHE_OK);
    CHECK_STATUS(cache_pool_new("127.0.0.1:0", NULL, &b), CACHE_OK);
    static char ua[64], ub[64];
    snprintf(ua, sizeof ua, "%s", cache_pool_url(a));
    snprintf(ub, sizeof ub, "%s", cache_pool_url(b));
    const char *urls[] = {ua, ub};
    CHECK_STATUS(cache_pool_set_peers(a, urls, 2), CACHE_OK);
    CHECK_STATUS(cache_pool_set_peers(b, urls, 2), CACHE_OK);
    CHECK_STATUS(cache_new("g", 1 << 20, round % 2 ? slow_getter : plain_getter, NULL, a, &ca), CACHE_OK);
    CHECK_STATUS(cache_new("g", 1 << 20, plain_getter, NULL, b, &cb), CACHE_OK);
    struct pool_race ra = {a, ca, urls}, rb = {b, cb, urls};
    pthread_t t[4];
    atomic_store(&racing_stop, 0);
    pthread_create(&t[0], NULL, hammer_pool, &ra);
    pthread_create(&t[1], NULL, hammer_pool, &ra);
    pthread_create(&t[2], NULL, hammer_pool, &rb);
    pthread_create(&t[3], NULL, hammer_pool, &rb);
    sleep_ms(20 + round * 5);
    cache_pool_free(b);
    sleep_ms(20);
    atomic_store(&racing_stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    cache_pool_free(b);
    cache_free(cb);
    cache_free(ca);
    cache_pool_free(a);
  }
  CHECK(atomic_load(&bad_status) == 0);
}

/* ---- the runner ---- */

struct test_case {
  const char *name;
  void (*fn)(void);
};

static const struct test_case cases[] = {
    {"null_pointers", case_null_pointers},
    {"lengths", case_lengths},
    {"names", case_names},
    {"urls", case_urls},
    {"stale_handles", case_stale_handles},
    {"options_handles", case_options_handles},
    {"getters", case_getters},
    {"cache_free_races", case_cache_free_races},
    {"pool_free_races", case_pool_free_races},
};

/* Runs one case in a child; its counts come back through a pipe. */
static void run_case(const struct test_case *tc) {
  int fds[2];
  if (pipe(fds) != 0) {
    perror("pipe");
    exit(2);
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    checks_passed = checks_failed = 0; /* this case's own counts */
    alarm(60);
    tc->fn();
    int counts[2] = {checks_passed, checks_failed};
    if (write(fds[1], counts, sizeof counts) != (ssize_t)sizeof counts) _exit(3);
    _exit(0);
  }
  close(fds[1]);
  int counts[2] = {0, 0};
  ssize_t got = read(fds[0], counts, sizeof counts);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got == (ssize_t)sizeof counts && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    checks_passed += counts[0];
    checks_failed += counts[1];
    printf("  %-18s %d passed, %d failed\n", tc->name, counts[0], counts[1]);
  } else {
    checks_failed++;
    if (WIFSIGNALED(status))
      printf("  %-18s CRASHED: signal %d (%s)\n", tc->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
      printf("  %-18s DIED: exit status %d\n", tc->name, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
}

int main(int argc, char **argv) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int wanted = argc < 2;
    for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], cases[i].name) == 0;
    if (wanted) run_case(&cases[i]);
  }
  return checks_report("test_adversarial");
}
