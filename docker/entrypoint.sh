#!/bin/sh
# The container's entrypoint (under tini): `brain` or `node` (then any flags of
# `tossit brain` / `tossit node`), or any other command (`tossit status`, `sh`).
#
# The brain copies the cluster secret into $TOSSIT_SECRET_DIR, a volume the nodes
# mount read-only; a node waits for it there on its first start (afterwards it
# keeps its own copy in its data dir, like any node).
set -eu

secret_dir="${TOSSIT_SECRET_DIR:-/secret}"
role="${1:-brain}"

case "$role" in
brain)
  shift
  echo brain > /tmp/tossit-role  # for tossit-healthcheck
  data="${TOSSIT_DATA_DIR:-/data/brain}"
  mkdir -p "$data" && chmod 0700 "$data"
  # The brain would create the secret on its start; create it now, to hand it on.
  python3 -c 'import sys; from pathlib import Path
from tossit.auth.secretfile import ensure_secret
ensure_secret(Path(sys.argv[1]))' "$data/cluster.secret"
  if [ -d "$secret_dir" ] && [ -w "$secret_dir" ]; then
    (umask 077 && cp "$data/cluster.secret" "$secret_dir/.cluster.secret.tmp" &&
      mv -f "$secret_dir/.cluster.secret.tmp" "$secret_dir/cluster.secret")
  fi
  if [ ! -e "$data/admin.key" ]; then
    echo "tossit: first start: the brain creates an admin key and keeps its secret in" \
         "$data/admin.key; read it again with: docker compose exec brain cat $data/admin.key"
  fi
  exec tossit brain "$@"
  ;;
node)
  shift
  echo node > /tmp/tossit-role
  data="${TOSSIT_NODE_DATA_DIR:-/data/node}"
  # A join token (TOSSIT_JOIN, a node on another machine) or a secret given
  # outright needs no shared volume.
  if [ -z "${TOSSIT_NODE_JOIN_SECRET:-}" ] && [ -z "${TOSSIT_NODE_JOIN_SECRET_FILE:-}" ] &&
     [ -z "${TOSSIT_JOIN:-}" ] && [ -z "${TOSSIT_NODE_JOIN:-}" ]; then
    if [ ! -s "$secret_dir/cluster.secret" ] && [ ! -s "$data/cluster.secret" ]; then
      wait="${TOSSIT_SECRET_WAIT:-120}"
      echo "tossit: waiting up to ${wait}s for the brain's cluster secret in $secret_dir"
      while [ ! -s "$secret_dir/cluster.secret" ] && [ "$wait" -gt 0 ]; do
        sleep 1; wait=$((wait - 1))
      done
    fi
    if [ -s "$secret_dir/cluster.secret" ]; then
      export TOSSIT_NODE_JOIN_SECRET_FILE="$secret_dir/cluster.secret"
    fi
  fi
  if [ -z "${TOSSIT_NODE_ADVERTISE_URL:-}" ]; then
    # Reachable by the brain under the container's name on the compose network.
    export TOSSIT_NODE_ADVERTISE_URL="http://$(hostname):${TOSSIT_NODE_PORT:-8081}"
  fi
  exec tossit node "$@"
  ;;
*)
  exec "$@"
  ;;
esac
