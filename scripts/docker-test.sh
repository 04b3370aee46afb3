#!/usr/bin/env bash
# `make test-docker`: the Docker image and docker/docker-compose.yml, end to end.
#
# Builds the image, starts the compose cluster (a brain, three nodes), waits for
# readiness, uploads and downloads through the brain's published port with the
# admin key taken from `logs brain`, kills a node and reads again (and writes),
# starts it again, runs `down` then `up` and checks every file is still there,
# then adds two nodes with docker-compose.more-nodes.yml and one with a join token.
#
# Needs a Docker engine. If none answers, it installs docker.io (apt-get, as root)
# and starts dockerd itself; where that is impossible it prints SKIP and exits 0.
# The image's base is python:3.12-slim if that is present locally, else a plain
# Debian bookworm imported from debootstrap as local/debian:bookworm (made once,
# reused: Docker Hub need not be reachable). Pip inside the build uses this
# machine's index settings (http(s) ones) and CA bundle.
#
# Cleans up on exit: the compose project (containers, volumes, network), the
# dockerd it started (by PID). It keeps local/debian:bookworm and the last image
# built (local/tossit-test:latest and its build stage :build, the build cache of
# the next run; older ones are removed); TOSSIT_DOCKER_CLEAN=1 removes those too.
# Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="tossit-test-$$"
IMAGE="local/tossit-test:latest"
IMAGE_BUILD="local/tossit-test:build"
LABEL="org.tossit.test-image=1"
BASE="${TOSSIT_DOCKER_BASE:-}"
DEBIAN_BASE="local/debian:bookworm"
WORK="$(mktemp -d /tmp/tossit-docker-test.XXXXXX)"
DOCKERD_PID=""
EXTRA_NODE=""  # the node started with docker run (a join token)
COMPOSE=()
STARTED=$SECONDS

say() { echo "test-docker [$((SECONDS - STARTED))s]: $*"; }
skip() { say "SKIP: $*"; exit 0; }
fail() { say "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [ "${#COMPOSE[@]}" -gt 0 ]; then
    if [ "$rc" -ne 0 ]; then
      say "logs of the failed run:"
      timeout 60 "${COMPOSE[@]}" logs --no-color --tail 40 2>&1 | tail -n 160
    fi
    if [ -n "$EXTRA_NODE" ]; then
      [ "$rc" -eq 0 ] || timeout 30 docker logs --tail 20 "$EXTRA_NODE" 2>&1
      timeout 60 docker rm -f "$EXTRA_NODE" >/dev/null 2>&1
      timeout 60 docker volume rm -f "$EXTRA_NODE" >/dev/null 2>&1
    fi
    timeout 120 "${COMPOSE[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ] || docker info >/dev/null 2>&1; then
    # Earlier test images (a rebuild untags the previous one), and the last one if asked.
    timeout 60 docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1
    if [ "${TOSSIT_DOCKER_CLEAN:-0}" = 1 ]; then
      timeout 60 docker image rm -f "$IMAGE" "$IMAGE_BUILD" >/dev/null 2>&1
    fi
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  say "done (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a Docker engine --------------------------------------------------------
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  say "installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "$@" >"$WORK/apt.log" 2>&1 ||
    { tail -n 5 "$WORK/apt.log"; return 1; }
}

if ! timeout 20 docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io || skip "no Docker engine, and docker.io cannot be installed here"
  fi
  [ "$(id -u)" = 0 ] || skip "no Docker engine answers, and starting dockerd needs root"
  say "starting dockerd"
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  if ! timeout 5 docker info >/dev/null 2>&1; then
    tail -n 5 "$WORK/dockerd.log"
    kill "$DOCKERD_PID" 2>/dev/null; DOCKERD_PID=""
    skip "dockerd does not start on this machine (its log's end is above)"
  fi
fi

if timeout 20 docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null || apt_install docker-compose; then
  COMPOSE_CMD=(docker-compose)
else
  skip "neither 'docker compose' nor docker-compose is available"
fi
say "engine $(docker version --format '{{.Server.Version}}'), $("${COMPOSE_CMD[@]}" version 2>/dev/null | head -n 1)"

# --- the base image ---------------------------------------------------------
debian_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources |
      grep -v security | head -n 1)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^[:space:]]*\).*/\2/p' \
      /etc/apt/sources.list | grep -v security | head -n 1)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

if [ -z "$BASE" ]; then
  if docker image inspect "$DEBIAN_BASE" >/dev/null 2>&1; then
    BASE="$DEBIAN_BASE"
  elif docker image inspect python:3.12-slim >/dev/null 2>&1; then
    BASE="python:3.12-slim"
  else
    command -v debootstrap >/dev/null || apt_install debootstrap ||
      skip "no base image, and debootstrap cannot be installed to make one"
    mirror=$(debian_mirror)
    say "making $DEBIAN_BASE with debootstrap from $mirror (once; reused later)"
    rootfs="$WORK/rootfs"
    timeout 900 debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" \
      "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
      { tail -n 5 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    # This machine's extra CAs (a TLS-inspecting proxy): pip in the build needs them.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
      chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    tar -C "$rootfs" -c . | timeout 600 docker import - "$DEBIAN_BASE" >/dev/null
    rm -rf "$rootfs"
    BASE="$DEBIAN_BASE"
  fi
fi

# --- the image ----------------------------------------------------------------
# Pip's settings on this machine, as build arguments (only reachable http(s) ones).
pip_setting() {  # $1: env var, $2: pip config key
  local v="${!1:-}"
  if [ -z "$v" ] && command -v python3 >/dev/null; then
    v=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.$2='\(.*\)'$/\1/p" | head -n 1)
  fi
  tr ' ' '\n' <<<"$v" | grep -E '^https?://' | paste -sd' ' || true
}
build_args=(--build-arg "BASE_IMAGE=$BASE")
index=$(pip_setting PIP_INDEX_URL index-url)
extra=$(pip_setting PIP_EXTRA_INDEX_URL extra-index-url)
trusted=$(pip_setting PIP_TRUSTED_HOST trusted-host)
[ -n "$index" ] && build_args+=(--build-arg "PIP_INDEX_URL=${index%% *}")
[ -n "$extra" ] && build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
[ -n "$trusted" ] && build_args+=(--build-arg "PIP_TRUSTED_HOST=$trusted")
if [ "$BASE" = "$DEBIAN_BASE" ]; then
  # The system bundle, which has this machine's CAs (pip's own does not).
  build_args+=(--build-arg "PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
fi
say "building $IMAGE from $BASE"
# The build stage first, tagged and labelled: the legacy builder would leave it
# untagged and unlabelled, and each rebuild would pile up one more of them. Tagged,
# it is the next run's cache; untagged by a rebuild, the cleanup's prune finds it.
for target in "--target build -t $IMAGE_BUILD" "-t $IMAGE"; do
  # shellcheck disable=SC2086  # $target is two flags
  if ! timeout 1200 docker build -f docker/Dockerfile "${build_args[@]}" --label "$LABEL" \
      $target . >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    fail "docker build failed"
  fi
done
say "built ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"

# --- the cluster --------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=8000
if ! port_free "$PORT"; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  say "port 8000 is taken here: publishing the brain on $PORT"
fi
export TOSSIT_IMAGE="$IMAGE" TOSSIT_PORT="$PORT"
COMPOSE=("${COMPOSE_CMD[@]}" -p "$PROJECT" -f docker/docker-compose.yml)
URL="http://127.0.0.1:$PORT"

wait_ready() {  # $1: seconds
  local deadline=$((SECONDS + $1))
  until curl -sf -m 5 "$URL/ready" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the cluster was not ready within $1 s"
    sleep 1
  done
}
api() { curl -sS -f -m 60 -H "Authorization: Bearer $KEY" "$@"; }
online_nodes() {
  api "$URL/api/nodes" | python3 -c \
    'import json, sys; print(sum(n["state"] == "online" for n in json.load(sys.stdin)))'
}
wait_online() {  # $1: nodes, $2: seconds
  local deadline=$((SECONDS + $2))
  until [ "$(online_nodes)" = "$1" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "not $1 nodes online within $2 s"
    sleep 1
  done
}
declare -A SUMS=()
upload() {  # $1: name, $2: bytes
  head -c "$2" /dev/urandom >"$WORK/$1"
  SUMS[$1]=$(sha256sum "$WORK/$1" | cut -d' ' -f1)
  api -T "$WORK/$1" "$URL/api/files/$1" >"$WORK/$1.json" || fail "upload of $1 failed"
  local stored
  stored=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sha256"])' "$WORK/$1.json")
  [ "$stored" = "${SUMS[$1]}" ] || fail "the brain stored $1 with sha256 $stored"
}
check_all() {  # every file uploaded so far, byte for byte
  local ids name got
  api "$URL/api/files?limit=100" >"$WORK/list.json"
  for name in "${!SUMS[@]}"; do
    ids=$(python3 -c 'import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["files"] if isinstance(doc, dict) else doc
print(" ".join(str(f["id"]) for f in rows if f["name"] == sys.argv[2]))' "$WORK/list.json" "$name")
    [ -n "$ids" ] || fail "$name is not listed ($1)"
    got=$(api "$URL/api/files/${ids%% *}/download" | sha256sum | cut -d' ' -f1)
    [ "$got" = "${SUMS[$name]}" ] || fail "$name reads back wrong ($1)"
  done
  say "all ${#SUMS[@]} files read back intact ($1)"
}

say "compose up (brain on $URL)"
timeout 300 "${COMPOSE[@]}" up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up failed"; }
wait_ready 180
say "ready"

# The admin key, as a user finds it: in the brain's log, once.
KEY=$("${COMPOSE[@]}" logs --no-color brain | sed -n 's/^.*  secret    \([^ ]*\).*$/\1/p' | head -n 1)
[ -n "$KEY" ] || fail "the admin key is not in 'logs brain'"
infile=$("${COMPOSE[@]}" exec -T brain cat /data/brain/admin.key | tr -d '\r\n')
[ "$infile" = "$KEY" ] || fail "the key in the log is not the one in /data/brain/admin.key"
wait_online 3 60

upload small.txt 1000
upload big.bin $((9 * 1024 * 1024 + 123))  # three 4 MiB chunks
check_all "3 nodes"

running() {  # $1: service -> true/false
  docker inspect -f '{{.State.Running}}' "$("${COMPOSE[@]}" ps -q "$1")"
}
say "killing node1"
timeout 60 "${COMPOSE[@]}" kill node1 >/dev/null 2>&1
[ "$(running node1)" = false ] || fail "node1 still runs after kill"
check_all "node1 killed"  # at once: the brain still counts it online, and must fail over
upload while-down.bin $((5 * 1024 * 1024))  # the write quorum (2 of 3) still holds
check_all "node1 killed, after a write"
# Its restart policy must not have brought it back under the reads above.
[ "$(running node1)" = false ] || fail "node1 came back before it was started"

say "starting node1 again"
timeout 60 "${COMPOSE[@]}" start node1 >/dev/null 2>&1
wait_online 3 90

say "compose down, then up"
timeout 120 "${COMPOSE[@]}" down --timeout 20 >/dev/null 2>&1 || fail "compose down failed"
timeout 300 "${COMPOSE[@]}" up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up (again) failed"; }
wait_ready 180
if "${COMPOSE[@]}" logs --no-color brain | grep -q '  secret    '; then
  fail "the brain printed an admin key again on a restart"
fi
wait_online 3 90
check_all "after down and up"

# Five nodes, as docs/docker.md says (the cleanup's `down -v` then knows their volumes).
say "five nodes (docker-compose.more-nodes.yml)"
COMPOSE+=(-f docker/docker-compose.more-nodes.yml)
timeout 300 "${COMPOSE[@]}" up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up (5 nodes) failed"; }
wait_online 5 90
upload five.bin $((5 * 1024 * 1024))
check_all "5 nodes"

# A node of another machine joins with a token alone (TOSSIT_JOIN): no shared
# secret volume, no TOSSIT_NODE_BRAIN; here a plain `docker run` on the network.
say "a sixth node, joining with a token"
token=$("${COMPOSE[@]}" exec -T brain tossit join-token create --expires 10m 2>/dev/null |
  tr -d '\r' | tail -n 1)  # naming the brain's advertised http://brain:8000
[ -n "$token" ] || fail "tossit join-token create printed no token"
EXTRA_NODE="$PROJECT-joined"
timeout 60 docker run -d --name "$EXTRA_NODE" --network "${PROJECT}_default" \
  --network-alias joined -v "$EXTRA_NODE:/data" -e TOSSIT_JOIN="$token" \
  -e TOSSIT_NODE_NAME=joined -e TOSSIT_NODE_ADVERTISE_URL=http://joined:8081 \
  "$IMAGE" node >/dev/null || fail "docker run of the joining node failed"
wait_online 6 60
check_all "6 nodes"
say "PASS"
