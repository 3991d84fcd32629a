#!/usr/bin/env bash
# Horizon (the OpenStack dashboard), installed from PyPI, against this service's Keystone.
#
#   scripts/horizon.sh [run|start|stop|status|install] [KEYSTONE_URL]
#
#   run      (default) install if needed, then serve in the foreground
#   start    install if needed, serve in the background, wait until the login page answers,
#            print the URL (a server already running for the same Keystone is kept)
#   stop     stop the background server that `start` started
#   status   exit 0 when the background server answers
#   install  install and collect/compress the static files only
#
# KEYSTONE_URL (or NOVA_HORIZON_KEYSTONE_URL) is the identity endpoint, by default the
# all-in-one's http://127.0.0.1:8774/identity/v3 (scripts/run.sh prints it). Horizon listens on
# NOVA_HORIZON_BIND (127.0.0.1:8000; loopback only: ALLOWED_HOSTS in the settings are the
# loopback names). Open http://127.0.0.1:8000/ and log in as `demo` or `admin` with the
# passwords the all-in-one printed (var/clouds.yaml has them).
#
# What it does: puts Horizon (HORIZON_VERSION below, the newest release; it needs Python
# >= 3.11; Django 5.2, the newest on Python 3.11) in the project's virtualenv `.venv` (made as
# scripts/test.sh makes it: a link to ~/.cache/nova-venv), next to the clients scripts/test.sh
# installs there. No conflict with them: `pip install --dry-run horizon==27.0.0` there only
# adds packages and changes none of theirs, and `pip check` stays clean after, so no separate
# virtualenv is needed. In the virtualenv it writes openstack_dashboard/local/local_settings.py,
# a few lines that run the project's settings, etc/horizon/local_settings.py (the file that
# NOVA_HORIZON_SETTINGS names). Static files are collected and compressed offline once per
# Horizon version and settings file (a stamp in the static directory), into
# .venv/share/nova-horizon-static (NOVA_HORIZON_STATIC): a clean clone on a machine that ran it
# before finds them. Sessions, the generated SECRET_KEY (unless NOVA_HORIZON_SECRET_KEY is
# set), the log (horizon.log; with NOVA_HORIZON_LOG_HTTP=1 every API request Horizon makes,
# bodies included) and the pid file are in NOVA_HORIZON_STATE (var/horizon). Horizon is served by
# Django's own server (`runserver --insecure --noreload`: threaded, serves the static files
# itself with DEBUG off): a development and test setup, not a production one (that is
# Apache/mod_wsgi or uWSGI with a web server for the static files).
#
# Already installed, `start` takes about 2 s (Django starting; 0.2 s when the server already
# runs), `install` 0.2 s. The first install takes under a minute (pip), the static files 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

HORIZON_VERSION=27.0.0
DJANGO_SPEC='Django>=5.2,<5.3'

cmd=${1:-run}
case "$cmd" in
run | start | stop | status | install) shift || true ;;
http://* | https://*) cmd=run ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
export NOVA_HORIZON_KEYSTONE_URL=${1:-${NOVA_HORIZON_KEYSTONE_URL:-http://127.0.0.1:8774/identity/v3}}
bind=${NOVA_HORIZON_BIND:-127.0.0.1:8000}
export NOVA_HORIZON_STATE=${NOVA_HORIZON_STATE:-$root/var/horizon}
export NOVA_HORIZON_SETTINGS=${NOVA_HORIZON_SETTINGS:-$root/etc/horizon/local_settings.py}
mkdir -p "$NOVA_HORIZON_STATE"
pidfile=$NOVA_HORIZON_STATE/horizon.pid
log=$NOVA_HORIZON_STATE/horizon.log
url="http://$bind/"

answers() {
    curl -fsS -o /dev/null --max-time 5 "${url}auth/login/" 2>/dev/null
}
# The pid of the server `start` started, if that process still runs (and is that server).
running_pid() {
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'django runserver' \
        && echo "$pid"
}
stop() {
    local pid
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

case "$cmd" in
stop) stop; exit 0 ;;
status) answers && running_pid >/dev/null; exit ;;
esac

# ---- install (idempotent; one Python start when everything is there) ----------------------
. scripts/lib/venv.sh
ensure_venv
py=$root/.venv/bin/python
export NOVA_HORIZON_STATIC=${NOVA_HORIZON_STATIC:-$(cd .venv && pwd -P)/share/nova-horizon-static}
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
shim=$site/openstack_dashboard/local/local_settings.py
stamp="horizon $HORIZON_VERSION settings $(sha256sum "$NOVA_HORIZON_SETTINGS" | cut -c1-16)"

# Horizon reads openstack_dashboard/local/local_settings.py: there, this runs the project's.
shim_text="# Written by the nova project's scripts/horizon.sh: runs the settings file that
# NOVA_HORIZON_SETTINGS names (etc/horizon/local_settings.py).
import os as _os, runpy as _runpy  # noqa: E401
if _os.environ.get('NOVA_HORIZON_SETTINGS'):
    globals().update({_k: _v for _k, _v in
                      _runpy.run_path(_os.environ['NOVA_HORIZON_SETTINGS']).items()
                      if not _k.startswith('__')})"

# Two runs at once (a test and a person) install once.
exec 9>"$NOVA_HORIZON_STATE/.install.lock"
flock 9
if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("horizon"))' 2>/dev/null)" != "$HORIZON_VERSION" ]; then
    echo "horizon.sh: installing Horizon $HORIZON_VERSION into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check "horizon==$HORIZON_VERSION" "$DJANGO_SPEC"
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    shim=$site/openstack_dashboard/local/local_settings.py
fi
if [ "$(cat "$shim" 2>/dev/null)" != "$shim_text" ]; then
    printf '%s\n' "$shim_text" >"$shim"
fi
manage() {
    "$py" -m django "$@" --settings=openstack_dashboard.settings
}
if [ "$(cat "$NOVA_HORIZON_STATIC/.nova-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "horizon.sh: collecting and compressing static files into $NOVA_HORIZON_STATIC (once)" >&2
    # Only a directory this script filled (or an empty one) is emptied.
    if [ -e "$NOVA_HORIZON_STATIC/.nova-stamp" ]; then
        rm -rf "$NOVA_HORIZON_STATIC"
    elif [ -n "$(ls -A "$NOVA_HORIZON_STATIC" 2>/dev/null)" ]; then
        echo "horizon.sh: $NOVA_HORIZON_STATIC is not empty and not this script's" >&2
        exit 1
    fi
    mkdir -p "$NOVA_HORIZON_STATIC"
    out=$(mktemp)
    if ! { manage collectstatic --noinput -v0 && manage compress --force -v0; } >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        exit 1
    fi
    rm -f "$out"
    echo "$stamp" >"$NOVA_HORIZON_STATIC/.nova-stamp"
fi
flock -u 9
exec 9>&-
[ "$cmd" = install ] && exit 0

# ---- serve --------------------------------------------------------------------------------
serve=("$py" -m django runserver --insecure --noreload --settings=openstack_dashboard.settings "$bind")
if [ "$cmd" = run ]; then
    echo "Horizon at $url (Keystone $NOVA_HORIZON_KEYSTONE_URL)" >&2
    exec "${serve[@]}"
fi

# start: keep a server that answers on the same address for the same Keystone; otherwise
# (re)start it.
serving="$bind $NOVA_HORIZON_KEYSTONE_URL"
if pid=$(running_pid) && [ "$(cat "$NOVA_HORIZON_STATE/serving" 2>/dev/null)" = "$serving" ] \
    && answers; then
    echo "Horizon at $url (Keystone $NOVA_HORIZON_KEYSTONE_URL; already running, pid $pid)"
    exit 0
fi
stop
if answers; then
    echo "horizon.sh: something else answers on $bind (set NOVA_HORIZON_BIND)" >&2
    exit 1
fi
echo "$serving" >"$NOVA_HORIZON_STATE/serving"
setsid "${serve[@]}" >>"$log" 2>&1 </dev/null &
echo $! >"$pidfile"
for _ in $(seq 300); do
    if answers; then
        echo "Horizon at $url (Keystone $NOVA_HORIZON_KEYSTONE_URL; log $log; stop: $0 stop)"
        exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "horizon.sh: Horizon exited; the end of $log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "horizon.sh: Horizon did not answer on $url within 30 s; the end of $log:" >&2
tail -20 "$log" >&2
exit 1
