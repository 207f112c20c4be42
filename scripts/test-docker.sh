#!/usr/bin/env bash
# make test-docker: the test suite against the gearmand container that
# docker-compose.yml builds, end to end:
#   - installs docker.io and docker-compose with apt when missing;
#   - starts dockerd when none answers, and stops it (by pid) at the end;
#   - makes the debian:bookworm-slim base image from Debian's packages
#     (debootstrap) when it cannot be pulled, cached for the next run;
#   - builds the image, starts the service on a free port bound to 127.0.0.1;
#   - runs the suite with GEARMAN_SERVER pointing at it (arguments are passed
#     to pytest), checks it left no function and no job behind, takes it down.
# Anything that does not work fails the run, loudly: nothing is skipped.
#
# Knobs: PYGEAR_DOCKER_CACHE (base image tarball; default ~/.cache/pygear),
# PYGEAR_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# PYGEAR_GEARMAND_PORT (default: a free port), VPY (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

VPY=${VPY:-.venv/bin/python}
PROJECT=pygear-test-$$
BASE_IMAGE=debian:bookworm-slim
MIRROR=${PYGEAR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${PYGEAR_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pygear}
BASE_TAR=$CACHE/debian-bookworm-minbase.tar
WORK=$(mktemp -d /tmp/pygear-test-docker.XXXXXX)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'test-docker: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
T0=$SECONDS
lap() { say "$1 done ($((SECONDS - T0)) s so far)"; }

DOCKERD_PID=""
COMPOSE_UP=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$COMPOSE_UP" ]; then
    "${COMPOSE[@]}" down --remove-orphans --timeout 5 >/dev/null 2>&1 \
      || say "could not take the service down"
  fi
  if [ -n "$DOCKERD_PID" ]; then
    say "stopping the dockerd this run started (pid $DOCKERD_PID)"
    $SUDO kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do
      $SUDO kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.5
    done
    if $SUDO kill -0 "$DOCKERD_PID" 2>/dev/null; then
      say "dockerd $DOCKERD_PID did not stop in 30 s: SIGKILL"
      $SUDO kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
  fi
  $SUDO rm -rf "$WORK"
  say "finished with status $rc after $((SECONDS - T0)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

apt_install() {
  say "installing $* (apt)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- docker, docker-compose ------------------------------------------------------
missing=()
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v docker >/dev/null || die "no docker command after installing docker.io"

DOCKER_SUDO=""      # "sudo" when this user cannot reach the docker socket
docker_ok() { timeout 20 $DOCKER_SUDO docker info >/dev/null 2>&1; }
if ! docker_ok && [ -n "$SUDO" ] && timeout 20 sudo docker info >/dev/null 2>&1; then
  DOCKER_SUDO=sudo
fi
DOCKER=($DOCKER_SUDO docker)

# --- dockerd -----------------------------------------------------------------------
if docker_ok; then
  say "using the dockerd that runs"
else
  DOCKER_SUDO=$SUDO
  DOCKER=($DOCKER_SUDO docker)
  DOCKERD=$(command -v dockerd || echo /usr/sbin/dockerd)
  say "no dockerd answers: starting $DOCKERD (log: $WORK/dockerd.log)"
  $SUDO "$DOCKERD" --pidfile "$WORK/dockerd.pid" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    docker_ok && break
    if ! $SUDO kill -0 "$DOCKERD_PID" 2>/dev/null; then
      tail -n 30 "$WORK/dockerd.log" >&2 || true
      DOCKERD_PID=""
      die "dockerd exited at start (its log is above); this machine cannot run containers"
    fi
    sleep 0.5
  done
  if ! docker_ok; then
    tail -n 30 "$WORK/dockerd.log" >&2 || true
    die "dockerd did not answer within 60 s (its log is above)"
  fi
fi
lap "dockerd"

# docker-compose.yml publishes 127.0.0.1:${PYGEAR_GEARMAND_PORT:-4730}; a free
# port keeps clear of a gearmand already on 4730 (Debian's package starts one).
PORT=${PYGEAR_GEARMAND_PORT:-$("$VPY" -c 'from pygear._server import free_port; print(free_port())')}
SERVER=127.0.0.1:$PORT
if "${DOCKER[@]}" compose version >/dev/null 2>&1; then
  COMPOSE=($DOCKER_SUDO env "PYGEAR_GEARMAND_PORT=$PORT" docker compose -p "$PROJECT")
else
  COMPOSE=($DOCKER_SUDO env "PYGEAR_GEARMAND_PORT=$PORT" docker-compose -p "$PROJECT")
fi

# --- the base image ------------------------------------------------------------------
if "${DOCKER[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "$BASE_IMAGE is here"
elif timeout 120 "${DOCKER[@]}" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  say "pulled $BASE_IMAGE"
else
  say "cannot pull $BASE_IMAGE: making it from Debian's packages"
  if [ ! -s "$BASE_TAR" ]; then
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
    ROOTFS=$WORK/rootfs
    say "debootstrap --variant=minbase bookworm from $MIRROR (log: $WORK/debootstrap.log)"
    if ! $SUDO debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1; then
      tail -n 30 "$WORK/debootstrap.log" >&2 || true
      die "debootstrap failed (its log is above)"
    fi
    # As the official slim image: no package cache, no lists; updates and
    # security next to the release.
    SECURITY=${MIRROR%/debian}/debian-security
    $SUDO sh -c "rm -rf '$ROOTFS'/var/cache/apt/archives/*.deb '$ROOTFS'/var/lib/apt/lists/* \
      && printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
         '$MIRROR' '$MIRROR' '$SECURITY' >'$ROOTFS/etc/apt/sources.list'"
    mkdir -p "$CACHE"
    $SUDO tar -C "$ROOTFS" -c . >"$BASE_TAR.part"
    mv "$BASE_TAR.part" "$BASE_TAR"
    say "cached the base system in $BASE_TAR"
  else
    say "using the cached base system $BASE_TAR"
  fi
  "${DOCKER[@]}" import --message "pygear: debootstrap --variant=minbase bookworm" \
    "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
lap "base image"

# --- build, start ----------------------------------------------------------------------
say "building the gearmand image (log: $WORK/build.log)"
if ! "${COMPOSE[@]}" build gearmand >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log" >&2 || true
  die "docker-compose build failed (its log is above)"
fi
lap "build"
COMPOSE_UP=1
"${COMPOSE[@]}" up -d --force-recreate gearmand >"$WORK/up.log" 2>&1 \
  || { cat "$WORK/up.log" >&2; die "docker-compose up failed"; }
"$VPY" - "$PORT" <<'EOF' || { "${COMPOSE[@]}" logs >&2 || true; die "gearmand in the container does not answer on $SERVER"; }
import sys, time, pygear
deadline = time.monotonic() + 60
while True:
    try:
        with pygear.Admin("127.0.0.1", int(sys.argv[1]), timeout=2) as admin:
            print("test-docker: gearmand %s answers on 127.0.0.1:%s"
                  % (admin.version(), sys.argv[1]), file=sys.stderr)
            break
    except (OSError, pygear.GearmanError):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
EOF
lap "service up"

# --- the suite ----------------------------------------------------------------------------
say "GEARMAN_SERVER=$SERVER $VPY -m pytest -ra $*"
set +e
GEARMAN_SERVER=$SERVER "$VPY" -m pytest -ra "$@"
SUITE_RC=$?
set -e
lap "suite (exit $SUITE_RC)"

# The container is fresh: whatever it still holds, the suite left there.
"$VPY" - "$PORT" <<'EOF' || die "the suite left functions or jobs on $SERVER (listed above)"
import sys, pygear
with pygear.Admin("127.0.0.1", int(sys.argv[1]), timeout=10) as admin:
    status, jobs = admin.status(), admin.show_jobs()
for row in status:
    print("test-docker: left function %(function)s: %(total)d jobs, %(running)d running, "
          "%(available_workers)d workers" % row, file=sys.stderr)
for job in jobs:
    print("test-docker: left job %(handle)s (queued=%(job_queued)d ignored=%(ignore_job)d)"
          % job, file=sys.stderr)
print("test-docker: %d functions and %d jobs left on the server" % (len(status), len(jobs)),
      file=sys.stderr)
sys.exit(1 if status or jobs else 0)
EOF
exit "$SUITE_RC"
