# The whole test suite: `make test`. .ci/run runs exactly this.
GO ?= go

.PHONY: test soak build vet fmt serve image deb dist

# What `berth version` and berth_build_info report (internal/buildinfo): the tag of HEAD
# (or devel), its commit and commit time. Override any of them: make build VERSION=v1.2.3.
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE ?= $(shell git log -1 --format=%cI 2>/dev/null)
BUILDINFO = github.com/berth-sh/berth/internal/buildinfo
LDFLAGS = -s -w -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).date=$(DATE)

# The PostgreSQL store's tests need a server: scripts/with-postgres starts a throwaway one
# (installing Debian's postgresql if needed) unless BERTH_TEST_DATABASE_URL names one, and
# scripts/with-chromium installs Chromium for the dashboard's browser test. scripts/test
# runs every pass (gofmt, vet, go test -race ./..., the API suite again on PostgreSQL),
# each one even when an earlier one failed, and fails at the end if any did.
test:
	GO=$(GO) scripts/with-chromium scripts/with-postgres scripts/test

# The long versions of the reliability tests (crash consistency, linearizability, hostile
# clients): BERTH_SOAK=1 makes them run long; the normal suite runs them briefly.
soak: vet
	BERTH_SOAK=1 scripts/with-postgres $(GO) test -race -count=1 -timeout 90m ./...

vet:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# A static binary (the SQLite driver is pure Go), as the image and the package hold it.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/berth ./cmd/berth

# The OCI image of the static binary, without a Docker daemon (tools/release, with
# go-containerregistry): dist/berth-image.tar, for `docker load` or `podman load`. With
# several platforms (make image PLATFORMS=linux/amd64,linux/arm64) it writes the OCI
# layout dist/berth-oci instead, one index of them all.
PLATFORMS ?= linux/$(shell $(GO) env GOARCH)
RELEASE = $(GO) run ./tools/release
RELEASE_META = -version "$(VERSION)" -revision "$(REVISION)" -date "$(DATE)" -out dist
image:
	$(RELEASE) image $(RELEASE_META) -platforms $(PLATFORMS)

# The Debian package (nfpm as a Go library): dist/berth_<version>_<arch>.deb, of
# packaging/nfpm.yaml. DEB_ARCH=amd64,arm64 builds both.
DEB_ARCH ?= $(shell $(GO) env GOARCH)
deb:
	$(RELEASE) deb $(RELEASE_META) -arch $(DEB_ARCH)

# The binary, not `go run`: a signal then reaches the server itself.
serve: build
	bin/berth serve
