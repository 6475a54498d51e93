"""Where each block of a clip's symbolic vector sits (the tables of ``musicid.symbolic``'s docstring).

A module of its own, without dependencies, so that training can transpose a
vector (train.symbolic_transpose) without importing what reads MIDI files.
"""

PITCH_CLASS_BLOCK = slice(0, 12)
ONSET_CLASS_BLOCK = slice(12, 24)
INTERVAL_BLOCK = slice(24, 37)
DENSITY, MEAN_POLYPHONY, MAX_POLYPHONY, PITCH_MEAN, PITCH_STD, PITCH_RANGE, MEAN_DURATION = range(37, 44)
SYMBOLIC_DIM = 44
VERTICAL_BLOCK, DURATION_BLOCK, IOI_BLOCK = slice(44, 57), slice(57, 63), slice(63, 69)
TEXTURE_DIM = 25
# The piano roll (module docstring): MIDI notes ROLL_LOW .. ROLL_LOW + ROLL_PITCHES - 1, ROLL_FRAMES a window.
ROLL_LOW, ROLL_PITCHES, ROLL_FRAMES = 21, 88, 32
ROLL_DIM = ROLL_PITCHES * ROLL_FRAMES


def roll_planes_of(shape) -> int:
    """How many planes a piano roll of ``shape`` (featurize's ``symbolic_roll_shape``) holds: [pitches, frames]
    is the roll alone (a table of before features.symbolic_onsets); [planes, pitches, frames] says."""
    return int(shape[0]) if len(shape) == 3 else 1


def sounding(features):
    """bool [k]: which windows of features [k, D] (a numpy array or a torch tensor) have a note sounding in
    them (their pitch-class histogram sums to 1). A window with none (a drum part's, or notes the reader
    cannot see, such as notes never released) has only zeros, which the model would read as music of its
    own: it counts as having no notes, as an audio clip (``has_symbolic`` false)."""
    return features[:, PITCH_CLASS_BLOCK].sum(1) > 0.5
