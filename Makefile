# dob: common tasks. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo

# Every shell script of the project: *.sh anywhere (but build output, vendored code and
# local state) and the CI entry point.
SHELL_SCRIPTS = $(shell find . \( -path ./target -o -path ./vendor -o -path ./.venv \
	-o -path ./.venv-ci -o -path ./.local -o -path ./.git -o -name node_modules \) -prune \
	-o -type f -name "*.sh" -print | sort) .ci/run

.PHONY: help run test lint fmt bench bench-hostile bench-backup drill clean-local deps

help:
	@echo "make run          PostgreSQL primary + streaming replica + S3 (moto) + dob-api on 127.0.0.1:8080 (Ctrl-C stops)"
	@echo "make test         install dependencies, then cargo test (all tests)"
	@echo "make lint         cargo fmt --check, clippy -D warnings, shellcheck"
	@echo "make fmt          cargo fmt"
	@echo "make bench        API vs pgbench benchmark (bench/api.sh)"
	@echo "make bench-hostile every hostile-client case against a release dob-api (bench/hostile.sh)"
	@echo "make bench-backup dob-backup/dob-restore vs pg_dump/pg_restore, 1M users (bench/backup.sh)"
	@echo "make drill        in-region failover drill: Patroni + etcd hosts in network namespaces, faults under load (root)"
	@echo "make clean-local  stop the local stack and delete .local/"
	@echo "make deps         install what is missing (scripts/install-deps.sh)"

deps:
	scripts/install-deps.sh

run:
	scripts/local-stack.sh run

test:
	scripts/install-deps.sh
	$(CARGO) test --locked

lint:
	scripts/install-deps.sh lint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	shellcheck -x $(SHELL_SCRIPTS)

fmt:
	$(CARGO) fmt --all

bench:
	bench/api.sh

bench-hostile:
	bench/hostile.sh

bench-backup:
	bench/backup.sh

drill:
	scripts/drill/drill.sh

clean-local:
	scripts/local-stack.sh clean
