#  zchat — top-level build. Plain make; libraries found with pkg-config.
#
#  make            build everything into build/
#  make deps       install missing Debian packages (apt-get; sudo when not root)
#  make run        deps + build + start the broker on its defaults
#  make check      deps + build + every test; ends with "N passed, N failed"
#  make check SANITIZE=1   the same under ASan+UBSan (separate build dir)
#  make bench      the standard benchmark matrix (see bench/README.md)
#  make install [PREFIX=/usr/local] [DESTDIR=]

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc

#  Debian packages the project needs, to build, test and benchmark it.
DEB_PACKAGES = build-essential pkg-config libzmq3-dev libczmq-dev \
               libsqlite3-dev libcjson-dev libedit-dev \
               python3 python3-zmq tmux jq gnuplot-nox clang

PKGS    = libczmq libzmq sqlite3 libcjson libedit
WARN    = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
          -Wmissing-prototypes -Wformat=2 -Wpointer-arith -Wno-format-nonliteral
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -g -O2 -fPIC $(WARN) -Iproto -Ibroker -Iclient

ifeq ($(SANITIZE),1)
BUILD   ?= build/sanitize
CFLAGS_BASE += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
LDSAN    = -fsanitize=address,undefined
else
BUILD   ?= build
LDSAN    =
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(CFLAGS_BASE) $(PKG_CFLAGS) $(CFLAGS)
ALL_LIBS   = $(LDSAN) $(PKG_LIBS) -lpthread $(LDFLAGS)

#  Modules: every .c in a directory except its main.c; a new module needs
#  no Makefile change.
PROTO_SRC  = $(wildcard proto/*.c)
BROKER_SRC = $(filter-out broker/main.c,$(wildcard broker/*.c))
CLIENT_SRC = $(filter-out client/main.c client/echobot.c client/keygen.c client/zchat_cli_%.c \
                          client/%_test.c,$(wildcard client/*.c))
#  Self tests too long to live beside their module: zchat-selftest only
CLIENT_TEST_SRC = $(wildcard client/*_test.c)
CLI_SRC    = $(wildcard client/zchat_cli_*.c)
BENCH_SRC  = $(filter-out bench/main.c bench/ceiling.c,$(wildcard bench/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
PROTO_OBJ  = $(call obj,$(PROTO_SRC))
BROKER_OBJ = $(call obj,$(BROKER_SRC))
CLIENT_OBJ = $(call obj,$(CLIENT_SRC))
BENCH_OBJ  = $(call obj,$(BENCH_SRC))

LIBZCHAT_A  = $(BUILD)/libzchat.a
LIBZCHAT_SO = $(BUILD)/libzchat.so

PROGRAMS = $(BUILD)/zchat-broker $(BUILD)/zchat $(BUILD)/zchat-selftest
PROGRAMS += $(if $(wildcard client/echobot.c),$(BUILD)/zchat-echobot)
PROGRAMS += $(if $(wildcard client/keygen.c),$(BUILD)/zchat-keygen)
PROGRAMS += $(if $(wildcard bench/main.c),$(BUILD)/zchat-bench)
PROGRAMS += $(if $(wildcard bench/ceiling.c),$(BUILD)/zchat-ceiling)

#  Fuzz targets replayed as ordinary tests: tests/fuzz/fuzz_NAME.c plus the
#  plain-main driver tests/fuzz/replay.c give $(BUILD)/zchat-replay-NAME.
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
PROGRAMS += $(if $(wildcard tests/fuzz/replay.c),$(foreach t,$(FUZZ_TARGETS),$(BUILD)/zchat-replay-$(t)))

#  A libzchat driver for the end-to-end tests: built, not installed.
TEST_PROGRAMS = $(if $(wildcard tests/zchat_driver.c),$(BUILD)/zchat-driver)

.PHONY: all deps run check bench install fuzz clean
all: $(PROGRAMS) $(TEST_PROGRAMS) $(LIBZCHAT_SO)

$(BUILD)/obj/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

#  libzchat: the codec plus the client library, for bots and the CLI.
$(LIBZCHAT_A): $(PROTO_OBJ) $(CLIENT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

#  The shared library exports only what the installed headers declare
#  (client/libzchat.map); the static one built here keeps every symbol,
#  since the programs and tests here link against the internal modules
#  too (the installed one does not, see below).
LIBZCHAT_MAP = client/libzchat.map

$(LIBZCHAT_SO): $(PROTO_OBJ) $(CLIENT_OBJ) $(LIBZCHAT_MAP)
	$(CC) -shared -Wl,-soname,libzchat.so.0 -Wl,--version-script=$(LIBZCHAT_MAP) \
	    -o $@ $(filter %.o,$^) $(ALL_LIBS)

#  The static library that `make install` installs keeps the same names
#  global as the shared one: its objects are linked into one (ld -r) and
#  every global symbol the map does not name is made local, so that the
#  internal modules' names cannot clash with a program's own there either.
LIBZCHAT_INSTALL_A = $(BUILD)/install/libzchat.a

$(LIBZCHAT_INSTALL_A): $(PROTO_OBJ) $(CLIENT_OBJ) $(LIBZCHAT_MAP)
	@mkdir -p $(dir $@)
	sed -n '/global:/,/local:/s/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_*]*\);.*/\1/p' \
	    $(LIBZCHAT_MAP) > $(BUILD)/install/libzchat.keep
	ld -r -o $(BUILD)/install/libzchat-all.o $(filter %.o,$^)
	objcopy --wildcard --keep-global-symbols=$(BUILD)/install/libzchat.keep \
	    $(BUILD)/install/libzchat-all.o $(BUILD)/install/libzchat.o
	rm -f $@ && ar rcs $@ $(BUILD)/install/libzchat.o

$(BUILD)/zchat-broker: $(call obj,broker/main.c) $(BROKER_OBJ) $(PROTO_OBJ)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat: $(call obj,client/main.c) $(call obj,$(CLI_SRC)) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat-echobot: $(call obj,client/echobot.c) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat-keygen: $(call obj,client/keygen.c)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat-bench: $(call obj,bench/main.c) $(BENCH_OBJ) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS) -lm

$(BUILD)/zchat-ceiling: $(call obj,bench/ceiling.c) $(BENCH_OBJ) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS) -lm

#  Self tests of every module (x_test functions), one binary; -t NAME runs one.
$(BUILD)/zchat-selftest: $(call obj,tests/selftest.c) $(call obj,$(CLIENT_TEST_SRC)) \
                        $(BROKER_OBJ) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat-driver: $(call obj,tests/zchat_driver.c) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS)

$(BUILD)/zchat-replay-%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(call obj,tests/fuzz/replay.c) $(BROKER_OBJ) $(LIBZCHAT_A)
	$(CC) -o $@ $^ $(ALL_LIBS)

#  Installs only what is missing, so it is quick and quiet when all is there.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	        || { echo "make deps: apt-get install failed" >&2; exit 1; }; \
	fi

run: deps
	$(MAKE) all
	$(BUILD)/zchat-broker $(ARGS)

check: deps
	$(MAKE) all
	BUILD=$(BUILD) SANITIZE=$(SANITIZE) /usr/bin/python3 tests/run.py $(TESTS)

bench: deps
	$(MAKE) all
	/usr/bin/python3 bench/run_matrix.py

FUZZ_SECONDS ?= 60
fuzz: deps
	$(MAKE) -f tests/fuzz/Makefile FUZZ_SECONDS=$(FUZZ_SECONDS)

install: all $(LIBZCHAT_INSTALL_A)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(filter-out $(BUILD)/zchat-selftest $(BUILD)/zchat-replay-%,$(PROGRAMS)) \
	    $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBZCHAT_INSTALL_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBZCHAT_SO) $(DESTDIR)$(PREFIX)/lib/libzchat.so.0
	ln -sf libzchat.so.0 $(DESTDIR)$(PREFIX)/lib/libzchat.so
	install -m 644 client/zchat_client.h proto/zchat_msg.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' client/libzchat.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libzchat.pc
	for m in doc/*.1; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man1/ || true; done
	@#  The loader finds a new shared library in a system directory only
	@#  once its cache knows it; anywhere else it never looks (a staged
	@#  DESTDIR install is the packager's to register)
	@if [ -n "$(DESTDIR)" ]; then :; \
	elif case "$(PREFIX)" in /usr|/usr/local) true;; *) false;; esac \
	     && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	    ldconfig; \
	else \
	    echo "make install: programs find libzchat.so once you run 'sudo ldconfig'" \
	         "(PREFIX /usr or /usr/local) or set LD_LIBRARY_PATH=$(PREFIX)/lib"; \
	fi

clean:
	rm -rf build
