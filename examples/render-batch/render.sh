#!/bin/sh
# The "renderer" of this example: draws each frame of the scene in /inputs/scene.txt as a PNG
# under /outputs/frames/, with nothing but busybox (awk writes the PNG: stored deflate blocks,
# CRC-32 and Adler-32 computed by hand). A real render farm runs Blender or similar here; what
# jobd does around it (the uploaded input, the outputs, their preview) is the same.
set -eu
scene=/inputs/scene.txt
value() { sed -n "s/^$1 *= *//p" "$scene"; }
frames=$(value frames); width=$(value width); height=$(value height)
mkdir -p /outputs/frames
echo "scene: $(value title), $frames frames of ${width}x${height}"
f=1
while [ "$f" -le "$frames" ]; do
    out=$(printf '/outputs/frames/%04d.png' "$f")
    awk -v w="$width" -v h="$height" -v f="$f" -v n="$frames" -f /inputs/png.awk > "$out"
    echo "frame $f/$frames: $(wc -c < "$out") bytes"
    f=$((f + 1))
done
echo "done: $frames frames"
