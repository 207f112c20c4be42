#!/usr/bin/env bash
# Install what pygear needs from the system, only where it is missing:
# libgearman (the library pygear loads), gearmand (the server the tests and
# the demo start) and gearman-tools (the C peers the tests talk to).
#
#   --no-server   leave gearmand out: the tests run against $GEARMAN_SERVER
set -euo pipefail

want_server=1
for arg in "$@"; do
  case "$arg" in
    --no-server) want_server=0 ;;
    *) echo "usage: $0 [--no-server]" >&2; exit 2 ;;
  esac
done

missing=()
have_lib() { ldconfig -p 2>/dev/null | grep -q 'libgearman\.so\.8' || ls /usr/lib/*/libgearman.so.8 >/dev/null 2>&1; }
have_lib || missing+=(libgearman8)
if [ "$want_server" -eq 1 ]; then
  { command -v gearmand >/dev/null || [ -x /usr/sbin/gearmand ]; } || missing+=(gearman-job-server)
fi
{ command -v gearman >/dev/null && command -v gearadmin >/dev/null; } || missing+=(gearman-tools)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "pygear needs: ${missing[*]} (Debian/Ubuntu names); install them with your package manager" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing ${missing[*]} ..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
