#!/usr/bin/env bash
# Debian packages Bondline's tests need: Chromium (real-browser tests), coturn
# (TURN relay for impaired-link tests), PostgreSQL (the tests start a
# throwaway cluster when BONDLINE_TEST_POSTGRES is not reachable; see
# tests/conftest.py), Node.js (the browser scripts' parity with Python),
# HAProxy (several serve nodes behind one load balancer,
# tests/test_faults_haproxy.py) and python3-venv. Installs only what is missing, so a prepared machine pays
# nothing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
# Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v janus >/dev/null 2>&1 || need+=(janus)
dpkg-query -W -f='${Status}' janus-demos 2>/dev/null | grep -q "ok installed" || need+=(janus-demos)
# Debian installs haproxy in /usr/sbin, which is off PATH for non-root users.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
# Wait for another apt run (a second checkout's tests) instead of failing on its lock.
lock=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${lock[@]}" update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${lock[@]}" install -y -q --no-install-recommends "${need[@]}"
