/*
 * The floor for bench/python/bench.py, compiled by it into a scratch
 * folder: a C function that does nothing, to time a bare ctypes call.
 */
void gcb_nop(void);
void gcb_nop(void) {}
