# The whole test suite: `make test`. .ci/run runs exactly this.
GO ?= go

.PHONY: test build vet fmt serve

test: vet
	$(GO) test -race -count=1 ./...

vet:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

build:
	$(GO) build -o bin/berth ./cmd/berth

serve:
	$(GO) run ./cmd/berth serve
