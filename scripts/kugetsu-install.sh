#!/usr/bin/env bash
# Installs kugetsu from this repository (the equivalent of the original kugetsu-install.sh):
# builds and installs the binary with cargo, installs shell completions when it can, and says
# what to do next. Safe to run again: it reinstalls over the previous version.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v cargo >/dev/null 2>&1; then
    echo "Error: cargo is not installed; install Rust from https://rustup.rs and run this again" >&2
    exit 1
fi

echo "installing kugetsu from $repo"
cargo install --locked --path "$repo/kugetsu-cli"

bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
kugetsu="$bin_dir/kugetsu"
if ! command -v kugetsu >/dev/null 2>&1; then
    echo "note: $bin_dir is not on your PATH; add it, e.g. export PATH=\"$bin_dir:\$PATH\""
fi

# Completions for the user's shell, where the usual per-user directory exists.
case "$(basename "${SHELL:-}")" in
    bash)
        dir="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
        mkdir -p "$dir" && "$kugetsu" completions bash > "$dir/kugetsu" && echo "bash completions: $dir/kugetsu"
        ;;
    zsh)
        dir="$HOME/.zfunc"
        mkdir -p "$dir" && "$kugetsu" completions zsh > "$dir/_kugetsu" \
            && echo "zsh completions: $dir/_kugetsu (add 'fpath+=~/.zfunc' before compinit)"
        ;;
    fish)
        dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
        mkdir -p "$dir" && "$kugetsu" completions fish > "$dir/kugetsu.fish" && echo "fish completions: $dir/kugetsu.fish"
        ;;
esac

"$kugetsu" --version
cat <<'NEXT'

Next:
  kugetsu demo                  # the whole flow with a fake agent, no opencode needed
  npm install -g opencode-ai    # the real agent
  kugetsu init                  # or: kugetsu init --headless (no terminal)
  kugetsu queue-daemon start
NEXT
