#!/usr/bin/env bash
# make_corpus.sh — regenerates the seed corpora of the fuzz harnesses (committed as binary
# files; rerun only when the formats change). Each seed is a small valid input, or a
# near-miss that reaches deep into the parser (a bomb header, a truncated file).
#
# usage: tests/fuzz/make_corpus.sh BUILD_DIR   (needs BUILD_DIR/metatrain and tests/make_images)
set -eu
B=$(cd "$1" && pwd)
MK=$B/tests/make_images
HERE=$(cd "$(dirname "$0")" && pwd)
C=$HERE/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# Files named regress-* are inputs that once crashed a reader: kept, not regenerated.
mkdir -p "$C/idx" "$C/image" "$C/dataset"

# IDX: images and labels, plain and gzipped, and a truncated images file.
"$MK" idx-images "$C/idx/images-3x2x2" 3 2 2 0
"$MK" idx-labels "$C/idx/labels-3" 3 2
"$MK" idx-images "$T/img" 20 5 4 0
gzip -n -c "$T/img" >"$C/idx/images-20x5x4.gz"
"$MK" idx-labels "$T/lab" 1 1
gzip -n -c "$T/lab" >"$C/idx/labels-1.gz"
head -c 40 "$T/img" >"$C/idx/images-truncated"

# Images: PNG (RGB, grey), JPEG, and a PNG and a JPEG whose header claims a huge size.
"$MK" png "$C/image/rgb-6x5.png" 6 5 3 10
"$MK" png "$C/image/grey-9x7.png" 9 7 1 20
"$MK" jpg "$C/image/rgb-16x16.jpg" 16 16 3 30
"$MK" png-header "$C/image/bomb-20000.png" 20000 20000 8 2
"$MK" jpg-header "$C/image/bomb-60000.jpg" 60000 60000

# Datasets: an IDX import (two splits), an Omniglot-style import, and one cut short.
"$MK" idx-images "$T/di" 12 4 3 0
"$MK" idx-labels "$T/dl" 12 4
SOURCE_DATE_EPOCH=0 "$B/metatrain" data import idx "$T/di" "$T/dl" --split a=0,1 --split b=2,3 --quiet \
    -o "$C/dataset/idx-two-splits.h5" >/dev/null
mkdir -p "$T/omni/images_background/A/c1" "$T/omni/images_background/A/c2"
"$MK" png "$T/omni/images_background/A/c1/1.png" 8 8 1 0
"$MK" png "$T/omni/images_background/A/c2/1.png" 8 8 1 50
"$MK" png "$T/omni/images_background/A/c2/2.png" 8 8 1 90
SOURCE_DATE_EPOCH=0 "$B/metatrain" data import omniglot "$T/omni" --size 4x4 --quiet \
    -o "$C/dataset/omniglot-4x4.h5" >/dev/null
head -c 3000 "$C/dataset/idx-two-splits.h5" >"$C/dataset/truncated.h5"
ls -l "$C"/*/
