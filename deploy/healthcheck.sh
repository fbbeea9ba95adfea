#!/bin/bash
# calcache-healthcheck [PATH] [PORT]: exits 0 if and only if
# GET http://127.0.0.1:PORT/PATH answers 200. PATH defaults to /healthz, PORT
# to $CALCACHE__SERVER__PORT or 8080.
#
# Installed in the image as /usr/local/bin/calcache-healthcheck: the
# Dockerfile's HEALTHCHECK uses /healthz (the process is up), the compose
# replicas use /readyz (PostgreSQL and Redis answer too). Plain bash with
# /dev/tcp, so the runtime image needs neither curl nor wget. Docker's own
# healthcheck timeout bounds the connect; the read is bounded here.
set -u
path=${1:-/healthz}
port=${2:-${CALCACHE__SERVER__PORT:-8080}}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 || exit 1
IFS=' ' read -r -t 5 _proto status _rest <&3 || exit 1
exec 3<&- 3>&-
[[ $status == 200 ]]
