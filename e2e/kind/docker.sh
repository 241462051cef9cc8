#!/usr/bin/env bash
# Makes Docker usable for the kind cluster: installs Debian's docker.io (and jq) when dockerd is
# missing, and starts dockerd when it is not running, without IP masquerading or iptables rules
# (nodes must not reach beyond this machine; the node networks are created --internal). On hosts
# whose capability bounding set lacks CAP_SYS_RESOURCE, it installs runc-wrapper as dockerd's
# default runtime, since `docker run --privileged` fails there otherwise.
#   docker.sh up     ensure installed and running (default)
#   docker.sh down   stop the dockerd this script started
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=/run/weft-dockerd
log=/var/log/weft-dockerd.log
wrapper=/usr/local/libexec/weft/runc-wrapper
runtime=weft-runc

need_wrapper() { # true when CAP_SYS_RESOURCE (bit 24) is missing from the bounding set
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (( (16#$bnd >> 24 & 1) == 0 ))
}

install_packages() {
  local missing=""
  command -v dockerd >/dev/null || missing="$missing docker.io"
  command -v jq >/dev/null || missing="$missing jq"
  command -v runc >/dev/null || missing="$missing runc"
  if [ -n "$missing" ]; then
    echo "docker.sh: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
  fi
}

up() {
  install_packages
  if docker info >/dev/null 2>&1; then
    if need_wrapper && ! docker info --format '{{.DefaultRuntime}}' | grep -qx "$runtime"; then
      echo "docker.sh: dockerd is running without $runtime as its default runtime, but this host lacks" \
        "CAP_SYS_RESOURCE: privileged containers will fail. Stop dockerd and run this again." >&2
      exit 1
    fi
    return 0
  fi
  local args=(--ip-masq=false --iptables=false --ip-forward=true --storage-driver=overlay2)
  if need_wrapper; then
    bash "$here/test-runc-wrapper.sh" >/dev/null
    install -D -m 0755 "$here/runc-wrapper" "$wrapper"
    args+=(--add-runtime "$runtime=$wrapper" --default-runtime "$runtime")
    echo "docker.sh: CAP_SYS_RESOURCE missing from the bounding set: default runtime $wrapper" >&2
  fi
  mkdir -p "$state"
  echo "docker.sh: starting dockerd ${args[*]} (log $log)" >&2
  setsid dockerd "${args[@]}" </dev/null >>"$log" 2>&1 &
  echo $! >"$state/pid"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$state/pid")" 2>/dev/null || break
    sleep 1
  done
  echo "docker.sh: dockerd did not become ready; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

down() {
  [ -f "$state/pid" ] || { echo "docker.sh: no dockerd started by this script" >&2; return 0; }
  local pid
  pid=$(cat "$state/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$state/pid"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "docker.sh: unknown command '$1' (allowed: up, down)" >&2; exit 2 ;;
esac
