#!/usr/bin/env bash
# The training campaign (issue "Models that hold up on real faces"): long runs that outlive a working
# session. Runs live outside the work tree (the tree is laid anew from git each session; the rest of the
# disk normally survives), niced so the machine stays usable, and are resumed where they stopped.
#
#   bash campaign/campaign.sh            # at the start of every session: start or resume every stage
#   bash campaign/campaign.sh status     # last logged epoch and best validation of each run
#
# FEREDGE_RUNS (default ~/feredge-runs) holds the prepared data, the venv-independent run folders and
# their console logs. A stage whose run folder has a saved state is resumed with its own saved settings
# (`--out RUN --resume`); one without is started with the command below.
set -euo pipefail
RUNS="${FEREDGE_RUNS:-$HOME/feredge-runs}"
DATA="$RUNS/prepared/fer2013"
FEREDGE="${FEREDGE:-feredge}"

prepare() {
    [ -f "$DATA/meta.json" ] && return
    mkdir -p "$RUNS/src"
    tar xzf "${FEREDGE_SHARED:-$(dirname "$0")/../../shared}/data/fer2013-images.tar.gz" -C "$RUNS/src"
    "$FEREDGE" data prepare fer2013 "$RUNS/src/fer2013" --out "$DATA" --ferplus "$RUNS/src/fer2013/ferplus_votes.csv"
}

# name | command-line settings of the first start (later starts resume the run's own saved settings)
STAGES=(
    # 250 epochs from scratch, one-cycle at peak lr 0.1: the long schedule the plateau analysis points to.
    "s-long|--recipe feredge-s --epochs 250 --seed 0 --device cpu"
)

status() {
    for stage in "${STAGES[@]}"; do
        name="${stage%%|*}"
        log="$RUNS/$name/log.json"
        if [ -f "$log" ]; then
            python3 - "$log" "$name" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows if isinstance(rows, list) else rows.get("epochs", [])
best = max(rows, key=lambda r: r.get("val_accuracy", 0), default={})
last = rows[-1] if rows else {}
print(f"{sys.argv[2]}: epoch {last.get('epoch')} of the run, best validation {best.get('val_accuracy')} at epoch {best.get('epoch')}")
PY
        else
            echo "$name: not started"
        fi
    done
}

start() {
    prepare
    for stage in "${STAGES[@]}"; do
        name="${stage%%|*}"
        settings="${stage#*|}"
        out="$RUNS/$name"
        if pgrep -f -- "--out $out( |$)" > /dev/null; then
            echo "$name: already running"
            continue
        fi
        if [ -f "$out/last_state.pt" ]; then
            args=(train --out "$out" --resume)
        else
            # shellcheck disable=SC2206
            args=(train $settings --data "$DATA" --out "$out")
        fi
        nohup nice -n 19 "$FEREDGE" "${args[@]}" >> "$RUNS/$name.out" 2>&1 &
        echo "$name: started (pid $!): $FEREDGE ${args[*]}"
    done
}

case "${1:-start}" in
    start) start ;;
    status) status ;;
    *) echo "usage: $0 [start|status]" >&2; exit 2 ;;
esac
