import math

import pytest
import yaml

from musicid.params import SECTIONS, ParamsError, load_section, parse_section
from tests.conftest import PROJECT_ROOT


def test_every_section_of_the_project_params_loads():
    for section in SECTIONS:
        params = load_section(PROJECT_ROOT / "params.yaml", section)
        assert isinstance(params, SECTIONS[section])


def test_defaults_have_expected_values():
    dataset = load_section(PROJECT_ROOT / "params.yaml", "dataset")
    assert dataset.source == "music21"
    assert len(dataset.classes) >= 4
    assert dataset.max_per_class >= 40


def test_unknown_key_is_named():
    raw = {"val": 0.1, "test": 0.2, "seed": 0, "holdout_classes": [], "folds": 0, "fold": 0, "tset": 0.3}
    with pytest.raises(ParamsError, match=r"unknown key split\.tset"):
        parse_section(raw, "split")


def test_a_misspelt_key_is_named_as_written_with_the_key_it_resembles():
    """`patiense` for `patience` is an unknown key and a missing one: the message named only the missing one,
    never the key the user wrote."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]
    raw["patiense"] = raw.pop("patience")
    with pytest.raises(ParamsError) as error:
        parse_section(raw, "train")
    assert str(error.value).startswith("params.yaml: unknown key train.patiense: is it 'patience'? (known: ")
    raw = {"val": 0.1, "test": 0.2, "seed": 0, "holdout_classes": [], "folds": 0, "fold": 0, "zzz": 1}
    with pytest.raises(ParamsError, match=r"unknown key split\.zzz \(known: val, test, seed"):
        parse_section(raw, "split")  # nothing like it: no guess


def test_every_bad_key_of_a_section_is_named_in_one_message():
    """Four mistakes, one run: the first is named as before, the others after it (the key patiense stands
    for is not named again as missing)."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]
    raw["patiense"] = raw.pop("patience")
    raw.update(epochs=-1, keep="worst", grad_clip="x")
    with pytest.raises(ParamsError) as error:
        parse_section(raw, "train")
    message = str(error.value)
    assert message.startswith("params.yaml: unknown key train.patiense: is it 'patience'? (known: ")
    assert message.endswith(" (and 3 more: train.epochs must be > 0, got -1; train.keep must be 'best' or 'last', "
                            "got 'worst'; train.grad_clip must be a number, got 'x')")
    assert "missing key" not in message and message.count("grad_clip") == 2  # in the known keys, and once more


def test_every_bad_key_of_every_section_is_named_by_the_first_stage(tmp_path):
    """A bad clip key and two bad train keys: the clip stage names its own first, then train's, in one run
    (before, a second run was needed to learn of train's)."""
    document = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    document["clip"]["clip_seconds"] = 0.0
    document["train"].update(epochs=-1, keep="worst")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ParamsError) as error:
        load_section(tmp_path / "params.yaml", "clip")
    assert str(error.value) == (f"{tmp_path / 'params.yaml'}: clip.clip_seconds must be >= 0.1, got 0.0 (and 2 more: "
                                "train.epochs must be > 0, got -1; train.keep must be 'best' or 'last', got 'worst')")
    with pytest.raises(ParamsError, match=r"params\.yaml: train\.epochs must be > 0, got -1 \(and 2 more: "
                       r"train\.keep .*; clip\.clip_seconds must be >= 0\.1, got 0\.0\)$"):
        load_section(tmp_path / "params.yaml", "train")
    del document["clip"]["clip_seconds"], document["train"]["epochs"], document["train"]["keep"]
    document["split"] = "x"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ParamsError, match=r"missing key clip\.clip_seconds \(and 3 more: section 'split' must be a "
                       r"mapping, got 'x'; missing key train\.epochs; missing key train\.keep\)$"):
        load_section(tmp_path / "params.yaml", "clip")


def test_missing_key_is_named():
    with pytest.raises(ParamsError, match=r"missing key split\.seed"):
        parse_section({"val": 0.1, "test": 0.2, "holdout_classes": [], "folds": 0, "fold": 0,
                       "group": "track", "order": "shuffle"}, "split")


def test_mapping_and_optional_values():
    from musicid.params import DatasetParams

    base = dict(source="path", classes=[], max_per_class=0, seed=0, url=None, sha256=None,
                allow_unverified=False, path="x", unlabeled=None, max_bytes=1, max_files=1, timeout_s=1,
                program=None, label_table=dict(file=None, path_column="path", label_column="label",
                                               group_column=None, split_column=None))
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
        parse_section({"val": 0.1, "test": 0.2, "seed": True, "holdout_classes": [], "folds": 0, "fold": 0,
                       "group": "track", "order": "shuffle"}, "split")


def test_range_check_is_named():
    with pytest.raises(ParamsError, match=r"split\.test must leave tracks to train on: "
                                          r"split\.val \+ split\.test must be < 1"):
        parse_section({"val": 0.5, "test": 0.5, "seed": 0, "holdout_classes": [], "folds": 0, "fold": 0,
                       "group": "track", "order": "shuffle"}, "split")


def test_odd_n_fft_is_refused():
    features = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["features"]
    with pytest.raises(ParamsError, match=r"features\.n_fft must be even"):
        parse_section({**features, "n_fft": 1023}, "features")


def test_int_accepted_for_float():
    test = parse_section({"val": 0.1, "test": 0, "seed": 1, "holdout_classes": [], "folds": 5, "fold": 0,
                          "group": "track", "order": "shuffle"}, "split").test
    assert isinstance(test, float) and test == 0.0
    with pytest.raises(ParamsError, match=r"split\.val must be > 0: train needs validation tracks"):
        parse_section({"val": 0, "test": 0.2, "seed": 1, "holdout_classes": [], "folds": 0, "fold": 0,
                       "group": "track", "order": "shuffle"}, "split")


def test_holdout_classes_may_name_a_class_as_its_folder_reads():
    """As dataset.classes: the folder's name (with combining accents too) is the label download gives it."""
    split = {"val": 0.1, "test": 0.2, "seed": 1, "folds": 0, "fold": 0, "group": "track", "order": "shuffle"}
    parsed = parse_section({**split, "holdout_classes": ["\u00c9lan Drones", "bach", "Dvor\u030ca\u0301k"]}, "split")
    assert parsed.holdout_classes == ["\u00c9lan_Drones", "bach", "Dvo\u0159\u00e1k"]
    with pytest.raises(ParamsError) as raised:  # one label, named twice: both spellings are named
        parse_section({**split, "holdout_classes": ["c", "a_b", "a b"]}, "split")
    assert str(raised.value) == "params.yaml: split.holdout_classes names the class a_b twice: 'a b' and 'a_b'"
    with pytest.raises(ParamsError) as raised:
        parse_section({**split, "holdout_classes": ["a_b", "a_b"]}, "split")
    assert str(raised.value) == "params.yaml: split.holdout_classes has duplicates: ['a_b', 'a_b']"


def test_missing_file_and_section(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_section(tmp_path / "nope.yaml", "split")
    (tmp_path / "p.yaml").write_text("clip: {}\n")
    with pytest.raises(ParamsError, match="missing section 'split'"):
        load_section(tmp_path / "p.yaml", "split")


def test_dvc_yaml_gives_each_stage_the_sections_it_reads_and_evaluate_the_whole_file():
    """A param a stage reads but dvc.yaml does not list would not rerun the stage; a misspelt key or section
    that no stage lists would leave `dvc repro` "up to date" (whole sections, and the whole file for
    evaluate, rerun a stage that refuses it)."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    reads = {"download": ["dataset"], "render": ["render"], "clip": ["split", "clip"],
             "featurize": ["features"], "train": ["train"]}
    assert list(pipeline) == [*reads, "evaluate"]
    for stage, sections in reads.items():
        assert pipeline[stage]["params"] == sections, stage
    assert pipeline["evaluate"]["params"] == [{"params.yaml": None}]
    assert set(SECTIONS) == {section for sections in reads.values() for section in sections} | {"evaluate"}


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


def test_dvc_yaml_persists_every_output_kept_in_git():
    """DVC deletes a stage's outputs before it runs it, and `dvc checkout` can bring back only those it caches:
    a failed train run left the git-tracked metrics/train deleted. Persisted, they stay until a run succeeds
    (each stage replaces them whole)."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    in_git = []
    for name, stage in pipeline.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                if isinstance(entry, dict):
                    (path, options), = entry.items()
                    if options.get("cache") is False:
                        in_git.append(path)
                        assert options.get("persist") is True, f"{name}: {path} is kept in git but not persisted"
    assert "metrics/train" in in_git and "metrics/metrics.json" in in_git


@pytest.mark.parametrize("section, key, value", [
    ("clip", "clip_seconds", math.nan), ("render", "timeout_s", math.inf), ("train", "lr", math.nan),
    ("split", "val", -math.inf), ("features", "top_db", math.inf),
])
def test_nan_and_infinity_are_refused(section, key, value):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())[section]
    with pytest.raises(ParamsError, match=rf"{section}\.{key} must be a finite number, got (nan|inf|-inf)"):
        parse_section({**raw, key: value}, section)


def test_yaml_nan_is_refused_when_loaded(tmp_path):
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("clip_seconds: 4.0", "clip_seconds: .nan")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"clip\.clip_seconds must be a finite number"):
        load_section(tmp_path / "params.yaml", "clip")


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "loss", "hinge", r"train\.loss must be 'ce', 'triplet' or 'ce\+triplet', got 'hinge'"),
    ("render", "channels", 3, r"render\.channels must be 1 or 2, got 3"),
    ("split", "group", "album", r"split\.group must be 'track', 'folder' or 'parent', got 'album'"),
    ("split", "order", "random", r"split\.order must be 'shuffle' or 'stable', got 'random'"),
    ("render", "program", 128, r"render\.program must be <= 127, got 128"),
    ("render", "interpolation", "cubic", r"render\.interpolation must be 'none', 'linear', '4th' or '7th', got 'cubic'"),
    ("train", "channels", [8, 2.5], r"train\.channels\[1\] must be an integer, got 2\.5"),
    ("train", "channels", [], r"train\.channels must not be empty"),
    ("clip", "sample_rate", "16k", r"clip\.sample_rate must be an integer, got '16k'"),
    ("features", "kind", "stft", r"features\.kind must be 'logmel', 'mfcc', 'cqt' or 'chroma', got 'stft'"),
    ("dataset", "timeout_s", 0, r"dataset\.timeout_s must be > 0, got 0"),
    ("dataset", "program", -1, r"dataset\.program must be >= 0, got -1"),
    ("dataset", "program", "piano", r"dataset\.program must be an integer, got 'piano'"),
    # A Literal compares by ==: true and 1.0 would otherwise pass as 1.
    ("render", "channels", True, r"render\.channels must be 1 or 2, got True"),
    ("render", "channels", 1.0, r"render\.channels must be 1 or 2, got 1\.0"),
    ("clip", "sample_rate", 2_000_000, r"clip\.sample_rate must be <= 192000, got 2000000"),
    ("clip", "clip_seconds", 1e-5, r"clip\.clip_seconds must be >= 0\.1, got 1e-05"),
    ("clip", "hop_seconds", 1e-6, r"clip\.hop_seconds must be at least clip\.clip_seconds / 8 \(4 / 8 = 0\.5: each "
                                  r"moment in at most 8 clips\), got 1e-06: raise it, or lower clip\.clip_seconds"),
    ("features", "n_mels", 600, r"features\.n_mels must be at most the 513 frequency bins of features\.n_fft 1024 "
                                r"\(more mel bands than bins leaves bands empty\), got 600"),
    ("train", "seed", -1, r"train\.seed must be >= 0, got -1"),
    ("train", "seed", 2**70, r"train\.seed must be <= 4294967295, got 1180591620717411303424"),
    ("dataset", "labels", {"bach": ""}, r"dataset\.labels\['bach'\] must be a label as the pipeline writes one: "
                                        r"letters, digits and \.-_, neither starting nor ending with \. or _, at most "
                                        r"200 bytes, got ''"),
    ("dataset", "labels", {"b": "bach_"}, r"dataset\.labels\['b'\] must be a label .* \(e\.g\. 'bach'\), got 'bach_'"),
    ("dataset", "labels", {"Bach, J.S.": "J.S. Bach"}, r"dataset\.labels\['Bach, J\.S\.'\] must be a label .* "
                                                       r"\(e\.g\. 'J\.S\._Bach'\), got 'J\.S\. Bach'"),
    ("dataset", "labels", {"x": "../x"}, r"dataset\.labels\['x'\] must be a label"),
    ("dataset", "labels", {"x": "_"}, r"dataset\.labels\['x'\] must be a label .*, got '_'"),
    ("dataset", "labels", {"v1.0": "manifest.json"}, r"dataset\.labels\['v1\.0'\] is a name the pipeline keeps for "
                                                      r"its own files in data/raw and data/audio \(_unlabeled, "
                                                      r"manifest\.json, report\.json\), got 'manifest\.json'"),
    ("features", "fmin", 8000.0, r"features\.fmax must be greater than features\.fmin \(8000 Hz\), got 8000"),
    ("split", "test", 0, r"split\.test must be > 0 when split\.folds is 0: evaluate scores the test tracks"),
    ("train", "batch_size", 2, None),  # with the project's loss ce: fine
    ("clip", "target_db", -60.0, r"clip\.target_db must be above clip\.min_rms's level \(-60 dBFS\) with "
                                 r"clip\.normalize track .*, got -60"),
])
def test_choices_bounds_and_item_types_are_named(section, key, value, message):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())[section]
    if message is None:
        assert getattr(parse_section({**raw, key: value}, section), key) == value
        return
    with pytest.raises(ParamsError, match=message):
        parse_section({**raw, key: value}, section)


def project_params() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("section, changes, message", [
    # A triplet needs an anchor, a clip of its class and one of another in the batch.
    ("train", {"loss": "triplet", "batch_size": 2}, r"train\.batch_size must be at least 3 with train\.loss "
                                                    r"triplet .*, got 2"),
    ("train", {"loss": "ce+triplet", "batch_size": 1}, r"train\.batch_size must be at least 3"),
    # n_mfcc is read by kind mfcc only: fewer mel bands than it is fine for logmel.
    ("features", {"kind": "mfcc", "n_mels": 16}, r"features\.n_mfcc must be <= features\.n_mels \(16\) for "
                                                 r"features\.kind mfcc, got 20"),
    ("features", {"kind": "logmel", "n_mels": 16}, None),
    # A hop longer than the window skips samples; the constant-Q kinds have no such window.
    ("features", {"kind": "logmel", "hop_length": 2048}, r"features\.hop_length must be at most features\.n_fft "
                                                          r"\(1024\) for features\.kind logmel .*, got 2048"),
    ("features", {"kind": "cqt", "hop_length": 2048, "fmin": 32.7}, None),
    # Levels of the silence test and of the track's scaling only clash when the whole track is scaled.
    ("clip", {"target_db": -70.0, "normalize": "peak"}, None),
    ("clip", {"target_db": -70.0, "min_rms": 0.0}, None),
    ("clip", {"target_db": -40.0, "min_rms": 0.01}, r"clip\.target_db must be above clip\.min_rms's level \(-40 "
                                                    r"dBFS\)"),
])
def test_checks_between_keys_of_a_section(section, changes, message):
    raw = {**project_params()[section], **changes}
    if message is None:
        parse_section(raw, section)
    else:
        with pytest.raises(ParamsError, match=message):
            parse_section(raw, section)


def test_numbers_are_read_as_dvc_reads_them(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as a string, DVC (YAML 1.2) as 0.001: the stage must use what DVC shows."""
    text = (PROJECT_ROOT / "params.yaml").read_text()
    text = text.replace("  lr: 0.003 ", "  lr: 3e-3 ").replace("  weight_decay: 0.0001", "  weight_decay: 1E-4")
    text = text.replace("  min_rms: 0.001 ", "  min_rms: +1.0e-3 ")
    assert "3e-3" in text and "1E-4" in text and "+1.0e-3" in text
    (tmp_path / "params.yaml").write_text(text)
    train = load_section(tmp_path / "params.yaml", "train")
    assert (train.lr, train.weight_decay, train.epochs) == (0.003, 0.0001, 12) and isinstance(train.epochs, int)
    assert load_section(tmp_path / "params.yaml", "clip").min_rms == 0.001
    # An int key written in this notation is a number, and not an integer: named as such.
    (tmp_path / "params.yaml").write_text(text.replace("  epochs: 12 ", "  epochs: 1e1 "))
    with pytest.raises(ParamsError, match=r"train\.epochs must be an integer, got 10\.0"):
        load_section(tmp_path / "params.yaml", "train")
    # Strings that only look like numbers stay strings.
    (tmp_path / "params.yaml").write_text(text.replace("  loss: ce ", "  loss: 1e "))
    with pytest.raises(ParamsError, match=r"train\.loss must be .*, got '1e'"):
        load_section(tmp_path / "params.yaml", "train")


def test_a_bad_value_in_any_section_stops_every_stage(tmp_path):
    """The first stage to run stops, not the one that reads the key after the others have worked."""
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("  lr: 0.003 ", "  lr: fast ")
    (tmp_path / "params.yaml").write_text(text)
    for section in ("dataset", "render", "clip", "features", "evaluate"):
        with pytest.raises(ParamsError, match=r"train\.lr must be a number, got 'fast'"):
            load_section(tmp_path / "params.yaml", section)
    # The stage's own section is named first.
    (tmp_path / "params.yaml").write_text(text.replace("  n_mels: 64", "  n_mels: -1"))
    with pytest.raises(ParamsError, match=r"features\.n_mels must be > 0"):
        load_section(tmp_path / "params.yaml", "features")


def test_a_mask_wider_than_the_features_stops_every_stage(tmp_path):
    """The params alone give a clip's bands and frames: a SpecAugment mask wider than them stops download, not
    train after featurize has worked."""
    import yaml

    from musicid.features import n_frames

    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    bands = values["features"]["n_mels"]
    frames = n_frames(int(round(values["clip"]["clip_seconds"] * values["clip"]["sample_rate"])),
                      values["features"]["hop_length"])

    def refusal(**train) -> str:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**values, "train": {**values["train"], **train}}))
        with pytest.raises(ParamsError) as refused:
            load_section(tmp_path / "params.yaml", "dataset")
        return str(refused.value)

    assert refusal(freq_mask=bands + 1).endswith(
        f"train.freq_mask must be at most the {bands} bands of the features (features.kind logmel), got {bands + 1}")
    assert refusal(time_mask=frames + 1).endswith(
        f"train.time_mask must be at most the {frames} frames of a clip (clip.clip_seconds 4 at clip.sample_rate "
        f"16000 Hz, features.hop_length 512), got {frames + 1}")
    for train in ({"freq_mask": bands}, {"time_mask": frames},  # as wide as the features: allowed
                  {"freq_mask": bands + 1, "time_mask": frames + 1, "masks": 0}):  # and any width with masking off
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**values, "train": {**values["train"], **train}}))
        assert load_section(tmp_path / "params.yaml", "dataset")
    values["features"].update({"kind": "chroma"})  # 12 rows whatever n_mels says
    assert "at most the 12 bands of the features (features.kind chroma), got 13" in refusal(freq_mask=13)


@pytest.mark.parametrize("name, refused", [
    ("trian", "train"), ("splits", "split"), ("Clip", "clip"), ("feature", "features"), ("evaluation", "evaluate"),
    ("training", "train"), ("renders", "render"),
    ("defaults", None), ("anchors", None), ("common", None), ("plots", None),
    # Anchor sections named after the section they serve.
    ("train_base", None), ("x-train", None), ("_train", None), ("clip_base", None), ("dataset_defaults", None),
])
def test_a_misspelt_section_is_refused(tmp_path, name, refused):
    text = (PROJECT_ROOT / "params.yaml").read_text() + f"{name}:\n  lr: 0.1\n"
    (tmp_path / "params.yaml").write_text(text)
    if refused is None:  # a section of the user's own (YAML anchors, say): read by no stage, and left alone
        assert load_section(tmp_path / "params.yaml", "train").lr == 0.003
        return
    with pytest.raises(ParamsError, match=rf"unknown section '{name}': is it '{refused}'\? \(the sections: dataset, "
                                          r"render, split, clip, features, train, evaluate\)"):
        load_section(tmp_path / "params.yaml", "clip")


@pytest.mark.parametrize("text, words", [
    ("- clip\n- train\n", "got list"), ("", "got an empty file"), ("3\n", "got int")])
def test_a_params_file_that_is_not_a_mapping_is_named(tmp_path, text, words):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=rf"must be a mapping of sections \(dataset, .*\), {words}"):
        load_section(tmp_path / "params.yaml", "clip")


def test_anchors_and_merge_keys_still_load(tmp_path):
    """The duplicate check must not refuse YAML that DVC reads: an anchor merged into a section."""
    document = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    clip = document.pop("clip")
    text = yaml.safe_dump({"defaults": clip}).replace("defaults:", "defaults: &clip", 1)
    text += "clip:\n  <<: *clip\n  hop_seconds: 2.0\n" + yaml.safe_dump(document)
    (tmp_path / "params.yaml").write_text(text)
    loaded = load_section(tmp_path / "params.yaml", "clip")
    assert loaded.hop_seconds == 2.0 and loaded.clip_seconds == clip["clip_seconds"]
    # A merge of a mapping that is itself merged: PyYAML flattens it in place before building the outer one.
    nested = yaml.safe_dump({"defaults": clip}).replace("defaults:", "defaults: &d", 1)
    nested += "group:\n  inner: &c\n    <<: *d\n    hop_seconds: 2.0\nclip:\n  <<: *c\n" + yaml.safe_dump(document)
    (tmp_path / "params.yaml").write_text(nested)
    assert load_section(tmp_path / "params.yaml", "clip").hop_seconds == 2.0


def test_a_key_written_twice_is_refused(tmp_path):
    """Plain YAML keeps the last of two: an edit above it would silently do nothing."""
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("  epochs: 12", "  epochs: 1\n  epochs: 12", 1)
    (tmp_path / "params.yaml").write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("  epochs: 12"))
    with pytest.raises(ParamsError, match=rf"not valid YAML: the key 'epochs' is written twice \(line {line}, "
                                          rf"column 3\)"):
        load_section(tmp_path / "params.yaml", "train")


def test_every_section_refuses_unknown_keys_and_speed_knobs_are_not_params():
    document = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for section in SECTIONS:
        with pytest.raises(ParamsError, match=rf"unknown key {section}\.bogus"):
            parse_section({**document[section], "bogus": 1}, section)
    # Worker counts change how fast a stage runs, not what it writes: a --jobs argument, not a param.
    assert "jobs" not in document["render"]


def test_sections_are_immutable():
    params = load_section(PROJECT_ROOT / "params.yaml", "train")
    with pytest.raises(Exception):
        params.epochs = 3
