#!/usr/bin/env bash
# The README's run command: installs the local tools once, then runs the whole
# stack (Temporal dev server + UI, moto, migrations, demo tenant, worker, API).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/tools.sh
scripts/postgres.sh
exec cargo run --quiet -- dev "$@"
