#!/usr/bin/env bash
# Puts this machine on your Tailscale network (the equivalent of the original
# tailscale-setup.sh), so kugetsu's user can be reached over SSH from your other devices with no
# public IP and no port forwarding: installs Tailscale, starts tailscaled, logs in with an auth
# key (from the environment or a file, never from the command line) or in a browser, and names
# the device. Safe to run again: a machine already logged in is only renamed if needed.
set -euo pipefail

prog=$(basename "$0")

usage() {
    cat <<EOF
Usage: $prog [options] <username> [device-name]

Connects this machine to your tailnet as DEVICE-NAME (default: this host's name), for SSH as
USERNAME (set up key-only SSH for it with scripts/sshd-setup.sh). On Debian, Ubuntu or Fedora:
  - installs Tailscale (its official install script) when it is missing
  - starts tailscaled (with systemd when it runs, else in the background)
  - logs in with an auth key, or prints a URL to log in with in a browser
  - names the device

The auth key (https://login.tailscale.com/admin/settings/keys) is read from:
  TS_AUTHKEY             the environment, e.g.  TS_AUTHKEY=tskey-... sudo -E $prog alice
  --auth-key-file FILE   a file that holds it (keep it private: chmod 600)
It is never put on a command line, where any user could read it with ps. Without either,
the login happens in a browser.

Options:
  --auth-key-file FILE   read the auth key from FILE
  -n, --dry-run          print every change it would make, make none
  -h, --help             this text

It needs root (except with --dry-run).

For tests and unusual layouts: KUGETSU_TAILSCALE_STATE_DIR is where tailscaled keeps its
state and log when it is started without systemd (default /var/lib/tailscale).
EOF
}

die() {
    echo "Error: $*" >&2
    exit 1
}

dry_run=0
key_file=
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        -n | --dry-run) dry_run=1 ;;
        --auth-key-file)
            [ $# -ge 2 ] || die "--auth-key-file needs a file"
            key_file=$2
            shift
            ;;
        --auth-key-file=*) key_file=${1#*=} ;;
        --auth-key | --auth-key=* | --authkey | --authkey=*)
            die "an auth key on the command line is visible to every user (ps); use TS_AUTHKEY or --auth-key-file"
            ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || die "the username is missing (see --help)"
[ $# -le 2 ] || die "too many arguments: $* (see --help)"
user=$1
# The default is this host's name as a device name: its first label, lower case, - for the rest.
device=${2:-$(hostname | cut -d. -f1 | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-')}

if ! [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
    die "'$user' is not a valid user name (lower-case letters, digits, - and _, at most 32)"
fi
if ! [[ $device =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]]; then
    die "'$device' is not a valid device name (lower-case letters, digits and -, at most 63)"
fi

state_dir=${KUGETSU_TAILSCALE_STATE_DIR:-/var/lib/tailscale}
changes=0

# Prints a command that changes the system, and runs it unless this is a dry run.
change() {
    changes=$((changes + 1))
    if [ "$dry_run" = 1 ]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        printf '+'
        printf ' %q' "$@"
        printf '\n'
        "$@"
    fi
}

if [ "$(id -u)" != 0 ] && [ "$dry_run" = 0 ]; then
    die "this needs root: run it with sudo (or see what it would do with --dry-run)"
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# --- the auth key: a file whose path, not content, goes to tailscale ---------------------------
auth_arg=
if [ -n "$key_file" ]; then
    if [ ! -r "$key_file" ] || [ ! -s "$key_file" ]; then
        die "cannot read an auth key from $key_file"
    fi
    case "$(stat -c %a "$key_file")" in
        *00) ;;
        *) echo "warning: $key_file can be read by other users; chmod 600 it" >&2 ;;
    esac
    auth_arg=--auth-key=file:$(realpath "$key_file")
elif [ -n "${TS_AUTHKEY:-}" ]; then
    if [ "$dry_run" = 0 ]; then
        (
            umask 077
            printf '%s' "$TS_AUTHKEY" >"$scratch/authkey"
        )
    fi
    auth_arg=--auth-key=file:$scratch/authkey
fi
# Nothing started from here on needs it in its environment either.
unset TS_AUTHKEY

# --- Tailscale itself -------------------------------------------------------------------------
if ! command -v tailscale >/dev/null 2>&1; then
    if ! command -v curl >/dev/null 2>&1; then
        if grep -Eqi '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then
            change apt-get install -y curl
        else
            change dnf install -y curl
        fi
    fi
    # The official installer knows Debian, Ubuntu and Fedora (it adds Tailscale's package
    # repository and installs the package).
    change curl -fsSL https://tailscale.com/install.sh -o "$scratch/install.sh"
    change sh "$scratch/install.sh"
    if [ "$dry_run" = 0 ]; then
        command -v tailscale >/dev/null 2>&1 || die "the Tailscale installer ran but tailscale is not found"
    fi
fi

# --- tailscaled -------------------------------------------------------------------------------
# Both print nothing (and succeed) while tailscaled does not answer.
backend_state() {
    { tailscale status --json 2>/dev/null || true; } | sed -n 's/^[[:space:]]*"BackendState":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}
self_hostname() {
    # "Self" comes before "Peer" in the status, so the first HostName is this machine's.
    { tailscale status --json 2>/dev/null || true; } | sed -n 's/^[[:space:]]*"HostName":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}

state=
if command -v tailscale >/dev/null 2>&1; then
    state=$(backend_state)
fi
if [ -z "$state" ]; then
    systemd_state=$(systemctl is-system-running 2>/dev/null || true)
    case "$systemd_state" in
        "" | offline | unknown)
            # No systemd (a plain container): run it in the background; without a TUN device,
            # in userspace networking mode (incoming SSH still reaches this machine's sshd).
            tun=()
            [ -c /dev/net/tun ] || tun=(--tun=userspace-networking)
            changes=$((changes + 1))
            if [ "$dry_run" = 1 ]; then
                echo "would start tailscaled in the background (state and log in $state_dir)"
            else
                install -d -m 700 "$state_dir"
                echo "+ tailscaled --state=$state_dir/tailscaled.state ${tun[*]} (log: $state_dir/tailscaled.log)"
                nohup tailscaled --state="$state_dir/tailscaled.state" ${tun[@]+"${tun[@]}"} \
                    >>"$state_dir/tailscaled.log" 2>&1 </dev/null &
            fi
            ;;
        *) change systemctl enable --now tailscaled ;;
    esac
    if [ "$dry_run" = 0 ]; then
        for _ in $(seq 1 30); do
            state=$(backend_state)
            [ -n "$state" ] && break
            sleep 1
        done
        [ -n "$state" ] || die "tailscaled does not answer; see 'journalctl -u tailscaled' or $state_dir/tailscaled.log"
    fi
else
    echo "tailscaled is running ($state)"
fi

# --- login and name ---------------------------------------------------------------------------
if [ "$state" = Running ]; then
    current=$(self_hostname)
    if [ "$current" = "$device" ]; then
        echo "already connected as $device"
    else
        change tailscale set --hostname="$device"
    fi
else
    if [ -n "$auth_arg" ]; then
        echo "logging in with the auth key"
        login=(tailscale up --hostname="$device" "$auth_arg")
    else
        echo "logging in: open the URL tailscale prints below in a browser"
        login=(tailscale up --hostname="$device")
    fi
    changes=$((changes + 1))
    if [ "$dry_run" = 1 ]; then
        printf 'would run:'
        printf ' %q' "${login[@]}"
        printf '\n'
    else
        printf '+'
        printf ' %q' "${login[@]}"
        printf '\n'
        # Shown as it comes (the browser URL), and kept to report a failure.
        set +e
        "${login[@]}" 2>&1 | tee "$scratch/up.log"
        status=${PIPESTATUS[0]}
        set -e
        if [ "$status" != 0 ]; then
            hint="run it again without a key to log in in a browser"
            [ -z "$auth_arg" ] || hint="the auth key may be expired, already used (not reusable) or mistyped; make a new one at https://login.tailscale.com/admin/settings/keys, or $hint"
            die "tailscale login failed (exit $status): $(tail -n 3 "$scratch/up.log" | tr '\n' ' ')
Hint: $hint"
        fi
    fi
fi

# --- what next --------------------------------------------------------------------------------
echo
if [ "$dry_run" = 1 ]; then
    echo "Dry run: $changes change(s) shown above, none made."
    exit 0
fi
ip=$(tailscale ip -4 2>/dev/null | head -n 1 || true)
if [ "$changes" = 0 ]; then
    echo "Nothing to change: this machine is on your tailnet as $device${ip:+ ($ip)}."
else
    echo "Done: this machine is on your tailnet as $device${ip:+ ($ip)}."
fi
if ! id -u "$user" >/dev/null 2>&1; then
    echo "warning: user $user does not exist yet: run scripts/sshd-setup.sh $user" >&2
fi
cat <<EOF

Next, from any device on your tailnet (no port forwarding, nothing open to the internet):
  ssh $user@$device${ip:+      (or: ssh $user@$ip)}
  kugetsu list
If SSH is not set up for $user yet: sudo scripts/sshd-setup.sh $user. See docs/remote.md.
EOF
