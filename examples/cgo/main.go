// A Go program using libgroupcache through cgo: the C header included as is,
// a getter written in Go, and two nodes of a cluster in one process.
//
// It shows get (a miss, then a hit), CACHE_NOT_FOUND, a failing getter,
// set, remove, stats, and a pool of two nodes exchanging keys over HTTP;
// each step is a check, and the last line is `cgo: N passed, N failed`.
//
//	examples/cgo/run.sh                  builds against the checkout
//	examples/cgo/run.sh --pkgconfig      builds against `make install`'s copy
//
// How the pieces fit:
//
//   - Linking: link_checkout.go points cgo at include/ and target/release;
//     with -tags pkgconfig, link_pkgconfig.go asks pkg-config instead.
//   - The getter: C calls a function pointer, and a Go func is not one. So
//     goGetter is exported with //export (C can call it), getter_shim below
//     adapts it to cache_getter_fn, and user_data carries a runtime/cgo
//     Handle -- an integer naming the Go Getter -- instead of a Go pointer,
//     which C may not keep. The handle travels as uintptr_t and becomes
//     void* only in C: a small integer in an unsafe.Pointer upsets Go's GC.
//   - The getter may run on a library thread (a node answering a peer):
//     cgo handles calls into Go from threads it did not create.
//   - cache_last_error is per thread, and a goroutine may move to another
//     thread between two cgo calls: call() locks the goroutine to its
//     thread around a call and its cache_last_error.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "groupcache.h"

// Defined in Go below (//export goGetter); cgo also declares it in
// _cgo_export.h, with the same types.
extern int32_t goGetter(uintptr_t handle, uint8_t *key, size_t key_len, cache_sink *sink);

// The C side of the getter: what cache_new calls, with the handle as user_data.
// (Static definitions only: a preamble next to //export is compiled twice.)
static int32_t getter_shim(void *user_data, const uint8_t *key, size_t key_len,
                           cache_sink *sink) {
	return goGetter((uintptr_t)user_data, (uint8_t *)key, key_len, sink);
}

static enum cache_status new_cache_with_go_getter(const char *name, uint64_t max_bytes,
                                             uintptr_t handle, cache_pool *pool,
                                             cache **out) {
	return cache_new(name, max_bytes, getter_shim, (void *)handle, pool, out);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync/atomic"
	"unsafe"
)

// ---------------------------------------------------------------------------
// A small Go wrapper over the C API.

// Getter loads the value of a key on a miss. Return ErrNotFound for a key
// that does not exist; any other error fails the get (the message reaches
// the caller through cache_last_error).
type Getter func(key string) ([]byte, error)

var ErrNotFound = errors.New("not found")

// Error is a non-OK status with the library's message.
type Error struct {
	Status C.enum_cache_status
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("status %d: %s", int(e.Status), e.Msg) }

// IsStatus reports whether err is the library's status st.
func IsStatus(err error, st C.enum_cache_status) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == st
}

// call runs f, which calls into the library, and turns a non-OK status into
// an *Error with cache_last_error's message, read on the same OS thread.
func call(f func() C.enum_cache_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if st := f(); st != C.CACHE_OK {
		return &Error{st, C.GoString(C.cache_last_error())}
	}
	return nil
}

// bytesArg gives C a pointer to b's bytes (nil for none). Go memory may be
// passed for the duration of a call; the library copies what it keeps.
func bytesArg(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

//export goGetter
func goGetter(handle C.uintptr_t, key *C.uint8_t, keyLen C.size_t, sink *C.cache_sink) (status C.int32_t) {
	// A panic must not unwind into the library's C frames.
	defer func() {
		if r := recover(); r != nil {
			msg := C.CString(fmt.Sprint("getter panicked: ", r))
			C.cache_sink_fail(sink, msg)
			C.free(unsafe.Pointer(msg))
			status = C.CACHE_LOADER_FAILED
		}
	}()
	getter := cgo.Handle(handle).Value().(Getter)
	value, err := getter(string(C.GoBytes(unsafe.Pointer(key), C.int(keyLen))))
	switch {
	case errors.Is(err, ErrNotFound):
		return C.CACHE_NOT_FOUND
	case err != nil:
		msg := C.CString(err.Error())
		defer C.free(unsafe.Pointer(msg))
		C.cache_sink_fail(sink, msg)
		return C.CACHE_LOADER_FAILED
	}
	p, n := bytesArg(value)
	return C.int32_t(C.cache_sink_set(sink, p, n, 0))
}

// Cache is one groupcache group.
type Cache struct {
	c      *C.cache
	handle cgo.Handle
}

// NewCache creates a cache; pool nil makes it process-local.
func NewCache(name string, maxBytes uint64, getter Getter, pool *Pool) (*Cache, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var cpool *C.cache_pool
	if pool != nil {
		cpool = pool.p
	}
	c := &Cache{handle: cgo.NewHandle(getter)}
	err := call(func() C.enum_cache_status {
		return C.new_cache_with_go_getter(cname, C.uint64_t(maxBytes), C.uintptr_t(c.handle), cpool, &c.c)
	})
	if err != nil {
		c.handle.Delete()
		return nil, err
	}
	return c, nil
}

// Get returns the value of key: cached, from its owner, or from the getter.
func (c *Cache) Get(key string) ([]byte, error) {
	k, n := bytesArg([]byte(key))
	var v *C.cache_value
	if err := call(func() C.enum_cache_status { return C.cache_get(c.c, k, n, &v) }); err != nil {
		return nil, err
	}
	defer C.cache_value_free(v)
	return C.GoBytes(unsafe.Pointer(C.cache_value_data(v)), C.int(C.cache_value_len(v))), nil
}

// Set stores value under key (at its owner too, in a pool).
func (c *Cache) Set(key string, value []byte) error {
	k, kn := bytesArg([]byte(key))
	v, vn := bytesArg(value)
	return call(func() C.enum_cache_status { return C.cache_set(c.c, k, kn, v, vn, 0) })
}

// Remove drops key everywhere.
func (c *Cache) Remove(key string) error {
	k, n := bytesArg([]byte(key))
	return call(func() C.enum_cache_status { return C.cache_remove(c.c, k, n) })
}

// Stats returns the cache's counters.
func (c *Cache) Stats() (s C.cache_stats, err error) {
	err = call(func() C.enum_cache_status { return C.cache_stats_get_sized(c.c, &s, C.size_t(unsafe.Sizeof(s))) })
	return s, err
}

// Free frees the cache. Free pools first: a pool's server threads may be
// running this cache's getter, and the handle must outlive them.
func (c *Cache) Free() {
	C.cache_free(c.c)
	c.handle.Delete()
}

// Pool is one node of a cluster.
type Pool struct{ p *C.cache_pool }

// NewPool binds listenAddr and serves the peer protocol there.
func NewPool(listenAddr string) (*Pool, error) {
	addr := C.CString(listenAddr)
	defer C.free(unsafe.Pointer(addr))
	pool := &Pool{}
	if err := call(func() C.enum_cache_status { return C.cache_pool_new(addr, nil, &pool.p) }); err != nil {
		return nil, err
	}
	return pool, nil
}

// URL is how the other nodes reach this one.
func (p *Pool) URL() string { return C.GoString(C.cache_pool_url(p.p)) }

// SetPeers sets the whole cluster, this node included.
func (p *Pool) SetPeers(urls ...string) error {
	arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(urls))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(urls))
	for i, u := range urls {
		arr[i] = C.CString(u)
	}
	defer func() {
		for _, s := range arr {
			C.free(unsafe.Pointer(s))
		}
		C.free(unsafe.Pointer(&arr[0]))
	}()
	return call(func() C.enum_cache_status { return C.cache_pool_set_peers(p.p, &arr[0], C.size_t(len(urls))) })
}

// Owner is the URL of the node that owns key.
func (p *Pool) Owner(key string) (string, error) {
	k, n := bytesArg([]byte(key))
	buf := make([]byte, 256)
	var size C.size_t
	err := call(func() C.enum_cache_status {
		return C.cache_pool_owner(p.p, k, n, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &size)
	})
	if err != nil {
		return "", err
	}
	return string(buf[:size]), nil
}

// Free stops serving and frees the node.
func (p *Pool) Free() { C.cache_pool_free(p.p) }

// ---------------------------------------------------------------------------
// The checks.

var passed, failed int

func check(name string, ok bool, detail ...any) {
	if ok {
		passed++
		fmt.Printf("  ok   %s\n", name)
	} else {
		failed++
		fmt.Printf("  FAIL %s %v\n", name, detail)
	}
}

func main() {
	fmt.Printf("libgroupcache %s via cgo\n", C.GoString(C.cache_version()))
	local()
	cluster()
	fmt.Printf("cgo: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// local: a process-local cache over a Go map.
func local() {
	fmt.Println("== a local cache, getter in Go")
	db := map[string]string{"1": "Ada Lovelace", "2": "Grace Hopper"}
	var loads atomic.Int32
	getter := Getter(func(key string) ([]byte, error) {
		loads.Add(1)
		switch key {
		case "boom":
			return nil, errors.New("database is down")
		case "bug":
			panic("a bug in the getter")
		}
		if v, ok := db[key]; ok {
			return []byte(v), nil
		}
		return nil, ErrNotFound
	})
	users, err := NewCache("users", 1<<20, getter, nil)
	if err != nil {
		check("cache_new", false, err)
		return
	}
	defer users.Free()

	v, err := users.Get("1")
	check("get 1: a miss loads it", err == nil && string(v) == "Ada Lovelace" && loads.Load() == 1, string(v), err)
	v, err = users.Get("1")
	check("get 1 again: a hit, no load", err == nil && string(v) == "Ada Lovelace" && loads.Load() == 1, string(v), err)

	_, err = users.Get("42")
	check("get 42: CACHE_NOT_FOUND", IsStatus(err, C.CACHE_NOT_FOUND), err)
	_, err = users.Get("boom")
	check("a failing getter: CACHE_LOADER_FAILED with its message",
		IsStatus(err, C.CACHE_LOADER_FAILED) && strings.Contains(err.Error(), "database is down"), err)
	_, err = users.Get("bug")
	check("a panicking getter: CACHE_LOADER_FAILED, the process lives on",
		IsStatus(err, C.CACHE_LOADER_FAILED) && strings.Contains(err.Error(), "a bug in the getter"), err)

	err = users.Set("1", []byte("Ada King"))
	v, _ = users.Get("1")
	check("set 1, then get: the new value", err == nil && string(v) == "Ada King", string(v), err)
	before := loads.Load()
	err = users.Remove("1")
	v, _ = users.Get("1")
	check("remove 1, then get: reloaded", err == nil && string(v) == "Ada Lovelace" && loads.Load() == before+1, string(v), err)

	bin := "k\x00\xff"
	db[bin] = "\x00binary\x00"
	v, err = users.Get(bin)
	check("binary key and value", err == nil && string(v) == "\x00binary\x00", v, err)

	s, err := users.Stats()
	fmt.Printf("  stats: gets=%d cache_hits=%d loads=%d local_loads=%d local_load_errs=%d items=%d bytes=%d\n",
		s.gets, s.cache_hits, s.loads, s.local_loads, s.local_load_errs, s.main_items, s.main_bytes)
	// Gets: 1, 1, 42, boom, bug, 1 (after set), 1 (after remove), bin.
	check("stats: 8 gets, 2 hits, 3 local loads, 3 failed",
		err == nil && s.gets == 8 && s.cache_hits == 2 && s.local_loads == 3 && s.local_load_errs == 3, s)
}

// cluster: two nodes in this process, each with the same cache, each
// loading only the keys it owns; each asks the other for the other's keys.
func cluster() {
	fmt.Println("== a pool of two nodes in one process")
	var nodes [2]struct {
		pool  *Pool
		cache *Cache
		loads atomic.Int32
	}
	for i := range nodes {
		p, err := NewPool("127.0.0.1:0")
		if err != nil {
			check("cache_pool_new", false, err)
			return
		}
		defer p.Free() // deferred: runs before the caches' Free below
		nodes[i].pool = p
	}
	urls := []string{nodes[0].pool.URL(), nodes[1].pool.URL()}
	for i := range nodes {
		i := i
		if err := nodes[i].pool.SetPeers(urls...); err != nil {
			check("cache_pool_set_peers", false, err)
			return
		}
		getter := Getter(func(key string) ([]byte, error) {
			nodes[i].loads.Add(1)
			return []byte(fmt.Sprintf("%s, loaded by node %d", key, i)), nil
		})
		c, err := NewCache("shared", 1<<20, getter, nodes[i].pool)
		if err != nil {
			check("cache_new in a pool", false, err)
			return
		}
		nodes[i].cache = c
	}
	defer func() {
		for i := range nodes {
			nodes[i].cache.Free()
		}
	}()
	fmt.Printf("  nodes: %s %s\n", urls[0], urls[1])

	// A key each node owns.
	var owned [2]string
	for k := 0; owned[0] == "" || owned[1] == ""; k++ {
		key := fmt.Sprintf("key-%d", k)
		owner, err := nodes[0].pool.Owner(key)
		if err != nil || k > 1000 {
			check("cache_pool_owner", false, err)
			return
		}
		for i := range nodes {
			if owner == urls[i] && owned[i] == "" {
				owned[i] = key
			}
		}
	}
	o1, _ := nodes[1].pool.Owner(owned[0])
	check("both nodes agree on the owners", o1 == urls[0], owned, o1)

	for asker := 0; asker < 2; asker++ {
		owner := 1 - asker
		key := owned[owner]
		want := fmt.Sprintf("%s, loaded by node %d", key, owner)
		v, err := nodes[asker].cache.Get(key)
		check(fmt.Sprintf("node %d gets %s: node %d, its owner, loads it", asker, key, owner),
			err == nil && string(v) == want && nodes[owner].loads.Load() == 1 && nodes[asker].loads.Load() == 0,
			string(v), err)
		s, _ := nodes[asker].cache.Stats()
		so, _ := nodes[owner].cache.Stats()
		check(fmt.Sprintf("stats: node %d made a peer load, node %d served it", asker, owner),
			s.peer_loads == 1 && so.server_requests == 1 && so.local_loads == 1, s.peer_loads, so.server_requests)
		nodes[0].loads.Store(0)
		nodes[1].loads.Store(0)
	}

	// set at one node is stored at the owner: the owner's get is a hit.
	key := owned[1]
	err := nodes[0].cache.Set(key, []byte("set by node 0"))
	v, err2 := nodes[1].cache.Get(key)
	check("node 0 sets a key of node 1: node 1 has it, no load",
		err == nil && err2 == nil && string(v) == "set by node 0" && nodes[1].loads.Load() == 0, string(v), err, err2)
	// remove anywhere drops it at the owner: the next get loads again.
	err = nodes[0].cache.Remove(key)
	v, err2 = nodes[1].cache.Get(key)
	check("node 0 removes it: node 1 loads it again",
		err == nil && err2 == nil && strings.HasSuffix(string(v), "loaded by node 1") && nodes[1].loads.Load() == 1,
		string(v), err, err2)
}
