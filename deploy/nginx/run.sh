#!/usr/bin/env bash
# Start nginx (Debian's package: apt-get install -y nginx) in the foreground on a loopback port, in
# front of keras-serve instances on other loopback ports:
#
#   deploy/nginx/run.sh 8080 8000 8002          # nginx on 127.0.0.1:8080, instances on :8000 and :8002
#   ACCESS_LOG=/tmp/nginx-access.log deploy/nginx/run.sh 8080 8000
#
# The rendered configuration, pid file and temp folders go in a fresh folder (PREFIX to choose it).
# SIGQUIT stops nginx gracefully, SIGTERM at once.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 LISTEN_PORT INSTANCE_PORT [INSTANCE_PORT...]" >&2
    exit 2
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
LISTEN=$1
shift
PREFIX=${PREFIX:-$(mktemp -d -t keras-serve-nginx.XXXXXX)}
ACCESS_LOG=${ACCESS_LOG:-$PREFIX/access.log}
SERVERS=""
for port in "$@"; do
    SERVERS+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;\n"
done
mkdir -p "$PREFIX"
TEMP=$PREFIX
USER_LINE=""
if [ "$(id -u)" = 0 ]; then
    # The workers drop to nobody and must reach the temp folders (bodies over 1 MiB go there):
    # they get their own folder under /tmp, open to nobody whatever the modes of PREFIX's parents.
    USER_LINE="user nobody nogroup;"
    TEMP=$(mktemp -d -t keras-serve-nginx-temp.XXXXXX)
    chmod 755 "$TEMP"
    touch "$ACCESS_LOG"
fi
mkdir -p "$TEMP"/{client_body,proxy,fastcgi,uwsgi,scgi}
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$TEMP"/{client_body,proxy,fastcgi,uwsgi,scgi}
sed -e "s|@USER@|$USER_LINE|" -e "s|@PREFIX@|$PREFIX|g" -e "s|@TEMP@|$TEMP|g" -e "s|@LISTEN@|127.0.0.1:$LISTEN|" \
    -e "s|@ACCESS_LOG@|$ACCESS_LOG|" -e "s|@SERVERS@|${SERVERS%\\n}|" \
    "$HERE/nginx.conf.template" > "$PREFIX/nginx.conf"
"$NGINX" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf"
echo "nginx on 127.0.0.1:$LISTEN in front of 127.0.0.1:{$(IFS=,; echo "$*")}; config $PREFIX/nginx.conf"
exec "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -g "daemon off;"
