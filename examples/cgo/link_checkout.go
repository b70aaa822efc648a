//go:build !pkgconfig

package main

// Links against the checkout: the header in include/, the library cargo
// builds in target/release (found at run time through the rpath).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -lgroupcache -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
