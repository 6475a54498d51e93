#!/usr/bin/env bash
# Make sure the system libraries musicid needs are present: the FluidSynth
# library and command line, and a General MIDI SoundFont.  On Debian/Ubuntu, as
# root, missing packages are installed with apt-get (no recommends); otherwise
# the script says what is missing and how to install it, and fails.
# FluidR3_GM is the pipeline's default SoundFont; the tests' second SoundFont
# (TimGM6mb.sf2) ships inside the pretty_midi package, so it needs nothing here.
set -euo pipefail

missing=()
ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so\.3' || missing+=(libfluidsynth3)
command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "setup: missing system packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: installed ${missing[*]}" >&2
    exit 0
fi

cat >&2 <<MSG
setup: cannot install them here (this needs root and apt-get). Install them with
    sudo apt-get install --no-install-recommends ${missing[*]}
on Debian or Ubuntu, or on macOS with
    brew install fluid-synth
and point render.soundfonts in params.yaml at a General MIDI .sf2 file.
MSG
exit 1
