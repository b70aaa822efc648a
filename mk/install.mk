# `make install` / `make uninstall` for the C library (included by the
# Makefile, which provides the `lib` target that builds target/release).
#
#   make install PREFIX=/opt/gc            # default PREFIX: /usr/local
#   make install DESTDIR=/tmp/stage        # staged, for packagers
#   make install STRIP=:                   # keeps any debug info
#   make uninstall PREFIX=/opt/gc
#
# The installed library is stripped of debug info (`strip --strip-debug`;
# its symbols stay). README.md, "Installing the C library", is the user's
# documentation of all this.
#
# Installs, under PREFIX (directories overridable, GNU-style):
#   lib/libgroupcache.so.X.Y.Z             the library; its soname (build.rs)
#   lib/libgroupcache.so.S -> .so.X.Y.Z    is libgroupcache.so.S, S = X.Y
#                                          while X is 0, X from 1.0 on
#   lib/libgroupcache.so   -> .so.S        what `-lgroupcache` finds
#   include/groupcache.h
#   lib/pkgconfig/groupcache.pc            from groupcache.pc.in
#
# Hand-written rather than cargo-c's `cargo cinstall`: these few rules need
# no extra tool (cargo-c is a ~10-minute build of cargo itself on every
# machine), install the header `make header` generates and checks in
# instead of generating a second one, and keep the soname build.rs sets.
#
# After a real (non-DESTDIR) install as root, ldconfig refreshes the
# loader's cache, so that a PREFIX in /etc/ld.so.conf (e.g. /usr/local)
# works at once; LDCONFIG=: skips it (tests installing into a temp dir).

PREFIX               ?= /usr/local
DESTDIR              ?=
INSTALL_LIBDIR       ?= $(PREFIX)/lib
INSTALL_INCLUDEDIR   ?= $(PREFIX)/include
INSTALL_PKGCONFIGDIR ?= $(INSTALL_LIBDIR)/pkgconfig
INSTALL              ?= install
LDCONFIG             ?= ldconfig
STRIP                ?= strip

GC_BUILT_LIB := $(CURDIR)/target/release/libgroupcache.so
GC_VERSION   := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' $(CURDIR)/Cargo.toml | head -n1)
GC_VMAJOR    := $(word 1,$(subst ., ,$(GC_VERSION)))
GC_VMINOR    := $(word 2,$(subst ., ,$(GC_VERSION)))
# 0.x minor releases may break the ABI: the soname carries major.minor.
GC_SOVERSION := $(if $(filter 0,$(GC_VMAJOR)),$(GC_VMAJOR).$(GC_VMINOR),$(GC_VMAJOR))
GC_REALNAME  := libgroupcache.so.$(GC_VERSION)
GC_SONAME    := libgroupcache.so.$(GC_SOVERSION)
# In the .pc file, paths under PREFIX are written relative to ${prefix}.
GC_PC_LIBDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INSTALL_LIBDIR))
GC_PC_INCDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INSTALL_INCLUDEDIR))

.PHONY: install install-strip uninstall

install: lib
	@case '$(PREFIX)' in /*) ;; *) echo "install: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 1;; esac
	@test -n '$(GC_VERSION)' || { echo "install: no version in Cargo.toml" >&2; exit 1; }
	@# A library built before build.rs set the soname would install under a
	@# name no program linked against it asks for.
	@if command -v readelf >/dev/null; then \
	  readelf -d '$(GC_BUILT_LIB)' | grep -q 'soname: \[$(GC_SONAME)\]' \
	    || { echo "install: $(GC_BUILT_LIB) has no soname $(GC_SONAME); rebuild it" >&2; exit 1; }; \
	fi
	$(INSTALL) -d '$(DESTDIR)$(INSTALL_LIBDIR)' '$(DESTDIR)$(INSTALL_INCLUDEDIR)' '$(DESTDIR)$(INSTALL_PKGCONFIGDIR)'
	$(INSTALL) -m 755 '$(GC_BUILT_LIB)' '$(DESTDIR)$(INSTALL_LIBDIR)/$(GC_REALNAME)'
	$(STRIP) --strip-debug '$(DESTDIR)$(INSTALL_LIBDIR)/$(GC_REALNAME)'
	ln -sfn '$(GC_REALNAME)' '$(DESTDIR)$(INSTALL_LIBDIR)/$(GC_SONAME)'
	ln -sfn '$(GC_SONAME)' '$(DESTDIR)$(INSTALL_LIBDIR)/libgroupcache.so'
	$(INSTALL) -m 644 include/groupcache.h '$(DESTDIR)$(INSTALL_INCLUDEDIR)/groupcache.h'
	sed -e 's|@prefix@|$(PREFIX)|g' -e 's|@libdir@|$(GC_PC_LIBDIR)|g' \
	    -e 's|@includedir@|$(GC_PC_INCDIR)|g' -e 's|@version@|$(GC_VERSION)|g' \
	    groupcache.pc.in > '$(DESTDIR)$(INSTALL_PKGCONFIGDIR)/groupcache.pc.tmp'
	mv -f '$(DESTDIR)$(INSTALL_PKGCONFIGDIR)/groupcache.pc.tmp' '$(DESTDIR)$(INSTALL_PKGCONFIGDIR)/groupcache.pc'
	@if [ -z '$(DESTDIR)' ] && [ '$(LDCONFIG)' != : ] && [ "$$(id -u)" = 0 ] \
	    && command -v '$(LDCONFIG)' >/dev/null; then \
	  echo '$(LDCONFIG)'; '$(LDCONFIG)' || true; \
	fi

# `install` strips already; the GNU name is kept for packaging scripts.
install-strip: install

# Removes what `install` of this version installed (directories stay).
uninstall:
	rm -f '$(DESTDIR)$(INSTALL_LIBDIR)/libgroupcache.so' \
	      '$(DESTDIR)$(INSTALL_LIBDIR)/$(GC_SONAME)' \
	      '$(DESTDIR)$(INSTALL_LIBDIR)/$(GC_REALNAME)' \
	      '$(DESTDIR)$(INSTALL_INCLUDEDIR)/groupcache.h' \
	      '$(DESTDIR)$(INSTALL_PKGCONFIGDIR)/groupcache.pc'
