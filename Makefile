# pipar — build, test, install, benchmark, fuzz.
#
#   make                 lib/libpipar.a and the programs in bin/
#   make check           unit and end-to-end tests (TAP, through prove)
#   make check SANITIZE=1  the same, built with AddressSanitizer and UBSan
#   make bench           benchmarks; results written to bench/
#   make install PREFIX=/usr/local DESTDIR=
#   make fuzz            libFuzzer targets (clang, ASan, UBSan) in fuzz/bin/,
#                        FUZZ_SECONDS (60) each on a corpus grown from
#                        tests/fuzz/TARGET/

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man

CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS = openblas libarchive libcjson openssl

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
# Programs the test scripts drive (a hostile peer), not tests themselves.
TEST_HELPERS = $(O)/tests/bin/peer

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
check: all $(TEST_BINS) $(TEST_HELPERS)
	PIPAR_BIN=$(abspath $(O)/bin) PIPAR_TESTBIN=$(abspath $(O)/tests/bin) \
	OPENBLAS_NUM_THREADS=1 \
	prove --directives --exec '' $(TEST_BINS) $(sort $(wildcard tests/*.sh))

bench: all $(O)/bench/bin/step $(O)/bench/bin/wire
	bench/run
	bench/plan
	bench/runtime
	$(O)/bench/bin/wire | tee bench/results/wire-loopback.json
	bench/tls

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1
	$(if $(MAN5),install -d $(DESTDIR)$(MANDIR)/man5 && install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5)
	$(if $(MAN7),install -d $(DESTDIR)$(MANDIR)/man7 && install -m 644 $(MAN7) $(DESTDIR)$(MANDIR)/man7)

lint-man:
	mandoc -Tlint -Wwarning $(MAN1) $(MAN5) $(MAN7)

clean:
	rm -rf obj lib/libpipar.a bin tests/bin bench/bin build-san fuzz/bin fuzz/obj

.PHONY: all check bench install lint-man clean fuzz fuzz-build
.SECONDARY:

$(O)/bench/bin/%: bench/%.c $(LIBA) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBA) $(ALL_LDFLAGS) $(LIBS)

# Fuzzing.  fuzz/fuzz_T.c is target T, seeded from tests/fuzz/T/ and, if
# present, the fixed crash inputs in tests/fuzz/crashes/T/.  The library is
# compiled again here with clang and the sanitizers (not the gcc archive);
# zlib is linked for the mutators that work inside gzip streams;
# fuzz/T.dict, if present, lists the format's tokens for the mutator;
# the corpus each run grows is kept in fuzz/corpus/T/, logs in fuzz/log/,
# anything that fails in fuzz/artifacts/T/.  A crash, leak, sanitizer report
# or an input slower than FUZZ_TIMEOUT seconds fails the target: fix it in
# lib/ and copy the input to tests/fuzz/crashes/T/ for make check.
# FUZZ_NAMES="npz idx" limits a run to those targets; FUZZ_FLAGS passes
# more options to the fuzzer.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_FLAGS ?=
FUZZ_NAMES = $(patsubst fuzz/fuzz_%.c,%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_BINS = $(patsubst %,fuzz/bin/fuzz_%,$(FUZZ_NAMES))
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -g -O1 $(SIMD) $(WARN) -Wno-error -Wno-pass-failed \
	      $(FUZZ_SAN) -Ilib $(PKG_CFLAGS)
FUZZ_LIB_OBJ = $(patsubst lib/%.c,fuzz/obj/%.o,$(LIB_SRC))

fuzz/obj/%.o: lib/%.c $(wildcard lib/*.h) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

fuzz/bin/%: fuzz/%.c $(FUZZ_LIB_OBJ) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) \
		$(LIBS) -lz

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@mkdir -p fuzz/log; fail=0; \
	for t in $(FUZZ_NAMES); do \
		mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
		cp tests/fuzz/$$t/* fuzz/corpus/$$t/ || exit 1; \
		extra=; \
		if [ -d tests/fuzz/crashes/$$t ]; then \
			extra=tests/fuzz/crashes/$$t; fi; \
		dict=; \
		if [ -f fuzz/$$t.dict ]; then dict=-dict=fuzz/$$t.dict; fi; \
		echo "fuzz $$t: $(FUZZ_SECONDS) s, log fuzz/log/$$t.log"; \
		OPENBLAS_NUM_THREADS=1 fuzz/bin/fuzz_$$t \
			-max_total_time=$(FUZZ_SECONDS) \
			-timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
			-artifact_prefix=fuzz/artifacts/$$t/ $$dict $(FUZZ_FLAGS) \
			fuzz/corpus/$$t $$extra >fuzz/log/$$t.log 2>&1; \
		rc=$$?; \
		execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' \
			fuzz/log/$$t.log | tail -n 1); \
		if [ $$rc -eq 0 ]; then \
			echo "fuzz $$t: $${execs:-?} executions, no crash"; \
		else \
			fail=1; \
			echo "fuzz $$t: FAILED (exit $$rc) after $${execs:-?}" \
			     "executions"; \
			grep -m 3 -E '^(==[0-9]+==ERROR|SUMMARY)|runtime error' \
				fuzz/log/$$t.log | sed 's/^/  /'; \
			sed -n 's/.*Test unit written to /  input: /p' \
				fuzz/log/$$t.log; \
		fi; \
	done; exit $$fail
