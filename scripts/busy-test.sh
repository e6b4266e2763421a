#!/usr/bin/env bash
# The suite's hardest check, as one command: `make test` from a fresh clone of HEAD, with
# only the system's PATH, while busy loops keep the cores occupied (a loaded 2-core CI
# runner). Afterwards it lists what the engine holds, which should be the base image only.
#
#   scripts/busy-test.sh [BUSY_LOOPS]      # default 2; prints rc and wall time
#
# The clone goes to a temporary directory that is removed at the end; its log is kept.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
loops="${1:-2}"
work="$(mktemp -d /tmp/mlbox-busy-XXXXXX)"
# mktemp makes it 0700; the suite runs some tests as an unprivileged user (rootless Podman,
# mlbox run --user), who must be able to reach the clone, as in any checkout.
chmod 755 "$work"
log="/tmp/mlbox-busy-test-$(git -C "$repo" rev-parse --short HEAD)-$(date +%Y%m%dT%H%M%S).log"  # one per run
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
start=$(date +%s)
# env -i: nothing installed by hand in a login shell's PATH (or a venv) can help the run.
(cd "$work/mlbox" && env -i HOME="$HOME" TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin make test) >"$log" 2>&1
rc=$?
wall=$(($(date +%s) - start))
stop_busy

echo "busy-test: commit $(git -C "$work/mlbox" rev-parse --short HEAD), $loops busy loops: rc=$rc wall=${wall}s (log: $log)"
grep -E '^=+ .*(passed|failed|error)' "$log" | tail -1  # pytest's count (lint failures end the log earlier)
echo "busy-test: what the engine holds now:"
"$work/mlbox/scripts/with-engine.sh" sh -c \
  'docker images -a; docker ps -a; docker volume ls; docker system df' 2>&1 | grep -v '^with-engine:'
ls -d /tmp/pytest-mlbox-* /tmp/mlbox-[!b]* 2>/dev/null && echo "busy-test: temporary directories left (above)"
exit "$rc"
