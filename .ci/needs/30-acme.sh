# tests/acme.rs runs Let's Encrypt's test CA on loopback: Debian's `pebble` package ships
# both `pebble` and `pebble-challtestsrv` (its DNS). Installed only when missing.
if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble
  echo "installed pebble $(dpkg-query -W -f='${Version}' pebble)"
fi
