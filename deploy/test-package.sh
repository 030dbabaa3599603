#!/usr/bin/env bash
# The Debian packages, as an operator meets them: built (deploy/package.sh),
# their file lists checked, the unit verified (systemd-analyze verify, and
# its security exposure printed), installed with dpkg -i, the installed
# server started with the installed configuration file and the classic
# sequence run against it with the installed client (plaintext and version
# 3), then purged. Needs root (dpkg); installs systemd if systemd-analyze is
# missing (nothing is booted).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-package: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
if ! command -v systemd-analyze >/dev/null; then
  apt-get update && apt-get install -y systemd
fi

bash deploy/package.sh
server_deb=$(ls target/debian/backup-server_*.deb | tail -1)
client_deb=$(ls target/debian/backup-client_*.deb | tail -1)

echo "== file lists"
expect() {
  local deb=$1; shift
  local listing
  listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
  for path in "$@"; do
    grep -qx "./$path" <<<"$listing" || fail "$deb lacks $path; it has:
$listing"
  done
}
expect "$server_deb" usr/bin/backup-server usr/share/man/man1/backup-server.1.gz \
  usr/share/bash-completion/completions/backup-server usr/share/zsh/vendor-completions/_backup-server \
  usr/share/fish/vendor_completions.d/backup-server.fish usr/lib/systemd/system/backup-server.service \
  etc/backup-server/config.toml
expect "$client_deb" usr/bin/backup-client usr/share/man/man1/backup-client.1.gz \
  usr/share/bash-completion/completions/backup-client usr/share/zsh/vendor-completions/_backup-client \
  usr/share/fish/vendor_completions.d/backup-client.fish
dpkg-deb -I "$server_deb" conffiles | grep -qx /etc/backup-server/config.toml || fail "config.toml is not a conffile"

echo "== install"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  dpkg --purge backup-server backup-client >/dev/null 2>&1 || true
  rm -rf /var/lib/backup-server "$work"
}
trap cleanup EXIT
[ ! -e /etc/backup-server/config.toml ] || fail "/etc/backup-server/config.toml exists already; not touching this machine's server"
dpkg -i "$server_deb" "$client_deb"
systemd-analyze verify /usr/lib/systemd/system/backup-server.service
echo "systemd-analyze security (offline): $(systemd-analyze security --offline=true \
  /usr/lib/systemd/system/backup-server.service 2>/dev/null | tail -1)"
man -w backup-server >/dev/null 2>&1 || [ -f /usr/share/man/man1/backup-server.1.gz ]

echo "== the installed server, with the installed configuration"
# The configuration's storage root is the unit's state folder.
grep -qx 'root = "/var/lib/backup-server"' /etc/backup-server/config.toml || fail "no root in the conffile"
/usr/bin/backup-server --config /etc/backup-server/config.toml --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/server.out" && break; sleep 0.1; done
addr=$(sed -n 's/^backup-server listening on \([^,]*\),.*/\1/p' "$work/server.out")
[ -n "$addr" ] || fail "the server did not start: $(cat "$work/server.err")"
grep -q "storing in /var/lib/backup-server" "$work/server.out" || fail "not storing in the state folder: $(cat "$work/server.out")"

cd "$work"
export XDG_CONFIG_HOME="$work/config"
head -c 3000000 /dev/urandom > big.bin
printf 'hello\n' > small.txt
sequence() {
  backup-client --server "$addr" "$@" backup big.bin small.txt
  [ "$(backup-client --server "$addr" "$@" list | tr '\n' ' ')" = "big.bin small.txt " ] || fail "list $*"
  mkdir -p out && rm -f out/*
  backup-client --server "$addr" "$@" restore -o out big.bin small.txt
  cmp big.bin out/big.bin && cmp small.txt out/small.txt
  backup-client --server "$addr" "$@" delete big.bin small.txt
  set +e; backup-client --server "$addr" "$@" list; code=$?; set -e
  [ "$code" = 4 ] || fail "list after delete exited $code, not 4 (no files)"
}
sequence --user 4242
/usr/bin/backup-server user add --id 4343 > key.line
chmod 600 key.line
sequence --key-file key.line
[ "$(stat -c %a /var/lib/backup-server/.backup-users)" = 600 ] || fail "the registry is not owner-only"
echo "test-package: the packages build, install and serve"
