"""The crop geometry every face goes through: in the runtime, in training's detector crops, in explain."""

#: Context added around the detector's box, as a fraction of its side. Chosen by benchmarks/in_the_wild.py
#: on 1,500 faces of training's validation carve pasted into frames at 80–220 px, ±20°, found by YuNet:
#: accuracy on found faces with margin 0 / 0.05 / 0.1 — feredge-s 66.5 / 65.7 / 65.3 %, feredge-n 66.4 /
#: 66.1 / 63.5 % (benchmarks/results/in_the_wild-holdout.json).
FACE_MARGIN = 0.0
