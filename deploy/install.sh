#!/usr/bin/env bash
# Install Ketch on this machine as a systemd service, from the checkout this script is in.
#
#   sudo deploy/install.sh server [--tls-san NAME]... [-- MORE CONTROL-PLANE FLAGS]
#   sudo deploy/install.sh agent --server HOST:6443 --token K10... [-- MORE AGENT FLAGS]
#
# Both: the programs into /opt/ketch/venv (from requirements.lock, hash-checked), `ketch` in
# /usr/local/bin, the unit in /etc/systemd/system, its settings in /etc/ketch/*.env, then
# `systemctl enable --now`. The server also gets the system user `ketch`; it prints the join
# token and the agent command once the control plane has made them. Run again to upgrade (the
# service is restarted; agents keep their pods running). See deploy/README.md.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
# For tests: ROOT prefixes every path written, SYSTEMCTL and USERADD replace those commands.
ROOT="${ROOT:-}"
SYSTEMCTL="${SYSTEMCTL:-systemctl}"
USERADD="${USERADD:-useradd}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/opt/ketch/venv"
ETC="$ROOT/etc/ketch"
UNITS="$ROOT/etc/systemd/system"
WAIT_SECONDS="${WAIT_SECONDS:-60}"

die() { echo "install.sh: $*" >&2; exit 2; }
usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }

role="${1:-}"
[ "$role" = server ] || [ "$role" = agent ] || usage
shift
server="" token="" sans=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --server) [ $# -ge 2 ] || die "--server needs HOST:PORT"; server="$2"; shift 2 ;;
    --token) [ $# -ge 2 ] || die "--token needs the join token"; token="$2"; shift 2 ;;
    --tls-san) [ $# -ge 2 ] || die "--tls-san needs a name or address"; sans+=("$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument $1 (flags for the program go after --)" ;;
  esac
done

if [ "$role" = agent ]; then
  [ -n "$server" ] || die "agent: --server HOST:PORT (the control plane, a name in its certificate) is required"
  [[ "$server" == *:* ]] || die "agent: --server $server: expected HOST:PORT, e.g. $server:6443"
  # A restart needs no token (the node certificate is kept), so a re-install may leave it out.
  if [ -z "$token" ] && [ ! -d "$ROOT/var/lib/ketch-agent" ]; then
    die "agent: --token is required to join (the server's /var/lib/ketch/join-token, or \`ketch token create\`)"
  fi
  if [ -n "$token" ] && ! [[ "$token" =~ ^K10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
    die "agent: --token is not a join token (K10<64 hex>::<6 chars>.<16 chars>)"
  fi
  [ ${#sans[@]} -eq 0 ] || die "agent: --tls-san is a server flag"
else
  [ -z "$server$token" ] || die "server: --server and --token are agent flags"
fi
[ -n "$ROOT" ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo)"

# 1. The programs. A Python outside /root and /home: the control plane's unit hides those.
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" || die "cannot make $VENV (Debian/Ubuntu: apt-get install python3-venv)"
fi
pip=("$VENV/bin/pip" --disable-pip-version-check --quiet)
"${pip[@]}" install --require-hashes --no-deps -r "$SRC/requirements.lock"
"${pip[@]}" install --no-deps --no-build-isolation --force-reinstall "$SRC"
mkdir -p "$ROOT/usr/local/bin"
ln -sf /opt/ketch/venv/bin/ketch "$ROOT/usr/local/bin/ketch"

# 2. Settings: the env files readable by root only (0600: they hold join tokens). The directory is
# 0711 so that the `ketch` user may reach files it is given by name, e.g. an HA control plane's
# etcd client certificate in /etc/ketch/etcd/ (deploy/README.md); it cannot list the directory.
install -d -m 0711 "$ETC"
join() { local IFS=' '; echo "$*"; }
# The shipped env file (its comments are the documentation) with its NAME=... line replaced.
write_env() {
  local template="$1" target="$2"
  LINE="$3" awk -v name="${3%%=*}=" 'index($0, name) == 1 { print ENVIRON["LINE"]; next } { print }' \
    "$template" > "$target.new"
  chmod 0600 "$target.new"
  mv "$target.new" "$target"
}
if [ "$role" = server ]; then
  unit=ketch-controlplane env="$ETC/controlplane.env"
  args=()
  for san in "${sans[@]}"; do args+=(--tls-san "$san"); done
  args+=("${extra[@]}")
  if [ ! -e "$env" ] || [ ${#args[@]} -gt 0 ]; then
    write_env "$SRC/deploy/controlplane.env" "$env" "KETCH_CONTROLPLANE_ARGS=$(join "${args[@]}")"
  fi
  if ! getent passwd ketch > /dev/null 2>&1; then
    "$USERADD" --system --home-dir /var/lib/ketch --no-create-home --shell /usr/sbin/nologin ketch
  fi
else
  unit=ketch-agent env="$ETC/agent.env"
  args=(--server "$server")
  args+=("${extra[@]}")
  write_env "$SRC/deploy/agent.env" "$env" "KETCH_AGENT_ARGS=$(join "${args[@]}")"
  # The token in the environment, not among the flags: `ps` shows every user a command line,
  # while a process's environment is its owner's (and root's) only.
  write_env "$env" "$env" "KETCH_TOKEN=$token"
fi

# 3. The unit, started (or restarted on an upgrade).
install -d -m 0755 "$UNITS"
install -m 0644 "$SRC/deploy/$unit.service" "$UNITS/$unit.service"
"$SYSTEMCTL" daemon-reload
"$SYSTEMCTL" enable "$unit"
"$SYSTEMCTL" restart "$unit"

if [ "$role" = server ]; then
  token_file="$ROOT/var/lib/ketch/join-token"
  for _ in $(seq "$((WAIT_SECONDS * 5))"); do
    [ -s "$token_file" ] && break
    "$SYSTEMCTL" is-active --quiet "$unit" || { echo "install.sh: $unit is not running: journalctl -u $unit" >&2; exit 1; }
    sleep 0.2
  done
  [ -s "$token_file" ] || { echo "install.sh: no $token_file after ${WAIT_SECONDS}s: journalctl -u $unit" >&2; exit 1; }
  host="${sans[0]:-$(hostname)}"
  echo "Ketch control plane running. On each agent machine, from a checkout:"
  echo "  sudo deploy/install.sh agent --server $host:6443 --token $(cat "$token_file")"
  echo "Admin client config: /var/lib/ketch/admin.conf (copy it to ~/.ketch/config on your laptop;"
  echo "the address you reach this server by must be a --tls-san)."
else
  echo "Ketch agent running: journalctl -u ketch-agent; \`ketch get nodes\` shows the node once it has joined."
  [ -z "$token" ] || echo "After it has joined, the token may be removed from $env (a restart needs none)."
fi
