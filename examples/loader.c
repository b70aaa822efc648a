/*
 * A C program with a getter that loads from a small in-memory "database":
 * hits, misses, single-flight (eight threads, one load) and stats.
 *
 *   cc -Iinclude examples/loader.c -Ltarget/release -lgroupcache -lpthread \
 *      -Wl,-rpath,$PWD/target/release -o loader && ./loader
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "groupcache.h"

struct row {
  const char *id;
  const char *name;
};

static const struct row DB[] = {
    {"1", "Ada Lovelace"}, {"2", "Grace Hopper"}, {"3", "Barbara Liskov"},
};

static atomic_int db_reads;

/* The getter: a slow database read. Runs on the thread that missed. */
static int32_t load_user(void *user_data, const uint8_t *key, size_t key_len,
                         cache_sink *sink) {
  (void)user_data;
  atomic_fetch_add(&db_reads, 1);
  usleep(100 * 1000); /* 100 ms, so concurrent gets overlap */
  for (size_t i = 0; i < sizeof DB / sizeof DB[0]; i++) {
    if (strlen(DB[i].id) == key_len && memcmp(DB[i].id, key, key_len) == 0) {
      return cache_sink_set(sink, (const uint8_t *)DB[i].name, strlen(DB[i].name), 0);
    }
  }
  return CACHE_NOT_FOUND;
}

static cache *users;

static void *reader(void *arg) {
  (void)arg;
  cache_value *v = NULL;
  if (cache_get(users, (const uint8_t *)"2", 1, &v) == CACHE_OK) cache_value_free(v);
  return NULL;
}

static void show(const char *key) {
  cache_value *v = NULL;
  cache_status st = cache_get(users, (const uint8_t *)key, strlen(key), &v);
  if (st == CACHE_OK) {
    printf("  get %-3s -> %.*s\n", key, (int)cache_value_len(v), (const char *)cache_value_data(v));
    cache_value_free(v);
  } else {
    printf("  get %-3s -> status %d (%s)\n", key, (int)st, cache_last_error());
  }
}

int main(void) {
  if (cache_new("users", 1 << 20, load_user, NULL, NULL, &users) != CACHE_OK) {
    fprintf(stderr, "cache_new: %s\n", cache_last_error());
    return 1;
  }
  printf("miss, then hit:\n");
  show("1");
  show("1");
  printf("a key the database does not have:\n");
  show("42");

  printf("eight threads ask for user 2 at once:\n");
  pthread_t t[8];
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, reader, NULL);
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  printf("  database reads so far: %d (1 + 1 + 1: the stampede was one load)\n",
         atomic_load(&db_reads));

  uint8_t buf[64];
  size_t len = 0;
  if (cache_get_into(users, (const uint8_t *)"3", 1, buf, sizeof buf, &len) == CACHE_OK)
    printf("cache_get_into: %.*s\n", (int)len, buf);

  cache_set(users, (const uint8_t *)"1", 1, (const uint8_t *)"Ada King", 8, 0);
  printf("after cache_set:\n");
  show("1");
  cache_remove(users, (const uint8_t *)"1", 1);
  printf("after cache_remove (reloaded from the database):\n");
  show("1");

  cache_stats s;
  cache_stats_get_sized(users, &s, sizeof s);
  printf("stats: gets=%" PRIu64 " hits=%" PRIu64 " loads=%" PRIu64 " loads_deduped=%" PRIu64
         " local_loads=%" PRIu64 " local_load_errs=%" PRIu64 " items=%" PRIu64 " bytes=%" PRIu64 "\n",
         s.gets, s.cache_hits, s.loads, s.loads_deduped, s.local_loads, s.local_load_errs,
         s.main_items, s.main_bytes);
  cache_free(users);
  return 0;
}
