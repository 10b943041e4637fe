# hardvisor: `make image` builds the boot image from the embedded default config
# into out/; `make test` runs the unit tests and boots the built artifacts under
# QEMU. Both install missing prerequisites (Debian packages, Go modules) first.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
OUT ?= out
OUT_DEBUG ?= out-debug
# One timestamp for every artifact: the last commit's, or 0 outside git.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

BUILD_PKGS := linux-image-amd64 systemd-boot-efi binutils sbsigntool secilc squashfs-tools
TEST_PKGS := qemu-system-x86 qemu-utils ovmf ipxe-qemu dosfstools mtools openssl nmap iproute2 \
	libvirt-daemon libvirt-daemon-driver-qemu dmidecode setools
UNIT_PKGS = $$($(GO) list ./... | grep -v /qemu-tests)

.PHONY: all image image-debug test unit qemu-test bench deps test-deps bin/hardvisor clean

all: image

deps:
	@./.ci/install-deps $(BUILD_PKGS)
	@$(GO) mod download

test-deps: deps
	@./.ci/install-deps $(TEST_PKGS)

bin/hardvisor:
	$(GO) build -trimpath -o $@ ./cmd/hardvisor

image: deps bin/hardvisor
	./bin/hardvisor build -o $(OUT)

image-debug: deps bin/hardvisor
	./bin/hardvisor build --profile debug -o $(OUT_DEBUG)

unit: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 5m $(UNIT_PKGS)

qemu-test: test-deps image image-debug
	HARDVISOR_OUT=$(abspath $(OUT)) HARDVISOR_OUT_DEBUG=$(abspath $(OUT_DEBUG)) \
		$(GO) test -count=1 -timeout 30m -v ./qemu-tests/...

test: unit qemu-test

bench: test-deps bin/hardvisor
	$(GO) run ./qemu-tests/bench

clean:
	rm -rf bin $(OUT) $(OUT_DEBUG)
