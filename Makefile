# Tasker's build. Every tool is pinned and installed by this file:
# protoc-gen-go, protoc-gen-go-grpc, protoc-gen-doc and ent are `tool` directives in go.mod;
# buf (which pins its own protobuf version, so it stays out of go.mod) comes
# from npm's prebuilt @bufbuild/buf; golangci-lint is built with go install;
# protoc-gen-es, google-proto-files and the TypeScript client's packages come
# from clients/typescript/package-lock.json (npm ci); gen/python takes its
# google.rpc protos from the same google-proto-files. River's CLI, which
# `make bench-peers` compares burndown with, is built in a module of its own
# under .tools/ (it stays out of go.mod). The Python client needs
# Debian packages (PY_DEBS), which are installed when missing and make runs as
# root.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BUF_VERSION           := 1.75.0
GOLANGCI_LINT_VERSION := v2.15.0
RIVER_VERSION         := v0.47.0

TOOLS_DIR := $(CURDIR)/.tools
BIN_DIR   := $(CURDIR)/bin
BUF       := $(TOOLS_DIR)/buf-$(BUF_VERSION)/node_modules/.bin/buf
GOLANGCI  := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
RIVER     := $(TOOLS_DIR)/bin/river
RIVER_MOD := $(TOOLS_DIR)/river-$(RIVER_VERSION)

TS_DIR  := clients/typescript
TS_DEPS := $(TS_DIR)/node_modules/.package-lock.json

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

$(TS_DEPS): $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund
	@touch $@

$(GOLANGCI):
	@mkdir -p $(dir $(GOLANGCI))
	GOBIN=$(dir $(GOLANGCI)) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: generate
generate: $(BUF) $(TS_DEPS) generate-python ## Regenerate gen/ (buf for Go and TypeScript, protoc for Python), docs/api.md (buf) and ent/ (ent)
	rm -rf gen/go gen/ts
	$(BUF) generate
	$(BUF) generate --template buf.gen.googleapis.yaml
	go generate ./ent

# Python: Debian's packages, checked by what they provide so any system with
# them works; installed with apt-get only when missing and running as root.
PYTHON         := /usr/bin/python3
# One set for generating and testing, so a fresh machine runs apt-get once.
PY_DEBS        := protobuf-compiler:protoc protobuf-compiler-grpc:grpc_python_plugin python3-grpcio:grpc \
                  python3-protobuf:google.protobuf python3-pytest:pytest openssl:openssl
# gen/python is what Debian 12's protoc and grpc_python_plugin write; other versions write other code.
PY_PROTOC_VERSION := 3.21.12
# The google.rpc protos, from the google-proto-files the TypeScript lock file pins.
GOOGLE_PROTOS  := $(TS_DIR)/node_modules/google-proto-files

# need-debs checks package:command-or-module pairs and installs the missing
# packages (one apt-get update), or names them and fails.
define need-debs
	@missing=""; for pair in $(1); do pkg=$${pair%%:*}; what=$${pair#*:}; \
		case $$pkg in \
			python3-*) $(PYTHON) -c "import $$what" 2>/dev/null || missing="$$missing $$pkg" ;; \
			*) command -v $$what >/dev/null || missing="$$missing $$pkg" ;; \
		esac; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else \
			echo "ERROR: missing Debian packages:$$missing (install them: sudo apt-get install$$missing)" >&2; exit 1; \
		fi; fi
endef

.PHONY: python-deps
python-deps: ## Install the Debian packages gen/python is generated and tested with, when missing
	$(call need-debs,$(PY_DEBS))

.PHONY: generate-python
generate-python: python-deps $(TS_DEPS) ## Regenerate gen/python (Debian's protoc and grpc_python_plugin)
	@v=$$(protoc --version | awk '{print $$2}'); [ "$$v" = "$(PY_PROTOC_VERSION)" ] || \
		echo "WARNING: protoc $$v: gen/python is generated with Debian 12's protoc $(PY_PROTOC_VERSION) and grpc_python_plugin 1.51.1; expect a diff" >&2
	rm -rf gen/python && mkdir -p gen/python
	protoc -I proto -I $(GOOGLE_PROTOS) --python_out=gen/python --pyi_out=gen/python \
		--grpc_python_out=gen/python --plugin=protoc-gen-grpc_python=$$(command -v grpc_python_plugin) \
		$$(cd proto && find tasker -name '*.proto' | LC_ALL=C sort)
	protoc -I $(GOOGLE_PROTOS) --python_out=gen/python --pyi_out=gen/python \
		google/rpc/status.proto google/rpc/error_details.proto

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
	@echo "make run: building bin/tasker (the first build compiles SQLite and gRPC and takes a minute or two)"
	@go build -o $(BIN_DIR)/tasker ./cmd/tasker
	@echo "make run: starting bin/tasker serve with the templates of examples/templates; Ctrl-C stops it"
	$(BIN_DIR)/tasker serve --templates examples/templates

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
test: check-generate lint breaking pgcheck ## Everything CI runs: generated code, lint, contract, all tests (-race), client tests
	@# The Go suite and the client suites run side by side; each target's
	@# output is printed whole when it ends.
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-go test-clients

.PHONY: test-go
test-go: ## The Go tests with -race, on SQLite and PostgreSQL
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v '/clients/polyglot$$')

.PHONY: test-clients
test-clients: test-ts test-python test-polyglot ## The client libraries' tests against a real server

# clients/polyglot runs here rather than in test's `go test`, once the
# clients it drives are installed and built.
.PHONY: test-polyglot
test-polyglot: python-deps $(TS_DEPS) ## One DAG served by Go, Python and TypeScript workers; cancellation and subscribers in each language
	cd $(TS_DIR) && npm run build
	go test $(GO_TEST_FLAGS) -count=1 ./clients/polyglot

.PHONY: test-python
test-python: python-deps build ## The Python client's tests (pytest) against a real tasker serve
	cd clients/python && PYTHONDONTWRITEBYTECODE=1 TASKER_BIN=$(BIN_DIR)/tasker $(PYTHON) -m pytest -q -p no:cacheprovider tests

.PHONY: test-ts
test-ts: $(TS_DEPS) build ## TypeScript client: tsc type check and node's test runner against a real `tasker serve`
	cd $(TS_DIR) && npm run typecheck && TASKER_BIN=$(BIN_DIR)/tasker npm test
	cd examples/worker-typescript && npm ci --no-audit --no-fund && npm run typecheck

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

# The polyglot programs' noop mode serves the bench's handler in Python and TypeScript.
SDK_WORKER_CMDS := --worker-cmd 'python=$(PYTHON) clients/polyglot/polyglot.py noop' \
                   --worker-cmd 'typescript=node clients/polyglot/polyglot.mjs noop'

.PHONY: bench-sdks
bench-sdks: python-deps $(TS_DEPS) ## diamond with Go SDK, Python and TypeScript workers in one run (BENCHMARKS.md); BENCH_FLAGS as for bench
	@go build -o $(BIN_DIR)/tasker ./cmd/tasker
	@cd $(TS_DIR) && npm run --silent build
	@$(BIN_DIR)/tasker bench diamond $(SDK_WORKER_CMDS) $(BENCH_FLAGS)

# River's CLI (github.com/riverqueue/river/cmd/river) has a go.mod of its
# own; it is resolved in a throwaway module under .tools/ (go.sum checked
# against the checksum database) and installed with GOBIN, so it never
# enters ours. `go install …@version` is not used: it asks the module proxy
# for the module's latest version to check for a deprecation, and the proxy
# lists no versions of cmd/river, so it falls back to git and fails offline.
# The module's directory names the version: a new RIVER_VERSION rebuilds.
$(RIVER_MOD)/go.sum:
	@rm -rf $(RIVER_MOD) && mkdir -p $(RIVER_MOD)
	cd $(RIVER_MOD) && go mod init tasker-bench-peers >/dev/null 2>&1 && \
		go get github.com/riverqueue/river/cmd/river@$(RIVER_VERSION) || { rm -rf $(RIVER_MOD); exit 1; }

$(RIVER): $(RIVER_MOD)/go.sum
	@mkdir -p $(dir $(RIVER))
	cd $(RIVER_MOD) && GOBIN=$(dir $(RIVER)) go install github.com/riverqueue/river/cmd/river
	@touch $@

BENCH_DATABASE ?= $(TASKER_TEST_POSTGRES_URL)

.PHONY: bench-peers
bench-peers: $(RIVER) ## burndown on PostgreSQL and River's own bench (RIVER_VERSION) in one run, with their ratio; BENCH_DATABASE, BENCH_FLAGS
	@go build -o $(BIN_DIR)/tasker ./cmd/tasker
	@$(BIN_DIR)/tasker bench burndown --database '$(BENCH_DATABASE)' --compare river --river-bin $(RIVER) $(BENCH_FLAGS)

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
