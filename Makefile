# pipar — build, test, install, benchmark, fuzz.
#
#   make                 lib/libpipar.a and the programs in bin/
#   make check           unit and end-to-end tests (TAP, through prove)
#   make check SANITIZE=1  the same, built with AddressSanitizer and UBSan
#   make bench           benchmarks; results written to bench/
#   make install PREFIX=/usr/local DESTDIR=

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man

CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS = openblas libarchive libcjson

OPT ?= -O3 -march=native -g
SIMD = -fopenmp-simd
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wno-unused-parameter
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS))

ifeq ($(SANITIZE),1)
O = build-san
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
O = .
SAN =
endif

ALL_CFLAGS = -std=c11 $(OPT) $(SIMD) $(WARN) $(SAN) -Ilib $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
LIBS = $(PKG_LIBS) -lm -lpthread

LIB_SRC = $(sort $(wildcard lib/*.c))
LIB_OBJ = $(patsubst lib/%.c,$(O)/obj/lib/%.o,$(LIB_SRC))
LIBA = $(O)/lib/libpipar.a

PROG_NAMES = $(patsubst cmd/%.c,%,$(sort $(wildcard cmd/*.c)))
PROGS = $(addprefix $(O)/bin/,$(PROG_NAMES))

TEST_SRC = $(sort $(wildcard tests/test_*.c))
TEST_BINS = $(patsubst tests/%.c,$(O)/tests/bin/%,$(TEST_SRC))

MAN1 = $(sort $(wildcard man/man1/*.1))
MAN5 = $(sort $(wildcard man/man5/*.5))
MAN7 = $(sort $(wildcard man/man7/*.7))

all: $(LIBA) $(PROGS)

$(O)/obj/lib/%.o: lib/%.c $(wildcard lib/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(O)/bin/%: cmd/%.c $(LIBA) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBA) $(ALL_LDFLAGS) $(LIBS)

$(O)/tests/bin/%: tests/%.c $(LIBA) $(wildcard lib/*.h) tests/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(LIBA) $(ALL_LDFLAGS) $(LIBS)

# The tests find the programs and test binaries through PIPAR_BIN and
# PIPAR_TESTBIN, so the same scripts run against the sanitizer build.
check: all $(TEST_BINS)
	PIPAR_BIN=$(abspath $(O)/bin) PIPAR_TESTBIN=$(abspath $(O)/tests/bin) \
	OPENBLAS_NUM_THREADS=1 \
	prove --exec '' $(TEST_BINS) $(sort $(wildcard tests/*.sh))

bench: all $(O)/bench/bin/step
	bench/run

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1
	$(if $(MAN5),install -d $(DESTDIR)$(MANDIR)/man5 && install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5)
	$(if $(MAN7),install -d $(DESTDIR)$(MANDIR)/man7 && install -m 644 $(MAN7) $(DESTDIR)$(MANDIR)/man7)

lint-man:
	mandoc -Tlint -Wwarning $(MAN1) $(MAN5) $(MAN7)

clean:
	rm -rf obj lib/libpipar.a bin tests/bin bench/bin build-san

.PHONY: all check bench install lint-man clean
.SECONDARY:

$(O)/bench/bin/%: bench/%.c $(LIBA) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBA) $(ALL_LDFLAGS) $(LIBS)
