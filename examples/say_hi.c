/* The demo of the Go c-shared article this project grew from, in C. */
#include <stdio.h>

#include "groupcache.h"

int main(void) {
  say_hi();
  printf("libgroupcache version %s\n", cache_version());
  return 0;
}
