import pretty_midi
import pytest

from musicid.dataset import CorpusPiece, list_corpus_pieces, score_to_midi, select_pieces


def test_output_name_flattens_nested_paths():
    assert CorpusPiece("bach", "bach/bwv1.6.mxl").output_name == "bach/bwv1.6.mid"
    assert CorpusPiece("trecento", "trecento/PMFC_12_7-Gloria Egardus.xml").output_name == \
        "trecento/PMFC_12_7-Gloria_Egardus.mid"
    assert CorpusPiece("x", "x/sub/dir/a.krn").output_name == "x/sub__dir__a.mid"
    assert CorpusPiece("bach", "bach/bwv1.6.mxl").origin == "music21:bach/bwv1.6.mxl"


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


def test_score_music21_cannot_convert_gets_a_reason():
    # This Beethoven quartet has repeats music21 cannot expand.
    _, data, reason = score_to_midi(CorpusPiece("beethoven", "beethoven/opus18no5.mxl"))
    assert data is None
    assert reason.startswith("unconvertible: ExpanderException")


def test_missing_corpus_file_gets_a_reason():
    _, data, reason = score_to_midi(CorpusPiece("bach", "bach/does-not-exist.mxl"))
    assert data is None
    assert reason.startswith("unconvertible:")
