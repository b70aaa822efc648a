//go:build pkgconfig

package main

// With -tags pkgconfig: links against an installed library (`make install`),
// found through pkg-config (set PKG_CONFIG_PATH for a PREFIX it does not
// search; at run time the loader needs to find the library's soname,
// libgroupcache.so.0.1, there too). Go's build cache does not see a change
// of pkg-config's answer (golang/go#24544): after installing under another
// PREFIX, build with -a or clear the cache (run.sh uses a new cache).

// #cgo pkg-config: groupcache
import "C"
