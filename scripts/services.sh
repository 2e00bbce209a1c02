#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer; start (or, as root on
# Debian, install and start) whichever does not. Used by the test command; idempotent.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }
as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null && as_root; then
    echo "installing PostgreSQL" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -1)
    echo "starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    conf=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -q "socketsvc-tests" "$conf" 2>/dev/null && as_root; then
      # local trust auth for the test databases (a fresh Debian install asks for passwords)
      sed -i '1i host all all 127.0.0.1/32 trust # socketsvc-tests' "$conf"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    fi
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d postgres -Atc 'create database test' >/dev/null 2>&1 || true
fi

if ! redis_up; then
  if ! command -v redis-server >/dev/null && as_root; then
    echo "installing Redis" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  echo "starting Redis" >&2
  mkdir -p /tmp/socketsvc-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/socketsvc-redis --logfile /tmp/socketsvc-redis/redis.log
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
fi
