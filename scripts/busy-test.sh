#!/usr/bin/env bash
# The suite's hardest check, as one command: `make test` (or another target) from a fresh
# clone of HEAD, with only the system's PATH, while busy loops keep the cores occupied (a
# loaded 2-core CI runner). Afterwards it lists what the engine holds, which should be what
# it held before (the base image only, on a CI machine).
#
#   scripts/busy-test.sh [BUSY_LOOPS] [TARGET...]   # default: 2 loops, `test`; prints rc and wall time
#
# BUSY_LOOPS 0 measures a quiet machine. Targets after the first run in the same clone, so
# `scripts/busy-test.sh 0 test check unit` times check and unit with the venv in place.
#
# The clone goes to a temporary directory that is removed at the end; its log is kept.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
loops="${1:-2}"
shift || true
targets=("${@:-test}")
work="$(mktemp -d /tmp/mlbox-busy-XXXXXX)"
# mktemp makes it 0700; the suite runs some tests as an unprivileged user (rootless Podman,
# mlbox run --user), who must be able to reach the clone, as in any checkout.
chmod 755 "$work"
logs="/tmp/mlbox-busy-test-$(git -C "$repo" rev-parse --short HEAD)-$(date +%Y%m%dT%H%M%S)"  # one per run and target
busy=()
stop_busy() {  # after make test, and on an early exit
  [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null
  busy=()
}
cleanup() {
  stop_busy
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/mlbox" || exit 1
for _ in $(seq "$loops"); do (while :; do :; done) & busy+=($!); done
rc=0
for target in "${targets[@]}"; do
  log="$logs-$target.log"
  start=$(date +%s)
  # env -i: nothing installed by hand in a login shell's PATH (or a venv) can help the run.
  (cd "$work/mlbox" && env -i HOME="$HOME" TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin make "$target") >"$log" 2>&1
  target_rc=$?
  wall=$(($(date +%s) - start))
  echo "busy-test: commit $(git -C "$work/mlbox" rev-parse --short HEAD), $loops busy loops: make $target rc=$target_rc wall=${wall}s (log: $log)"
  grep -E '^=+ .*(passed|failed|error)' "$log" | tail -1  # pytest's count (lint failures end the log earlier)
  [ "$target_rc" -eq 0 ] || rc=$target_rc
done
stop_busy

echo "busy-test: what the engine holds now:"
"$work/mlbox/scripts/with-engine.sh" sh -c \
  'docker images -a; docker ps -a; docker volume ls; docker system df' 2>&1 | grep -v '^with-engine:'
ls -d /tmp/pytest-mlbox-* /tmp/mlbox-[!b]* 2>/dev/null && echo "busy-test: temporary directories left (above)"
exit "$rc"
