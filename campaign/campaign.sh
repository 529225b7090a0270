#!/usr/bin/env bash
# The training campaign (models that hold up on real faces): long runs that outlive the machine's working
# hours. Runs live outside the work tree (the tree may be laid anew from git at each start; the rest of the
# disk normally survives), niced so the machine stays usable, and are resumed where they stopped.
#
#   bash campaign/campaign.sh            # at every start: resume the queue in the background
#   bash campaign/campaign.sh status     # last logged epoch and best validation of each stage
#   bash campaign/campaign.sh carry      # before the machine goes: unfinished runs' resume state into $FEREDGE_CARRY
#   bash campaign/campaign.sh restore    # carried runs back into their folders (start does it as it goes)
#
# FEREDGE_ONLY="stage …" runs only those stages of the queue (e.g. to finish one run and start nothing new).
# FEREDGE_RUNS (default ~/feredge-runs) holds the prepared data, the teachers, the run folders and their
# console logs; on a new machine everything is rebuilt from ../shared and this repository's history.
# The stages run one after another, each with every core (two trainings side by side on 2 cores are
# slower than one after the other, and the earlier stage's result arrives sooner). A stage whose run
# folder has a saved state is resumed with its own saved settings (`--out RUN --resume`; a finished one
# returns at once); one without is started with the settings below, unless its finished log is already in
# campaign/logs/ (the queue copies it there when the stage finishes; commit it, and a new machine does not
# redo the stage).
set -euo pipefail
RUNS="${FEREDGE_RUNS:-$HOME/feredge-runs}"
DATA="$RUNS/prepared/fer2013"
TEACHERS="$RUNS/teachers"
FEREDGE="${FEREDGE:-feredge}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# Run state never goes into git: carried resume state and kept weights live beside the runs, outside the tree.
CARRY="${FEREDGE_CARRY:-$HOME/feredge-carry}"
KEPT_FROM="${FEREDGE_KEPT:-$HOME/feredge-kept}"
LOGS="${FEREDGE_LOGS:-$REPO/campaign/logs}"  # finished stages' logs (tests point it elsewhere)
STATE="last_state.pt"
BEST_IS_LAST="best-is-last"  # a carried run whose best epoch is its last: best.safetensors is not carried twice
# The stages below step in bf16 (cpu_bf16=true), which needs AMX or AVX512-BF16: elsewhere torch emulates bf16 at
# about a thirteenth of fp32's speed (a 2-core EPYC: 10 against 134 images a second), so there every stage,
# new or resumed, steps in fp32 (how a step is computed, not what is trained: --resume allows the change, and
# weights, optimiser state and checkpoints are fp32 either way).
STEP=()
BF16_CPU=true
grep -qwE 'amx_tile|avx512_bf16' /proc/cpuinfo 2> /dev/null || { BF16_CPU=false; STEP=(--set cpu_bf16=false); }

# Earlier shipped versions, recovered from git as teachers: name | commit | model. Each keeps its own
# sidecar and card; versions that predate them get today's sidecar of the same model (architecture, classes
# and input unchanged; its metrics are not theirs) and no card (teachers only, not a starting point).
HISTORY=(
    "s5|4efc777|feredge-s"     # feredge-s stage 5 (shipped prior-corrected; s5-raw below is it as trained)
    "s4|231fb7f|feredge-s"     # feredge-s stage 4 (validation 68.70 % as shipped, ONNX; 68.73 % in torch)
    "s3|ffcb1b8|feredge-s"     # feredge-s stage 3 (ten-crop 69.81 % on validation)
    "s2|7a60a95|feredge-s"     # feredge-s stage 2
    "nsoup|8b652c2|feredge-n"  # feredge-n soup (shipped before stage 12)
    "s9|28e02ec|feredge-s"     # feredge-s stage 9 (s12-fp50: FER+'s votes as half the label target)
    "n3|b980cc1|feredge-n"     # feredge-n stage 3
    "n2|00c9732|feredge-n"     # feredge-n stage 2, distilled from s3
)
# The ten-crop ensemble s4+s3+n2 scores 70.40 % on the validation carve, the best of the 57 ensembles of
# these six versions (campaign/teachers.json, from `python campaign/teacher_search.py --data "$DATA"
# --out teachers.json "$TEACHERS"/{s4,s3,s2,nsoup,n3,n2}.safetensors`), against 68.73 % for s4 alone.
ENSEMBLE="$TEACHERS/s4.safetensors,$TEACHERS/s3.safetensors,$TEACHERS/n2.safetensors"
RESTART="--recipe feredge-s --epochs 12 --lr 0.02 --seed 0 --device cpu --set init=$TEACHERS/s4.safetensors --set warmup_pct=0.1"
# From stage 5 on: restarts start from stage 5 as trained (s5-raw), and the teacher is the best ensemble with
# stage 5 in it, s5-raw + s4 + s3 + n2 (70.68 % ten-crop on validation, campaign/teachers.json).
RESTART5="${RESTART/s4.safetensors/s5-raw.safetensors}"
ENSEMBLE5="$TEACHERS/s5-raw.safetensors,$TEACHERS/s4.safetensors,$TEACHERS/s3.safetensors,$TEACHERS/n2.safetensors"
# feredge-n's fine-tunes of its shipped soup, distilled from ENSEMBLE5 (n-det and the n9 stages).
NRESTART="--recipe feredge-n --epochs 20 --lr 0.02 --seed 0 --device cpu --set init=$TEACHERS/nsoup.safetensors --set warmup_pct=0.1 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set distill_weight=0.8"

LONG="--recipe feredge-s --seed 0 --device cpu --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5 --set cpu_bf16=true"
PROXY="$LONG --epochs 15"
# Finished stages kept as starting points and teachers ($KEPT_FROM/NAME.safetensors, fp32, with
# their logs in campaign/logs/): prepare lays each out as a run folder, $KEPT/NAME/{best.safetensors,log.json},
# so a run that starts from one lists its stages on the model card as from any run.
KEPT="$RUNS/kept"
# The teacher with the best FER+ agreement short of giving up FER2013 (campaign/teachers-ferplus.json, from
# teacher_search.py --by ferplus_accuracy): stage 9 + s13-long-fp's last epoch, ten-crop, 69.19 % on FER2013's
# validation labels and 77.16 % on FER+'s majority (ENSEMBLE5: 70.68 % / 66.9 %).
ENSEMBLE_FP="$TEACHERS/s9.safetensors,$KEPT/s13-long-fp-last/best.safetensors"
LONG_RESTART="--recipe feredge-s --epochs 12 --lr 0.03 --seed 0 --device cpu --set init=$KEPT/s-long-kd/best.safetensors --set warmup_pct=0.1 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set cpu_bf16=true"
LONG_RESTART_FP="${LONG_RESTART/$ENSEMBLE5/$ENSEMBLE_FP}"  # the same with the FER+-agreeing teacher

# Stage 9's label target (half of it FER+'s votes) and its settings besides the teacher and the starting point.
FP50="--set soft_labels=true --set soft_label_share=0.5"
STAGE9="--set teacher_tta=ten-crop --set detector_crops=0.5 --set cpu_bf16=true $FP50"

# name | command-line settings of the first start (later starts resume the run's own saved settings)
STAGES=(
    # Stage 4's warm restart, one change: the ensemble's ten-crop logits as teacher instead of its own.
    "s5-ens|$RESTART --set teacher=$ENSEMBLE --set teacher_tta=ten-crop"
    # The same plus one change: camera-like exposure, contrast, blur, low resolution and noise.
    "s5-ens-cam|$RESTART --set teacher=$ENSEMBLE --set teacher_tta=ten-crop --set camera_augment=0.5"
    # feredge-n from the new feredge-s: as the shipped soup's best ingredient (ens-2: 20 epochs, lr 0.02,
    # distill weight 0.8) with one change, the teacher: s5-ens + s4 + s3 + n2, 70.68 % ten-crop on validation.
    "n-kd5|--recipe feredge-n --epochs 20 --lr 0.02 --seed 0 --device cpu --set init=$TEACHERS/nsoup.safetensors --set warmup_pct=0.1 --set teacher=$RUNS/s5-ens/best.safetensors,$TEACHERS/s4.safetensors,$TEACHERS/s3.safetensors,$TEACHERS/n2.safetensors --set teacher_tta=ten-crop --set distill_weight=0.8"
    # s5-ens plus one other change: half the images cut as the runtime cuts the detector's box (face boxes
    # from `feredge data face-boxes`, which prepare runs).
    "s5-ens-det|$RESTART --set teacher=$ENSEMBLE --set teacher_tta=ten-crop --set detector_crops=0.5"
    # Stage 5's warm restart with stage 5's recipe and one change, the teacher: ENSEMBLE5 instead of ENSEMBLE.
    "s6-ens|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop"
    # s6-ens plus one change, the augmentation that helped real photos most at stage 5 (s5-ens-det): half the
    # images cut as the runtime cuts the detector's box.
    "s7-det|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    # s7-det plus one change: camera-like exposure, contrast, blur, low resolution and noise on top.
    "s7-detcam|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5 --set camera_augment=0.5"
    # s7-det (shipped stage 6) with one change: 80 % of the images cut as the runtime cuts the detector's box.
    "s7-det80|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.8"
    # feredge-n as n-kd5 with one change, detector crops on half the images (the teacher is n-kd5's, stage 5
    # taken as s5-raw, the shipped file with its correction undone, in place of the run folder s5-ens).
    "n-det|$NRESTART --set detector_crops=0.5"
    # Ingredients for a weight soup of stage 6 (s7-det): fine-tunes of s5-raw with s7-det's recipe and one
    # change each (the seed fixes the validation carve, so the changes are settings, not seeds). The uniform
    # soup of s7-det, s7-det80 and s7-detcam already scores 69.60 % on validation against s7-det's 69.36 %.
    "s8-lr01|${RESTART5/--lr 0.02/--lr 0.01} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    "s8-lr03|${RESTART5/--lr 0.02/--lr 0.03} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    "s8-det30|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.3"
    # s8-lr03 (69.85 %) beat s7-det (69.36 %) with the higher peak: one step further up.
    "s8-lr05|${RESTART5/--lr 0.02/--lr 0.05} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    # More ingredients for the soup of stage 7 (its greedy soup kept s8-lr03, s7-det and s7-detcam): the next
    # step in peak lr, and the best single run's lr with s7-detcam's change (camera-like augmentation).
    "s9-lr04|${RESTART5/--lr 0.02/--lr 0.04} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    "s9-lr03cam|${RESTART5/--lr 0.02/--lr 0.03} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5 --set camera_augment=0.5"
    # Ingredients for a soup of feredge-n fine-tunes of the shipped soup (nsoup): n-kd5's and n-det's recipes
    # again (their weights were lost with an earlier machine), and n-det with the peak lr that helped s8.
    "n9-kd|$NRESTART"
    "n9-det|$NRESTART --set detector_crops=0.5"
    "n9-lr03|${NRESTART/--lr 0.02/--lr 0.03} --set detector_crops=0.5"
    # s8-lr05 was the ingredient stage 7's soup kept (70.02 → 70.44 %): one step further up the peak lr.
    "s9-lr06|${RESTART5/--lr 0.02/--lr 0.06} --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5"
    # s7-det (stage 6) with one change: the step autocast to bf16 on the CPU (AMX), 2.2x the images per second.
    # Its validation against s7-det's 69.36 % says whether bf16 costs accuracy; it is a soup ingredient too.
    "s10-bf16|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5 --set cpu_bf16=true"
    # Architecture proxies (the campaign's "best ≤ 5 M-parameter architecture from short proxy runs"): 15 epochs
    # from scratch with s-long-kd's recipe, one change each against feredge-s (3.83 M): squeeze-excitation in
    # every block (3.95 M), a third block in stages 2 and 3 (4.66 M), wider stages (4.87 M). Queued before the
    # long run's remaining epochs so their answer arrives within one round.
    "p-base|$PROXY"
    "p-se4|$PROXY --set model_kwargs={\"se\":4}"
    "p-deep|$PROXY --set model_kwargs={\"depths\":[2,3,3,2]}"
    "p-wide|$PROXY --set model_kwargs={\"widths\":[56,112,224,280]}"
    # 250 epochs from scratch, one-cycle at peak lr 0.1: the long schedule the plateau analysis points to, with
    # the restarts' recipe (ENSEMBLE5's ten-crop logits as teacher, half detector crops) in bf16 as s10-bf16,
    # so the change against the shipped soup's ingredients is the schedule. Longer than one round on 2 cores
    # (about 65 s an epoch in bf16, 140 s in fp32 on this CPU), so `carry` keeps its resume state beside the runs.
    "s-long-kd|$LONG --epochs 250"
    # Warm restarts of s-long-kd's best epoch (71.14 % validation, 4.8 points of steady mean-class under stage 8
    # on the real photos), aimed at real faces: 12 epochs at peak lr 0.03 (stage 8's best restart lr), its own
    # teacher and bf16. s11-det50 changes nothing else (what a restart alone does); the others one thing each
    # against it: detector crops on 80 % of the images, camera augmentation on half.
    "s11-det50|$LONG_RESTART --set detector_crops=0.5"
    "s11-det80|$LONG_RESTART --set detector_crops=0.8"
    "s11-cam|$LONG_RESTART --set detector_crops=0.5 --set camera_augment=0.5"
    # Where real photos are lost (neutral faces read as angry, sad, fear) is where FER2013's labels disagree with
    # FER+'s ten annotators: of the training images labelled angry / sad / fear, FER+'s majority calls 30 / 47 /
    # 32 % neutral. s10-bf16 with one change: FER+'s vote distributions as the label targets (soft_labels).
    "s12-ferplus|$RESTART5 --set teacher=$ENSEMBLE5 --set teacher_tta=ten-crop --set detector_crops=0.5 --set cpu_bf16=true --set soft_labels=true"
    # s12-ferplus read 77 % of the neutral photos right (s10-bf16: 32 %) at 2.8 points of FER2013 validation.
    # The same one change on the long run: s11-det50 with FER+'s votes as the label targets.
    "s13-long-fp|$LONG_RESTART --set detector_crops=0.5 --set soft_labels=true"
    # s12-ferplus agrees with the FER+ majority on 78.8 % of the validation carve (s10-bf16: 66.9 %) and with
    # FER2013's labels on 66.3 % (69.1 %). Between the two: half the label target from the votes.
    "s12-fp50|$RESTART5 --set teacher=$ENSEMBLE5 $STAGE9"
    # feredge-n with the same change: n9-det (the shipped soup's restart recipe, half detector crops) in bf16,
    # with FER+'s votes as the label target, all of it or half.
    "n12-ferplus|$NRESTART --set detector_crops=0.5 --set cpu_bf16=true --set soft_labels=true"
    "n12-fp50|$NRESTART --set detector_crops=0.5 --set cpu_bf16=true $FP50"
    # Restarts of stage 5 as trained with stage 9's recipe (s12-fp50) and one change each, ingredients for a soup
    # of FER+ half-target models: peak lr 0.03 / 0.05 (as s8-lr03 / s8-lr05 were for stage 7 and 8's soups),
    # camera augmentation on half the images.
    "s14-fp50-lr03|${RESTART5/--lr 0.02/--lr 0.03} --set teacher=$ENSEMBLE5 $STAGE9"
    "s14-fp50-lr05|${RESTART5/--lr 0.02/--lr 0.05} --set teacher=$ENSEMBLE5 $STAGE9"
    "s14-fp50-cam|$RESTART5 --set teacher=$ENSEMBLE5 $STAGE9 --set camera_augment=0.5"
    # s11-det50 (the long run's restart) with stage 9's one change: half the label target from FER+'s votes.
    "s15-long-fp50|$LONG_RESTART --set detector_crops=0.5 $FP50"
    # n12-fp50 (shipped feredge-n) with one change, the teacher: ENSEMBLE_FP in place of ENSEMBLE5.
    "n13-fpteach|${NRESTART/$ENSEMBLE5/$ENSEMBLE_FP} --set detector_crops=0.5 --set cpu_bf16=true $FP50"
    # s12-fp50 (stage 9) with the same one change: the FER+-agreeing teacher ENSEMBLE_FP in place of ENSEMBLE5.
    "s16-fpteach|$RESTART5 --set teacher=$ENSEMBLE_FP $STAGE9"
    # feredge-n's long from-scratch schedule (250 epochs at about 17 s in bf16, one round), distilled from
    # ENSEMBLE_FP with half the label target from FER+'s votes and half the images cut as the detector cuts.
    "n-long-fp50|--recipe feredge-n --epochs 250 --seed 0 --device cpu --set teacher=$ENSEMBLE_FP --set distill_weight=0.8 $STAGE9"
    # s16-fpteach (+2.94 points of steady mean-class on the photos: 0.06 short of the rule) with one change, the
    # starting point: stage 9 itself, so the lineage's next stage.
    "s17-fpteach9|${RESTART5/s5-raw.safetensors/s9.safetensors} --set teacher=$ENSEMBLE_FP $STAGE9"
    # s15-long-fp50 (the long run's restart with the half FER+ target: 70.33 % validation, the photos' worst
    # reader) with s16-fpteach's one change, the FER+-agreeing teacher ENSEMBLE_FP in place of ENSEMBLE5 (on
    # stage 9 it gave +6.3 top-1 and +2.9 steady mean-class on the photos at 0.5 points of validation).
    "s18-long-fpteach|$LONG_RESTART_FP --set detector_crops=0.5 $FP50"
    # s16-fpteach with one change: the teacher's share of the loss 0.8 (feredge-n's, whose same teacher change
    # gained twice what feredge-s's did on the photos) in place of the recipe's 0.5.
    "s19-fpteach-dw8|$RESTART5 --set teacher=$ENSEMBLE_FP $STAGE9 --set distill_weight=0.8"
    # s16-fpteach with one change each: 20 epochs (feredge-n's restart length, whose same teacher change passed
    # the rule) in place of 12; the teacher s13-long-fp's last epoch alone (80.64 % FER+ agreement ten-crop,
    # the campaign's highest; it reads the photos' top-1 best and their rare classes worst) in place of
    # ENSEMBLE_FP.
    "s20-fpteach20|${RESTART5/--epochs 12/--epochs 20} --set teacher=$ENSEMBLE_FP $STAGE9"
    "s21-s13teach|$RESTART5 --set teacher=$KEPT/s13-long-fp-last/best.safetensors $STAGE9"
    # s16-fpteach with one change: three quarters of the label target from FER+'s votes (was half), between
    # s16 and the all-votes target that read the photos' top-1 best (s12-ferplus, 79.05 %).
    "s23-fp75-fpteach|$RESTART5 --set teacher=$ENSEMBLE_FP ${STAGE9/soft_label_share=0.5/soft_label_share=0.75}"
    # s-long-kd (250 epochs from scratch, 71.14 % validation) with stage 9's one change: half the label target
    # from FER+'s votes. About 4.5 hours: it spans rounds through `carry`.
    "s-long-fp50|$LONG --epochs 250 $FP50"
    # s18-long-fpteach (a restart of the long run with the half FER+ target and the teacher ENSEMBLE_FP) with one
    # change, the starting point: s-long-fp50's best epoch, the long run trained with the half FER+ target from
    # its first epoch, in place of s-long-kd's.
    "s22-longfp50-fpteach|${LONG_RESTART_FP/$KEPT\/s-long-kd/$RUNS\/s-long-fp50} --set detector_crops=0.5 $FP50"
    # (feredge-n's long from-scratch run, queued here at a round's start with a FER2013-label teacher, was
    # withdrawn before its first epoch once FER+'s votes proved what the photos need; its teacher is to be
    # chosen again, by FER+ agreement as well.)
)

prepare() {
    if [ ! -f "$DATA/meta.json" ]; then
        mkdir -p "$RUNS/src"
        tar xzf "${FEREDGE_SHARED:-$REPO/../shared}/data/fer2013-images.tar.gz" -C "$RUNS/src"
        "$FEREDGE" data prepare fer2013 "$RUNS/src/fer2013" --out "$DATA" --ferplus "$RUNS/src/fer2013/ferplus_votes.csv"
    fi
    [ -f "$DATA/train/face_boxes.npy" ] || nice -n 19 "$FEREDGE" data face-boxes "$DATA"
    mkdir -p "$TEACHERS"
    for entry in "${HISTORY[@]}"; do
        IFS='|' read -r name commit model <<< "$entry"
        [ -f "$TEACHERS/$name.safetensors" ] && continue
        git -C "$REPO" show "$commit:feredge/weights/$model.safetensors" > "$TEACHERS/$name.tmp"
        git -C "$REPO" show "$commit:feredge/weights/$model.safetensors.json" > "$TEACHERS/$name.safetensors.json" \
            2> /dev/null || cp "$REPO/feredge/weights/$model.safetensors.json" "$TEACHERS/$name.safetensors.json"
        # its card, where it had one: the stages a run warm-started from it continues (weights/package.py)
        git -C "$REPO" show "$commit:feredge/weights/$model.card.json" > "$TEACHERS/$name.card.json" \
            2> /dev/null || rm -f "$TEACHERS/$name.card.json"
        mv "$TEACHERS/$name.tmp" "$TEACHERS/$name.safetensors"
    done
    for kept in "$KEPT_FROM"/*.safetensors; do
        name="$(basename "$kept" .safetensors)"
        [ -f "$kept" ] && [ ! -f "$KEPT/$name/best.safetensors" ] || continue
        mkdir -p "$KEPT/$name"
        log="$LOGS/$name.json"  # NAME-last: a run's last epoch kept in place of its best, with the run's log
        [ -f "$log" ] || log="$LOGS/${name%-last}.json"
        cp "$log" "$KEPT/$name/log.json"
        cp "$kept.json" "$KEPT/$name/best.safetensors.json"
        cp "$kept" "$KEPT/$name/best.tmp" && mv "$KEPT/$name/best.tmp" "$KEPT/$name/best.safetensors"
    done
    # Shipped stage 5 is prior-corrected; as teacher and starting point it is used as trained (its card's
    # stages are its stages: the correction is not a training stage).
    if [ ! -f "$TEACHERS/s5-raw.safetensors" ]; then
        python -m feredge.train.prior "$TEACHERS/s5.safetensors" --undo "$TEACHERS/s5-raw.safetensors"
        cp "$TEACHERS/s5.card.json" "$TEACHERS/s5-raw.card.json"
    fi
}

status() {
    for stage in "${STAGES[@]}"; do
        name="${stage%%|*}"
        log="$RUNS/$name/log.json"
        [ -f "$log" ] || log="$LOGS/$name.json"
        [ -f "$log" ] || log="$CARRY/$name/log.json"
        if [ -f "$log" ]; then
            python3 - "$log" "$name" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows if isinstance(rows, list) else rows.get("epochs", [])
best = max(rows, key=lambda r: r.get("val_accuracy", 0), default={})
last = rows[-1] if rows else {}
fp = f" (FER+ agreement {best['val_ferplus_accuracy']:.4f})" if "val_ferplus_accuracy" in best else ""
print(f"{sys.argv[2]}: epoch {last.get('epoch')} of the run, best validation {best.get('val_accuracy')} at epoch {best.get('epoch')}{fp}")
PY
        else
            echo "$name: not started"
        fi
    done
}

run_queue() {
    prepare
    for stage in "${STAGES[@]}"; do
        name="${stage%%|*}"
        settings="${stage#*|}"
        out="$RUNS/$name"
        if [ -n "${FEREDGE_ONLY:-}" ] && [[ " $FEREDGE_ONLY " != *" $name "* ]]; then
            continue  # FEREDGE_ONLY names the stages to run (to finish one run and start nothing new)
        fi
        if [ ! -f "$out/$STATE" ] && [ -f "$LOGS/$name.json" ]; then
            echo "$(date -Is) $name: finished on an earlier machine ($LOGS/$name.json), skipped"
            continue
        fi
        restore_stage "$name"
        while pgrep -f -- "--out $out( |$)" > /dev/null; do  # started by an earlier queue: let it finish
            sleep 60
        done
        if [ -f "$out/last_state.pt" ]; then
            resume_step=("${STEP[@]}")
            if [ "$BF16_CPU" = true ] && [[ "$settings" == *"cpu_bf16=true"* ]]; then
                # a bf16 stage resumed here after steps on an fp32-only machine (which saved cpu_bf16=false)
                resume_step=(--set cpu_bf16=true)
            fi
            args=(train --out "$out" --resume "${resume_step[@]}")
        else
            # Teacher logits are cached per run folder, keyed by the teacher's and the images' sha256:
            # an earlier stage's cache serves a later stage with the same teacher.
            mkdir -p "$out"
            find "$RUNS" -mindepth 2 -maxdepth 2 -name 'teacher_logits-*' ! -path "$out/*" -exec cp -n {} "$out/" \;
            read -ra words <<< "$settings"  # split on blanks, no globbing (model_kwargs lists have brackets)
            args=(train "${words[@]}" "${STEP[@]}" --data "$DATA" --out "$out")
        fi
        echo "$(date -Is) $name: $FEREDGE ${args[*]}"
        if nice -n 19 "$FEREDGE" "${args[@]}" >> "$RUNS/$name.out" 2>&1; then
            mkdir -p "$LOGS"  # finished: its curve goes into the work tree, to be committed
            cp "$out/log.json" "$LOGS/$name.json"
            rm -rf "${CARRY:?}/$name"  # its carried state has served: commit the removal with the log
        else
            rc=$?  # before the echo's $(date) resets it
            echo "$(date -Is) $name: stopped with exit $rc"
        fi
    done
}

# A new machine loses every run folder, and a stage longer than a round would start again each time. So at
# the end of a round `carry` copies each unfinished stage's resume files (the last epoch's weights and
# sidecar, the optimiser state, the log and the cached teacher logits, 0.7 MB a teacher that take a new
# machine about 15 minutes each: about 33 MB for feredge-s; the best epoch's weights too when they are not the
# last's) into $CARRY/<stage>/ (outside the tree); run_queue resumes from there when the run folder is
# missing. The run is paused while its files are copied, so the copy is one moment of it (any moment of a
# save is one that --resume settles, as after a kill), and the carried folder is replaced in one move. The
# run's saved settings name absolute paths (data, teachers): a resume needs the same FEREDGE_RUNS path
# (/root/feredge-runs on every machine so far).
carry() {
    shopt -s nullglob  # a run without a teacher has no cached logits
    for stage in "${STAGES[@]}"; do
        name="${stage%%|*}"
        out="$RUNS/$name"
        [ -f "$out/$STATE" ] && [ ! -f "$LOGS/$name.json" ] || continue
        new="$CARRY/.$name.new"
        rm -rf "$new" && mkdir -p "$new"
        copied=0
        pkill -STOP -f -- "--out $out( |$)" || true
        (
            for path in "$out"/{last,last.next,best}.safetensors{,.json} "$out/$STATE" "$out/log.json" "$out"/teacher_logits-*; do
                if [ -f "$path" ]; then cp "$path" "$new/"; fi
            done
        ) && copied=1
        pkill -CONT -f -- "--out $out( |$)" || true  # whatever the copy did, the run goes on
        [ "$copied" = 1 ] || { echo "$name: copy failed; $CARRY/$name left as it was" >&2; exit 1; }
        if cmp -s "$new/best.safetensors" "$new/last.safetensors"; then  # the restore copies last over best
            rm "$new/best.safetensors" "$new/best.safetensors.json" && touch "$new/$BEST_IS_LAST"
        fi
        rm -rf "${CARRY:?}/$name" && mv "$new" "$CARRY/$name"
        echo "$name: carried at epoch $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[-1]["epoch"])' "$out/log.json") (in $CARRY/$name)"
    done
}

# A stage unfinished on an earlier machine, carried and missing here: its run folder from the carry.
restore_stage() {
    local name=$1 out="$RUNS/$1" path
    [ ! -f "$out/$STATE" ] && [ -f "$CARRY/$name/$STATE" ] || return 0
    echo "$(date -Is) $name: resumed from its carried state ($CARRY/$name)"
    mkdir -p "$out"
    for path in "$CARRY/$name"/*; do  # the state last: it is what makes the folder a run to resume
        [ "$(basename "$path")" = "$STATE" ] || cp "$path" "$out/"
    done
    if [ -f "$out/$BEST_IS_LAST" ]; then
        cp "$out/last.safetensors" "$out/best.safetensors"
        cp "$out/last.safetensors.json" "$out/best.safetensors.json"
        rm "$out/$BEST_IS_LAST"
    fi
    cp "$CARRY/$name/$STATE" "$out/$STATE.tmp"
    mv "$out/$STATE.tmp" "$out/$STATE"
}

restore() {
    for stage in "${STAGES[@]}"; do
        restore_stage "${stage%%|*}"
    done
}

start() {
    if pgrep -f "campaign.sh run-queue" > /dev/null; then
        echo "the campaign is already running (log: $RUNS/campaign.out)"
        return
    fi
    mkdir -p "$RUNS"
    nohup bash "$0" run-queue >> "$RUNS/campaign.out" 2>&1 &
    echo "campaign started (pid $!); log: $RUNS/campaign.out; each stage's console: $RUNS/<stage>.out"
}

case "${1:-start}" in
    start) start ;;
    run-queue) run_queue ;;
    status) status ;;
    carry) carry ;;
    restore) restore ;;
    *) echo "usage: $0 [start|status|carry|restore]" >&2; exit 2 ;;
esac
