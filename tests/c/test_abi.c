/* The ABI across versions: struct cache_stats read by programs built
 * against older and newer headers (guard bytes after each struct must
 * stay untouched), and the version macros against the library. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "groupcache.h"

#define K(s) (const uint8_t *)(s), strlen(s)
#define GUARD 0xA5

/* What a program built against a header with the first five counters
 * only would declare. */
struct old_stats {
  uint64_t gets;
  uint64_t cache_hits;
  uint64_t peer_loads;
  uint64_t peer_errors;
  uint64_t loads;
};

static int all_bytes_are(const void *p, size_t n, unsigned char b) {
  const unsigned char *q = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    if (q[i] != b) return 0;
  return 1;
}

static int32_t getter(void *ud, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)ud;
  if (len > 0 && key[0] == 'x') return CACHE_NOT_FOUND;
  return cache_sink_set(sink, key, len, 0);
}

/* A cache whose first counters all differ, so a shifted or partial copy
 * shows. */
static cache *busy_cache(void) {
  cache *c = NULL;
  CHECK_STATUS(cache_new("abi", 1 << 20, getter, NULL, NULL, &c), CACHE_OK);
  const char *keys[] = {"a", "b", "c", "a", "a", "xa", "xb", "b"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    cache_value *v = NULL;
    cache_status st = cache_get(c, K(keys[i]), &v);
    CHECK(st == CACHE_OK || st == CACHE_NOT_FOUND);
    cache_value_free(v);
  }
  return c;
}

static void test_stats_sizes(void) {
  cache *c = busy_cache();

  /* The full-size caller. */
  struct {
    cache_stats s;
    unsigned char guard[64];
  } full;
  memset(&full, GUARD, sizeof full);
  CHECK_STATUS(cache_stats_get_sized(c, &full.s, sizeof full.s), CACHE_OK);
  CHECK(all_bytes_are(full.guard, sizeof full.guard, GUARD));
  CHECK(full.s.gets == 8);
  CHECK(full.s.cache_hits == 3);
  CHECK(full.s.loads == 5);
  CHECK(full.s.local_loads == 3);
  CHECK(full.s.local_load_errs == 2);
  CHECK(full.s.main_items == 3);
  CHECK(full.s.hot_items == 0);

  /* An older, shorter struct: its fields are filled, nothing after it. */
  struct {
    struct old_stats s;
    unsigned char guard[sizeof(cache_stats)];
  } old;
  memset(&old, GUARD, sizeof old);
  CHECK_STATUS(cache_stats_get_sized(c, (cache_stats *)(void *)&old.s, sizeof old.s), CACHE_OK);
  CHECK(all_bytes_are(old.guard, sizeof old.guard, GUARD));
  CHECK(old.s.gets == full.s.gets);
  CHECK(old.s.cache_hits == full.s.cache_hits);
  CHECK(old.s.peer_loads == full.s.peer_loads);
  CHECK(old.s.peer_errors == full.s.peer_errors);
  CHECK(old.s.loads == full.s.loads);

  /* A newer, longer struct: the counters this library does not know are
   * 0, and nothing after the struct is written. */
  struct {
    cache_stats s;
    uint64_t future[3];
    unsigned char guard[64];
  } newer;
  memset(&newer, GUARD, sizeof newer);
  CHECK_STATUS(cache_stats_get_sized(c, &newer.s, sizeof newer.s + sizeof newer.future), CACHE_OK);
  CHECK(memcmp(&newer.s, &full.s, sizeof full.s) == 0);
  CHECK(all_bytes_are(newer.future, sizeof newer.future, 0));
  CHECK(all_bytes_are(newer.guard, sizeof newer.guard, GUARD));

  /* cache_stats_get writes the 19 counters of 0.1 (152 bytes), never
   * more, whatever this header's struct has grown to. */
  CHECK(sizeof(cache_stats) >= 152);
  struct {
    cache_stats s;
    unsigned char guard[64];
  } legacy;
  memset(&legacy, GUARD, sizeof legacy);
  CHECK_STATUS(cache_stats_get(c, &legacy.s), CACHE_OK);
  CHECK(memcmp(&legacy.s, &full.s, 152) == 0);
  CHECK(all_bytes_are((unsigned char *)&legacy + 152, sizeof legacy - 152, GUARD));

  /* Sizes no struct cache_stats has: refused, nothing written. */
  size_t bad[] = {0, 1, 7, 12, 153};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&full, GUARD, sizeof full);
    CHECK_STATUS(cache_stats_get_sized(c, &full.s, bad[i]), CACHE_INVALID_ARGUMENT);
    CHECK(all_bytes_are(&full, sizeof full, GUARD));
  }
  CHECK(strstr(cache_last_error(), "out_size") != NULL);
  CHECK_STATUS(cache_stats_get_sized(c, NULL, sizeof(cache_stats)), CACHE_INVALID_ARGUMENT);
  CHECK_STATUS(cache_stats_get_sized(NULL, &full.s, sizeof full.s), CACHE_INVALID_ARGUMENT);

  cache_free(c);
  memset(&full, GUARD, sizeof full);
  CHECK_STATUS(cache_stats_get_sized(c, &full.s, sizeof full.s), CACHE_CLOSED);
  CHECK(all_bytes_are(&full, sizeof full, GUARD));
}

/* The header's version (macros, usable in #if) and the library's agree. */
#if GROUPCACHE_VERSION_NUMBER != GROUPCACHE_VERSION_MAJOR * 1000000 + GROUPCACHE_VERSION_MINOR * 1000 + GROUPCACHE_VERSION_PATCH
#error "GROUPCACHE_VERSION_NUMBER is not MAJOR * 1000000 + MINOR * 1000 + PATCH"
#endif

static void test_versions(void) {
  char header[40];
  snprintf(header, sizeof header, "%d.%d.%d", GROUPCACHE_VERSION_MAJOR, GROUPCACHE_VERSION_MINOR,
           GROUPCACHE_VERSION_PATCH);
  CHECK(strcmp(cache_version(), header) == 0);
  CHECK(cache_version_number() == GROUPCACHE_VERSION_NUMBER);
}

int main(void) {
  test_stats_sizes();
  test_versions();
  return checks_report("test_abi");
}
