#!/bin/sh
# A one-off database migration against a SQLite file kept on a named volume: run it, run it
# again (nothing left to apply), then read the result with a third job.
# Runs against the jobd that jobctl reaches (JOBD_SOCKET, or the default socket).
set -eu
cd "$(dirname "$0")"
IMAGE=${IMAGE:-localhost/jobd-examples/sqlite:latest}
VOLUME=${VOLUME:-appdb}
IMAGE=$IMAGE sh image.sh

inputs="--input migrate.sh"
for file in migrations/*.sql; do inputs="$inputs --input $file"; done
migrate() {
    set -- $(jobctl run --name migrate-appdb --label example=db-migration -v "$VOLUME:/data" \
        $inputs "$IMAGE" -- sh /inputs/migrate.sh)
    status=0
    jobctl wait "$2" || status=$?
    jobctl logs "$2"
    return $status
}
migrate
again=$(migrate)
echo "$again"
echo "$again" | grep -q '^0 applied' || { echo "the second run applied something" >&2; exit 1; }

set -- $(jobctl run --name read-appdb -v "$VOLUME:/data:ro" "$IMAGE" -- \
    sqlite3 /data/app.db 'SELECT name, email FROM accounts ORDER BY id;')
jobctl wait "$2"
rows=$(jobctl logs "$2")
echo "$rows"
echo "$rows" | grep -q '^grace|grace@example.org$' || { echo "the data is not there" >&2; exit 1; }
echo "db-migration: ok (volume $VOLUME holds /data/app.db)"
