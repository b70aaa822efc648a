/* A tiny test harness: CHECK records a failure and goes on; main() ends
 * with the "N passed, N failed" line that test runners read. */
#ifndef CHECK_H
#define CHECK_H
#include <stdio.h>

static int checks_passed, checks_failed;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (cond) {                                                            \
      checks_passed++;                                                     \
    } else {                                                               \
      checks_failed++;                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

#define CHECK_STATUS(expr, want)                                           \
  do {                                                                     \
    int got_ = (int)(expr);                                                \
    if (got_ == (int)(want)) {                                             \
      checks_passed++;                                                     \
    } else {                                                               \
      checks_failed++;                                                     \
      fprintf(stderr, "%s:%d: %s returned %d, want %d (%s)\n", __FILE__,   \
              __LINE__, #expr, got_, (int)(want), cache_last_error());     \
    }                                                                      \
  } while (0)

static int checks_report(const char *suite) {
  printf("%s: %d passed, %d failed\n", suite, checks_passed, checks_failed);
  return checks_failed == 0 ? 0 : 1;
}
#endif
