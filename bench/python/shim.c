/*
 * Helpers for bench/python/bench.py, compiled by it into a scratch folder.
 *
 * 1. The floor: C functions that do nothing, to time a bare ctypes call.
 * 2. Prototypes of library functions proposed in FFI-PROPOSAL.md, built on
 *    top of the real cache_lookup_alloc (passed in by address, so this file
 *    does not link against libgroupcache): what the Python package would
 *    gain if the library had them. The extra C-to-C call they add costs a
 *    nanosecond or two, so they slightly understate the gain.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void gcb_nop(void) {}

typedef void *(*alloc_fn)(const uint8_t *data, ptrdiff_t len);
typedef int (*store_fn)(void *ctx, ptrdiff_t index, void *object);
typedef void *(*lookup_fn)(void *c, const uint8_t *key, size_t key_len, alloc_fn alloc);

static lookup_fn real_lookup;
static alloc_fn real_alloc;

void gcb_init(lookup_fn lookup, alloc_fn alloc) {
    real_lookup = lookup;
    real_alloc = alloc;
}

/* Proposal A: the hit path without the alloc argument (the allocator set
   once, as cache_set_alloc would). */
void *gcb_lookup3(void *c, const uint8_t *key, size_t key_len) {
    return real_lookup(c, key, key_len, real_alloc);
}

/* Miss detection for the prototype only: the real function knows. */
static _Thread_local int missed;
static void *note_alloc(const uint8_t *data, ptrdiff_t len) {
    if (data == NULL) missed = 1;
    return real_alloc(data, len);
}

/* Proposal B: cache_lookup_many_alloc. `keys` holds n keys separated by
   the byte `sep` (keys_len bytes in all). For each key i, in order:
   obj = alloc(value) on a hit, alloc(NULL, 0) otherwise; store(ctx, i, obj).
   Returns the number of misses, or -1 when alloc returned NULL or store
   failed (it stops there). */
ptrdiff_t gcb_lookup_many(void *c, const uint8_t *keys, size_t keys_len, size_t n, uint8_t sep,
                          alloc_fn alloc, store_fn store, void *ctx) {
    (void)alloc;
    ptrdiff_t misses = 0;
    const uint8_t *p = keys, *end = keys + keys_len;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *q = memchr(p, sep, (size_t)(end - p));
        if (q == NULL) q = end;
        missed = 0;
        void *obj = real_lookup(c, p, (size_t)(q - p), note_alloc);
        if (obj == NULL) return -1;
        misses += missed;
        if (store(ctx, (ptrdiff_t)i, obj) != 0) return -1;
        p = q + 1;
    }
    return misses;
}
