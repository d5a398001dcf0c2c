# gunicorn + Flask from PyPI in a venv, for the freeze and socket-activation tests and
# benches/wake.sh: a real app no one here wrote. Tests find it at WAKEWAY_TEST_VENV (default
# /opt/wakeway-test-venv) and, under CI=true, fail when it is missing.
wakeway_test_venv="${WAKEWAY_TEST_VENV:-/opt/wakeway-test-venv}"
if ! "$wakeway_test_venv/bin/python" -c 'import flask, gunicorn' >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  python3 -m venv "$wakeway_test_venv"
  "$wakeway_test_venv/bin/pip" install -q 'gunicorn==23.*' 'flask==3.*'
  echo "installed gunicorn and Flask into $wakeway_test_venv"
fi
unset wakeway_test_venv
