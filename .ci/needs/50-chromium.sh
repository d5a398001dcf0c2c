# tests/console.rs and tests/console_dom.rs open the console in headless Chromium (Debian's
# `chromium` package). Installed only when missing; under CI=true the tests fail without it.
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  echo "installed chromium $(dpkg-query -W -f='${Version}' chromium)"
fi
