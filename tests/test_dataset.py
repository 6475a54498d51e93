import io

import pretty_midi
import pytest

from musicid.dataset import (CorpusPiece, corpus_root, export_music21, list_corpus_pieces, one_file_per_work,
                             score_to_midi, select_pieces)
from tests.archives import parts_midi, tune


def test_output_name_flattens_nested_paths():
    assert CorpusPiece("bach", "bach/bwv1.6.mxl").output_name == "bach/bwv1.6.mid"
    assert CorpusPiece("trecento", "trecento/PMFC_12_7-Gloria Egardus.xml").output_name == \
        "trecento/PMFC_12_7-Gloria_Egardus.mid"
    assert CorpusPiece("x", "x/sub/dir/a.krn").output_name == "x/sub__dir__a.mid"
    assert CorpusPiece("bach", "bach/bwv1.6.mxl").origin == "music21:bach/bwv1.6.mxl"
    # The work's folder (split.group folder): a quartet's movements share theirs.
    assert CorpusPiece("beethoven", "beethoven/opus18no1/movement1.mxl").folder == "opus18no1"
    assert CorpusPiece("x", "x/sub/dir/a.krn").folder == "sub"
    assert CorpusPiece("bach", "bach/bwv1.6.mxl").folder == ""


def test_select_pieces_caps_deterministically_and_sorts():
    pieces = [CorpusPiece("c", f"c/{i:03d}.krn") for i in range(50)]
    chosen = select_pieces(pieces, cap=10, seed=0)
    assert len(chosen) == 10
    assert chosen == sorted(chosen, key=lambda p: p.relative_path)
    assert chosen == select_pieces(list(reversed(pieces)), cap=10, seed=0)
    assert chosen != select_pieces(pieces, cap=10, seed=1)
    assert select_pieces(pieces, cap=0, seed=0) == pieces
    assert select_pieces(pieces[:5], cap=10, seed=0) == pieces[:5]


def test_corpus_listing_leaves_out_analyses():
    pieces = list_corpus_pieces("monteverdi")
    assert len(pieces) == 49  # the corpus has 49 madrigal scores and 48 .rntxt analyses
    assert all(not p.relative_path.endswith(".rntxt") for p in pieces)
    assert list_corpus_pieces("no-such-composer") == []


def test_score_to_midi_writes_a_playable_file(tmp_path):
    piece = CorpusPiece("bach", "bach/bwv66.6.mxl")
    _, data, reason = score_to_midi(piece)
    assert reason is None
    assert data[:4] == b"MThd"
    path = tmp_path / "a.mid"
    path.write_bytes(data)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert len(midi.instruments) == 4  # SATB
    assert midi.get_end_time() > 20
    # The same score always gives the same bytes (the manifest's hashes depend on it).
    assert score_to_midi(piece)[1] == data


def test_score_to_midi_gives_what_music21_writes_to_a_file_and_writes_nothing(tmp_path, monkeypatch):
    from music21 import converter

    piece = CorpusPiece("palestrina", "palestrina/Agnus_01.krn")
    written = converter.parse(corpus_root() / piece.relative_path, forceSource=True, storePickle=False).write(
        "midi", fp=tmp_path / "score.mid")  # from the score itself, as score_to_midi reads it
    # A worker killed mid-score leaves no temporary file behind: none is made.
    for maker in ("mkdtemp", "mkstemp", "NamedTemporaryFile"):
        monkeypatch.setattr(f"tempfile.{maker}", lambda *args, **kwargs: pytest.fail("wrote a temporary file"))
    _, data, reason = score_to_midi(piece)
    assert reason is None and data == written.read_bytes()


def test_score_to_midi_puts_every_part_on_the_program_asked_for():
    piece = CorpusPiece("palestrina", "palestrina/Agnus_01.krn")
    own = pretty_midi.PrettyMIDI(io.BytesIO(score_to_midi(piece)[1]))
    _, data, reason = score_to_midi(piece, program=0)
    assert reason is None
    forced = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert {i.program for i in own.instruments} != {0}  # music21 writes the voices with programs of its own
    assert [i.program for i in forced.instruments] == [0] * len(own.instruments)
    # Only the programs change: the same notes, at the same times.
    assert [[(n.pitch, n.start, n.end) for n in i.notes] for i in forced.instruments] == \
        [[(n.pitch, n.start, n.end) for n in i.notes] for i in own.instruments]
    assert score_to_midi(piece, program=0)[1] == data


def test_a_conversion_mido_cannot_rewrite_is_skipped_with_a_reason(monkeypatch):
    import musicid.dataset

    def unreadable(data, program):
        raise EOFError("cut short")

    monkeypatch.setattr(musicid.dataset, "with_program", unreadable)
    _, data, reason = score_to_midi(CorpusPiece("bach", "bach/bwv66.6.mxl"), program=0)
    assert data is None
    assert reason == "unconvertible: music21 wrote a MIDI file mido cannot read (EOFError)"


def test_score_music21_cannot_convert_gets_a_reason():
    # This Beethoven quartet has repeats music21 cannot expand.
    _, data, reason = score_to_midi(CorpusPiece("beethoven", "beethoven/opus18no5.mxl"))
    assert data is None
    assert reason.startswith("unconvertible: ExpanderException")


def test_a_broken_pickle_in_music21s_scratch_folder_neither_loses_the_score_nor_is_written(tmp_path, monkeypatch):
    """music21 caches what it parses as pickles in its scratch folder and reads them back first: a half-written
    one (a killed run, another process writing it) made a good score `unconvertible` for good."""
    from music21 import converter, environment

    monkeypatch.setattr(environment.Environment, "getRootTempDir", lambda self: tmp_path)
    piece = CorpusPiece("bach", "bach/bwv66.6.mxl")
    pickle = converter.PickleFilter(corpus_root() / piece.relative_path).status()[2]
    assert pickle is not None and pickle.parent == tmp_path
    pickle.write_bytes(b"\x1f\x8b\x08\x00 cut short")
    _, data, reason = score_to_midi(piece)
    assert reason is None and pretty_midi.PrettyMIDI(io.BytesIO(data)).instruments
    assert [p.name for p in tmp_path.iterdir()] == [pickle.name] and pickle.read_bytes().endswith(b"cut short")


def test_missing_corpus_file_gets_a_reason():
    _, data, reason = score_to_midi(CorpusPiece("bach", "bach/does-not-exist.mxl"))
    assert data is None
    assert reason.startswith("unconvertible:")


def test_one_file_per_work_keeps_the_preferred_format():
    pieces = [CorpusPiece("beethoven", path) for path in (
        "beethoven/opus18no1/movement1.krn", "beethoven/opus18no1/movement1.mxl",
        "beethoven/opus18no1/movement2.krn", "beethoven/opus74.mxl",
        "beethoven/x.abc", "beethoven/x.mid", "beethoven/x.xml")]
    kept, skipped = one_file_per_work(list(reversed(pieces)))
    assert [p.relative_path for p in kept] == [
        "beethoven/opus18no1/movement1.mxl", "beethoven/opus18no1/movement2.krn",
        "beethoven/opus74.mxl", "beethoven/x.xml"]
    assert skipped == [
        {"origin": "music21:beethoven/opus18no1/movement1.krn", "label": "beethoven",
         "reason": "same_work: kept beethoven/opus18no1/movement1.mxl"},
        {"origin": "music21:beethoven/x.abc", "label": "beethoven", "reason": "same_work: kept beethoven/x.xml"},
        {"origin": "music21:beethoven/x.mid", "label": "beethoven", "reason": "same_work: kept beethoven/x.xml"},
    ]


def _fake_convert(function, pieces):
    """A map function that stands in for the MIDI conversion: a fixed payload per piece."""
    for piece in pieces:
        yield piece, b"MThd" + piece.relative_path.encode(), None


def test_export_writes_each_work_of_the_corpus_once_before_the_cap(tmp_path):
    # The real corpus: 26 Beethoven files, the four movements of op. 18 no. 1 in .krn and .mxl.
    assert len(list_corpus_pieces("beethoven")) == 26
    manifest = export_music21(["beethoven"], max_per_class=22, seed=0, out_dir=tmp_path,
                              map_function=_fake_convert)
    origins = [record["origin"] for record in manifest["files"]]
    assert len(origins) == 22  # the cap counts works, so every one of the 22 works is kept
    assert len({record["path"] for record in manifest["files"]}) == 22
    assert [o for o in origins if "opus18no1" in o] == [
        f"music21:beethoven/opus18no1/movement{n}.mxl" for n in (1, 2, 3, 4)]
    assert manifest["skipped"] == [
        {"origin": f"music21:beethoven/opus18no1/movement{n}.krn", "label": "beethoven",
         "reason": f"same_work: kept beethoven/opus18no1/movement{n}.mxl"} for n in (1, 2, 3, 4)]
    assert (tmp_path / "beethoven/opus18no1__movement1.mid").read_bytes() == \
        b"MThdbeethoven/opus18no1/movement1.mxl"
    # A movement's record names its work's folder (split.group folder), a work in one score none.
    folders = {record["origin"]: record.get("folder") for record in manifest["files"]}
    assert folders["music21:beethoven/opus18no1/movement1.mxl"] == "opus18no1"
    flat = [folder for origin, folder in folders.items() if origin.count("/") == 1]
    assert flat and all(folder is None for folder in flat)


def test_a_composer_the_corpus_does_not_have_stops_the_export(tmp_path):
    from musicid.dataset import CollectionError

    with pytest.raises(CollectionError, match=r"dataset.classes names 'bahc' \(is it 'bach'\?\), for which the music21 "
                                              r"corpus has no scores \(it has: .*\bbach\b.*\bpalestrina\b"):
        export_music21(["bach", "bahc"], max_per_class=2, seed=0, out_dir=tmp_path, map_function=_fake_convert)
    assert list(tmp_path.iterdir()) == []


def test_export_twins_of_bach_and_trecento(tmp_path):
    manifest = export_music21(["bach", "trecento"], max_per_class=0, seed=0, out_dir=tmp_path,
                              map_function=_fake_convert)
    assert len(manifest["files"]) == 410 + 102
    assert [(r["origin"], r["reason"]) for r in manifest["skipped"]] == [
        ("music21:bach/bwv277.krn", "same_work: kept bach/bwv277.mxl"),
        ("music21:bach/bwv281.krn", "same_work: kept bach/bwv281.mxl"),
        ("music21:bach/bwv366.krn", "same_work: kept bach/bwv366.mxl"),
        ("music21:trecento/PMFC_13_01-Kyrie-Summe-Clementissime.xml",
         "same_work: kept trecento/PMFC_13_01-Kyrie-Summe-Clementissime.mxl"),
    ]


def test_a_score_that_takes_too_long_to_convert_is_skipped_as_timeout():
    # A chorale takes music21 a good fraction of a second; a millisecond is not enough.
    piece = CorpusPiece("bach", "bach/bwv66.6.mxl")
    _, data, reason = score_to_midi(piece, timeout_s=0.001)
    assert data is None
    assert reason == "timeout: music21 took longer than dataset.timeout_s (0.001 s)"
    # With time enough, the same score converts.
    assert score_to_midi(piece, timeout_s=60)[1]


def test_versions_of_one_work_are_found_by_their_melodic_patterns():
    """Another edition of a work (other note values, a transposition, a few notes changed) shares most of its
    melodic patterns; two works, even with one part in common (two harmonisations of one tune), do not."""
    from musicid.dataset import same_work_groups, versions_of_works
    from musicid.midi import heard_notes_and_patterns

    soprano, alto, bass = tune(1), tune(2), tune(3, low=40)
    varied = list(alto)
    varied[10], varied[40] = varied[10] + 1, varied[40] - 2  # a reading with two notes changed
    files = {
        "a/work.mid": parts_midi([soprano, alto, bass]),
        "a/work_old.mid": parts_midi([soprano, varied, bass], beat=0.3, transpose=2),
        "a/other.mid": parts_midi([tune(4), tune(5), tune(6, low=40)]),
        "a/reharmonised.mid": parts_midi([soprano, tune(7), tune(8, low=40)]),
        "a/short.mid": parts_midi([[60, 62, 64, 65, 67, 69]]),
    }
    names = sorted(files)
    work, old = names.index("a/work.mid"), names.index("a/work_old.mid")
    patterns = [heard_notes_and_patterns(files[name])[1] for name in names]
    assert patterns[names.index("a/short.mid")] is None  # too short to compare
    assert same_work_groups(patterns) == [[work, old]]
    # One label: both stay, one work (the first version's) to the split.
    assert versions_of_works(names, ["a"] * len(names), patterns) == ({}, {work: work, old: work})
    # The same work under two labels is neither's.
    labels = ["b" if name == "a/work_old.mid" else "a" for name in names]
    reasons, works = versions_of_works(names, labels, patterns)
    assert sorted(reasons) == [work, old] and works == {}
    assert reasons[old].startswith("ambiguous_label: a version of a/work.mid (")
    assert reasons[old].endswith("% of their melodic patterns shared), one work under a, b")


def piano_piece(seed: int, jitter: float = 0.0, tempo: float = 1.0, one_track: bool = False) -> bytes:
    """A piano piece: a right hand's tune over a left hand's two-note chords, one a beat; as a score (two tracks,
    exact onsets) or as a performance recorded in one track (``one_track``: both hands in one stream, every onset
    moved by a normal ``jitter`` in seconds, so that a chord's notes are spread, at another ``tempo``)."""
    import io

    import numpy as np
    import pretty_midi

    rng = np.random.default_rng(seed + 1000)
    right, left = tune(seed, 120, low=60), tune(seed + 500, 120, low=40)
    hands = [[(step, pitch) for step, pitch in enumerate(right)],
             [(step, pitch + offset) for step, pitch in enumerate(left) for offset in (0, 7)]]
    midi = pretty_midi.PrettyMIDI()
    tracks = [pretty_midi.Instrument(program=0)] if one_track else [pretty_midi.Instrument(program=0) for _ in hands]
    for index, hand in enumerate(hands):
        for step, pitch in hand:
            start = max(0.0, step * 0.5 / tempo + (rng.normal(0, jitter) if jitter else 0.0))
            tracks[0 if one_track else index].notes.append(
                pretty_midi.Note(velocity=int(rng.integers(50, 100)), pitch=pitch, start=start, end=start + 0.4))
    midi.instruments.extend(tracks)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def test_a_performance_in_one_track_is_a_version_of_the_score_in_parts():
    """A keyboard performance records both hands in one track and spreads each chord over a few milliseconds:
    its parts are not the score's, but its top line (each chord's highest note) is."""
    from musicid.dataset import SAME_WORK_SHARE, pattern_share, same_work_groups
    from musicid.midi import WHOLE_FILE, heard_notes_and_patterns

    score = heard_notes_and_patterns(piano_piece(1))[1]
    performances = [heard_notes_and_patterns(piano_piece(1, jitter=0.012, tempo=tempo, one_track=True))[1]
                    for tempo in (0.9, 1.15)]
    other = heard_notes_and_patterns(piano_piece(2, jitter=0.012, one_track=True))[1]
    for performance in performances:
        # The parts alone: the score's right and left hands' top lines against one stream's, under the share.
        parts = pattern_share(score[score < WHOLE_FILE], performance[performance < WHOLE_FILE])
        assert parts < SAME_WORK_SHARE
        assert pattern_share(score, performance) >= 0.9
    assert pattern_share(performances[0], performances[1]) >= 0.9
    assert pattern_share(score, other) < SAME_WORK_SHARE / 2
    assert same_work_groups([score, other, *performances]) == [[0, 2, 3]]


def test_pieces_over_the_same_block_chords_are_not_versions():
    """Twenty tunes, each over four-note chords on I, IV, V and vi in the left hand: heard as one stream their
    chords' spacing would make most patterns alike; the top line leaves the inner notes out."""
    import numpy as np

    from musicid.dataset import same_work_groups
    from musicid.midi import melodic_patterns

    scale = [0, 2, 4, 5, 7, 9, 11]

    def piece(seed: int, one_track: bool) -> dict:
        rng = np.random.default_rng(seed)
        tune, chords, step = [], [], 14
        for beat in range(200):
            degree = int(rng.choice([0, 3, 4, 5]))
            chords += [(beat * 480, 48 + scale[(degree + 2 * k) % 7] + 12 * ((degree + 2 * k) // 7)) for k in range(4)]
            step = int(np.clip(step + rng.integers(-2, 3), 7, 21))
            tune.append((beat * 480, 60 + scale[step % 7] + 12 * (step // 7)))
        return {(0, 0): tune + chords} if one_track else {(0, 0): tune, (1, 0): chords}

    assert same_work_groups([melodic_patterns(piece(seed, seed % 2 == 0), 480) for seed in range(20)]) == []
    # The same piece in two tracks and in one is one work.
    assert same_work_groups([melodic_patterns(piece(3, False), 480), melodic_patterns(piece(3, True), 480)]) == [[0, 1]]


def test_a_chord_spread_over_milliseconds_is_still_a_chord():
    """The score in its two parts, each onset moved by a few milliseconds (a performance recorded part by part):
    every chord's notes still read from the low note up."""
    from musicid.dataset import pattern_share
    from musicid.midi import WHOLE_FILE, heard_notes_and_patterns

    score = heard_notes_and_patterns(piano_piece(3))[1]
    spread = heard_notes_and_patterns(piano_piece(3, jitter=0.015))[1]
    assert pattern_share(score[score < WHOLE_FILE], spread[spread < WHOLE_FILE]) >= 0.9


@pytest.mark.parametrize("rows", [1, 3, 512])
def test_pairs_by_size_are_every_pair_at_the_share(rows, monkeypatch):
    """alike_pairs counts each block of files (in order of size) against the files up to twice its largest: it
    finds every pair the share joins, one that holds half their union exactly (one set twice the other, inside
    it) among them, whatever the block."""
    import numpy as np

    import musicid.dataset
    from musicid.dataset import SAME_WORK_SHARE, alike_pairs

    monkeypatch.setattr(musicid.dataset, "PAIRING_ROWS", rows)

    rng = np.random.default_rng(0)
    sets = [np.unique(rng.integers(0, 300, int(rng.integers(5, 200)))) for _ in range(60)]
    sets += [np.arange(1000, 1100), np.arange(1000, 1050), np.arange(1000, 1049), None, np.zeros(0, np.int64)]
    for index in range(0, 40, 4):  # versions: a part of another set and a few codes of their own
        sets[index + 1] = np.unique(np.concatenate([sets[index][rng.random(len(sets[index])) > 0.3],
                                                    rng.integers(0, 300, 5)]))
    expected = set()
    for first in range(len(sets)):
        for second in range(first + 1, len(sets)):
            if sets[first] is None or sets[second] is None or not len(sets[first]) or not len(sets[second]):
                continue
            shared = len(np.intersect1d(sets[first], sets[second]))
            if shared >= SAME_WORK_SHARE * (len(sets[first]) + len(sets[second]) - shared):
                expected.add((first, second))
    assert (60, 61) in expected and (60, 62) not in expected  # 50 of 100: in; 49 of 100: out
    assert len(expected) > 10
    rows, cols = alike_pairs(sets)
    assert {(min(a, b), max(a, b)) for a, b in zip(rows.tolist(), cols.tolist())} == expected


def test_groups_join_through_a_chain_of_versions_and_pass_over_files_without_patterns():
    import numpy as np

    from musicid.dataset import SAME_WORK_SHARE, same_work_groups

    base = np.arange(100, dtype=np.int64)
    shifted = base + 40  # 60 of 140 shared with base: 0.43, under the share
    assert 60 / 140 < SAME_WORK_SHARE
    middle = base + 20  # 80 of 120 with each: 0.67
    assert same_work_groups([base, None, shifted]) == []
    assert same_work_groups([base, None, shifted, middle]) == [[0, 2, 3]]
    assert same_work_groups([None, base]) == [] and same_work_groups([]) == []


def test_a_work_under_two_labels_names_the_closest_version_under_the_other():
    """A chain of versions, a/base -> a/middle -> b/shifted: the work goes from both labels, each file's reason
    naming its closest version under the other label, and saying so when that one shares less than the share."""
    import numpy as np

    from musicid.dataset import versions_of_works

    base = np.arange(100, dtype=np.int64)
    names, labels = ["a/base.mid", "a/middle.mid", "b/shifted.mid"], ["a", "a", "b"]
    reasons, works = versions_of_works(names, labels, [base, base + 20, base + 40])
    assert works == {}
    assert reasons[0] == ("ambiguous_label: a version of b/shifted.mid (43% of their melodic patterns shared, joined "
                          "through other versions), one work under a, b")
    assert reasons[1] == ("ambiguous_label: a version of b/shifted.mid (67% of their melodic patterns shared), one "
                          "work under a, b")
    assert reasons[2] == ("ambiguous_label: a version of a/middle.mid (67% of their melodic patterns shared), one "
                          "work under a, b")


def test_export_marks_the_versions_of_a_work_the_corpus_holds_twice(tmp_path):
    """As monteverdi/madrigal.3.1 and madrigal.3.1_old (the same pitches, other note values): two tracks, one
    work to the split; another piece is no work's."""
    pieces = list_corpus_pieces("monteverdi")[:3]
    played = {pieces[0].relative_path: parts_midi([tune(1), tune(2)]),
              pieces[1].relative_path: parts_midi([tune(1), tune(2)], beat=0.25),
              pieces[2].relative_path: parts_midi([tune(3), tune(4)])}

    def convert(function, chosen):
        for piece in chosen:
            yield (piece, played[piece.relative_path], None) if piece.relative_path in played else (piece, None, "x")

    manifest = export_music21(["monteverdi"], max_per_class=0, seed=0, out_dir=tmp_path, map_function=convert)
    works = {record["origin"]: record.get("work") for record in manifest["files"]}
    assert works == {f"music21:{pieces[0].relative_path}": pieces[0].output_name,
                     f"music21:{pieces[1].relative_path}": pieces[0].output_name,
                     f"music21:{pieces[2].relative_path}": None}
    assert all(record["reason"] == "x" for record in manifest["skipped"])

