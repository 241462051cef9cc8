#!/usr/bin/env bash
# Tests runc-wrapper with a stand-in for runc that records its arguments: the OCI spec of
# `create` (bundle config.json) and of `exec` (--process file) loses CAP_SYS_RESOURCE and a
# negative oomScoreAdj, keeps everything else, and runc gets the arguments unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "test-runc-wrapper: FAIL: $*" >&2; exit 1; }
printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/args"\n' "$dir" >"$dir/runc"
chmod +x "$dir/runc"
caps='["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_NET_ADMIN"]'
process="{\"args\":[\"sh\"],\"oomScoreAdj\":-998,\"capabilities\":{\"bounding\":$caps,\"effective\":$caps,\"permitted\":$caps,\"inheritable\":$caps,\"ambient\":$caps}}"
mkdir "$dir/bundle"
echo "{\"ociVersion\":\"1.0.2\",\"process\":$process,\"hostname\":\"x\"}" >"$dir/bundle/config.json"

WEFT_REAL_RUNC=$dir/runc "$here/runc-wrapper" --root /run/r --log "$dir/log" --log-format json \
  create --bundle "$dir/bundle" --pid-file "$dir/pid" c1
jq -e '.process.capabilities | to_entries | all(.value == ["CAP_CHOWN","CAP_NET_ADMIN"])' \
  "$dir/bundle/config.json" >/dev/null || fail "create: capabilities $(jq -c .process.capabilities "$dir/bundle/config.json")"
jq -e '.process | has("oomScoreAdj") | not' "$dir/bundle/config.json" >/dev/null || fail "create: oomScoreAdj kept"
jq -e '.hostname == "x" and .process.args == ["sh"]' "$dir/bundle/config.json" >/dev/null || fail "create: other fields changed"
[ "$(tr '\n' ' ' <"$dir/args")" = "--root /run/r --log $dir/log --log-format json create --bundle $dir/bundle --pid-file $dir/pid c1 " ] ||
  fail "create: runc got $(tr '\n' ' ' <"$dir/args")"

echo "$process" | jq '.oomScoreAdj = 5' >"$dir/process.json"
WEFT_REAL_RUNC=$dir/runc "$here/runc-wrapper" --root /run/r exec --process "$dir/process.json" --detach c1
jq -e '.capabilities.bounding == ["CAP_CHOWN","CAP_NET_ADMIN"] and .oomScoreAdj == 5' "$dir/process.json" >/dev/null ||
  fail "exec: $(jq -c . "$dir/process.json")"

# a spec without capabilities, and commands without a spec, pass through untouched
echo '{"process":{"args":["true"]}}' >"$dir/bundle/config.json"
(cd "$dir/bundle" && WEFT_REAL_RUNC=$dir/runc "$here/runc-wrapper" run c2)
jq -e '.process == {"args":["true"]}' "$dir/bundle/config.json" >/dev/null || fail "run: spec changed"
WEFT_REAL_RUNC=$dir/runc "$here/runc-wrapper" --version
[ "$(cat "$dir/args")" = "--version" ] || fail "--version not passed on"
echo "test-runc-wrapper: ok"
