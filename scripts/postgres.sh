#!/usr/bin/env bash
# Makes sure the local Postgres (127.0.0.1:5432, user postgres) answers,
# starting the machine's cluster when it is installed but stopped.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres 2>/dev/null; }
ready && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
fi
echo "Postgres does not answer at 127.0.0.1:5432 (user postgres). Start it, or set DATABASE_URL for 'dev'." >&2
exit 1
