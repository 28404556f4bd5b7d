#!/bin/sh
# Archives /data into /backups/app-<UTC time>.tar.gz, checks the archive reads back, and keeps
# the newest $KEEP archives (older ones are removed). Fails, and so is retried, on any error.
set -eu
KEEP=${KEEP:-7}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive=/backups/app-$stamp.tar.gz
tar -C /data -czf "$archive.partial" .
tar -tzf "$archive.partial" > /dev/null
mv "$archive.partial" "$archive"
echo "wrote $archive ($(wc -c < "$archive") bytes, $(tar -tzf "$archive" | grep -vc '/$') files)"
ls -1 /backups/app-*.tar.gz | sort -r | tail -n +$((KEEP + 1)) | while read -r old; do
    rm -f "$old" && echo "removed $old"
done
echo "kept $(ls -1 /backups/app-*.tar.gz | wc -l) archives"
