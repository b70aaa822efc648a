/*
 * cnode: one node of ours (libgroupcache), for the interop tests, driven by
 * a line protocol on stdin/stdout. Keys and values are hex-encoded, so they
 * are binary-safe (an empty hex string is the empty key).
 *
 *   cnode LISTEN_ADDR SELF_URL GROUP PEERS
 *
 * LISTEN_ADDR e.g. 127.0.0.1:0; SELF_URL "-" means "http://<bound address>";
 * PEERS comma-separated URLs ("-" or "" for none yet: see `peers`).
 *
 * Its getter has exactly the semantics of tests/interop/gonode's, and counts
 * its calls per key (failures too):
 *   "missing:..."  CACHE_NOT_FOUND
 *   "big:..."      1 MiB, byte i = (i*31 + len(key)) % 251
 *   anything else  "v:" + key
 *
 * Prints "ready URL" once it serves, then answers one command a line:
 *   get HEX               ok HEX | err STATUS MESSAGE
 *   set HEXKEY HEXVAL     ok | err STATUS MESSAGE      (no TTL)
 *   remove HEX            ok | err STATUS MESSAGE
 *   owner HEX             the owner's URL (cache_pool_owner) | err ...
 *   loads                 "loads N", then N lines "HEXKEY COUNT"
 *   reset                 ok (forgets the getter counts)
 *   stats                 the cache_stats fields, "name=value" separated by spaces
 *   peers URL,URL,...     ok | err ...   (cache_pool_set_peers)
 *   quit                  frees the cache and the pool, exits 0
 * STATUS is the status name without "CACHE_" (e.g. NOT_FOUND); MESSAGE is
 * cache_last_error() on one line. An unknown command is "err USAGE ...".
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupcache.h"

#define BIG_SIZE (1u << 20)

/* ---- getter calls per key: a small chained hash table under a mutex ---- */

struct entry {
  struct entry *next;
  uint64_t count;
  size_t len;
  uint8_t key[];
};

#define BUCKETS 4096
static struct entry *buckets[BUCKETS];
static size_t nentries;
static pthread_mutex_t loads_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void count_load(const uint8_t *key, size_t len) {
  size_t b = (size_t)(fnv1a(key, len) % BUCKETS);
  pthread_mutex_lock(&loads_mu);
  struct entry *e = buckets[b];
  while (e && !(e->len == len && memcmp(e->key, key, len) == 0)) e = e->next;
  if (!e) {
    e = malloc(sizeof *e + len + 1);
    if (!e) abort();
    e->len = len;
    e->count = 0;
    if (len) memcpy(e->key, key, len);
    e->next = buckets[b];
    buckets[b] = e;
    nentries++;
  }
  e->count++;
  pthread_mutex_unlock(&loads_mu);
}

static void reset_loads(void) {
  pthread_mutex_lock(&loads_mu);
  for (size_t b = 0; b < BUCKETS; b++) {
    struct entry *e = buckets[b];
    while (e) {
      struct entry *next = e->next;
      free(e);
      e = next;
    }
    buckets[b] = NULL;
  }
  nentries = 0;
  pthread_mutex_unlock(&loads_mu);
}

/* ---- the getter, as gonode's ---- */

static int has_prefix(const uint8_t *key, size_t len, const char *prefix) {
  size_t n = strlen(prefix);
  return len >= n && memcmp(key, prefix, n) == 0;
}

static int32_t getter(void *user_data, const uint8_t *key, size_t len, cache_sink *sink) {
  (void)user_data;
  count_load(key, len);
  if (has_prefix(key, len, "missing:")) return CACHE_NOT_FOUND;
  if (has_prefix(key, len, "big:")) {
    uint8_t *b = malloc(BIG_SIZE);
    if (!b) {
      cache_sink_fail(sink, "out of memory");
      return CACHE_LOADER_FAILED;
    }
    for (size_t i = 0; i < BIG_SIZE; i++) b[i] = (uint8_t)((i * 31 + len) % 251);
    int32_t st = cache_sink_set(sink, b, BIG_SIZE, 0);
    free(b);
    return st;
  }
  uint8_t *v = malloc(len + 2);
  if (!v) {
    cache_sink_fail(sink, "out of memory");
    return CACHE_LOADER_FAILED;
  }
  v[0] = 'v';
  v[1] = ':';
  if (len) memcpy(v + 2, key, len);
  int32_t st = cache_sink_set(sink, v, len + 2, 0);
  free(v);
  return st;
}

/* ---- hex ---- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes `s` in place; returns the length, or -1 for bad hex. */
static long unhex(char *s) {
  size_t n = strlen(s);
  if (n % 2) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    s[i] = (char)(hi << 4 | lo);
  }
  return (long)(n / 2);
}

static void put_hex(const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char buf[8192];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    buf[k++] = digits[p[i] >> 4];
    buf[k++] = digits[p[i] & 15];
    if (k == sizeof buf) {
      fwrite(buf, 1, k, stdout);
      k = 0;
    }
  }
  fwrite(buf, 1, k, stdout);
}

/* ---- replies ---- */

static const char *status_name(int st) {
  switch (st) {
    case CACHE_OK: return "OK";
    case CACHE_NOT_FOUND: return "NOT_FOUND";
    case CACHE_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case CACHE_LOADER_FAILED: return "LOADER_FAILED";
    case CACHE_PEER_FAILED: return "PEER_FAILED";
    case CACHE_TIMEOUT: return "TIMEOUT";
    case CACHE_CLOSED: return "CLOSED";
    case CACHE_BUFFER_TOO_SMALL: return "BUFFER_TOO_SMALL";
    case CACHE_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case CACHE_IO: return "IO";
    case CACHE_PANIC: return "PANIC";
    default: return "UNKNOWN";
  }
}

/* "err STATUS MESSAGE", the message on one line. Call right after the
 * failing library call (cache_last_error is per thread, per last call). */
static void reply_err(int st) {
  const char *msg = cache_last_error();
  printf("err %s ", status_name(st));
  for (const char *p = msg ? msg : ""; *p; p++) putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
  putchar('\n');
}

static void reply_status(int st) {
  if (st == CACHE_OK)
    puts("ok");
  else
    reply_err(st);
}

static void usage(const char *what) { printf("err USAGE %s\n", what); }

/* Splits "a,b,c" (modified in place) into urls; returns the count. */
static size_t split_peers(char *list, const char **urls, size_t cap) {
  size_t n = 0;
  if (!list || strcmp(list, "-") == 0) return 0;
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && n < cap; tok = strtok_r(NULL, ",", &save))
    if (*tok) urls[n++] = tok;
  return n;
}

#define MAX_PEERS 64

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s LISTEN_ADDR SELF_URL GROUP PEERS_COMMA_SEPARATED\n", argv[0]);
    return 2;
  }
  const char *self_url = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
  cache_pool *pool = NULL;
  int st = cache_pool_new(argv[1], self_url, &pool);
  if (st != CACHE_OK) {
    fprintf(stderr, "cnode: cache_pool_new(%s): %s: %s\n", argv[1], status_name(st), cache_last_error());
    return 1;
  }
  const char *urls[MAX_PEERS];
  size_t n = split_peers(argv[4], urls, MAX_PEERS);
  if (n > 0 && (st = cache_pool_set_peers(pool, urls, n)) != CACHE_OK) {
    fprintf(stderr, "cnode: cache_pool_set_peers: %s: %s\n", status_name(st), cache_last_error());
    return 1;
  }
  cache *c = NULL;
  st = cache_new(argv[3], 64u << 20, getter, NULL, pool, &c);
  if (st != CACHE_OK) {
    fprintf(stderr, "cnode: cache_new(%s): %s: %s\n", argv[3], status_name(st), cache_last_error());
    return 1;
  }
  printf("ready %s\n", cache_pool_url(pool));
  fflush(stdout);

  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, stdin)) >= 0) {
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    else arg = line + got; /* "" */
    const char *cmd = line;

    if (strcmp(cmd, "get") == 0) {
      long kn = unhex(arg);
      if (kn < 0) {
        usage("get HEX");
      } else {
        cache_value *v = NULL;
        st = cache_get(c, (const uint8_t *)arg, (size_t)kn, &v);
        if (st == CACHE_OK) {
          fputs("ok ", stdout);
          put_hex(cache_value_data(v), cache_value_len(v));
          putchar('\n');
          cache_value_free(v);
        } else {
          reply_err(st);
        }
      }
    } else if (strcmp(cmd, "set") == 0) {
      char *val = strchr(arg, ' ');
      if (!val) val = arg + strlen(arg);
      else *val++ = 0;
      long kn = unhex(arg), vn = unhex(val);
      if (kn < 0 || vn < 0)
        usage("set HEXKEY HEXVAL");
      else
        reply_status(cache_set(c, (const uint8_t *)arg, (size_t)kn, (const uint8_t *)val, (size_t)vn, 0));
    } else if (strcmp(cmd, "remove") == 0) {
      long kn = unhex(arg);
      if (kn < 0)
        usage("remove HEX");
      else
        reply_status(cache_remove(c, (const uint8_t *)arg, (size_t)kn));
    } else if (strcmp(cmd, "owner") == 0) {
      long kn = unhex(arg);
      char url[1024];
      size_t ulen = 0;
      if (kn < 0) {
        usage("owner HEX");
      } else if ((st = cache_pool_owner(pool, (const uint8_t *)arg, (size_t)kn, url, sizeof url, &ulen)) != CACHE_OK) {
        reply_err(st);
      } else {
        fwrite(url, 1, ulen, stdout);
        putchar('\n');
      }
    } else if (strcmp(cmd, "loads") == 0) {
      pthread_mutex_lock(&loads_mu);
      printf("loads %zu\n", nentries);
      for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry *e = buckets[b]; e; e = e->next) {
          put_hex(e->key, e->len);
          printf(" %llu\n", (unsigned long long)e->count);
        }
      pthread_mutex_unlock(&loads_mu);
    } else if (strcmp(cmd, "reset") == 0) {
      reset_loads();
      puts("ok");
    } else if (strcmp(cmd, "stats") == 0) {
      cache_stats s;
      if ((st = cache_stats_get_sized(c, &s, sizeof s)) != CACHE_OK) {
        reply_err(st);
      } else {
#define F(name) (unsigned long long)s.name
        printf("gets=%llu cache_hits=%llu peer_loads=%llu peer_errors=%llu loads=%llu loads_deduped=%llu "
               "local_loads=%llu local_load_errs=%llu server_requests=%llu "
               "main_bytes=%llu main_items=%llu main_gets=%llu main_hits=%llu main_evictions=%llu "
               "hot_bytes=%llu hot_items=%llu hot_gets=%llu hot_hits=%llu hot_evictions=%llu "
               "peer_batch_requests=%llu server_batch_requests=%llu\n",
               F(gets), F(cache_hits), F(peer_loads), F(peer_errors), F(loads), F(loads_deduped),
               F(local_loads), F(local_load_errs), F(server_requests),
               F(main_bytes), F(main_items), F(main_gets), F(main_hits), F(main_evictions),
               F(hot_bytes), F(hot_items), F(hot_gets), F(hot_hits), F(hot_evictions),
               F(peer_batch_requests), F(server_batch_requests));
#undef F
      }
    } else if (strcmp(cmd, "peers") == 0) {
      const char *purls[MAX_PEERS];
      size_t pn = split_peers(arg, purls, MAX_PEERS);
      reply_status(cache_pool_set_peers(pool, purls, pn));
    } else if (strcmp(cmd, "quit") == 0) {
      break;
    } else {
      usage("unknown command (get set remove owner loads reset stats peers quit)");
    }
    fflush(stdout);
  }
  free(line);
  cache_free(c);
  cache_pool_free(pool);
  reset_loads();
  puts("bye");
  fflush(stdout);
  return 0;
}
