#!/usr/bin/env bash
# The README's test command: installs the local tools once, checks format and
# lints, then runs every test (unit and end-to-end against real Postgres, a
# Temporal dev server and moto, which the test harness starts itself), and
# shows the fault suite's matrix (tests/faults) whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/tools.sh
scripts/postgres.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
matrix=target/tmp/faults-matrix.md
rm -f "$matrix"
status=0
cargo test --workspace --locked "$@" || status=$?
if [ -f "$matrix" ]; then
  echo "fault suite (tests/faults):"
  cat "$matrix"
fi
exit "$status"
