#!/bin/sh
# Render-farm style batch: upload the scene (and the renderer's scripts) as inputs, render
# every frame into /outputs, download the frames and check the preview jobd picked.
# Runs against the jobd that jobctl reaches (JOBD_SOCKET, or the default socket).
set -eu
cd "$(dirname "$0")"
IMAGE=${IMAGE:-localhost/jobd/busybox:latest}
OUT=${OUT:-./out}

set -- $(jobctl run --name render-demo --label example=render-batch \
    --input scene.txt --input png.awk --input render.sh \
    "$IMAGE" -- sh /inputs/render.sh)
job=$1 run=$2
echo "job $job, run $run"
jobctl wait "$run"
jobctl logs "$run"
jobctl outputs "$run"
rm -rf "$OUT" && jobctl outputs "$run" -o "$OUT"
frames=$(ls "$OUT"/frames/*.png | wc -l)
expected=$(sed -n 's/^frames *= *//p' scene.txt)
[ "$frames" -eq "$expected" ] || { echo "expected $expected frames, got $frames" >&2; exit 1; }
preview=$(jobctl show "$run" --json | grep -o '"previewUrl": *"[^"]*"')
echo "preview: $preview"
case $preview in *frames/*.png*) ;; *) echo "no preview image" >&2; exit 1 ;; esac
echo "render-batch: ok ($frames frames in $OUT)"
