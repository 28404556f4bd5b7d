#!/bin/sh
# Builds localhost/jobd-examples/sqlite:latest offline: the host's sqlite3 and the libraries it
# links, beside a static busybox. With a registry, any image with sqlite3 does instead
# (IMAGE=docker.io/keinos/sqlite3, or the application's own image with its migration tool).
set -eu
IMAGE=${IMAGE:-localhost/jobd-examples/sqlite:latest}
if podman image exists "$IMAGE"; then exit 0; fi
sqlite=$(command -v sqlite3) || { echo "needs sqlite3 on the host (apt-get install sqlite3)" >&2; exit 1; }
busybox=$(command -v busybox || echo /bin/busybox)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/data"
cp "$busybox" "$root/bin/busybox"
for applet in sh ls sort cat echo basename; do ln -s busybox "$root/bin/$applet"; done
cp "$sqlite" "$root/bin/sqlite3"
for lib in $(ldd "$sqlite" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
tar -C "$root" -c . | podman import - "$IMAGE" > /dev/null
echo "built $IMAGE"
