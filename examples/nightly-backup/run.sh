#!/bin/sh
# A nightly backup: a recipe, a job on a cron schedule made from it, and (so there is
# something to see now) two runs of it started by hand, then the archives listed.
# Runs against the jobd that jobctl reaches (JOBD_SOCKET, or the default socket).
set -eu
cd "$(dirname "$0")"
IMAGE=${IMAGE:-localhost/jobd/busybox:latest}

wait_for() {
    set -- $("$@")
    status=0
    jobctl wait "$2" || status=$?
    jobctl logs "$2"
    return $status
}
# some data to back up, and the backup script kept on the backups volume beside the archives
wait_for jobctl run -v appdata:/data "$IMAGE" -- sh -c 'date -u > /data/written-at; seq 1 1000 > /data/numbers'
wait_for jobctl run -v backups:/backups --input backup.sh "$IMAGE" -- \
    sh -c 'mkdir -p /backups/.bin && cp /inputs/backup.sh /backups/.bin/backup.sh'

jobctl recipe apply -f recipe.toml
set -- $(jobctl run --recipe nightly-backup --name nightly-backup --schedule '0 3 * * *')
echo "scheduled: job $1, next run at $3"
jobctl schedule

wait_for jobctl run --recipe nightly-backup --name backup-now
sleep 1  # archives are named by the second
wait_for jobctl run --recipe nightly-backup --name backup-now
listing=$(wait_for jobctl run -v backups:/backups:ro "$IMAGE" -- ls -1 /backups)
echo "$listing"
[ "$(echo "$listing" | grep -c '^app-.*\.tar\.gz$')" -ge 2 ] || { echo "no archives" >&2; exit 1; }
echo "nightly-backup: ok"
