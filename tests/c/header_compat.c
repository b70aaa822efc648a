/* The header compiles cleanly in every language mode a user may pick:
 * `make test-header` builds this file as C89, C99, C11, C++98 and C++17
 * with -Wall -Wextra -pedantic -Werror, and runs each build. So it is
 * written in the intersection of those: C89 declarations, no // comments,
 * no bool, casts where C++ needs them. */
#include "groupcache.h"

#include <stdio.h>
#include <string.h>

/* A getter of exactly cache_getter_fn's type. */
static int32_t getter(void *user_data, const uint8_t *key, size_t key_len, struct cache_sink *sink) {
  (void)user_data;
  return (int32_t)cache_sink_set(sink, key, key_len, 0);
}

static const char *name_of(enum cache_status st) {
  switch (st) {
    case CACHE_OK: return "CACHE_OK";
    case CACHE_NOT_FOUND: return "CACHE_NOT_FOUND";
    case CACHE_INVALID_ARGUMENT: return "CACHE_INVALID_ARGUMENT";
    case CACHE_LOADER_FAILED: return "CACHE_LOADER_FAILED";
    case CACHE_PEER_FAILED: return "CACHE_PEER_FAILED";
    case CACHE_TIMEOUT: return "CACHE_TIMEOUT";
    case CACHE_CLOSED: return "CACHE_CLOSED";
    case CACHE_BUFFER_TOO_SMALL: return "CACHE_BUFFER_TOO_SMALL";
    case CACHE_ALREADY_EXISTS: return "CACHE_ALREADY_EXISTS";
    case CACHE_IO: return "CACHE_IO";
    case CACHE_PANIC: return "CACHE_PANIC";
    default: return "another status";
  }
}

/* Compile-time checks that work in C89: a negative array size fails. */
typedef char stats_are_counters[sizeof(struct cache_stats) % 8 == 0 ? 1 : -1];
typedef char version_is_usable_in_if[GROUPCACHE_VERSION_NUMBER >= 0 ? 1 : -1];
#if GROUPCACHE_VERSION_MAJOR < 0 || CACHE_MAX_KEY_LEN < 1
#error "the header's macros are not usable in #if"
#endif

int main(void) {
  struct cache *c = NULL;
  struct cache_value *v = NULL;
  struct cache_stats s;
  cache_getter_fn fn = getter;
  enum cache_status st;
  int failed = 0;

  st = cache_new("compat", 1024, fn, NULL, NULL, &c);
  if (st != CACHE_OK) {
    printf("cache_new: %s (%s)\n", name_of(st), cache_last_error());
    return 1;
  }
  st = cache_get(c, (const uint8_t *)"key", 3, &v);
  if (st != CACHE_OK || cache_value_len(v) != 3 || memcmp(cache_value_data(v), "key", 3) != 0) {
    printf("cache_get: %s\n", name_of(st));
    failed = 1;
  }
  cache_value_free(v);
  st = cache_stats_get_sized(c, &s, sizeof s);
  if (st != CACHE_OK || s.gets != 1 || s.local_loads != 1) {
    printf("cache_stats_get_sized: %s\n", name_of(st));
    failed = 1;
  }
  cache_free(c);
  if (cache_version_number() != GROUPCACHE_VERSION_NUMBER) {
    printf("header %d, library %lu\n", GROUPCACHE_VERSION_NUMBER, (unsigned long)cache_version_number());
    failed = 1;
  }
  return failed;
}
