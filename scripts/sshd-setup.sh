#!/usr/bin/env bash
# Key-only SSH access to this machine for kugetsu's user (the equivalent of the original
# sshd-setup.sh): a non-root user, its ~/.ssh/authorized_keys with the modes sshd demands, an
# sshd configuration with no passwords and no root login, checked with `sshd -t` before sshd
# is started or reloaded through systemd. Safe to run again: what sshd -T already reports is
# left alone, and a second run changes nothing.
#
# The user's home is the user's: everything in ~/.ssh is made, changed and appended to with
# the user's own rights (setpriv), never root's, so a link the user plants there (even after
# a check) reaches nothing the user could not change anyway. A configuration sshd does not
# apply, or whose reload fails, is taken back and sshd -T is checked to report what it did
# before.
set -euo pipefail

prog=$(basename "$0")

usage() {
    cat <<EOF
Usage: $prog [options] [username]

Sets up key-only SSH access for USERNAME (default: kugetsu) on Debian, Ubuntu or Fedora:
  - installs openssh-server when sshd is missing
  - creates the user (a normal, non-root account) when it does not exist
  - creates ~USERNAME/.ssh (0700) and authorized_keys (0600), owned by the user, and adds the
    public keys given with --authorized-key (as the user: links there are refused, and
    never followed with root's rights)
  - writes sshd_config.d/10-kugetsu.conf: public keys only, no passwords, no keyboard-
    interactive login, no root login; checks it with 'sshd -t' first and never leaves a
    configuration sshd rejects in place
  - enables and starts sshd with systemd (reloads it when its configuration changed; a
    reload that fails puts the previous configuration back, and the next run tries again)

Options:
  --authorized-key FILE  add the public key(s) in FILE (e.g. id_ed25519.pub) to the user's
                         authorized_keys; may be given more than once
  --sudo                 also let the user run sudo without a password (off by default: it
                         makes one leaked SSH key worth root)
  -n, --dry-run          print every change it would make, make none
  -h, --help             this text

It needs root (except with --dry-run) and a running systemd.

For tests and unusual layouts: KUGETSU_SSHD_CONFIG names the main sshd configuration
(default /etc/ssh/sshd_config; the drop-in goes to sshd_config.d beside it) and
KUGETSU_OS_RELEASE the os-release file (default /etc/os-release).
EOF
}

die() {
    echo "Error: $*" >&2
    exit 1
}

dry_run=0
sudo_rule=0
keys=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        -n | --dry-run) dry_run=1 ;;
        --sudo) sudo_rule=1 ;;
        --authorized-key)
            [ $# -ge 2 ] || die "--authorized-key needs a file"
            keys+=("$2")
            shift
            ;;
        --authorized-key=*) keys+=("${1#*=}") ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
    shift
done
[ $# -le 1 ] || die "too many arguments: $* (see --help)"
user=${1:-kugetsu}

if ! [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
    die "'$user' is not a valid user name (lower-case letters, digits, - and _, at most 32)"
fi
[ "$user" != root ] || die "the user must not be root: root login over SSH stays disabled"

sshd_config=${KUGETSU_SSHD_CONFIG:-/etc/ssh/sshd_config}
os_release=${KUGETSU_OS_RELEASE:-/etc/os-release}
dropin_dir=$(dirname "$sshd_config")/sshd_config.d
dropin=$dropin_dir/10-kugetsu.conf

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

# --- the system -------------------------------------------------------------------------------
[ -r "$os_release" ] || die "cannot read $os_release to tell which system this is"
# Read, not sourced: nothing in it is run.
os_field() { sed -n "s/^$1=//p" "$os_release" | head -n 1 | tr -d "\"'"; }
os_id=$(os_field ID)
os_like=$(os_field ID_LIKE)
case " $os_id $os_like " in
    *" debian "* | *" ubuntu "*)
        family=debian
        service=ssh
        ;;
    *" fedora "* | *" rhel "* | *" centos "*)
        family=fedora
        service=sshd
        ;;
    *) die "unsupported system '$os_id': this script knows Debian, Ubuntu and Fedora" ;;
esac

systemd_state=$(systemctl is-system-running 2>/dev/null || true)
case "$systemd_state" in
    "" | offline | unknown)
        no_systemd="systemd is not running here, and this script starts sshd as a systemd service;
without systemd (e.g. in a plain container), start sshd yourself: /usr/sbin/sshd -t && /usr/sbin/sshd"
        [ "$dry_run" = 1 ] || die "$no_systemd"
        echo "note: $no_systemd" >&2
        ;;
esac

find_sshd() {
    command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; } || true
}
sshd_bin=$(find_sshd)
if [ -z "$sshd_bin" ]; then
    if [ "$family" = debian ]; then
        change apt-get update
        change env DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server
    else
        change dnf install -y openssh-server
    fi
    sshd_bin=$(find_sshd)
    [ -n "$sshd_bin" ] || [ "$dry_run" = 1 ] || die "openssh-server was installed but sshd is not found"
fi

# --- the user ---------------------------------------------------------------------------------
if id -u "$user" >/dev/null 2>&1; then
    echo "user $user exists"
    home=$(getent passwd "$user" | cut -d: -f6)
    group=$(id -gn "$user")
else
    change useradd --create-home --shell /bin/bash "$user"
    if [ "$dry_run" = 1 ]; then
        home=/home/$user
        group=$user
    else
        home=$(getent passwd "$user" | cut -d: -f6)
        group=$(id -gn "$user")
    fi
fi
if [ -z "$home" ] || [ "$home" = / ]; then
    die "user $user has no home directory"
fi

# Root works in a home the user controls: a link there could point anywhere. Links are
# refused, and every change below ~/.ssh runs with the user's rights (as_user), so even a link
# planted after this check reaches only what the user could change anyway.
refuse_link() {
    [ ! -L "$1" ] || die "$1 is a symbolic link; refusing to follow it as root"
}
as_user() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"
    else
        "$@"
    fi
}
ssh_dir=$home/.ssh
auth=$ssh_dir/authorized_keys
for p in "$ssh_dir" "$auth"; do
    refuse_link "$p"
done
[ ! -e "$ssh_dir" ] || [ -d "$ssh_dir" ] || die "$ssh_dir is not a directory"
[ ! -e "$auth" ] || [ -f "$auth" ] || die "$auth is not a regular file"

# A file of ~/.ssh owned by someone else (root, after a copy by hand) is given to the user
# without following links (chown -h); its mode is then set by the user.
ensure_modes() { # path mode
    [ -e "$1" ] || return 0
    refuse_link "$1"
    [ "$(stat -c %U:%G "$1")" = "$user:$group" ] || change chown -h "$user:$group" "$1"
    [ "$(stat -c %a "$1")" = "$2" ] || change as_user chmod "$2" "$1"
}

changes_before_keys=$changes
if [ ! -d "$ssh_dir" ]; then
    change as_user mkdir -m 700 "$ssh_dir"
fi
ensure_modes "$ssh_dir" 700
if [ ! -e "$auth" ]; then
    # noclobber: created only if nothing (not even a link) appeared there meanwhile.
    # shellcheck disable=SC2016 # expanded by the user's shell, from its argument
    change as_user bash -c 'set -o noclobber; : >"$1"; chmod 600 "$1"' - "$auth"
fi
ensure_modes "$auth" 600

for key_file in ${keys[@]+"${keys[@]}"}; do
    [ -r "$key_file" ] || die "cannot read the public key file $key_file"
    ssh-keygen -l -f "$key_file" >/dev/null 2>&1 || die "$key_file is not a public key"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in "" | "#"*) continue ;; esac
        case "$line" in *PRIVATE\ KEY*) die "$key_file holds a private key; give the .pub file" ;; esac
        if [ -f "$auth" ] && as_user grep -qxF -- "$line" "$auth"; then
            echo "key already authorized: ${line:0:40}..."
            continue
        fi
        changes=$((changes + 1))
        if [ "$dry_run" = 1 ]; then
            echo "would add to $auth: ${line:0:40}..."
        else
            echo "+ add to $auth: ${line:0:40}..."
            refuse_link "$auth"
            # shellcheck disable=SC2016 # expanded by the user's shell, from its argument
            printf '%s\n' "$line" | as_user bash -c 'cat >>"$1"' - "$auth"
        fi
    done <"$key_file"
done

# Under SELinux (Fedora), sshd reads only files labelled for it.
if [ "$changes" != "$changes_before_keys" ] && command -v restorecon >/dev/null 2>&1 \
    && command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    change restorecon -R "$ssh_dir"
fi

# --- passwordless sudo (opt-in) ---------------------------------------------------------------
if [ "$sudo_rule" = 1 ]; then
    rule_file=/etc/sudoers.d/kugetsu-$user
    rule="$user ALL=(ALL) NOPASSWD:ALL"
    if [ "$(cat "$rule_file" 2>/dev/null || true)" != "$rule" ]; then
        command -v visudo >/dev/null 2>&1 || change "$([ "$family" = debian ] && echo apt-get || echo dnf)" install -y sudo
        changes=$((changes + 1))
        if [ "$dry_run" = 1 ]; then
            echo "would write $rule_file (0440): $rule"
        else
            tmp_rule=$(mktemp)
            printf '%s\n' "$rule" >"$tmp_rule"
            visudo -cf "$tmp_rule" >/dev/null || { rm -f "$tmp_rule"; die "visudo rejected the rule '$rule'"; }
            echo "+ write $rule_file (0440): $rule"
            install -m 440 -o root -g root "$tmp_rule" "$rule_file"
            rm -f "$tmp_rule"
        fi
    fi
fi

# --- sshd's configuration ---------------------------------------------------------------------
wanted_config="# Written by kugetsu's scripts/sshd-setup.sh; running it again rewrites this file.
# Key-only SSH: public keys only, no passwords, no keyboard-interactive login, no root login.
PubkeyAuthentication yes
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no"

# What sshd -T must report once the file is in place (an earlier file could override it).
wanted_effective=(
    "pubkeyauthentication yes"
    "authenticationmethods publickey"
    "passwordauthentication no"
    "kbdinteractiveauthentication no"
    "permitemptypasswords no"
    "permitrootlogin no"
)

[ -r "$sshd_config" ] || [ "$dry_run" = 1 ] || die "cannot read $sshd_config"
if [ -r "$sshd_config" ] && ! grep -Eq '^[[:space:]]*Include[[:space:]].*sshd_config\.d' "$sshd_config"; then
    die "$sshd_config does not include $dropin_dir/*.conf, so settings there would not apply;
add 'Include $dropin_dir/*.conf' as its first line and run this again"
fi

# sshd refuses to check or start without its privilege separation directory (systemd's unit
# makes it on start; a check before that needs it too). It lives in /run, a tmpfs.
if [ "$family" = debian ] && [ ! -d /run/sshd ] && [ "$dry_run" = 0 ]; then
    install -d -m 755 /run/sshd
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# What sshd would apply if (re)started now, and whether that is key-only.
effective() { "$sshd_bin" -T -f "$sshd_config" 2>&1; }
key_only() { # the output of effective
    local setting
    for setting in "${wanted_effective[@]}"; do
        grep -qxiF -- "$setting" <<<"$1" || return 1
    done
}

# Left while a new configuration is on disk but sshd has not been reloaded with it: a run
# killed in between leaves it, and the next run reloads. It only ever causes a reload.
pending=$dropin_dir/.10-kugetsu.conf.pending

config_changed=0
wrote=0
had_old=0
before=
# Puts the drop-in back as it was and checks that sshd -T reports what it did before.
restore() {
    if [ "$had_old" = 1 ]; then
        install -m 644 "$scratch/old.conf" "$dropin_dir/.10-kugetsu.conf.old"
        mv -f "$dropin_dir/.10-kugetsu.conf.old" "$dropin"
    else
        rm -f "$dropin"
    fi
    rm -f "$pending"
    local now
    now=$(effective || true)
    [ "$now" = "$before" ] || die "the previous configuration was put back, but sshd -T now reports something else; check $dropin_dir by hand:
$now"
}

current=
if [ -n "$sshd_bin" ] && [ -r "$sshd_config" ] && [ "$(id -u)" = 0 ] \
    && { [ "$family" != debian ] || [ -d /run/sshd ]; }; then
    current=$(effective || true)
fi
if [ -e "$pending" ]; then
    # A run stopped between writing the configuration and reloading sshd.
    echo "a previous run did not reload sshd after writing $dropin"
    key_only "$current" || die "sshd -T does not report a key-only configuration; remove $pending and run this again"
    config_changed=1
    changes=$((changes + 1))
elif [ -n "$current" ] && key_only "$current"; then
    echo "sshd -T confirms: key-only, no root login"
else
    config_changed=1
    changes=$((changes + 1))
    printf '%s\n' "$wanted_config" >"$scratch/10-kugetsu.conf"
    # Checked before it is put in place: the new file first, then the whole configuration.
    printf 'Include %s\nInclude %s\n' "$scratch/10-kugetsu.conf" "$sshd_config" >"$scratch/check.conf"
    # A dry run checks too when it can (as root, with sshd and its run directory present).
    if [ -n "$sshd_bin" ] && [ -r "$sshd_config" ] && [ "$(id -u)" = 0 ] \
        && { [ "$family" != debian ] || [ -d /run/sshd ]; }; then
        if ! out=$("$sshd_bin" -t -f "$scratch/check.conf" 2>&1); then
            die "sshd rejects the configuration; nothing was changed:
$out"
        fi
        echo "sshd -t accepts the new configuration"
    fi
    if [ "$dry_run" = 1 ]; then
        echo "would write $dropin:"
        sed 's/^/    /' "$scratch/10-kugetsu.conf"
    else
        [ -d "$dropin_dir" ] || install -d -m 755 "$dropin_dir"
        before=$current
        if [ -f "$dropin" ]; then
            cp -p "$dropin" "$scratch/old.conf"
            had_old=1
        fi
        : >"$pending"
        wrote=1
        # Same directory, then rename: sshd never reads half a file.
        install -m 644 "$scratch/10-kugetsu.conf" "$dropin_dir/.10-kugetsu.conf.new"
        mv -f "$dropin_dir/.10-kugetsu.conf.new" "$dropin"
        echo "+ wrote $dropin"
        if ! now=$(effective); then
            restore
            die "sshd rejects the configuration; the previous one was put back:
$now"
        fi
        for setting in "${wanted_effective[@]}"; do
            if ! grep -qxiF -- "$setting" <<<"$now"; then
                restore
                die "sshd does not apply '$setting': a file read before $dropin sets it otherwise; the previous configuration was put back"
            fi
        done
        echo "sshd -T confirms: key-only, no root login"
    fi
fi

# --- sshd's service ---------------------------------------------------------------------------
# Runs a change of sshd's service; when it fails, a configuration written by this run is
# taken back (sshd keeps the one it runs with), and the script stops.
service_change() {
    if change "$@"; then
        return 0
    fi
    if [ "$wrote" = 1 ]; then
        restore
        die "'$*' failed; the previous configuration was put back (sshd -T reports it again), so sshd runs as before; run this again once sshd's service works"
    fi
    die "'$*' failed; run this again once sshd's service works"
}
unit=$service.service
# Ubuntu 22.10 and later start sshd on demand from ssh.socket.
if [ "$family" = debian ] && systemctl is-enabled --quiet ssh.socket 2>/dev/null; then
    unit=ssh.socket
fi
if [ "$unit" = ssh.socket ]; then
    echo "sshd is started on demand by ssh.socket"
    if [ "$config_changed" = 1 ] && systemctl is-active --quiet "$service.service" 2>/dev/null; then
        service_change systemctl reload "$service.service"
    fi
elif systemctl is-active --quiet "$unit" 2>/dev/null; then
    if [ "$config_changed" = 1 ]; then
        service_change systemctl reload "$unit"
    else
        echo "$unit is running"
    fi
else
    service_change systemctl start "$unit"
fi
[ "$dry_run" = 1 ] || rm -f "$pending"
if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    change systemctl enable "$unit"
fi

# --- what next --------------------------------------------------------------------------------
echo
if [ "$changes" = 0 ]; then
    echo "Nothing to change: key-only SSH for $user was already in place."
elif [ "$dry_run" = 1 ]; then
    echo "Dry run: $changes change(s) shown above, none made."
else
    echo "Done: key-only SSH for $user ($changes change(s))."
fi
cat <<EOF

Next:
  1. Authorize your key: put your public key (from your computer, e.g. ~/.ssh/id_ed25519.pub)
     in $auth, or run this again with --authorized-key FILE. Passwords are refused.
  2. In a container: forward a host port to its port 22 (e.g. docker run -p 2222:22 ...);
     on a host behind a firewall, open the port or use Tailscale (scripts/tailscale-setup.sh).
  3. Connect: ssh -p 2222 $user@HOST   (or ssh $user@HOST when sshd listens on port 22)
  4. Install kugetsu for $user (scripts/kugetsu-install.sh, as $user), then over SSH:
     kugetsu list; kugetsu start github.com/owner/repo#14 "fix the bug"
Root login over SSH is refused from then on: keep a root shell open until your key login works.
See docs/remote.md.
EOF
