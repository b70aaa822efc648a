// Package main is "the Go c-shared approach done right": golang/groupcache
// exposed to C (and so to Python through ctypes) by go build
// -buildmode=c-shared, built with a current Go (C-to-Go calls got much
// cheaper after Go 1.19), with every byte handed to C freed again.
//
// C ABI (see gcshared.h after a build, and gcshared.py):
//
//	int   gc_setup(int64_t max_bytes);   // 0 ok, 1 already set up, 2 bad arg
//	int   gc_set(const char *key, size_t keylen, const char *val, size_t vallen);
//	char *gc_get(const char *key, size_t keylen, size_t *outlen);
//	void  gc_free(void *p);              // free() of what gc_get returned
//
// gc_set fills a Go map that the group's getter reads; gc_get runs
// Group.Get and returns a malloc'ed copy of the value (NULL when the key is
// not in the map, or before gc_setup; *outlen is then 0). Like groupcache
// itself there is no invalidation: once a key was read through gc_get, a
// later gc_set of that key does not change what gc_get returns.
// gc_free is plain C (gcfree.c): freeing costs no call into Go.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"context"
	"errors"
	"sync"
	"unsafe"

	"github.com/golang/groupcache"
)

var (
	setupMu sync.Mutex
	group   *groupcache.Group

	storeMu sync.RWMutex
	store   = map[string][]byte{}

	errMissing = errors.New("gcshared: no such key")
)

//export gc_setup
func gc_setup(maxBytes C.int64_t) C.int {
	setupMu.Lock()
	defer setupMu.Unlock()
	if group != nil {
		return 1
	}
	if maxBytes < 0 {
		return 2
	}
	group = groupcache.NewGroup("gcshared", int64(maxBytes), groupcache.GetterFunc(
		func(_ context.Context, key string, dest groupcache.Sink) error {
			storeMu.RLock()
			v, ok := store[key]
			storeMu.RUnlock()
			if !ok {
				return errMissing
			}
			return dest.SetBytes(v) // copies
		}))
	return 0
}

//export gc_set
func gc_set(key *C.char, keylen C.size_t, val *C.char, vallen C.size_t) C.int {
	if (key == nil && keylen != 0) || (val == nil && vallen != 0) {
		return 2
	}
	k := C.GoStringN(key, C.int(keylen))
	v := C.GoBytes(unsafe.Pointer(val), C.int(vallen))
	storeMu.Lock()
	store[k] = v
	storeMu.Unlock()
	return 0
}

//export gc_get
func gc_get(key *C.char, keylen C.size_t, outlen *C.size_t) *C.char {
	if outlen != nil {
		*outlen = 0
	}
	g := group
	if g == nil || (key == nil && keylen != 0) {
		return nil
	}
	// The key is copied: groupcache keeps the string it is given on a miss.
	k := C.GoStringN(key, C.int(keylen))
	var v groupcache.ByteView
	if err := g.Get(context.Background(), k, groupcache.ByteViewSink(&v)); err != nil {
		return nil
	}
	n := v.Len()
	alloc := n
	if alloc == 0 {
		alloc = 1 // malloc(0) may return NULL, which means "missing"
	}
	p := C.malloc(C.size_t(alloc))
	if p == nil {
		return nil
	}
	if n > 0 {
		v.Copy(unsafe.Slice((*byte)(p), n))
	}
	if outlen != nil {
		*outlen = C.size_t(n)
	}
	return (*C.char)(p)
}

func main() {}
