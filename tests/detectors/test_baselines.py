"""Tests for janus/baselines: every detector separates an obvious shift, is deterministic per
seed, and saves/loads to identical scores; KitNET's feature map; the CLI reads no labels."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus import contract
from janus import detectors as baselines
from janus.detectors.base import FeatureScaler
from janus.detectors.kitnet import feature_groups
from janus.evaluation import metrics
from janus.io import write_npz, write_parquet

# Small, fast settings: the point is behaviour, not final quality.
FAST = {
    "nf": {"epochs": 6, "hidden": 32, "transforms": 2},
    "kitnet": {"epochs": 8},
    "flowcfm": {"epochs": 8, "hidden": 64},
    "ae": {"epochs": 8},
    "memae": {"epochs": 8},
    "iforest": {"n_estimators": 50},
    "lof": {},
    "ocsvm": {},
}


def _benign(n: int, seed: int) -> np.ndarray:
    """Flow-feature-like data (N, 20): positive, heavy-tailed, correlated via 3 latents."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(size=(3, 20))
    x = np.exp(rng.normal(size=(n, 3)) @ mix * 0.4 + rng.normal(size=(n, 20)) * 0.2 + 2.0)
    x[:, contract.FLOW_FEATURES.index("fwd_ratio")] = rng.uniform(0.4, 0.6, n)
    return x


def _shifted(n: int, seed: int) -> np.ndarray:
    x = _benign(n, seed)
    x[:, :10] *= 30.0  # a large multiplicative shift of half the features
    return x


@pytest.fixture(scope="module")
def data():
    return _benign(600, 0), _benign(200, 1), _benign(200, 2), _shifted(200, 3)


@pytest.mark.parametrize("name", sorted(FAST))
def test_detector_fits_scores_is_deterministic_and_round_trips(name, data, tmp_path):
    train, val, test_benign, test_attack = data
    x = np.concatenate([test_benign, test_attack])
    y = np.r_[np.zeros(len(test_benign)), np.ones(len(test_attack))].astype(int)

    det = baselines.make_detector(name, seed=3, **FAST[name]).fit(train, val)
    s = det.score(x)
    assert s.shape == (len(x),) and s.dtype == np.float64 and np.isfinite(s).all()
    assert metrics.auroc(y, s) > 0.9

    again = baselines.make_detector(name, seed=3, **FAST[name]).fit(train, val).score(x)
    np.testing.assert_array_equal(s, again)

    det.save(tmp_path / name)
    loaded = baselines.Detector.load(tmp_path / name)
    assert type(loaded) is type(det) and loaded.params == det.params
    np.testing.assert_array_equal(loaded.score(x), s)
    assert det.score(x[:0]).shape == (0,)


@pytest.mark.parametrize("name", ["nf", "iforest"])
def test_seed_changes_the_model(name, data):
    train, val, test_benign, _ = data
    a = baselines.make_detector(name, seed=0, **FAST[name]).fit(train, val).score(test_benign)
    b = baselines.make_detector(name, seed=1, **FAST[name]).fit(train, val).score(test_benign)
    assert not np.array_equal(a, b)


def test_feature_scaler_standardises_train_and_keeps_fwd_ratio_linear():
    x = _benign(500, 0)
    sc = FeatureScaler().fit(x)
    z = sc.transform(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)
    j = contract.FLOW_FEATURES.index("fwd_ratio")
    np.testing.assert_allclose(z[:, j], (x[:, j] - x[:, j].mean()) / x[:, j].std(), atol=1e-5)
    d = contract.FLOW_FEATURES.index("duration")  # times: log1p(x / 1 us)
    expected = np.log1p(x[:, d] / 1e-6)
    np.testing.assert_allclose(z[:, d], (expected - expected.mean()) / expected.std(), atol=1e-4)
    # A constant training column is divided by 1, so a shift shows up as its raw size.
    x[:, 16] = 0.0
    sc = FeatureScaler().fit(x)
    assert sc.std[16] == 1.0
    assert sc.transform(np.where(np.arange(20) == 16, np.e - 1, x[:1]))[0, 16] == \
        pytest.approx(1.0)
    # Round trip through JSON.
    back = FeatureScaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(back.transform(x), sc.transform(x))


def test_feature_scaler_matches_the_janus_flow_token_transform():
    from janus.model.data import FLOW_SCALE, log1p_scaled

    x = _benign(300, 4)
    sc = FeatureScaler().fit(x)
    f = log1p_scaled(x, FLOW_SCALE)
    np.testing.assert_allclose(sc.transform(x), (f - f.mean(0)) / f.std(0), atol=1e-5)


def test_kitnet_feature_map_recovers_correlated_blocks():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 3))
    blocks = [list(range(7)), list(range(7, 14)), list(range(14, 20))]
    z = np.empty((2000, 20))
    for b, cols in enumerate(blocks):
        z[:, cols] = latent[:, [b]] + 0.1 * rng.normal(size=(2000, len(cols)))
    assert feature_groups(z, max_size=10) == blocks
    groups = feature_groups(z, max_size=4)
    assert all(len(g) <= 4 for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(20))
    # Groups never straddle blocks: splitting happens inside the block subtrees first.
    assert all(any(set(g) <= set(b) for b in blocks) for g in groups)
    assert feature_groups(z, max_size=20) == [list(range(20))]


def test_kitnet_scores_stay_finite_when_a_training_constant_feature_moves(data):
    # A feature constant on the training flows (here rst_count = 0) used to get a min-max
    # span of 1e-16, so any other value overflowed float32 to an infinite score.
    train, val, _, attack = data
    col = contract.FLOW_FEATURES.index("rst_count")
    train, val, attack = train.copy(), val.copy(), attack.copy()
    train[:, col] = 0.0
    val[:, col] = 0.0
    attack[:, col] = 50.0
    det = baselines.make_detector("kitnet", seed=0, **FAST["kitnet"]).fit(train, val)
    s_val, s_attack = det.score(val), det.score(attack)
    assert np.isfinite(s_attack).all()
    assert np.median(s_attack) > np.median(s_val)


def test_unknown_hyper_parameter_is_a_config_error():
    from janus.errors import JanusError

    with pytest.raises(JanusError, match="no hyper-parameters"):
        baselines.make_detector("iforest", trees=10)
    with pytest.raises(JanusError, match="unknown detector"):
        baselines.make_detector("svm")


def test_cli_train_and_score_without_any_labels_file(tmp_path):
    n = 700
    x = np.concatenate([_benign(600, 0), _shifted(100, 5)])
    data = tmp_path / "ds"
    write_parquet(data / contract.FEATURES_FILE, pa.table(
        {"flow_id": np.arange(n, dtype=np.int64),
         **{c: x[:, j] for j, c in enumerate(contract.FLOW_FEATURES)}}))
    assert not (data / contract.LABELS_FILE).exists()  # training must not need labels
    ids = np.arange(n, dtype=np.int64)
    write_npz(tmp_path / "splits.npz", train=ids[:400], val=ids[400:500], test=ids[500:],
              meta=np.array("{}"))
    model = tmp_path / "model"
    assert baselines.main(["train", "--detector", "iforest", "--data", str(data),
                           "--splits", str(tmp_path / "splits.npz"), "--seed", "1",
                           "--out", str(model), "--param", "n_estimators=30"]) == 0
    meta = json.loads((model / "detector.json").read_text())
    assert meta["detector"] == "iforest" and meta["params"]["n_estimators"] == 30
    assert meta["history"]["n_train"] == 400
    out = tmp_path / "scores.parquet"
    assert baselines.main(["score", "--model", str(model), "--data", str(data),
                           "--out", str(out), "--splits", str(tmp_path / "splits.npz")]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["flow_id", "score"]
    np.testing.assert_array_equal(table.column("flow_id").to_numpy(), ids[400:])
    s = table.column("score").to_numpy()
    assert metrics.auroc(np.r_[np.zeros(100), np.ones(100)].astype(int), s[100:]) > 0.9
    # Without --splits every flow is scored.
    assert baselines.main(["score", "--model", str(model), "--data", str(data),
                           "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == n


def test_cli_errors_name_the_file(tmp_path, capsys):
    rc = baselines.main(["score", "--model", str(tmp_path / "none"), "--data", str(tmp_path),
                         "--out", str(tmp_path / "s.parquet")])
    assert rc == 2
    assert "flow_features.parquet: not found" in capsys.readouterr().err


def test_cli_run_fits_once_and_scores_every_target(tmp_path):
    """'run' = 'train' + 'score' per target in one process, with the same files."""
    sizes = {"a": (500, 60), "b": (300, 80)}
    splits = {}
    for k, (name, (n_benign, n_shift)) in enumerate(sizes.items()):
        x = np.concatenate([_benign(n_benign, 10 + k), _shifted(n_shift, 20 + k)])
        write_parquet(tmp_path / name / contract.FEATURES_FILE, pa.table(
            {"flow_id": np.arange(len(x), dtype=np.int64),
             **{c: x[:, j] for j, c in enumerate(contract.FLOW_FEATURES)}}))
        ids = np.arange(len(x), dtype=np.int64)
        splits[name] = tmp_path / f"{name}.npz"
        write_npz(splits[name], train=ids[:n_benign - 100], val=ids[n_benign - 100:n_benign - 50],
                  test=ids[n_benign - 50:], meta=np.array("{}"))
    common = ["--detector", "kitnet", "--data", str(tmp_path / "a"), "--splits",
              str(splits["a"]), "--seed", "3", "--epochs", "2", "--param", "max_group=5"]
    outs = [tmp_path / "run_a.parquet", tmp_path / "run_b.parquet"]
    assert baselines.main(["run", *common, "--out", str(tmp_path / "m_run"),
                           "--score-data", str(tmp_path / "a"), str(tmp_path / "b"),
                           "--score-splits", str(splits["a"]), str(splits["b"]),
                           "--score-out", *map(str, outs)]) == 0
    meta = json.loads((tmp_path / "m_run" / "detector.json").read_text())
    assert meta["params"]["epochs"] == 2 and meta["params"]["max_group"] == 5
    assert baselines.main(["train", *common, "--out", str(tmp_path / "m_train")]) == 0
    for name, out in zip(("a", "b"), outs):
        single = tmp_path / f"single_{name}.parquet"
        assert baselines.main(["score", "--model", str(tmp_path / "m_train"), "--data",
                               str(tmp_path / name), "--splits", str(splits[name]),
                               "--out", str(single)]) == 0
        assert pq.read_table(out).equals(pq.read_table(single))
    # 'score' takes aligned lists too.
    both = [tmp_path / "both_a.parquet", tmp_path / "both_b.parquet"]
    assert baselines.main(["score", "--model", str(tmp_path / "m_train"), "--data",
                           str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                           *map(str, both)]) == 0
    assert pq.read_table(both[1]).num_rows == 380


def test_cli_run_rejects_misaligned_targets(tmp_path, capsys):
    x = _benign(300, 0)
    write_parquet(tmp_path / "a" / contract.FEATURES_FILE, pa.table(
        {"flow_id": np.arange(300, dtype=np.int64),
         **{c: x[:, j] for j, c in enumerate(contract.FLOW_FEATURES)}}))
    ids = np.arange(300, dtype=np.int64)
    write_npz(tmp_path / "s.npz", train=ids[:200], val=ids[200:250], test=ids[250:],
              meta=np.array("{}"))
    rc = baselines.main(["run", "--detector", "iforest", "--data", str(tmp_path / "a"),
                         "--splits", str(tmp_path / "s.npz"), "--out", str(tmp_path / "m"),
                         "--score-data", str(tmp_path / "a"), str(tmp_path / "a"),
                         "--score-out", str(tmp_path / "o.parquet")])
    assert rc == 2
    assert "--score-out has 1 values for 2 --score-data" in capsys.readouterr().err


# --------------------------------------------------------------------------- no pickle on load
#: Set by Payload.__reduce__'s callable if anything ever unpickles it.
RAN: list[str] = []


def _mark(tag: str) -> None:
    RAN.append(tag)


class Payload:
    """An object whose unpickling calls :func:`_mark`: code riding in a model file."""

    def __reduce__(self):
        return (_mark, ("code ran",))


def _load_error(folder) -> str:
    from janus.errors import JanusError

    with pytest.raises(JanusError) as info:
        baselines.Detector.load(folder)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("name", ["iforest", "lof", "ocsvm"])
def test_sklearn_folder_holds_no_pickle_and_refits_identically(name, data, tmp_path):
    train, val, test_benign, test_attack = data
    x = np.concatenate([test_benign, test_attack])
    det = baselines.make_detector(name, seed=5, **FAST[name]).fit(train, val)
    det.save(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["detector.json",
                                                                  "fit_data.npz"]
    with np.load(tmp_path / name / "fit_data.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["z"], det.scaler.transform(train))  # the fitted rows
        np.testing.assert_array_equal(f["check"], det.score(train[:64]))
    loaded = baselines.Detector.load(tmp_path / name)
    np.testing.assert_array_equal(loaded.score(x), det.score(x))


def test_ocsvm_refit_uses_the_saved_subsample(data, tmp_path):
    """max_train's seeded subsample is what is saved, so the refit sees the same rows."""
    train, val, test_benign, _ = data
    det = baselines.make_detector("ocsvm", seed=2, max_train=150).fit(train, val)
    det.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "fit_data.npz", allow_pickle=False) as f:
        assert f["z"].shape == (150, 20)
    np.testing.assert_array_equal(baselines.Detector.load(tmp_path / "m").score(test_benign),
                                  det.score(test_benign))


def test_a_changed_refit_is_reported(data, tmp_path, caplog):
    train, val, _, _ = data
    det = baselines.make_detector("iforest", seed=1, n_estimators=20).fit(train, val)
    det.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "fit_data.npz", allow_pickle=False) as f:
        z, check = f["z"], f["check"]
    write_npz(tmp_path / "m" / "fit_data.npz", z=z, check=check + 1e-9)
    with caplog.at_level("WARNING"):
        baselines.Detector.load(tmp_path / "m")
    assert "does not reproduce the scores saved with it" in caplog.text


@pytest.mark.parametrize("name", ["iforest", "nf"])
def test_a_joblib_pickle_in_a_model_folder_is_refused_unloaded(name, data, tmp_path, capsys):
    import joblib

    train, val, test_benign, _ = data
    folder = tmp_path / name
    baselines.make_detector(name, seed=0, **FAST[name]).fit(train, val).save(folder)
    joblib.dump(Payload(), folder / "model.joblib")
    RAN.clear()
    msg = _load_error(folder)
    assert "model.joblib: refused" in msg and "can run code" in msg and "retrain" in msg
    write_parquet(tmp_path / "ds" / contract.FEATURES_FILE, pa.table(
        {"flow_id": np.arange(len(test_benign), dtype=np.int64),
         **{c: test_benign[:, j] for j, c in enumerate(contract.FLOW_FEATURES)}}))
    rc = baselines.main(["score", "--model", str(folder), "--data", str(tmp_path / "ds"),
                         "--out", str(tmp_path / "s.parquet")])
    assert rc == 2 and "model.joblib: refused" in capsys.readouterr().err
    assert RAN == [] and not (tmp_path / "s.parquet").exists()
    # Retraining into the folder replaces the old pickle.
    baselines.make_detector(name, seed=0, **FAST[name]).fit(train, val).save(folder)
    assert not (folder / "model.joblib").exists()
    baselines.Detector.load(folder)


@pytest.mark.parametrize("name,state", [("iforest", "fit_data.npz"), ("kitnet", "state.npz")])
def test_object_arrays_in_state_files_are_not_unpickled(name, state, data, tmp_path):
    train, val, _, _ = data
    folder = tmp_path / name
    baselines.make_detector(name, seed=0, **FAST[name]).fit(train, val).save(folder)
    np.savez(folder / state, z=np.array([Payload()], dtype=object),
             check=np.array([Payload()], dtype=object))  # np.savez pickles object arrays
    RAN.clear()
    assert "Object arrays cannot be loaded when allow_pickle=False" in _load_error(folder)
    assert RAN == []


@pytest.mark.parametrize("damage,expected", [
    (lambda f: (f / "fit_data.npz").unlink(), "fit_data.npz: not found"),
    (lambda f: (f / "fit_data.npz").write_bytes(b"PK\x03\x04 truncated"), "cannot read"),
    (lambda f: write_npz(f / "fit_data.npz", z=np.zeros((5, 3), np.float32),
                         check=np.zeros(5)), "expected float32"),
    (lambda f: write_npz(f / "fit_data.npz", z=np.full((5, 20), np.nan, np.float32),
                         check=np.zeros(5)), "non-finite"),
    (lambda f: (f / "detector.json").write_text("[1, 2]"), "not a detector description"),
    (lambda f: (f / "detector.json").write_text('{"detector": "iforest"}'),
     "not a detector description"),
    (lambda f: (f / "detector.json").write_bytes(b"\xff\xfe{"), "not a detector description"),
])
def test_damaged_sklearn_folders_are_one_line_errors(damage, expected, data, tmp_path):
    train, val, _, _ = data
    folder = tmp_path / "m"
    baselines.make_detector("iforest", seed=0, n_estimators=10).fit(train, val).save(folder)
    damage(folder)
    assert expected in _load_error(folder)


def test_damaged_torch_state_and_params_are_one_line_errors(data, tmp_path):
    train, val, _, _ = data
    folder = tmp_path / "m"
    baselines.make_detector("kitnet", seed=0, **FAST["kitnet"]).fit(train, val).save(folder)
    good = json.loads((folder / "detector.json").read_text())
    meta = json.loads((folder / "detector.json").read_text())
    meta["params"]["groups"] = "not groups"
    (folder / "detector.json").write_text(json.dumps(meta))
    assert "cannot build kitnet from its params" in _load_error(folder)
    (folder / "detector.json").write_text(json.dumps(good))
    (folder / "state.npz").write_bytes((folder / "state.npz").read_bytes()[:100])
    assert "state.npz: cannot read the model state" in _load_error(folder)
    good["scaler"]["mean"] = [0.0] * 3
    (folder / "detector.json").write_text(json.dumps(good))
    assert "bad feature statistics" in _load_error(folder)


def test_kitnet_groups_and_gather_indices_are_checked_on_load(data, tmp_path):
    """Crafted groups or idx buffers would index outside the 20 features at scoring time."""
    train, val, _, _ = data
    folder = tmp_path / "m"
    det = baselines.make_detector("kitnet", seed=0, **FAST["kitnet"]).fit(train, val)
    det.save(folder)
    meta = json.loads((folder / "detector.json").read_text())
    groups = meta["params"]["groups"]
    bad = json.loads(json.dumps(meta))
    bad["params"]["groups"] = [[*groups[0][:-1], 25], *groups[1:]]
    (folder / "detector.json").write_text(json.dumps(bad))
    assert "are not a partition of the 20 features" in _load_error(folder)
    (folder / "detector.json").write_text(json.dumps(meta))
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    state["idx0"] = state["idx0"][::-1].copy()
    write_npz(folder / "state.npz", **state)
    assert "idx0 differs from group 0" in _load_error(folder)
