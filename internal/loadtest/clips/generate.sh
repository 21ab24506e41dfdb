#!/bin/sh
# Regenerates the three simulcast layers of the load test's camera clip
# (see README.md): VP8 from ffmpeg's testsrc2 pattern, 4 s at 30 frames/s,
# a key frame every 2 s, constant bit rate near LiveKit's load test layers.
# Run from this directory (go generate does).
set -eu
for layer in "q 320x180 150k" "h 640x360 500k" "f 1280x720 1700k"; do
	set -- $layer
	ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$2:rate=30" -t 4 \
		-c:v libvpx -b:v "$3" -minrate "$3" -maxrate "$3" -bufsize "$3" \
		-g 60 -keyint_min 60 -deadline realtime -cpu-used 8 \
		-auto-alt-ref 0 -lag-in-frames 0 -error-resilient 1 "$1.ivf"
done
