import dataclasses

import pytest
import yaml

from musicid.params import SECTIONS, ParamsError, load_section, parse_section
from tests.conftest import PROJECT_ROOT


def test_every_section_of_the_project_params_loads():
    for section in SECTIONS:
        params = load_section(PROJECT_ROOT / "params.yaml", section)
        assert dataclasses.is_dataclass(params)


def test_defaults_have_expected_values():
    dataset = load_section(PROJECT_ROOT / "params.yaml", "dataset")
    assert dataset.source == "music21"
    assert len(dataset.classes) >= 4
    assert dataset.max_per_class >= 40


def test_unknown_key_is_named():
    raw = {"val": 0.1, "test": 0.2, "seed": 0, "holdout_classes": [], "tset": 0.3}
    with pytest.raises(ParamsError, match=r"unknown key split\.tset"):
        parse_section(raw, "split")


def test_missing_key_is_named():
    with pytest.raises(ParamsError, match=r"missing key split\.seed"):
        parse_section({"val": 0.1, "test": 0.2, "holdout_classes": []}, "split")


def test_mapping_and_optional_values():
    from musicid.params import DatasetParams

    base = dict(source="path", classes=[], max_per_class=0, seed=0, url=None, sha256=None,
                allow_unverified=False, path="x", unlabeled=None, max_bytes=1, max_files=1)
    assert parse_section({**base, "labels": {"Bach, J.S.": "bach"}}, "dataset").labels == {"Bach, J.S.": "bach"}
    assert parse_section({**base, "labels": None}, "dataset").labels == {}
    with pytest.raises(ParamsError, match=r"dataset\.labels\.x must be a string"):
        parse_section({**base, "labels": {"x": 3}}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.sha256 must be 64 hexadecimal digits"):
        parse_section({**base, "labels": {}, "sha256": "abc"}, "dataset")
    assert isinstance(parse_section({**base, "labels": {}}, "dataset"), DatasetParams)


def test_wrong_type_is_named():
    with pytest.raises(ParamsError, match=r"evaluate\.batch_size must be an integer, got 'big'"):
        parse_section({"batch_size": "big"}, "evaluate")


def test_bool_is_not_accepted_as_number():
    with pytest.raises(ParamsError, match=r"split\.seed must be an integer"):
        parse_section({"val": 0.1, "test": 0.2, "seed": True, "holdout_classes": []}, "split")


def test_range_check_is_named():
    with pytest.raises(ParamsError, match=r"split\.test val \+ test must be < 1"):
        parse_section({"val": 0.5, "test": 0.5, "seed": 0, "holdout_classes": []}, "split")


def test_odd_n_fft_is_refused():
    features = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["features"]
    with pytest.raises(ParamsError, match=r"features\.n_fft must be even"):
        parse_section({**features, "n_fft": 1023}, "features")


def test_int_accepted_for_float():
    assert parse_section({"val": 0, "test": 0, "seed": 1, "holdout_classes": []}, "split").val == 0.0


def test_missing_file_and_section(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_section(tmp_path / "nope.yaml", "split")
    (tmp_path / "p.yaml").write_text("clip: {}\n")
    with pytest.raises(ParamsError, match="missing section 'split'"):
        load_section(tmp_path / "p.yaml", "split")


def test_dvc_yaml_lists_exactly_the_keys_each_stage_reads():
    """A param a stage reads but dvc.yaml does not list would not rerun the stage."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    reads = {"download": ["dataset"], "render": ["render"], "clip": ["clip", "split"],
             "featurize": ["features"], "train": ["train"], "evaluate": ["evaluate"]}
    assert list(pipeline) == list(reads)
    for stage, sections in reads.items():
        expected = {f"{s}.{f.name}" for s in sections for f in dataclasses.fields(SECTIONS[s])}
        assert set(pipeline[stage]["params"]) == expected, stage


def _musicid_imports(path):
    """Library modules imported by ``path`` (``from musicid.x import ...`` lines, at any indent)."""
    modules = set()
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "from" and words[1].startswith("musicid."):
            modules.add(words[1].replace(".", "/") + ".py")
    return modules


def test_dvc_yaml_deps_include_each_stage_script_and_its_modules():
    """Editing a stage's code, or any library module it uses, must rerun the stage; nothing else may."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in pipeline.items():
        script = f"stages/{name}.py"
        assert script in stage["deps"], name
        needed, todo = set(), [PROJECT_ROOT / script]
        while todo:
            for module in _musicid_imports(todo.pop()) - needed:
                needed.add(module)
                todo.append(PROJECT_ROOT / module)
        missing = sorted(needed - set(stage["deps"]))
        assert not missing, f"stage {name} uses {missing} but dvc.yaml does not list them"
        unused = sorted(dep for dep in stage["deps"] if dep.startswith("musicid/") and dep not in needed)
        assert not unused, f"stage {name} lists {unused} in dvc.yaml but does not use them (needless reruns)"
