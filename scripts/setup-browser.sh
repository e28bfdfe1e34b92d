#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (Playwright drives it via executable_path;
# `playwright install` cannot download browsers on these machines).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: /usr/bin/chromium is missing; install Debian's chromium package (apt-get install chromium) as root" >&2
  exit 2
fi
echo "installing Debian chromium for the browser tests..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
