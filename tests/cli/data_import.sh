#!/usr/bin/env bash
# data_import.sh — `metatrain data import|info` end to end on small generated inputs: IDX
# files (plain and gzipped, two pairs concatenated), an Omniglot tree and a class-per-folder
# tree of PNG/JPEG images. Checks what `data info` reports (classes, images, shape, images
# per class, names), that importing twice gives the same file except for its `created`
# attribute (h5dump with the timestamp masked; byte-identical with SOURCE_DATE_EPOCH), that
# every kind of bad input exits 2 with one message naming the path and leaves no output
# behind, and that under mpirun only one rank speaks. Imports the real Fashion-MNIST when
# the Debian package dataset-fashion-mnist is installed (skipped with a note otherwise).
#
# usage: data_import.sh METATRAIN MPIEXEC MAKE_IMAGES   (run by ctest; prints ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
MKIMG=$3
RUN_TIMEOUT=120
source "$(dirname "$0")/lib.sh"
expect_err() { check "$2: stderr contains '$1'" grep -qF -- "$1" "$TMP/err"; }
expect_out() { check "$2: stdout contains '$1'" grep -qF -- "$1" "$TMP/out"; }
no_h5_dump() { check "$1: no HDF5 error stack on stderr" bash -c "! grep -qE 'HDF5-DIAG|#0[0-9][0-9]: ' '$TMP/err'"; }
# expect_usage_error LABEL TEXT...: status 2, one "metatrain: error:" line holding each TEXT.
expect_usage_error() {
    local label=$1
    shift
    expect_exit 2 "$label"
    local n
    n=$(grep -c "metatrain: error: " "$TMP/err")
    check "$label: one error message (got $n)" test "$n" -eq 1
    local text
    for text in "$@"; do expect_err "$text" "$label"; done
    no_h5_dump "$label"
    echo "     stderr: $(head -n 1 "$TMP/err")"
}
# no_output FILE LABEL: neither FILE nor FILE.partial exists.
no_output() { check "$2: no $(basename "$1") and no .partial left" test ! -e "$1" -a ! -e "$1.partial"; }
# info_value FILE SPLIT KEY: the value of "  KEY: value" in the section "split SPLIT" of the
# last `data info` output (stdout in $TMP/out).
info_value() {
    awk -v s="$2" -v k="$3" '
        /^split / { cur = $2; next }
        cur == s { line = $0; sub(/^ +/, "", line); if (index(line, k ":") == 1) {
                   sub(/^[^:]*: +/, "", line); print line; exit } }' "$1"
}
# expect_split LABEL SPLIT CLASSES IMAGES SHAPE PER_CLASS: checks the last `data info`.
expect_split() {
    local label=$1 split=$2
    check "$label: split $split has $3 classes" test "$(info_value "$TMP/out" "$split" classes)" = "$3"
    check "$label: split $split has $4 images" test "$(info_value "$TMP/out" "$split" images)" = "$4"
    check "$label: split $split has shape $5" test "$(info_value "$TMP/out" "$split" shape)" = "$5 (C x H x W)"
    check "$label: split $split has $6 images per class" \
        bash -c "[[ '$(info_value "$TMP/out" "$split" "per class")' == '$6 images'* ]]"
}
mk() { "$MKIMG" "$@" || { echo "FAIL make_images $*"; failed=$((failed + 1)); }; }
# dump_masked FILE: h5dump of FILE with its name and the created timestamp masked.
dump_masked() {
    h5dump "$1" | sed -E -e '1s/^HDF5 ".*" \{/HDF5 FILE {/' \
        -e 's/"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"/"TIMESTAMP"/'
}
# same_but_created LABEL A B: the files' h5dumps agree once the timestamp is masked, and
# their bytes differ in at most the 20 characters of the timestamp.
same_but_created() {
    dump_masked "$2" >"$TMP/dump_a"
    dump_masked "$3" >"$TMP/dump_b"
    check "$1: h5dump outputs agree except for created" cmp -s "$TMP/dump_a" "$TMP/dump_b"
    check "$1: h5dump shows the data (dump is not empty)" grep -q "DATASET \"images\"" "$TMP/dump_a"
    local differ
    differ=$(cmp -l "$2" "$3" 2>/dev/null | wc -l)
    check "$1: files differ in at most 20 bytes (got $differ)" test "$(stat -c %s "$2")" -eq "$(stat -c %s "$3")" -a \
        "$differ" -le 20
}

# --- IDX ----------------------------------------------------------------------------------------
# Pair 1: 40 images of 6x5 (labels i mod 5: 8 per class), plain. Pair 2: 10 images (2 per
# class), gzipped. Split a = 0-2 → 3 classes × 10 images, b = 3,4 → 2 × 10.
IDX=$TMP/idx
mkdir -p "$IDX"
mk idx-images "$IDX/tr-img" 40 6 5 0
mk idx-labels "$IDX/tr-lab" 40 5
mk idx-images "$IDX/te-img" 10 6 5 40
mk idx-labels "$IDX/te-lab" 10 5
gzip -n -k "$IDX/te-img" "$IDX/te-lab"
IDX_IN=("$IDX/tr-img" "$IDX/tr-lab" "$IDX/te-img.gz" "$IDX/te-lab.gz")

run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 --split b=3,4 -o "$TMP/idx.h5"
expect_exit 0 "import idx (plain + gzipped pair)"
check "import idx: no .partial left" test ! -e "$TMP/idx.h5.partial"
expect_out "wrote $TMP/idx.h5: split a, 3 classes, 30 images of 1x6x5" "import idx"
run "$BIN" data info "$TMP/idx.h5"
expect_exit 0 "data info of the idx import"
expect_split "idx" a 3 30 1x6x5 "10 to 10"
expect_split "idx" b 2 20 1x6x5 "10 to 10"
check "idx: class names of a are 0, 1, 2" test "$(info_value "$TMP/out" a names)" = "0, 1, 2"
check "idx: class names of b are 3, 4" test "$(info_value "$TMP/out" b names)" = "3, 4"
expect_out "format:     metatrain-dataset, version 1" "idx info"
expect_out "source:     idx:$IDX/tr-img,$IDX/tr-lab,$IDX/te-img.gz,$IDX/te-lab.gz split a=0-2 split b=3,4" "idx info"
check "idx info: created is an ISO time" grep -qE '^created: +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$TMP/out"
expect_out "splits:     2 (a, b)" "idx info"
# The gzipped pair's images follow the plain pair's within a class: class 0 of split a holds
# images 0 5 10 ... 35 then 40 45 (first pixels), class 1 starts at row 10 with image 1.
px=$(h5dump -d /a/images -s 8,0,0,0 -c 3,1,1,1 -y "$TMP/idx.h5" 2>/dev/null |
    awk '/DATA \{/ { d = 1; next } d && /\}/ { exit } d { gsub(/[ ,]/, ""); printf "%s ", $0 }')
check "idx: first pixels of rows 8-10 of split a are 40 45 1 (got $px)" test "$px" = "40 45 1 "

# --- Omniglot -----------------------------------------------------------------------------------
OMNI=$TMP/omniglot
for c in images_background/Alpha/character01 images_background/Alpha/character02 \
    images_background/Beta/character01 images_evaluation/Gamma/character01; do
    mkdir -p "$OMNI/$c"
done
mk png "$OMNI/images_background/Alpha/character01/0101_01.png" 105 105 1 0
mk png "$OMNI/images_background/Alpha/character01/0101_02.png" 105 105 1 9
mk png "$OMNI/images_background/Alpha/character02/0102_01.png" 105 105 1 17
mk png "$OMNI/images_background/Alpha/character02/0102_02.png" 105 105 1 30
mk png "$OMNI/images_background/Beta/character01/0201_01.png" 105 105 1 40
mk png "$OMNI/images_background/Beta/character01/0201_02.png" 105 105 1 50
mk png "$OMNI/images_background/Beta/character01/0201_03.png" 105 105 1 60
mk png "$OMNI/images_evaluation/Gamma/character01/0301_01.png" 105 105 1 70
mk png "$OMNI/images_evaluation/Gamma/character01/0301_02.png" 105 105 1 80
run "$BIN" data import omniglot "$OMNI" -o "$TMP/omni.h5"
expect_exit 0 "import omniglot"
run "$BIN" data info "$TMP/omni.h5"
expect_exit 0 "data info of the omniglot import"
expect_split "omniglot" background 3 7 1x28x28 "2 to 3"
expect_split "omniglot" evaluation 1 2 1x28x28 "2 to 2"
check "omniglot: classes named alphabet/character in sorted order" \
    test "$(info_value "$TMP/out" background names)" = "Alpha/character01, Alpha/character02, Beta/character01"
expect_out "source:     omniglot:$OMNI size=28x28" "omniglot info"
run "$BIN" data import omniglot "$OMNI" --size 14x12 -o "$TMP/omni14.h5" --quiet
expect_exit 0 "import omniglot --size 14x12 --quiet"
check "omniglot --quiet: no progress lines" bash -c "! grep -q '^found' '$TMP/out'"
run "$BIN" data info "$TMP/omni14.h5"
expect_split "omniglot --size 14x12" background 3 7 1x14x12 "2 to 3"

# --- class per folder -----------------------------------------------------------------------------
FOLD=$TMP/folder
mkdir -p "$FOLD/cat" "$FOLD/dog"
mk png "$FOLD/cat/a.png" 30 40 3 1
mk png "$FOLD/cat/b.png" 40 30 3 2
mk jpg "$FOLD/dog/x.jpg" 20 20 3 3
mk png "$FOLD/dog/y.png" 24 24 1 4
echo "not an image" >"$FOLD/dog/README.txt"
run "$BIN" data import folder "$FOLD" --size 16x16 -o "$TMP/folder.h5"
expect_exit 0 "import folder (PNG, JPEG, grey and RGB sources)"
expect_out "skipped 1 entries" "import folder"
run "$BIN" data info "$TMP/folder.h5"
expect_split "folder" train 2 4 3x16x16 "2 to 2"
check "folder: classes cat, dog" test "$(info_value "$TMP/out" train names)" = "cat, dog"
run "$BIN" data import folder "$FOLD" --size=8x12 --grey --split val -o "$TMP/folder-grey.h5"
expect_exit 0 "import folder --grey --split val"
run "$BIN" data info "$TMP/folder-grey.h5"
expect_split "folder --grey" val 2 4 1x8x12 "2 to 2"

# --- reproducibility --------------------------------------------------------------------------------
run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 --split b=3,4 -o "$TMP/idx2.h5"
same_but_created "idx imported twice" "$TMP/idx.h5" "$TMP/idx2.h5"
sleep 1 # a different created second at least once
run "$BIN" data import omniglot "$OMNI" -o "$TMP/omni2.h5"
same_but_created "omniglot imported twice" "$TMP/omni.h5" "$TMP/omni2.h5"
run "$BIN" data import folder "$FOLD" --size 16x16 -o "$TMP/folder2.h5"
same_but_created "folder imported twice" "$TMP/folder.h5" "$TMP/folder2.h5"
SOURCE_DATE_EPOCH=1700000000 run "$BIN" data import omniglot "$OMNI" -o "$TMP/sde1.h5"
sleep 1
SOURCE_DATE_EPOCH=1700000000 run "$BIN" data import omniglot "$OMNI" -o "$TMP/sde2.h5"
check "with SOURCE_DATE_EPOCH two imports are byte-identical" cmp -s "$TMP/sde1.h5" "$TMP/sde2.h5"
run "$BIN" data info "$TMP/sde1.h5"
expect_out "created:    2023-11-14T22:13:20Z" "SOURCE_DATE_EPOCH=1700000000"
# Control: a different input must change the file (the comparison can fail).
run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 --split b=3 -o "$TMP/idx3.h5"
dump_masked "$TMP/idx.h5" >"$TMP/dump_a"
dump_masked "$TMP/idx3.h5" >"$TMP/dump_b"
check "control: a different --split gives a different dump" bash -c "! cmp -s '$TMP/dump_a' '$TMP/dump_b'"

# --- bad input: exit 2, one message naming the path, no output ---------------------------------------
OUT=$TMP/bad.h5
bad_idx() { # LABEL TEXT... -- ARGS...: import idx ARGS -o $OUT must fail with each TEXT
    local label=$1
    shift
    local texts=()
    while [ "$1" != "--" ]; do texts+=("$1"); shift; done
    shift
    run "$BIN" data import idx "$@" -o "$OUT"
    expect_usage_error "$label" "${texts[@]}"
    no_output "$OUT" "$label"
}
bad_idx "missing IMAGES file" "$TMP/nope" "No such file" -- "$TMP/nope" "$IDX/tr-lab" --split a=0-2
bad_idx "IMAGES and LABELS swapped" "$IDX/tr-lab" "swapped" -- "$IDX/tr-lab" "$IDX/tr-img" --split a=0-2
head -c 100 "$IDX/tr-img" >"$TMP/short-img"
bad_idx "truncated IDX images" "$TMP/short-img" "truncated" -- "$TMP/short-img" "$IDX/tr-lab" --split a=0-2
gz_size=$(stat -c %s "$IDX/te-img.gz")
head -c $((gz_size - 12)) "$IDX/te-img.gz" >"$TMP/cut-img.gz"
bad_idx "gzipped IDX cut short" "$TMP/cut-img.gz" -- "$TMP/cut-img.gz" "$IDX/te-lab.gz" --split a=0-2
printf 'GIF89a this is not IDX' >"$TMP/gif-img"
bad_idx "not an IDX file" "$TMP/gif-img" "not an IDX file" -- "$TMP/gif-img" "$IDX/tr-lab" --split a=0-2
mk idx-labels "$TMP/lab39" 39 5
bad_idx "39 labels for 40 images" "$TMP/lab39" "39 labels" -- "$IDX/tr-img" "$TMP/lab39" --split a=0-2
bad_idx "a class no image has" "$IDX/tr-lab" "classes 5,6,7 do not occur" -- "${IDX_IN[@]:0:2}" --split a=0-7
bad_idx "a class in two splits" "class 2 is in two splits" -- "${IDX_IN[@]}" --split a=0-2 --split b=2,3
bad_idx "class out of range" "a=0-300" "not a class number" -- "${IDX_IN[@]}" --split a=0-300
bad_idx "backwards range" "a=5-2" "backwards" -- "${IDX_IN[@]}" --split a=5-2
bad_idx "no --split" "needs at least one --split" -- "${IDX_IN[@]}"
bad_idx "odd number of files" "IMAGES LABELS file pairs" -- "${IDX_IN[@]:0:3}" --split a=0-2
bad_idx "--size for idx" "unknown option '--size'" -- "${IDX_IN[@]}" --split a=0-2 --size 28x28
run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2
expect_usage_error "missing -o" "needs -o FILE"
run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 -o "$TMP/no/such/dir/x.h5"
expect_usage_error "output in a missing directory" "$TMP/no/such/dir/x.h5"
no_output "$TMP/no/such/dir/x.h5" "output in a missing directory"
mkdir -p "$TMP/is-a-dir.h5"
run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 -o "$TMP/is-a-dir.h5"
expect_usage_error "output is a directory" "$TMP/is-a-dir.h5" "directory"
mkdir -p "$TMP/readonly"
chmod 555 "$TMP/readonly"
if [ "$(id -u)" -ne 0 ]; then # root writes anywhere
    run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 -o "$TMP/readonly/x.h5"
    expect_exit 1 "output in a directory without write permission (a runtime failure)"
    expect_err "$TMP/readonly/x.h5" "output in a directory without write permission"
    expect_err "Permission denied" "output in a directory without write permission"
fi

# --- the output names an input: refused (2), the input untouched ----------------------------------
cp "$IDX/tr-img" "$TMP/self-img"
cp "$IDX/tr-lab" "$TMP/self-lab"
cp "$TMP/self-img" "$TMP/self-img.orig"
run "$BIN" data import idx "$TMP/self-img" "$TMP/self-lab" --split a=0-2 -o "$TMP/self-img"
expect_usage_error "-o is the IMAGES file" "$TMP/self-img" "its own input"
check "-o is the IMAGES file: the file is unchanged" cmp -s "$TMP/self-img" "$TMP/self-img.orig"
ln "$TMP/self-lab" "$TMP/self-lab-link"
cp "$TMP/self-lab" "$TMP/self-lab.orig"
run "$BIN" data import idx "$TMP/self-img" "$TMP/self-lab" --split a=0-2 -o "$TMP/self-lab-link"
expect_usage_error "-o is a hard link to the LABELS file" "$TMP/self-lab" "its own input"
check "-o is a hard link to the LABELS file: the file is unchanged" cmp -s "$TMP/self-lab" "$TMP/self-lab.orig"
cp -r "$FOLD" "$TMP/folder-self"
cp "$TMP/folder-self/cat/a.png" "$TMP/a.png.orig"
run "$BIN" data import folder "$TMP/folder-self" --size 8x8 -o "$TMP/folder-self/cat/a.png"
expect_usage_error "folder: -o is one of its images" "$TMP/folder-self/cat/a.png" "its own input"
check "folder: -o is one of its images: the image is unchanged" cmp -s "$TMP/folder-self/cat/a.png" "$TMP/a.png.orig"
cp -r "$OMNI" "$TMP/omni-self"
run "$BIN" data import omniglot "$TMP/omni-self" -o "$TMP/omni-self/images_background/Alpha/character01/0101_01.png"
expect_usage_error "omniglot: -o is one of its images" "0101_01.png" "its own input"
run "$BIN" data import omniglot "$TMP/omni-self" -o "$TMP/omni-self/omni.h5"
expect_exit 0 "omniglot: the tree still imports after the refusal (output inside the tree, not an input)"

# --- image bombs: too large, named, refused before decoding (2) -----------------------------------
cp -r "$FOLD" "$TMP/folder-bomb"
mk png-header "$TMP/folder-bomb/cat/c.png" 20000 20000 8 2
run "$BIN" data import folder "$TMP/folder-bomb" --size 8x8 -o "$OUT"
expect_usage_error "a 20000x20000 PNG" "$TMP/folder-bomb/cat/c.png" "20000x20000" "too large"
check "a 20000x20000 PNG: not called damaged" bash -c "! grep -q damaged '$TMP/err'"
no_output "$OUT" "a 20000x20000 PNG"
rm "$TMP/folder-bomb/cat/c.png"
mk png-header "$TMP/folder-bomb/cat/c.png" 10000 10000 8 0
run "$BIN" data import folder "$TMP/folder-bomb" --size 8x8 -o "$OUT"
expect_usage_error "a 10000x10000 grey PNG" "$TMP/folder-bomb/cat/c.png" "10000x10000" "too large"
rm "$TMP/folder-bomb/cat/c.png"
mk jpg-header "$TMP/folder-bomb/dog/z.jpg" 60000 60000
run "$BIN" data import folder "$TMP/folder-bomb" --size 8x8 -o "$OUT"
expect_usage_error "a JPEG claiming 60000x60000" "$TMP/folder-bomb/dog/z.jpg" "60000x60000" "too large"
no_output "$OUT" "a JPEG claiming 60000x60000"
cp -r "$OMNI" "$TMP/omni-bomb"
mk png-header "$TMP/omni-bomb/images_background/Beta/character01/0201_09.png" 30000 20 8 0
run "$BIN" data import omniglot "$TMP/omni-bomb" -o "$OUT"
expect_usage_error "omniglot: a 30000x20 PNG" "0201_09.png" "30000x20" "too large"

# --- output on a read-only or full file system: a runtime failure (1) -------------------------------
# Needs root to mount a tmpfs; skipped with the reason otherwise.
MNT_RO=$TMP/mnt-ro
MNT_FULL=$TMP/mnt-full
mkdir -p "$MNT_RO" "$MNT_FULL"
mounted=()
cleanup_mounts() { local m; for m in "${mounted[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup_mounts EXIT
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: read-only and full file system checks (need root to mount a tmpfs)"
elif ! mount -t tmpfs -o ro,size=1m tmpfs "$MNT_RO" 2>"$TMP/mount-err"; then
    echo "skipped: read-only file system check (mount failed: $(head -n 1 "$TMP/mount-err"))"
else
    mounted+=("$MNT_RO")
    run "$BIN" data import idx "${IDX_IN[@]}" --split a=0-2 -o "$MNT_RO/x.h5"
    expect_exit 1 "output on a read-only file system"
    expect_err "$MNT_RO/x.h5" "output on a read-only file system"
    expect_err "Read-only file system" "output on a read-only file system"
    no_output "$MNT_RO/x.h5" "output on a read-only file system"
fi
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=64k tmpfs "$MNT_FULL" 2>"$TMP/mount-err"; then
    mounted+=("$MNT_FULL")
    mk idx-images "$TMP/big-img" 2000 28 28 0
    mk idx-labels "$TMP/big-lab" 2000 5
    run "$BIN" data import idx "$TMP/big-img" "$TMP/big-lab" --split a=0-4 -o "$MNT_FULL/x.h5"
    expect_exit 1 "output on a full file system (64 KiB tmpfs, 1.5 MB of images)"
    expect_err "No space left on device" "output on a full file system"
    expect_err "$MNT_FULL/x.h5" "output on a full file system"
    no_h5_dump "output on a full file system"
    no_output "$MNT_FULL/x.h5" "output on a full file system"
    check "output on a full file system: the file system is empty again" test -z "$(ls -A "$MNT_FULL")"
    run "$BIN" data import folder "$FOLD" --size 64x64 -o "$MNT_FULL/f.h5"
    expect_exit 0 "a small import to the same tmpfs still works (control)"
elif [ "$(id -u)" -eq 0 ]; then
    echo "skipped: full file system check (mount failed: $(head -n 1 "$TMP/mount-err"))"
fi

run "$BIN" data import omniglot "$TMP/no-omniglot" -o "$OUT"
expect_usage_error "missing Omniglot folder" "$TMP/no-omniglot" "No such file"
mkdir -p "$TMP/not-omniglot/stuff"
run "$BIN" data import omniglot "$TMP/not-omniglot" -o "$OUT"
expect_usage_error "a folder without images_background" "$TMP/not-omniglot" "images_background"
cp -r "$OMNI" "$TMP/omni-empty"
mkdir -p "$TMP/omni-empty/images_evaluation/Gamma/character02"
run "$BIN" data import omniglot "$TMP/omni-empty" -o "$OUT"
expect_usage_error "an empty character folder" "$TMP/omni-empty/images_evaluation/Gamma/character02" "empty"
no_output "$OUT" "an empty character folder"
cp -r "$OMNI" "$TMP/omni-corrupt"
echo "this is not a PNG" >"$TMP/omni-corrupt/images_background/Beta/character01/0201_02.png"
run "$BIN" data import omniglot "$TMP/omni-corrupt" -o "$OUT"
expect_usage_error "a corrupt PNG" "$TMP/omni-corrupt/images_background/Beta/character01/0201_02.png"
no_output "$OUT" "a corrupt PNG"
cp -r "$OMNI" "$TMP/omni-trunc"
png=$TMP/omni-trunc/images_evaluation/Gamma/character01/0301_02.png
head -c $(($(stat -c %s "$png") / 2)) "$OMNI/images_evaluation/Gamma/character01/0301_02.png" >"$png"
run "$BIN" data import omniglot "$TMP/omni-trunc" -o "$OUT"
expect_usage_error "a truncated PNG" "$png" "truncated"
no_output "$OUT" "a truncated PNG"
run "$BIN" data import omniglot "$OMNI" --size 0x28 -o "$OUT"
expect_usage_error "--size 0x28" "--size"
run "$BIN" data import omniglot "$OMNI" --split train -o "$OUT"
expect_usage_error "--split for omniglot" "unknown option '--split'"

run "$BIN" data import folder "$FOLD" -o "$OUT"
expect_usage_error "folder without --size" "needs --size"
run "$BIN" data import folder "$FOLD" --size 28 -o "$OUT"
expect_usage_error "--size 28" "--size" "'28'"
run "$BIN" data import folder "$FOLD" --size 28x28 --split a/b -o "$OUT"
expect_usage_error "--split a/b" "a/b"
cp -r "$FOLD" "$TMP/folder-empty"
mkdir -p "$TMP/folder-empty/emu"
run "$BIN" data import folder "$TMP/folder-empty" --size 8x8 -o "$OUT"
expect_usage_error "an empty class folder" "$TMP/folder-empty/emu" "empty"
cp -r "$FOLD" "$TMP/folder-trunc"
head -c 300 "$FOLD/dog/x.jpg" >"$TMP/folder-trunc/dog/x.jpg"
run "$BIN" data import folder "$TMP/folder-trunc" --size 8x8 -o "$OUT"
expect_usage_error "a truncated JPEG" "$TMP/folder-trunc/dog/x.jpg"
no_output "$OUT" "a truncated JPEG"
run "$BIN" data import folder "$FOLD" "$OMNI" --size 8x8 -o "$OUT"
expect_usage_error "two DIRs" "one DIR"
run "$BIN" data import tarball "$FOLD" -o "$OUT"
expect_usage_error "unknown import format" "unknown import format 'tarball'"
run "$BIN" data import
expect_usage_error "import without a format" "needs a format"
run "$BIN" data frobnicate
expect_usage_error "unknown data command" "unknown data command 'frobnicate'"
run "$BIN" data import folder "$FOLD" --size 8x8 --bogus -o "$OUT"
expect_usage_error "unknown option" "unknown option '--bogus'"
no_output "$OUT" "after all bad imports"

# --- data info of bad files ----------------------------------------------------------------------------
run "$BIN" data info "$TMP/missing.h5"
expect_usage_error "info of a missing file" "$TMP/missing.h5" "No such file"
echo "plain text" >"$TMP/text.h5"
run "$BIN" data info "$TMP/text.h5"
expect_usage_error "info of a text file" "$TMP/text.h5" "not an HDF5 file"
head -c $(($(stat -c %s "$TMP/omni.h5") / 2)) "$TMP/omni.h5" >"$TMP/half.h5"
run "$BIN" data info "$TMP/half.h5"
expect_usage_error "info of a truncated dataset" "$TMP/half.h5"
if h5copy -i "$TMP/omni.h5" -o "$TMP/foreign.h5" -s /background/labels -d /labels 2>/dev/null; then
    run "$BIN" data info "$TMP/foreign.h5"
    expect_usage_error "info of an HDF5 file without the format attribute" "$TMP/foreign.h5" "format attribute"
fi
run "$BIN" data info
expect_usage_error "info without FILE" "needs a FILE"

# --- under mpirun: rank 0 imports, every rank returns its status, one message ---------------------------
run "${MPIRUN[@]}" -np 2 "$BIN" data import omniglot "$OMNI" -o "$TMP/mpi.h5"
expect_exit 0 "mpirun -np 2 import omniglot"
n=$(grep -c "^wrote " "$TMP/out")
check "mpirun -np 2: the summary is printed once per split (got $n lines for 2 splits)" test "$n" -eq 2
same_but_created "mpirun -np 2 import vs one process" "$TMP/omni.h5" "$TMP/mpi.h5"
run "${MPIRUN[@]}" -np 2 "$BIN" data import omniglot "$TMP/omni-corrupt" -o "$TMP/mpi-bad.h5"
expect_usage_error "mpirun -np 2: a corrupt PNG" "0201_02.png"
no_output "$TMP/mpi-bad.h5" "mpirun -np 2: a corrupt PNG"
run "${MPIRUN[@]}" -np 2 "$BIN" data info "$TMP/mpi.h5"
expect_exit 0 "mpirun -np 2 data info"
n=$(grep -c "^split " "$TMP/out")
check "mpirun -np 2 data info: printed once (got $n split sections for 2 splits)" test "$n" -eq 2

# --- help ------------------------------------------------------------------------------------------------
run "$BIN" data --help
expect_exit 0 "metatrain data --help"
for word in "import idx" "import omniglot" "import folder" "info FILE" --split --size --grey --quiet -o; do
    expect_out "$word" "data --help"
done
run "$BIN" data import idx --help
expect_exit 0 "metatrain data import idx --help"
run "$BIN" --help
expect_out "data import|info" "metatrain --help"
run "$BIN" data
expect_exit 2 "metatrain data without a command"

# --- the real Fashion-MNIST (Debian package dataset-fashion-mnist) ----------------------------------------
FM=/usr/share/datasets/fashion-mnist
FM_FILES=("$FM/train-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz" "$FM/t10k-images-idx3-ubyte.gz"
    "$FM/t10k-labels-idx1-ubyte.gz")
if [ -r "${FM_FILES[0]}" ] && [ -r "${FM_FILES[1]}" ] && [ -r "${FM_FILES[2]}" ] && [ -r "${FM_FILES[3]}" ]; then
    run "$BIN" data import idx "${FM_FILES[@]}" --split train=0-5 --split test=6-9 -o "$TMP/fmnist.h5"
    expect_exit 0 "import Fashion-MNIST (train + t10k)"
    run "$BIN" data info "$TMP/fmnist.h5"
    expect_split "Fashion-MNIST" train 6 42000 1x28x28 "7000 to 7000"
    expect_split "Fashion-MNIST" test 4 28000 1x28x28 "7000 to 7000"
    check "Fashion-MNIST: test classes 6, 7, 8, 9" test "$(info_value "$TMP/out" test names)" = "6, 7, 8, 9"
else
    echo "note: $FM not installed (Debian package dataset-fashion-mnist): Fashion-MNIST import skipped"
fi

finish
