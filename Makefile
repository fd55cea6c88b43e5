# Tasker's build. Every tool is pinned and installed by this file:
# protoc-gen-go, protoc-gen-go-grpc, protoc-gen-doc and ent are `tool` directives in go.mod;
# buf (which pins its own protobuf version, so it stays out of go.mod) comes
# from npm's prebuilt @bufbuild/buf; golangci-lint is built with go install.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BUF_VERSION           := 1.75.0
GOLANGCI_LINT_VERSION := v2.15.0

TOOLS_DIR := $(CURDIR)/.tools
BIN_DIR   := $(CURDIR)/bin
BUF       := $(TOOLS_DIR)/buf-$(BUF_VERSION)/node_modules/.bin/buf
GOLANGCI  := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

export TASKER_TEST_POSTGRES_URL ?= postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable
GO_TEST_FLAGS ?= -race -timeout 10m

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: $(BUF) $(GOLANGCI) ## Install the pinned tools into .tools/
	@go tool -n protoc-gen-go >/dev/null && go tool -n protoc-gen-go-grpc >/dev/null && go tool -n ent >/dev/null

$(BUF):
	@mkdir -p $(dir $(BUF))/../..
	npm install --silent --no-audit --no-fund --prefix $(TOOLS_DIR)/buf-$(BUF_VERSION) @bufbuild/buf@$(BUF_VERSION)

$(GOLANGCI):
	@mkdir -p $(dir $(GOLANGCI))
	GOBIN=$(dir $(GOLANGCI)) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: generate
generate: $(BUF) ## Regenerate gen/ and docs/api.md (buf) and ent/ (ent)
	rm -rf gen/go
	$(BUF) generate
	go generate ./ent

.PHONY: migration
migration: ## Write the migration files for a change of ent/schema: make migration NAME=add_api_tokens
	@[ -n "$(NAME)" ] || { echo "usage: make migration NAME=lowercase_with_underscores" >&2; exit 2; }
	TASKER_DEV_POSTGRES_URL="$${TASKER_DEV_POSTGRES_URL:-$$TASKER_TEST_POSTGRES_URL}" go run ./storage/migrations/diff -name $(NAME)

.PHONY: check-migrations
check-migrations: ## Fail when ent/schema changed without a migration file (needs PostgreSQL; TestMigrationsMatchSchema checks the same in `make test`)
	TASKER_DEV_POSTGRES_URL="$${TASKER_DEV_POSTGRES_URL:-$$TASKER_TEST_POSTGRES_URL}" go run ./storage/migrations/diff -check

.PHONY: check-generate
check-generate: generate ## Regenerate and fail if anything changed
	@if [ -n "$$(git status --porcelain -- gen ent docs/api.md)" ]; then \
		git status --porcelain -- gen ent docs/api.md; git --no-pager diff --stat -- gen ent docs/api.md; \
		echo "generated code is out of date: run 'make generate' and commit" >&2; exit 1; fi

.PHONY: lint
lint: $(BUF) $(GOLANGCI) ## go mod tidy check, buf lint, buf format check, go vet, golangci-lint
	go mod tidy -diff
	$(BUF) lint
	$(BUF) format --diff --exit-code
	go vet ./...
	$(GOLANGCI) run ./...

.PHONY: breaking
breaking: $(BUF) ## Check the contract against the committed baseline image
	$(BUF) breaking --against proto/baseline.binpb

.PHONY: baseline
baseline: $(BUF) ## Refresh the contract baseline on purpose (after a release)
	$(BUF) build -o proto/baseline.binpb

.PHONY: build
build: ## Build bin/tasker
	go build -o $(BIN_DIR)/tasker ./cmd/tasker

.PHONY: run
run: ## Serve on ./tasker.db, gRPC 127.0.0.1:50051, admin 127.0.0.1:9090
	go run ./cmd/tasker serve --templates examples/templates

.PHONY: pgcheck
pgcheck: ## Tell whether the test PostgreSQL is reachable (fatal under CI=true)
	@hostport=$$(sed -E 's#^[a-z]+://([^@/]*@)?([^/?]+).*#\2#' <<<"$$TASKER_TEST_POSTGRES_URL"); \
	host=$${hostport%:*}; port=$${hostport##*:}; [ "$$port" != "$$hostport" ] || port=5432; \
	if timeout 3 bash -c "exec 3<>/dev/tcp/$$host/$$port" 2>/dev/null; then \
		echo "PostgreSQL reachable at $$host:$$port: running the PostgreSQL suite"; \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "ERROR: PostgreSQL is not reachable at $$host:$$port and CI=true: the PostgreSQL tests are required" >&2; exit 1; \
	else \
		echo "!!!!!!!! PostgreSQL is NOT reachable at $$host:$$port: the PostgreSQL tests will be SKIPPED !!!!!!!!" >&2; \
	fi

.PHONY: test
test: check-generate lint breaking pgcheck ## Everything CI runs: generated code, lint, contract, all tests (-race)
	go test $(GO_TEST_FLAGS) ./...

.PHONY: test-short
test-short: ## The inner loop: Go tests on SQLite only, without the race detector
	TASKER_TEST_DIALECTS=sqlite go test -timeout 10m ./...

.PHONY: release
release: ## Static binaries (linux, darwin; amd64, arm64; CGO off) and SHA256SUMS in dist/
	rm -rf dist && mkdir -p dist
	for os in linux darwin; do for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -buildvcs=true -ldflags '-s -w' \
			-o dist/tasker-$$os-$$arch ./cmd/tasker || exit 1; \
	done; done
	cd dist && sha256sum tasker-* > SHA256SUMS && cat SHA256SUMS

BENCH_FLAGS ?=

.PHONY: bench
bench: ## Every bench scenario on SQLite; BENCH_FLAGS="--database 'postgres://…'" for PostgreSQL (BENCHMARKS.md)
	@go build -o $(BIN_DIR)/tasker ./cmd/tasker
	@$(BIN_DIR)/tasker bench $(BENCH_FLAGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the engine and event-log hot paths; TASKER_BENCH_POSTGRES=1 adds PostgreSQL
	go test -run '^$$' -bench . -benchtime 2s ./engine ./events

.PHONY: chaos
chaos: ## The fault-injection suite at full size (kill -9, replica loss, database outage, vanished workers); RELIABILITY.md
	TASKER_CHAOS=full go test -race -count=1 -timeout 30m -v -run . ./chaos

.PHONY: fuzz
fuzz: ## Fuzz the parsers of untrusted input for 30s each
	go test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./page
	go test -run '^$$' -fuzz FuzzParseYAML -fuzztime 30s ./registry
	go test -run '^$$' -fuzz FuzzMessage -fuzztime 30s ./reqcheck
	go test -run '^$$' -fuzz FuzzCheckNames -fuzztime 30s ./registry
	go test -run '^$$' -fuzz FuzzClip -fuzztime 30s ./fault

.PHONY: clean
clean: ## Remove build output and installed tools
	rm -rf $(BIN_DIR) $(TOOLS_DIR)
