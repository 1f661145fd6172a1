#!/bin/sh
# Debian's chromium drives the browser tests; playwright never downloads a browser of its own.
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "install-browser: could not install chromium" >&2
fi
