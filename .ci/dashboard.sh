#!/usr/bin/env bash
# What the dashboard's browser test (tests/dashboard_browser.rs) needs, installed when missing
# and reused when present: Debian's `chromium` and `chromium-driver` (apt; we are root in CI),
# and the pinned Python `selenium` from PyPI in a virtual environment under ~/.cache/eddy.
# No browser or driver is ever downloaded by a tool: selenium is pointed at Debian's
# /usr/bin/chromedriver by the test.
set -euo pipefail
SELENIUM_VERSION=4.27.1
SELENIUM_ENV="$HOME/.cache/eddy/selenium-$SELENIUM_VERSION"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core >/dev/null
fi
if [ ! -x "$SELENIUM_ENV/bin/python" ] || ! "$SELENIUM_ENV/bin/python" -c "import selenium" 2>/dev/null; then
    python3 -m venv "$SELENIUM_ENV"
    "$SELENIUM_ENV/bin/pip" install --quiet "selenium==$SELENIUM_VERSION"
fi
echo "dashboard test tools: $(chromium --version), selenium $SELENIUM_VERSION in $SELENIUM_ENV"
