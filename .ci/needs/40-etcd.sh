# tests/cluster.rs runs a real etcd on loopback: Debian's `etcd-server` ships `etcd` (3.4).
# Installed only when missing; the tests start their own on free ports and kill it.
if ! command -v etcd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
  echo "installed etcd $(dpkg-query -W -f='${Version}' etcd-server)"
fi
