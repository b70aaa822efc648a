# groupcache: the two commands are `make demo` and `make test`.
# Everything a target needs it builds or installs itself (Rust via cargo,
# Python packages in .venv, Debian's Go for the interop test).

SHELL      := /bin/bash
CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
PYTHON     ?= python3
VENV       := .venv
VPY        := $(VENV)/bin/python
LIBDIR     := $(CURDIR)/target/release
LIB        := $(LIBDIR)/libgroupcache.so
BUILD      := $(CURDIR)/target/c
CFLAGS_ALL := -std=c11 -D_DEFAULT_SOURCE -g -O1 -Wall -Wextra -Werror -Iinclude -Itests/c
LDFLAGS_ALL:= -L$(LIBDIR) -lgroupcache -lpthread -Wl,-rpath,$(LIBDIR)
# tests/c/valgrind.supp: ring's AES-GCM assembly, which memcheck misreads.
# --fair-sched: valgrind runs one thread at a time; its default lock let
# test_threads' spinning workers starve the main thread's 20 ms sleeps
# (one fresh `make test` took 3.5 min on it, 2 s otherwise).
VALGRIND   := valgrind -q --fair-sched=yes --suppressions=tests/c/valgrind.supp --leak-check=full \
              --errors-for-leak-kinds=definite --show-leak-kinds=definite --error-exitcode=99
C_TESTS    := test_api test_abi test_threads test_pool test_options test_adversarial test_load_timeout test_fork test_batch
EXAMPLES   := say_hi loader

.PHONY: all lib demo lint test test-rust test-c test-c-valgrind test-c-asan \
        need-openssl test-header test-fuzz test-python test-python-wheel test-service test-interop test-install test-cgo test-attack header check-header bench clean venv examples dnsmasq

all: lib

lib:
	$(CARGO) build --release --lib

# include/groupcache.h is generated from src/ffi by cbindgen and checked in.
# cbindgen is a tool of its own (tools/header, target/tools), not part of
# the library's build: `make header` after changing src/ffi or
# cbindgen.toml; `make check-header` (in `make test`) generates into
# target/tools and fails if the checked-in header differs, writing nothing.
HEADER_GEN := $(CARGO) run --quiet --locked --manifest-path tools/header/Cargo.toml --target-dir target/tools --

header:
	$(HEADER_GEN) . include/groupcache.h

check-header:
	@$(HEADER_GEN) . target/tools/groupcache.h
	@diff -u include/groupcache.h target/tools/groupcache.h \
	  || { echo "include/groupcache.h is stale: run \`make header\` and commit it"; exit 1; }

$(BUILD)/%: examples/%.c include/groupcache.h | lib
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_ALL) $< $(LDFLAGS_ALL) -o $@

$(BUILD)/%: tests/c/%.c tests/c/check.h include/groupcache.h | lib
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_ALL) $< $(LDFLAGS_ALL) -o $@

$(BUILD)/asan/%: tests/c/%.c tests/c/check.h include/groupcache.h | lib
	@mkdir -p $(BUILD)/asan
	$(CC) $(CFLAGS_ALL) -fsanitize=address,undefined -fno-omit-frame-pointer $< $(LDFLAGS_ALL) -o $@

examples: $(addprefix $(BUILD)/,$(EXAMPLES))

venv:
	@bash scripts/python-venv.sh

# Debian's dnsmasq: the real DNS server on loopback that the peers_from
# tests (Rust and Python) and the workers demo start for themselves
# (dnsmasq-base: the program alone, no system service).
dnsmasq:
	@test -x /usr/sbin/dnsmasq || command -v dnsmasq >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base; }

demo: lib examples venv dnsmasq
	@echo "== say_hi (C) ==";            $(BUILD)/say_hi
	@echo "== say_hi (Python, plain ctypes) =="; GROUPCACHE_LIB=$(LIB) $(VPY) examples/say_hi.py
	@echo "== loader (C) ==";            $(BUILD)/loader
	@echo "== loader (Python) ==";       PYTHONPATH=python_ctypes $(VPY) examples/loader.py
	@echo "== an asyncio HTTP service, three workers, one cache =="; PYTHONPATH=python_ctypes $(VPY) examples/service/demo.py
	@echo "== a cluster of three Python workers over SQLite =="; PYTHONPATH=python_ctypes $(VPY) examples/cluster_demo.py
	@echo "== gunicorn, 4 workers on each of two hosts, peers from one DNS name (dnsmasq) =="; PYTHONPATH=python_ctypes $(VPY) examples/workers/run.py

test: lint check-header test-rust test-attack test-c test-python test-python-wheel test-service test-interop test-install test-cgo test-fuzz
	@echo "make test: all suites passed"

# Lints, all of which must pass (warnings are errors): rustfmt and clippy
# on every target of the library and of the fuzz and header crates (their
# own target dirs under target/), rustdoc on the library's docs, private
# items included (broken or ambiguous links, stray HTML; links from public
# to private items are fine in these internal docs), mypy --strict on the package and
# examples/loader.py, ruff (rules: ruff.toml) on the package, tests, bench
# and examples. Caches go under target/.
lint: venv
	$(CARGO) fmt --check
	$(CARGO) fmt --check --manifest-path fuzz/Cargo.toml
	$(CARGO) fmt --check --manifest-path tools/header/Cargo.toml
	$(CARGO) clippy --quiet --release --locked --all-targets -- -D warnings
	$(CARGO) clippy --quiet --release --locked --all-targets --manifest-path fuzz/Cargo.toml \
	  --target-dir target/fuzz-lint -- -D warnings
	$(CARGO) clippy --quiet --locked --all-targets --manifest-path tools/header/Cargo.toml \
	  --target-dir target/tools -- -D warnings
	RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" \
	  $(CARGO) doc --quiet --release --locked --no-deps --document-private-items
	MYPYPATH=python_ctypes $(VPY) -m mypy --strict --cache-dir target/mypy \
	  python_ctypes/groupcache examples/loader.py
	$(VPY) -m ruff check --cache-dir target/ruff python_ctypes tests bench examples
	@echo "make lint: clean"

# The TLS tests make their certificates with the openssl CLI
# (tests/tls/make-certs.sh); Debian has it, a slim image may not.
need-openssl:
	@command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }

test-rust: dnsmasq need-openssl
	$(CARGO) test --release

# The peer port under attack (issue 9): a node limited to 1,024 fds against
# 1,100 stalled connections and 32 stalled 64 MiB PUTs, and one run out of
# descriptors (tests/attack_peers.rs; ~10-25 s, 1,200 sockets), ignored by
# plain `cargo test`.
test-attack:
	$(CARGO) test --release --test integration -- --ignored --exact \
	  attack_peers::under_attack attack_peers::out_of_descriptors --nocapture --test-threads=1

test-c: need-openssl $(addprefix $(BUILD)/,$(C_TESTS)) test-c-valgrind test-c-asan test-header
	@for t in $(C_TESTS); do $(BUILD)/$$t || exit 1; done

# The header in every language mode a user may pick, strictly: C89 (it
# needs <stdint.h>, which C89 lacks but every C89 compiler in use ships),
# C99, C11, C++98 and C++17. Each build of tests/c/header_compat.c runs.
HEADER_STDS_C   := c89 c99 c11
HEADER_STDS_CXX := c++98 c++17
test-header: tests/c/header_compat.c include/groupcache.h | lib
	@mkdir -p $(BUILD)/header
	@for std in $(HEADER_STDS_C); do \
	  echo "header as $$std"; \
	  $(CC) -std=$$std -Wall -Wextra -pedantic -Werror -Iinclude $< $(LDFLAGS_ALL) -o $(BUILD)/header/$$std \
	    && $(BUILD)/header/$$std || exit 1; \
	done
	@for std in $(HEADER_STDS_CXX); do \
	  echo "header as $$std"; \
	  $(CXX) -x c++ -std=$$std -Wall -Wextra -pedantic -Werror -Iinclude $< $(LDFLAGS_ALL) -o $(BUILD)/header/$$std \
	    && $(BUILD)/header/$$std || exit 1; \
	done

test-c-valgrind: $(addprefix $(BUILD)/,$(C_TESTS))
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	$(VALGRIND) $(BUILD)/test_api
	$(VALGRIND) $(BUILD)/test_abi
	$(VALGRIND) $(BUILD)/test_threads 5
	$(VALGRIND) $(BUILD)/test_pool
	$(VALGRIND) $(BUILD)/test_options
	$(VALGRIND) $(BUILD)/test_load_timeout
	$(VALGRIND) $(BUILD)/test_batch
	@# A forked child holds what the parent's other threads had on their stacks,
	@# which valgrind's leak check reports as lost there: memory errors only.
	valgrind -q --suppressions=tests/c/valgrind.supp --leak-check=no --error-exitcode=99 $(BUILD)/test_fork
	@# pool_free_races (four threads in tight loops while a pool shuts down) takes
	@# 0.4 s natively but over its 60 s alarm under valgrind, which runs one
	@# thread at a time; it runs plain and under ASan below.
	$(VALGRIND) $(BUILD)/test_adversarial null_pointers lengths names urls stale_handles options_handles getters cache_free_races

test-c-asan: $(addprefix $(BUILD)/asan/,$(C_TESTS))
	$(BUILD)/asan/test_api
	$(BUILD)/asan/test_abi
	$(BUILD)/asan/test_threads 10
	$(BUILD)/asan/test_pool
	$(BUILD)/asan/test_options
	$(BUILD)/asan/test_adversarial
	$(BUILD)/asan/test_load_timeout
	$(BUILD)/asan/test_batch
	@# test_fork is not run under ASan: gcc 12's libasan takes no lock of its
	@# allocator around fork(), so a child can inherit it held by another
	@# thread of the parent and hang in its first allocation (seen: a worker
	@# stuck in __sanitizer::SizeClassAllocator64::GetFromAllocator). glibc's
	@# malloc does take its locks; test_fork runs plain and under valgrind.

# The Python suites run with GROUPCACHE_NO_SKIP=1: a skipped test fails
# (tests/pytest_noskip.py). Tests marked for another run are deselected
# where they cannot run and selected by the target that provides what they
# need (pytest.ini lists the markers).
NO_SKIP    := GROUPCACHE_NO_SKIP=1

test-python: lib venv dnsmasq need-openssl
	$(NO_SKIP) PYTHONPATH=python_ctypes GROUPCACHE_LIB=$(LIB) $(VPY) -m pytest -q tests/python

# The wheel (py3-none-manylinux, <= 5 MB, checked by auditwheel), the sdist
# (builds the same wheel), an editable install, and the suite against the
# wheel installed without Rust on every minor version of Python 3 here (PYTHONS="..." to pick).
test-python-wheel: lib venv dnsmasq need-openssl
	$(NO_SKIP) bash tests/python/wheel.sh
	$(NO_SKIP) GROUPCACHE_TEST_PIP=1 PYTHONPATH=python_ctypes GROUPCACHE_LIB=$(LIB) \
	  $(VPY) -m pytest -q -m pip_install tests/python

# The service example (examples/service) and its Kubernetes manifests
# (examples/kubernetes): the schema validator and YAML parser they need
# (tests/service/requirements.txt; the schemas ship in the package) go into
# .venv here, not into every venv the wheel tests make.
test-service: lib venv need-openssl
	$(VPY) -m pip install --quiet --disable-pip-version-check -r tests/service/requirements.txt
	$(NO_SKIP) PYTHONPATH=python_ctypes GROUPCACHE_LIB=$(LIB) $(VPY) -m pytest -q tests/service

# Real golang/groupcache nodes (Debian's Go, installed by the scripts): the
# Python/C cluster suite, then the Rust smoke test that `cargo test` ignores.
test-interop: lib
	$(NO_SKIP) bash tests/interop/run.sh
	GONODE="$$(bash tests/interop/build.sh target/go/bin | tail -n1)" \
	  $(CARGO) test --release --test integration -- --ignored --exact peers_gonode::mixed_cluster_with_a_go_node

test-install: lib
	MAKE="$(MAKE)" bash tests/install/run.sh

test-cgo: lib
	bash examples/cgo/run.sh

# A short coverage-guided fuzz run of the peer request path, protobuf
# decoding and unescaping (longer runs: fuzz/README.md, RELIABILITY.md).
test-fuzz:
	bash fuzz/smoke.sh

bench: lib venv
	bash bench/all.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)

# make install PREFIX=... / make uninstall (after `all`, so it is not the default goal)
include mk/install.mk
