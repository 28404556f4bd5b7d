#!/bin/sh
# Applies /inputs/NNN_*.sql to the SQLite database $DB in order, each in one transaction with
# its bookkeeping row, so a failed migration leaves the database as it was and a re-run
# applies only what is missing.
set -eu
DB=${DB:-/data/app.db}
sqlite3 -bail "$DB" "CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')));"
applied=0
for file in $(ls /inputs/*.sql | sort); do
    version=$(basename "$file" .sql)
    done_already=$(sqlite3 "$DB" "SELECT count(*) FROM schema_migrations WHERE version = '$version';")
    if [ "$done_already" = 1 ]; then
        echo "skip  $version (applied)"
        continue
    fi
    { echo "BEGIN;"; cat "$file"; echo "INSERT INTO schema_migrations (version) VALUES ('$version');"; echo "COMMIT;"; } \
        | sqlite3 -bail "$DB"
    echo "apply $version"
    applied=$((applied + 1))
done
echo "$applied applied; the database is at $(sqlite3 "$DB" 'SELECT max(version) FROM schema_migrations;')"
