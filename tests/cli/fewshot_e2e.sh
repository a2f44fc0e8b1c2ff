#!/usr/bin/env bash
# fewshot_e2e.sh — few-shot classification end to end on a tiny generated dataset: IDX
# files → `data import` → Conv4 MAML training under mpirun -np 2 → checkpoint → `eval`
# (accuracy, the same numbers on 1 and 2 ranks), a learning check on learnable generated
# classes (meta-test accuracy far above chance, an untrained network and no adaptation), and
# the errors a bad dataset gives.
#
# usage: fewshot_e2e.sh METATRAIN MPIEXEC MAKE_IMAGES CKPT_DIFF   (run by ctest; ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
MAKE_IMAGES=$3
CKPT_DIFF=$4
source "$(dirname "$0")/lib.sh"

# 8 classes of 6 images, 16x16 (the smallest Conv4 takes): classes 0-4 train, 5-7 test.
"$MAKE_IMAGES" idx-images "$TMP/img.idx" 48 16 16 0 && "$MAKE_IMAGES" idx-labels "$TMP/lab.idx" 48 8 || exit 1
run "$BIN" data import idx "$TMP/img.idx" "$TMP/lab.idx" --split train=0-4 --split test=5-7 -o "$TMP/tiny.h5" --quiet
expect_exit 0 "import the tiny dataset"

common=(--set task.family=fewshot --set model.arch=conv4 --set task.dataset="$TMP/tiny.h5" --set task.ways=5
        --set task.shots=1 --set task.query=2 --set task.rotations=1 --set model.filters=4 --set meta.inner_lr=0.1
        --set meta.meta_batch=4 --set meta.eval_inner_steps=2 --progress lines)
RUN=$TMP/run
run "${MPIRUN[@]}" -np 2 "$BIN" train "${common[@]}" --set run.dir="$RUN" --set run.iterations=6 \
    --set run.log_every=3
expect_exit 0 "train Conv4 MAML for 6 iterations on 2 ranks"
check "progress lines show the accuracy" grep -q "accuracy" "$TMP/out"
check "the final checkpoint exists" test -f "$RUN/ckpt-00000006.h5"
check "metrics.jsonl has 2 lines" test "$(wc -l <"$RUN/metrics.jsonl")" -eq 2
check "metrics carry acc_pre and acc_post" grep -q '"acc_pre": [0-9.]*, "acc_post": [0-9.]*' "$RUN/metrics.jsonl"
if command -v h5dump >/dev/null; then
    h5dump -d /model "$RUN/ckpt-00000006.h5" >"$TMP/model.txt" 2>&1
    check "the layout table lists conv1.weight, bn4.bias and head.weight" \
        bash -c "grep -q conv1.weight '$TMP/model.txt' && grep -q bn4.bias '$TMP/model.txt' && grep -q head.weight '$TMP/model.txt'"
fi

CKPT=$RUN/ckpt-00000006.h5
# The exact reduction makes θ independent of the rank count for Conv4 too.
for np in 1 3 4; do
    run "${MPIRUN[@]}" -np $np "$BIN" train "${common[@]}" --set run.dir="$TMP/np$np" --set run.iterations=6 \
        --set run.log_every=3
    expect_exit 0 "train the same 6 iterations on $np rank(s)"
    check "$np vs 2 ranks: bit-identical theta" "$CKPT_DIFF" "$TMP/np$np/ckpt-00000006.h5" "$CKPT" --tol 0
done
check "4 vs 2 ranks: the same metrics.jsonl losses" \
    cmp -s <(cut -d, -f1-5 "$TMP/np4/metrics.jsonl") <(cut -d, -f1-5 "$RUN/metrics.jsonl")
run "$BIN" train "${common[@]}" --set run.dir="$TMP/seed2" --set run.iterations=6 --set run.seed=2
check "another seed gives another theta (the comparison has teeth)" \
    bash -c "! '$CKPT_DIFF' '$TMP/seed2/ckpt-00000006.h5' '$CKPT' --tol 0 >/dev/null"

run "${MPIRUN[@]}" -np 2 "$BIN" eval "$CKPT" --tasks 30 --json
expect_exit 0 "eval on 2 ranks"
cp "$TMP/out" "$TMP/eval2.json"
check "eval reports accuracy" grep -q '"metric": "accuracy"' "$TMP/eval2.json"
mean=$(json_field mean "$TMP/eval2.json")
check "the mean accuracy is in [0, 1] (got $mean)" awk -v m="$mean" 'BEGIN { exit !(m >= 0 && m <= 1) }'
run "$BIN" eval "$CKPT" --tasks 30 --json
expect_exit 0 "eval on 1 rank"
check "1 and 2 ranks give the same evaluation" cmp -s "$TMP/out" "$TMP/eval2.json"
run "$BIN" eval "$CKPT" --tasks 30 --json --data "$TMP/tiny.h5"
expect_exit 0 "eval with --data"
check "--data naming the same file gives the same numbers" cmp -s "$TMP/out" "$TMP/eval2.json"

# A few-shot sweep: two groups of one rank; the metric is accuracy on meta-validation tasks.
printf '[sweep]\nmeta.inner_lr = 0.05, 0.1\neval_tasks = 10\n' >"$TMP/sweep.ini"
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/sweep.ini" "${common[@]}" --set run.dir="$TMP/sweep" \
    --set run.iterations=6
expect_exit 0 "a few-shot sweep on 2 ranks"
check "the few-shot sweep: 2 points done, metric accuracy in [0, 1]" \
    test "$(grep -cE '^inner_lr=0\.(05|1),[0-9.]+,1,6,[0-9.e+-]+,accuracy,(0(\.[0-9]+)?|1),[0-9.e+-]+,[0-9.]+,done$' \
        "$TMP/sweep/sweep.csv")" -eq 2
check "each point trained Conv4 in its own directory" test -f "$TMP/sweep/inner_lr=0.1/ckpt-00000006.h5"
check "a sweep's point = the same run alone" "$CKPT_DIFF" "$TMP/sweep/inner_lr=0.1/ckpt-00000006.h5" "$CKPT" --tol 0
# The same images at 24x24: Conv4 pools 24x24 and 16x16 alike to 1x1, so the parameter count
# matches and only the stored input shape tells them apart.
"$MAKE_IMAGES" idx-images "$TMP/img24.idx" 48 24 24 0 || exit 1
run "$BIN" data import idx "$TMP/img24.idx" "$TMP/lab.idx" --split train=0-4 --split test=5-7 -o "$TMP/tiny24.h5" --quiet
expect_exit 0 "import the dataset at 24x24"
run "$BIN" eval "$CKPT" --tasks 10 --data "$TMP/tiny24.h5"
expect_exit 2 "eval --data with 24x24 images on a checkpoint trained on 16x16"
check "  ... names both shapes" grep -q "trained on inputs of 1x16x16 (CxHxW), but dataset .*tiny24.h5.* has 1x24x24" "$TMP/err"
check "  ... and prints no accuracy" bash -c "! grep -q accuracy '$TMP/out'"

# Learning check. The tiny dataset above has no class structure; this one has 24 learnable classes
# (make_images idx-classes: 3 strokes per class, each image shifted by up to 2 pixels, with pixel
# noise), 16 for training and 8 for testing, 96 and 32 with rotations. Conv4 MAML trained for 300
# iterations (about 5 s on 2 ranks) against the same network untrained (1 iteration at
# optim.lr = 1e-20: the initialisation) and against itself without adaptation. Measured with
# run.seed 1..8 (200 5-way tasks each, chance 0.2): trained 0.902-0.932 (ci95 <= 0.015);
# untrained, adapted 0.24-0.41; trained, --inner-steps 0: 0.19-0.21 (each task permutes its labels).
# Adaptation alone (untrained) reaches chance + 0.2, so the margin is chance + 0.5 on the lower
# 95% bound, and the gaps 0.3 (to the untrained network) and 0.5 (to no adaptation).
"$MAKE_IMAGES" idx-classes "$TMP/cls.idx" 240 16 16 24 && "$MAKE_IMAGES" idx-labels "$TMP/cls_lab.idx" 240 24 || exit 1
run "$BIN" data import idx "$TMP/cls.idx" "$TMP/cls_lab.idx" --split train=0-15 --split test=16-23 -o "$TMP/cls.h5" --quiet
expect_exit 0 "import the dataset of learnable classes"
learn=(--set task.family=fewshot --set model.arch=conv4 --set task.dataset="$TMP/cls.h5" --set task.ways=5
       --set task.shots=1 --set task.query=2 --set task.rotations=1 --set model.filters=8 --set meta.inner_lr=0.1
       --set meta.meta_batch=4 --set meta.eval_inner_steps=2 --set optim.lr=0.003 --progress lines)
run "${MPIRUN[@]}" -np 2 "$BIN" train "${learn[@]}" --set run.dir="$TMP/learn" --set run.iterations=300 \
    --set run.log_every=100
expect_exit 0 "train Conv4 MAML for 300 iterations on the learnable classes"
run "${MPIRUN[@]}" -np 2 "$BIN" train "${learn[@]}" --set run.dir="$TMP/init" --set run.iterations=1 \
    --set optim.lr=1e-20
expect_exit 0 "the same network untrained (1 iteration at lr 1e-20)"
acc() { # label, checkpoint, extra eval args... -> $mean, $ci95 of 200 meta-test tasks ("" if none)
    local label=$1 ckpt=$2
    shift 2
    run "${MPIRUN[@]}" -np 2 "$BIN" eval "$ckpt" --tasks 200 --json "$@"
    expect_exit 0 "eval: $label"
    mean=$(json_field mean "$TMP/out")
    ci95=$(json_field ci95 "$TMP/out")
}
acc "trained" "$TMP/learn/ckpt-00000300.h5"
trained=$mean trained_ci=$ci95
acc "trained, --inner-steps 0" "$TMP/learn/ckpt-00000300.h5" --inner-steps 0
no_adapt=$mean
acc "untrained" "$TMP/init/ckpt-00000001.h5"
untrained=$mean untrained_ci=$ci95
echo "     meta-test accuracy: trained $trained ± $trained_ci, trained without adaptation $no_adapt," \
     "untrained $untrained ± $untrained_ci (chance 0.2)"
# cmp A OP B: the numeric comparison, false if either side is not a number
cmp_num() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
    num = "^[0-9.eE+-]+$"; if (a !~ num || b !~ num) exit 1
    exit !(op == ">=" ? a + 0 >= b + 0 : a + 0 < b + 0) }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
check "trained: lower 95% bound $trained - $trained_ci >= chance + 0.5" \
    cmp_num "$(sum "$trained" "-$trained_ci")" ">=" 0.7
check "untrained: upper 95% bound $untrained + $untrained_ci < chance + 0.5 (the margin has teeth)" \
    cmp_num "$(sum "$untrained" "$untrained_ci")" "<" 0.7
check "trained $trained >= untrained $untrained + 0.3" cmp_num "$trained" ">=" "$(sum "$untrained" 0.3)"
check "trained $trained >= trained without adaptation $no_adapt + 0.5" \
    cmp_num "$trained" ">=" "$(sum "$no_adapt" 0.5)"
check "without adaptation the trained network is near chance ($no_adapt < 0.3)" cmp_num "$no_adapt" "<" 0.3

# A bad dataset is bad input (exit 2, one message naming the problem), and makes no run dir.
bad() { # label, expected text, extra args...
    local label=$1 want=$2
    shift 2
    run "${MPIRUN[@]}" -np 2 "$BIN" train "${common[@]}" --set run.dir="$TMP/bad" --set run.iterations=1 "$@"
    expect_exit 2 "$label"
    check "$label: says '$want'" grep -q "$want" "$TMP/err"
    check "$label: said once" test "$(grep -c 'error' "$TMP/err")" -eq 1
    check "$label: no run directory" test ! -e "$TMP/bad"
}
bad "missing dataset file" "$TMP/none.h5" --set task.dataset="$TMP/none.h5"
bad "missing split" "no split 'val'" --set task.train_split=val
bad "too few classes for the ways" "tiny.h5, split train: .*classes" --set task.ways=21
bad "too few images per class" "images" --set task.query=6
printf 'not hdf5\n' >"$TMP/text.h5"
bad "not an HDF5 file" "$TMP/text.h5" --set task.dataset="$TMP/text.h5"
run "$BIN" train --set task.family=fewshot --set model.arch=conv4 --set run.dir="$TMP/bad"
expect_exit 2 "fewshot without a dataset"
check "fewshot without a dataset: says so" grep -q "needs \[task\] dataset" "$TMP/err"
run "$BIN" train --set task.family=fewshot --set task.dataset="$TMP/tiny.h5" --set run.dir="$TMP/bad"
expect_exit 2 "fewshot with the mlp"
check "fewshot with the mlp: says conv4 is needed" grep -q "arch = conv4" "$TMP/err"

# Augmentation (random shifts within 2 pixels and mirroring of meta-training images): drawn
# from each task's own stream, so θ is the same bits on 1 and 3 ranks; it changes θ; a
# padding as large as the images is refused.
aug=(--set augment.crop_padding=2 --set augment.flip=1)
for np in 1 3; do
    run "${MPIRUN[@]}" -np $np "$BIN" train "${common[@]}" "${aug[@]}" --set run.dir="$TMP/aug$np" --set run.iterations=6
    expect_exit 0 "train with augmentation on $np rank(s)"
done
check "augmentation: 1 vs 3 ranks bit-identical theta" "$CKPT_DIFF" "$TMP/aug1/ckpt-00000006.h5" "$TMP/aug3/ckpt-00000006.h5" --tol 0
check "augmentation changes theta" bash -c "! '$CKPT_DIFF' '$TMP/aug1/ckpt-00000006.h5' '$CKPT' --tol 0 >/dev/null"
run "$BIN" train "${common[@]}" --set augment.crop_padding=16 --set run.dir="$TMP/bad"
expect_exit 2 "a crop padding as large as the 16x16 images"
check "  ... says it must be below the image size" grep -q "crop_padding = 16 must be below the image size 16x16" "$TMP/err"

# ResNet-12 (narrow, for test time): the same promises as Conv4. θ is the same bits on 1-4
# ranks, the checkpoint's layout table names the stages, eval and inspect read it.
rn=(--set task.family=fewshot --set model.arch=resnet12 --set model.widths=3,4,4,5 --set task.dataset="$TMP/tiny.h5"
    --set task.ways=5 --set task.shots=1 --set task.query=2 --set task.rotations=1 --set meta.inner_lr=0.1
    --set meta.meta_batch=4 --set meta.inner_steps=2 --set meta.eval_inner_steps=2 --progress none)
for np in 1 2 3 4; do
    run "${MPIRUN[@]}" -np $np "$BIN" train "${rn[@]}" --set run.dir="$TMP/rn$np" --set run.iterations=4
    expect_exit 0 "train ResNet-12 for 4 iterations on $np rank(s)"
done
for np in 2 3 4; do
    check "ResNet-12, $np vs 1 rank: bit-identical theta" "$CKPT_DIFF" "$TMP/rn$np/ckpt-00000004.h5" \
        "$TMP/rn1/ckpt-00000004.h5" --tol 0
done
run "$BIN" train "${rn[@]}" --set run.dir="$TMP/rn_seed" --set run.iterations=4 --set run.seed=2
check "ResNet-12: another seed gives another theta (the comparison has teeth)" \
    bash -c "! '$CKPT_DIFF' '$TMP/rn_seed/ckpt-00000004.h5' '$TMP/rn1/ckpt-00000004.h5' --tol 0 >/dev/null"
run "$BIN" inspect "$TMP/rn1/ckpt-00000004.h5"
expect_exit 0 "inspect a ResNet-12 checkpoint"
check "inspect lists stage1.conv1.weight, stage4.shortcut_bn.bias and head.weight" \
    bash -c "grep -q stage1.conv1.weight '$TMP/out' && grep -q stage4.shortcut_bn.bias '$TMP/out' && grep -q head.weight '$TMP/out'"
check "the shortcut is a 1x1 conv of the stage input: [4, 3, 1, 1] in stage 2" \
    grep -q "stage2.shortcut.weight.*4.*3.*1.*1" "$TMP/out"
run "${MPIRUN[@]}" -np 2 "$BIN" eval "$TMP/rn1/ckpt-00000004.h5" --tasks 20 --json
expect_exit 0 "eval the ResNet-12 checkpoint on 2 ranks"
check "ResNet-12 eval reports accuracy" grep -q '"metric": "accuracy"' "$TMP/out"
run "${MPIRUN[@]}" -np 2 "$BIN" train "${rn[@]}" --set run.dir="$TMP/rn_resume" --set run.iterations=2
expect_exit 0 "ResNet-12: 2 iterations on 2 ranks"
run "${MPIRUN[@]}" -np 3 "$BIN" train "${rn[@]}" --set run.dir="$TMP/rn_resume" --set run.iterations=4
expect_exit 0 "resume ResNet-12 from iteration 2 on 3 ranks"
check "ResNet-12 stopped at 2 on 2 ranks, resumed on 3: the same theta as straight through" \
    "$CKPT_DIFF" "$TMP/rn_resume/ckpt-00000004.h5" "$TMP/rn1/ckpt-00000004.h5" --tol 0

# One copy of the pixels per node: 4 ranks on this node share the split through an MPI window
# instead of holding 4 copies. 37,500 images of 28x28 (28.0 MiB of pixels) in the training
# split; the ranks' memory summed (proportional set sizes, printed by train) must be at least
# 2 copies' worth (56 MiB) below that of 4 private copies (which would save 3 copies, 84 MiB),
# and θ the same bits either way.
"$MAKE_IMAGES" idx-classes "$TMP/mem.idx" 50000 28 28 40 || exit 1
"$MAKE_IMAGES" idx-labels "$TMP/mem_lab.idx" 50000 40 || exit 1
run "$BIN" data import idx "$TMP/mem.idx" "$TMP/mem_lab.idx" --split train=0-29 --split test=30-39 \
    -o "$TMP/mem.h5" --quiet
expect_exit 0 "import 50,000 images"
mem=(--set task.family=fewshot --set model.arch=conv4 --set task.dataset="$TMP/mem.h5" --set model.filters=4
     --set meta.meta_batch=4 --set run.iterations=3 --progress none)
node_mib() { sed -n 's/.*memory of all 4 ranks now: \([0-9.]*\) MiB.*/\1/p' "$TMP/out"; }
run "${MPIRUN[@]}" -np 4 "$BIN" train "${mem[@]}" --set run.dir="$TMP/shared"
expect_exit 0 "4 ranks, one shared copy of the pixels"
shared=$(node_mib)
run "${MPIRUN[@]}" -np 4 -x MT_DATASET_PRIVATE=1 "$BIN" train "${mem[@]}" --set run.dir="$TMP/private"
expect_exit 0 "4 ranks, a private copy each (MT_DATASET_PRIVATE=1)"
private=$(node_mib)
check "shared pixels: the 4 ranks use $shared MiB, private copies $private MiB (want >= 56 MiB less)" \
    awk -v s="${shared:-0}" -v p="${private:-0}" 'BEGIN { exit !(s > 0 && p > 0 && s + 56 <= p) }'
check "shared or private pixels: the same θ" "$CKPT_DIFF" "$TMP/shared/ckpt-00000003.h5" \
    "$TMP/private/ckpt-00000003.h5" --tol 0

finish
