"""The canonical 7-class order and every dataset's own label codes mapped onto it."""

from __future__ import annotations

from feredge.errors import DataError

#: FER2013 order; every prepared dataset uses it (CK+ may append "contempt" explicitly).
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CONTEMPT = "contempt"

#: Folder/file names seen in the wild → canonical class name.
_SYNONYMS = {
    "angry": "angry", "anger": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": CONTEMPT,
}

#: RAF-DB basic codes 1..7 (surprise, fear, disgust, happiness, sadness, anger, neutral).
RAFDB_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}

#: FER+ vote columns → canonical names; contempt/unknown/NF are not among the 7 classes.
FERPLUS_COLUMNS = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear",
}


def canonical_name(name: str, where: str) -> str:
    """Map a dataset's emotion name (any case) to the canonical name, or fail naming ``where``."""
    key = name.strip().lower()
    if key not in _SYNONYMS:
        raise DataError(f"{where}: unknown emotion label '{name}' (expected one of {', '.join(CLASSES)} or contempt)")
    return _SYNONYMS[key]
