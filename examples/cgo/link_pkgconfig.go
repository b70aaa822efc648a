//go:build pkgconfig

package main

// With -tags pkgconfig: links against an installed library (`make install`),
// found through pkg-config (set PKG_CONFIG_PATH for a PREFIX it does not
// search; at run time the loader needs to find the library's soname,
// libgroupcache.so.0.1, there too).

// #cgo pkg-config: groupcache
import "C"
