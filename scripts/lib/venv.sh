# Sourced by the scripts that need the project's virtualenv `.venv` (scripts/test.sh,
# scripts/horizon.sh).
#
#   ensure_venv
#
# Makes `.venv` in the current directory if there is none: a clone without one links it to a
# virtualenv in the user's cache (NOVA_VENV_CACHE, else ~/.cache/nova-venv), so that a clean
# clone on a machine that ran the tests before finds the clients installed, as cargo finds its
# crates. Installs Debian's python3-venv when Python cannot make one.
ensure_venv() {
    local cache
    if [ ! -e .venv ]; then
        cache="${NOVA_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nova-venv}"
        mkdir -p "$(dirname "$cache")"
        [ -x "$cache/bin/python" ] || _make_venv "$cache"
        ln -s "$cache" .venv
    fi
    [ -x .venv/bin/python ] || _make_venv .venv
}

_make_venv() {
    if ! python3 -m venv "$1" 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 python3-venv >/dev/null
        python3 -m venv "$1"
    fi
}
