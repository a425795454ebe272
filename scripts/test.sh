#!/usr/bin/env bash
# The README's test command: installs the local tools once, checks format and
# lints, then runs every test (unit and end-to-end against real Postgres, a
# Temporal dev server and moto, which the test harness starts itself).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/tools.sh
scripts/postgres.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
