# Wharf's front door: a thin wrapper over meson + ninja.
#   make            release build, binary at build/wharf
#   make run        build and run in the foreground on conf/default.json
#   make test       unit tests + integration tests (make SAN=1 test: ASan+UBSan)
#   make bench      Wharf beside nginx with wrk, 1000-route and
#                   reconfiguration figures, then Python apps beside
#                   Unit, uWSGI, gunicorn and uvicorn, and the proxy
#                   beside nginx and HAProxy, and TLS and HTTP/2 beside nginx
#                   (not tests)
#   make fuzz       run the libFuzzer targets for a bounded time
#   make format-check
#   make install    PREFIX/sbin/wharf and a unitd link to it (PREFIX
#                   /usr/local by default; DESTDIR is honoured)

PYTHON   ?= /usr/bin/python3
SAN      ?= 0
CC       ?= cc
FUZZ_SECONDS ?= 60
PREFIX   ?= /usr/local
DESTDIR  ?=

ifeq ($(SAN),1)
BUILDDIR := build-san
MESON_OPTS := -Dbuildtype=debug -Doptimization=1 -Db_sanitize=address,undefined \
              -Dpool_debug=true -Dc_args=-fno-sanitize-recover=all \
              -Dc_link_args=-fno-sanitize-recover=all
else
BUILDDIR := build
MESON_OPTS := -Dbuildtype=release
endif

DEB_BUILD := meson ninja-build gcc clang pkg-config libjansson-dev \
             libcmocka-dev libpcre2-dev python3-dev libssl-dev libc-ares-dev \
             libnghttp2-dev
DEB_TEST  := python3 python3-pytest python3-requests curl pebble prometheus \
             nghttp2-client python3-h2 python3-grpcio python3-grpc-tools
# The real apps of the application tests (tests/integration/apps/).
DEB_APPS  := python3-flask python3-django python3-starlette \
             python3-websockets python3-venv \
             libphp8.2-embed php8.2-dev php8.2-opcache php8.2-mysql \
             wordpress wordpress-theme-twentytwentythree mariadb-server
DEB_BENCH := wrk nginx-light haproxy nghttp2-client
# The peers of bench/apps.py.
DEB_BENCH_APPS := uwsgi uwsgi-plugin-python3 gunicorn python3-uvicorn \
                  python3-uvloop python3-httptools php8.2-fpm
DEB_FUZZ  := clang node-llhttp libclang-rt-14-dev

.PHONY: all deps deps-bench deps-fuzz run test unit integration bench fuzz \
        format format-check clean install

all: deps $(BUILDDIR)/build.ninja
	ninja -C $(BUILDDIR)

$(BUILDDIR)/build.ninja:
	meson setup $(BUILDDIR) $(MESON_OPTS)

install: all
	meson configure $(BUILDDIR) -Dprefix=$(PREFIX)
	DESTDIR=$(DESTDIR) meson install -C $(BUILDDIR)

deps:
	@./scripts/deps.sh $(DEB_BUILD) $(DEB_TEST) $(DEB_APPS)

deps-bench:
	@./scripts/deps.sh $(DEB_BENCH) $(DEB_BENCH_APPS)

deps-fuzz:
	@./scripts/deps.sh $(DEB_FUZZ)

run: all
	mkdir -p var
	sed 's|@WELCOME@|$(CURDIR)/conf/welcome|' conf/default.json > var/default.json
	$(BUILDDIR)/wharf --no-daemon --statedir var --control unix:var/control.unit.sock \
	    --modulesdir $(BUILDDIR)/modules \
	    --pid var/wharf.pid --config var/default.json

test: all
	$(BUILDDIR)/unit-tests
	WHARF_BIN=$(CURDIR)/$(BUILDDIR)/wharf WHARF_SAN=$(SAN) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

unit: all
	$(BUILDDIR)/unit-tests

bench: deps-bench all
	$(PYTHON) bench/bench.py --wharf $(CURDIR)/build/wharf --net veth
	$(PYTHON) bench/bench.py --wharf $(CURDIR)/build/wharf --routes
	$(PYTHON) bench/reconf.py --wharf $(CURDIR)/build/wharf
	$(PYTHON) bench/apps.py --wharf $(CURDIR)/build/wharf $(if $(UNITD),--unitd $(UNITD))
	$(PYTHON) bench/proxy.py --wharf $(CURDIR)/build/wharf
	$(PYTHON) bench/php.py --wharf $(CURDIR)/build/wharf $(if $(UNITD),--unitd $(UNITD))
	$(PYTHON) bench/tls.py --wharf $(CURDIR)/build/wharf
	$(PYTHON) bench/h2.py --wharf $(CURDIR)/build/wharf

fuzz: deps deps-fuzz
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz \
	    -Dbuildtype=debugoptimized -Dfuzz=true -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dpool_debug=true
	ninja -C build-fuzz fuzz_h1_parse fuzz_json fuzz_route fuzz_port fuzz_api \
	    fuzz_fields fuzz_cert fuzz_proxy_parse
	./scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san build-fuzz
