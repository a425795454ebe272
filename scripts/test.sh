#!/usr/bin/env bash
# The README's test command: installs the local tools once, checks format and
# lints and the query macros' offline data (.sqlx/), then runs every test
# (unit and end-to-end against real Postgres, a Temporal dev server and moto,
# which the test harness starts itself), and shows the fault suite's matrix
# (tests/faults) whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/tools.sh
scripts/postgres.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# .sqlx/ must be what `cargo sqlx prepare` makes of today's queries against
# today's migrations: a database of its own, rebuilt from migrations/ each run.
# --all-targets: the same build as clippy's above, whose dependencies it reuses.
schema_url="postgres://postgres@127.0.0.1:5432/busflow_sqlx_schema"
cargo sqlx database reset -y --source migrations --database-url "$schema_url" >/dev/null
cargo sqlx prepare --workspace --check --database-url "$schema_url" -- --all-targets --locked
matrix=target/tmp/faults-matrix.md
rm -f "$matrix"
status=0
cargo test --workspace --locked "$@" || status=$?
if [ -f "$matrix" ]; then
  echo "fault suite (tests/faults):"
  cat "$matrix"
fi
exit "$status"
