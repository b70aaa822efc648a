/* gc_free lives in C so that freeing a value costs no C-to-Go transition. */
#include <stdlib.h>

void gc_free(void *p) { free(p); }
