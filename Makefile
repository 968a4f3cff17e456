# The whole test suite: `make test`. .ci/run runs exactly this.
GO ?= go

.PHONY: test soak build vet fmt serve

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

build:
	$(GO) build -o bin/berth ./cmd/berth

# The binary, not `go run`: a signal then reaches the server itself.
serve: build
	bin/berth serve
