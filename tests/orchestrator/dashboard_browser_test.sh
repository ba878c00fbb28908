#!/usr/bin/env bash
# ctest's orchestrator_dashboard_browser_test: installs what dashboard_browser_test.py needs when it is
# missing (Debian's chromium and chromium-driver with apt, Selenium from PyPI), then runs it. What
# cannot be installed makes the test skip (exit 77) with the missing piece named.
set -uo pipefail
here=$(dirname "$0")
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "dashboard browser test: installing ${missing[*]}" >&2
  { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 ||
    echo "dashboard browser test: apt-get could not install ${missing[*]}" >&2
fi
if ! python3 -c 'import selenium' 2>/dev/null; then
  python3 -m pip install --quiet selenium >&2 ||
    python3 -m pip install --quiet --user --break-system-packages selenium >&2 ||
    echo "dashboard browser test: pip could not install selenium" >&2
fi
exec python3 "$here/dashboard_browser_test.py"
