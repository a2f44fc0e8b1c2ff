#!/usr/bin/env bash
# finetune.sh — `metatrain finetune`: transfer learning from a meta-trained Conv4 on new classes
# of a generated dataset. Frozen layers keep their bits, the others change; held-out accuracy
# rises far above the checkpoint's; the numbers and the fine-tuned checkpoint are the same on 1
# and 3 ranks; the fine-tuned checkpoint names its parent and evaluates; and the errors (an
# unknown layer, a non-classifier or differently shaped checkpoint, too few images, bad keys).
#
# usage: finetune.sh METATRAIN MPIEXEC MAKE_IMAGES CKPT_DIFF   (run by ctest; ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
MAKE_IMAGES=$3
CKPT_DIFF=$4
source "$(dirname "$0")/lib.sh"

# 24 learnable classes of 10 images (make_images idx-classes), 16 to meta-train on, 8 new ones.
"$MAKE_IMAGES" idx-classes "$TMP/cls.idx" 240 16 16 24 && "$MAKE_IMAGES" idx-labels "$TMP/lab.idx" 240 24 || exit 1
run "$BIN" data import idx "$TMP/cls.idx" "$TMP/lab.idx" --split train=0-15 --split test=16-23 -o "$TMP/cls.h5" --quiet
expect_exit 0 "import the dataset"
train "$TMP/run" 2 200 --set task.family=fewshot --set model.arch=conv4 --set task.dataset="$TMP/cls.h5" \
    --set task.ways=5 --set task.shots=1 --set task.query=2 --set task.rotations=1 --set model.filters=8 \
    --set meta.inner_lr=0.1 --set meta.meta_batch=4 --set optim.lr=0.003
expect_exit 0 "meta-train Conv4 MAML (5-way) for 200 iterations on 2 ranks"
CKPT=$TMP/run/ckpt-00000200.h5
same() { "$CKPT_DIFF" "$@" >/dev/null; } # A.h5 B.h5 [--tensor NAME]: bit-identical
differ() { "$CKPT_DIFF" "$@" >/dev/null; test $? -eq 1; } # ... comparable and not bit-identical
tensors=(conv1.weight conv1.bias bn1.weight bn1.bias conv2.weight conv2.bias bn2.weight bn2.bias conv3.weight
         conv3.bias bn3.weight bn3.bias conv4.weight conv4.bias bn4.weight bn4.bias)

# Frozen layers are bit-identical to the parent's, the others change.
ft=(--shots 5 --query 5 --steps 40 --lr 0.01 --repeats 6 --progress none)
run "$BIN" finetune "$CKPT" --ways 5 "${ft[@]}" --freeze conv1,bn1,conv3 -o "$TMP/frozen.h5"
expect_exit 0 "fine-tune with conv1, bn1, conv3 frozen"
check "the report names the frozen layers" grep -q "frozen: conv1, bn1, conv3;" "$TMP/out"
for t in "${tensors[@]}" head.weight head.bias; do
    case $t in
    conv1.* | bn1.* | conv3.*)
        check "frozen $t: bit-identical" same "$TMP/frozen.h5" "$CKPT" --tensor "$t" ;;
    *)
        check "trained $t: changed" differ "$TMP/frozen.h5" "$CKPT" --tensor "$t" ;;
    esac
done
run "$BIN" inspect "$TMP/frozen.h5"
check "the fine-tuned checkpoint names its parent" grep -qx "checkpoint = $CKPT" "$TMP/out"
check "... and the frozen layers" grep -qx "freeze = conv1, bn1, conv3" "$TMP/out"
check "... and the classes of repeat 0" grep -q "split test classes [0-9,]* (fine-tuned, repeat 0)" "$TMP/out"
run "$BIN" eval "$TMP/frozen.h5" --tasks 20
expect_exit 0 "the fine-tuned checkpoint evaluates"

# body: only the head trains; a new head size (8 classes) re-initialises it.
run "$BIN" finetune "$CKPT" --ways 8 "${ft[@]}" --freeze body -o "$TMP/body.h5" --json
expect_exit 0 "fine-tune the head only, 8-way"
cp "$TMP/out" "$TMP/body1.json"
check "head_reset is reported" grep -q '"head_reset": true' "$TMP/body1.json"
for t in "${tensors[@]}"; do
    check "body frozen: $t bit-identical" same "$TMP/body.h5" "$CKPT" --tensor "$t"
done
check "trainable = the head's 8x(8+1) parameters" grep -q '"trainable": 72,' "$TMP/body1.json"
body_before=$(json_field mean_before "$TMP/body1.json")
body_after=$(json_field mean "$TMP/body1.json")
check "head only: held-out accuracy rises by more than 0.15 (before $body_before, after $body_after)" \
    awk -v a="$body_after" -v b="$body_before" 'BEGIN { exit !(a > b + 0.15) }'

# Held-out accuracy rises. Measured with --seed 1..8 (8-way, chance 0.125; 5 shots, 5 held-out
# per class, 40 Adam steps at lr 0.01, 6 repeats): before (a new head) 0-0.146; after, nothing
# frozen, 0.921-0.963 (ci95 <= 0.057); body frozen 0.408-0.700. Margins: +0.5 and +0.15.
for np in 1 3; do
    run "${MPIRUN[@]}" -np $np "$BIN" finetune "$CKPT" --ways 8 "${ft[@]}" -o "$TMP/all$np.h5" --json
    expect_exit 0 "fine-tune everything, 8-way, on $np rank(s)"
    cp "$TMP/out" "$TMP/all$np.json"
done
before=$(json_field mean_before "$TMP/all1.json")
after=$(json_field mean "$TMP/all1.json")
ci=$(json_field ci95 "$TMP/all1.json")
echo "     held-out accuracy: before $before, after $after +- $ci"
check "held-out accuracy rises by more than 0.5 (before $before, after $after)" \
    awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > b + 0.5) }'
check "1 and 3 ranks: the same numbers" cmp -s <(sed 's/"output": "[^"]*", //' "$TMP/all1.json") \
    <(sed 's/"output": "[^"]*", //' "$TMP/all3.json")
check "1 and 3 ranks: the same fine-tuned checkpoint" same "$TMP/all1.h5" "$TMP/all3.h5"
run "$BIN" finetune "$CKPT" --ways 8 "${ft[@]}" --seed 2 -o "$TMP/seed2.h5" --json
check "another seed draws other images (the comparison has teeth)" differ "$TMP/all1.h5" "$TMP/seed2.h5"
run "$BIN" finetune "$CKPT" --ways 5 --shots 3 --steps 0 --repeats 4 --progress none
expect_exit 0 "--steps 0 evaluates the checkpoint"
check "--steps 0: the default output beside the checkpoint" test -f "$TMP/run/finetuned-ckpt-00000200.h5"
check "--steps 0: the checkpoint's parameters unchanged" same "$TMP/run/finetuned-ckpt-00000200.h5" "$CKPT"

# ResNet-12: a whole stage by its prefix, and one layer of the next.
train "$TMP/r12" 1 3 --set task.family=fewshot --set model.arch=resnet12 --set model.widths=4,4,8,8 \
    --set task.dataset="$TMP/cls.h5" --set task.ways=5 --set task.shots=1 --set task.query=2 --set meta.meta_batch=2
expect_exit 0 "meta-train a narrow ResNet-12 for 3 iterations"
run "$BIN" finetune "$TMP/r12/ckpt-00000003.h5" --ways 8 --shots 5 --query 5 --steps 5 --repeats 2 \
    --freeze stage1,stage2.conv1 -o "$TMP/r12ft.h5" --progress none
expect_exit 0 "fine-tune ResNet-12 with stage1 and stage2.conv1 frozen"
for t in stage1.conv1.weight stage1.bn3.bias stage1.shortcut.weight stage1.shortcut_bn.weight stage2.conv1.weight; do
    check "ResNet-12 frozen $t: bit-identical" same "$TMP/r12ft.h5" "$TMP/r12/ckpt-00000003.h5" --tensor "$t"
done
for t in stage2.bn1.weight stage2.conv2.weight stage4.conv3.weight; do
    check "ResNet-12 trained $t: changed" differ "$TMP/r12ft.h5" "$TMP/r12/ckpt-00000003.h5" --tensor "$t"
done

# A fine-tuning sweep: finetune.checkpoint set, every point fine-tunes it; a point's result is
# the same command run alone.
printf '[run]\ndir = %s\nseed = 1\n[finetune]\ncheckpoint = %s\nways = 8\nshots = 5\nquery = 5\nsteps = 40\nlr = 0.01\nrepeats = 6\n[sweep]\nfinetune.freeze = body, conv1+bn1\n' \
    "$TMP/ftsweep" "$CKPT" >"$TMP/ftsweep.ini"
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/ftsweep.ini"
expect_exit 0 "a fine-tuning sweep over finetune.freeze on 2 ranks"
check "sweep.csv: 2 points done, accuracy in [0, 1]" \
    test "$(grep -cE '^freeze=(body|conv1\+bn1),(body|conv1\+bn1),1,40,[0-9.e+-]+,accuracy,(0(\.[0-9]+)?|1),[0-9.e+-]+,[0-9.]+,done$' \
        "$TMP/ftsweep/sweep.csv")" -eq 2
check "the point freeze=body = finetune --freeze body alone" same "$TMP/ftsweep/freeze=body/finetuned.h5" "$TMP/body.h5"
printf '[run]\ndir = %s\n[finetune]\ncheckpoint = %s\n[sweep]\nmodel.filters = 4, 8\n' "$TMP/ftsweep2" "$CKPT" \
    >"$TMP/ftsweep2.ini"
run "$BIN" sweep "$TMP/ftsweep2.ini"
expect_exit 2 "a fine-tuning sweep over a model key"
check "... says what it may sweep" grep -q "sweeps finetune.\* keys and run.seed" "$TMP/err"

# Errors: exit 2 with a message that says what to do.
run "$BIN" finetune "$CKPT" --ways 5 --freeze conv1,conv9
expect_exit 2 "an unknown layer"
check "... lists the valid names" grep -q "conv9 is not a layer; the layers of this conv4 are: conv1, bn1, conv2, .*head, body" "$TMP/err"
run "$BIN" finetune "$CKPT" --ways 5 --freeze "conv1 + bn1, none" --steps 1 --repeats 2 --json
expect_exit 0 "--freeze with + and none"
check "... freezes conv1 and bn1" grep -q '"frozen": "conv1, bn1"' "$TMP/out"
run "$BIN" finetune "$CKPT" --ways 5 --freeze relu1
expect_exit 2 "a layer without parameters"
check "... says so" grep -q "relu1 has no parameters" "$TMP/err"
run "$BIN" finetune "$CKPT" --ways 5 --freeze body,head
expect_exit 2 "everything frozen"
check "... says nothing would train" grep -q "leaves no layer to train" "$TMP/err"
run "$BIN" finetune "$CKPT" --ways 9
expect_exit 2 "more ways than the split has classes"
check "... names the split's class count" grep -q "it has 8 classes, 9-way fine-tuning needs 9" "$TMP/err"
run "$BIN" finetune "$CKPT" --ways 5 --shots 8 --query 5
expect_exit 2 "more images per class than the split has"
check "... names the class and its size" grep -q "class .* has 10 images, too few for 8 training" "$TMP/err"
run "$BIN" finetune "$CKPT" --set model.filters=16
expect_exit 2 "a --set outside [finetune]"
run "$BIN" finetune "$CKPT" --optim lbfgs
expect_exit 2 "an unknown optimizer"
run "$BIN" finetune "$CKPT" --ways 5 -o "$CKPT"
expect_exit 2 "the output is the parent"
# Another architecture: a sinusoid MLP, and a Conv4 trained on 16x16 images given 24x24 ones.
train "$TMP/sine" 1 5
expect_exit 0 "train a sinusoid MLP"
run "$BIN" finetune "$TMP/sine/ckpt-00000005.h5"
expect_exit 2 "a sinusoid checkpoint"
check "... is refused as not an image classifier" grep -q "fine-tuning needs an image classifier" "$TMP/err"
"$MAKE_IMAGES" idx-classes "$TMP/cls24.idx" 240 24 24 24 || exit 1
run "$BIN" data import idx "$TMP/cls24.idx" "$TMP/lab.idx" --split train=0-15 --split test=16-23 -o "$TMP/cls24.h5" --quiet
run "$BIN" finetune "$CKPT" --ways 5 --data "$TMP/cls24.h5"
expect_exit 2 "images of another size"
check "... names both shapes" grep -q "trained on inputs of 1x16x16 (CxHxW), but dataset .*cls24.h5 split test has 1x24x24" "$TMP/err"
run "$BIN" finetune --help
expect_exit 0 "--help"
check "--help explains --freeze" grep -q "body: every" "$TMP/out"
finish
