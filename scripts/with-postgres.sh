#!/usr/bin/env bash
# Runs "$@" with TEST_PG_URL pointing at a throwaway PostgreSQL cluster on 127.0.0.1, removed on exit.
# Needs the server binaries (Debian/Ubuntu: apt-get install -y postgresql-15); no running service.
# Set PGPORT_TEST to choose the port; otherwise the first free one from 55432 up is used, so
# several runs (or a developer's own server) can coexist.
set -euo pipefail

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] && [ -x "$BIN/initdb" ] || { echo "with-postgres.sh: PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install -y postgresql-15)" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${PGPORT_TEST:-}
if [ -z "$PORT" ]; then
  PORT=55432
  while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/arcade-pg.XXXXXX")
# initdb refuses to run as root, so a root caller runs the server as the postgres user.
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$DIR"
  AS=(runuser -u postgres --)
fi

cleanup() {
  if [ -f "$DIR/data/postmaster.pid" ]; then
    "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}
# Install the trap before starting anything, so a failed start still leaves nothing behind.
trap cleanup EXIT
trap 'exit 130' INT TERM

"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --no-sync >/dev/null
# fsync off: the data is thrown away, and it makes the tests noticeably faster.
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null; then
  echo "with-postgres.sh: PostgreSQL failed to start on port $PORT:" >&2
  cat "$DIR/log" >&2 || true
  exit 1
fi

export TEST_PG_URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
"$@"
