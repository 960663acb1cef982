"""Tests for the packet-sequence detectors (unified_cfm, packet_cfm, anomaly_transformer):
each separates packet-level anomalies, is deterministic per seed, round-trips through its
model folder, ignores padding; and each fails when its defining part is removed (the
consistency loss, the sigma of the band, the association discrepancy)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from flowdata import benign_packets, flow_features, mixed_dataset, shuffle_channels

from janus import detectors as baselines
from janus.contract import PACKETS_FILE
from janus.detectors import FlowData
from janus.detectors.packet_cfm import band_excess
from janus.errors import JanusError
from janus.evaluation import metrics
from janus.io import write_npz

T = 12
#: Tiny models, few epochs: behaviour, not final quality.
FAST = {
    "unified_cfm": {"epochs": 6, "d_model": 16, "n_layers": 1},
    "packet_cfm": {"epochs": 6, "d_model": 16, "n_layers": 1},
    "anomaly_transformer": {"epochs": 6, "d_model": 16, "n_layers": 1, "d_ff": 32},
}
PACKET_DETECTORS = sorted(FAST)


def _flows(packets: np.ndarray, lengths: np.ndarray) -> FlowData:
    return FlowData(flow_features(packets, lengths), packets, lengths)


def _concat(*parts: FlowData) -> FlowData:
    return FlowData(np.concatenate([p.features for p in parts]),
                    np.concatenate([p.packets for p in parts]),
                    np.concatenate([p.lengths for p in parts]))


@pytest.fixture(scope="module")
def data():
    """``(train, val, test, y)``: benign flows of many lengths; the test half attacks whose
    packets are channel-shuffled (each channel's values kept, their order destroyed)."""
    rng = np.random.default_rng(0)
    p, n = benign_packets(900, T, rng)
    attack_p, attack_n = benign_packets(150, T, rng)
    attack = _flows(shuffle_channels(attack_p, attack_n, rng), attack_n)
    test = _concat(_flows(p[750:], n[750:]), attack)
    y = np.r_[np.zeros(150), np.ones(150)].astype(int)
    return _flows(p[:600], n[:600]), _flows(p[600:750], n[600:750]), test, y


@pytest.fixture(scope="module")
def fitted(data):
    train, val, _, _ = data
    return {name: baselines.make_detector(name, seed=3, **FAST[name]).fit(train, val)
            for name in PACKET_DETECTORS}


@pytest.mark.parametrize("name", PACKET_DETECTORS)
def test_detector_separates_reruns_identically_and_round_trips(name, data, fitted, tmp_path):
    train, val, test, y = data
    det = fitted[name]
    s = det.score(test)
    assert s.shape == (len(test),) and s.dtype == np.float64 and np.isfinite(s).all()
    assert metrics.auroc(y, s) > 0.9
    again = baselines.make_detector(name, seed=3, **FAST[name]).fit(train, val).score(test)
    np.testing.assert_array_equal(s, again)
    one_epoch = dict(FAST[name], epochs=1)
    head = test.take(np.arange(50))
    seeds = [baselines.make_detector(name, seed=k, **one_epoch).fit(train, val).score(head)
             for k in (3, 4)]
    assert not np.array_equal(*seeds)

    det.save(tmp_path / name)
    meta = json.loads((tmp_path / name / "detector.json").read_text())
    assert meta["packet_scaler"]["max_packets"] == 64 and len(meta["packet_scaler"]["std"]) == 3
    loaded = baselines.Detector.load(tmp_path / name)
    assert type(loaded) is type(det) and loaded.params == det.params
    np.testing.assert_array_equal(loaded.score(test), s)
    assert det.score(test.take(np.arange(0))).shape == (0,)


@pytest.mark.parametrize("name", PACKET_DETECTORS)
def test_padding_and_batch_neighbours_change_no_score(name, data, fitted):
    """A flow scores the same alone (padded to its own length), among longer flows, and in
    a tensor with extra all-zero packet rows: padding never reaches a valid packet."""
    _, _, test, _ = data
    det = fitted[name]
    full = det.score(test)
    rows = np.flatnonzero(test.lengths < T)[:6]
    alone = np.array([det.score(test.take(np.array([i])))[0] for i in rows])
    np.testing.assert_allclose(alone, full[rows], rtol=2e-5, atol=1e-6)
    wider = np.zeros((len(test), T + 5, test.packets.shape[2]), np.float32)
    wider[:, :T] = test.packets
    padded = det.score(FlowData(test.features, wider, test.lengths))
    np.testing.assert_allclose(padded, full, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", PACKET_DETECTORS)
def test_features_without_packets_are_refused(name, data, fitted):
    with pytest.raises(JanusError, match="reads the packets"):
        fitted[name].score(data[2].features)


def test_packet_scaler_uses_valid_packets_only_and_cuts_to_max_packets():
    from janus.detectors.base import PacketScaler

    packets = np.zeros((2, 4, 9), np.float32)
    packets[0, :3, 0] = [99.0, 999.0, 9999.0]  # sizes; the 4th row is padding
    packets[1, :1, 0] = [99.0]
    packets[:, :, 8] = 7.0  # a window value on padding too: it must not count
    packets[0, 1, 3] = 1.0  # SYN of a valid packet
    scaler = PacketScaler(max_packets=2).fit(packets, np.array([3, 1]))
    logs = np.log1p(np.array([99.0, 999.0, 99.0]))  # packets 1-2 of flow 0, packet 1 of flow 1
    assert scaler.mean[0] == pytest.approx(logs.mean())
    assert scaler.std[0] == pytest.approx(logs.std())
    cont, flags, lengths = scaler.transform(packets, np.array([3, 1]))
    assert cont.shape == (2, 2, 3) and lengths.tolist() == [2, 1]
    assert cont[1, 1].tolist() == [0.0, 0.0, 0.0] and flags[1, 1].tolist() == [0.0] * 6
    assert cont[0, 0, 0] == pytest.approx((np.log1p(99.0) - logs.mean()) / logs.std(), rel=1e-5)
    assert flags[0, 1, 1] == 1.0  # SYN is binary channel 1 (after direction)


# --------------------------------------------------------------------------- unified_cfm
@pytest.fixture(scope="module")
def mismatched():
    """Benign training flows; a test set whose attacks pair one benign flow's features with
    ANOTHER benign flow's packets: every feature vector and every packet sequence is benign
    on its own, only their agreement is broken."""
    rng = np.random.default_rng(5)
    p, n = benign_packets(1100, T, rng)
    flows = _flows(p, n)
    train, val = flows.take(np.arange(600)), flows.take(np.arange(600, 750))
    benign = flows.take(np.arange(750, 900))
    donor = np.arange(900, 1100)
    partner = np.roll(donor, 1)
    # Pairs of (nearly) equal length would nearly agree: n_packets and the rates move with it.
    keep = np.abs(n[donor] - n[partner]) >= 3
    attack = FlowData(flows.features[donor[keep]], p[partner[keep]], n[partner[keep]])
    test = _concat(benign, attack)
    y = np.r_[np.zeros(len(benign)), np.ones(len(attack))].astype(int)
    return train, val, test, y


def test_flow_consistency_needs_the_consistency_loss(mismatched):
    train, val, test, y = mismatched
    settings = {"epochs": 8, "d_model": 16, "n_layers": 1}
    with_loss = baselines.make_detector("unified_cfm", seed=0, **settings).fit(train, val)
    without = baselines.make_detector("unified_cfm", seed=0, lambda_flow=0.0,
                                      lambda_packet=0.0, **settings).fit(train, val)
    auc_with = metrics.auroc(y, with_loss.score(test))
    auc_without = metrics.auroc(y, without.score(test))
    assert auc_with > 0.85, auc_with
    assert 0.35 < auc_without < 0.65, auc_without


def test_the_hidden_flow_token_is_predicted_from_the_packets_alone(data, fitted):
    """flow_consistency compares a flow's features with a prediction that never saw them
    (the FLOW token is the MASK vector) but did see its packets (full attention)."""
    _, _, test, _ = data
    det = fitted["unified_cfm"]
    batch = det._prepare(test)[np.arange(40)]
    base = det.predicted_features(batch)
    batch.flow = batch.flow + 5.0
    np.testing.assert_array_equal(det.predicted_features(batch).detach().numpy(),
                                  base.detach().numpy())
    batch.cont = batch.cont.flip(0)
    assert (det.predicted_features(batch) - base).abs().max() > 1e-3
    s = det.score(test.take(np.arange(40)))
    expected = ((det._prepare(test)[np.arange(40)].flow - base) ** 2).mean(1)
    np.testing.assert_allclose(s, expected.detach().numpy(), rtol=1e-5)


def test_unified_terminal_norm_is_the_one_pass_terminal_point(data, fitted):
    _, _, test, _ = data
    det = fitted["unified_cfm"]
    det.params["score"] = "terminal_norm"
    try:
        s = det.score(test.take(np.arange(5)))
    finally:
        det.params["score"] = "flow_consistency"
    batch = det._prepare(test)[np.arange(5)]
    with torch.no_grad():
        h = det.module(batch.flow, batch.cont, batch.flags, batch.lengths, torch.ones(5))
        x0f = batch.flow - det.module.flow_head(h[:, 0])
        x0p = batch.cont - det.module.packet_head(h[:, 1:])
    for i in range(5):
        n = int(batch.lengths[i])
        values = torch.cat([x0f[i], x0p[i, :n].reshape(-1)])
        assert s[i] == pytest.approx(float((values ** 2).mean()), rel=1e-5)


# --------------------------------------------------------------------------- packet_cfm
def test_band_excess_closed_form():
    x0 = torch.tensor([[[0.0, 3.0], [1.0, -5.0], [9.0, 9.0]]])  # (1, 3, 2); packet 3 padding
    mask = torch.tensor([[True, True, False]])
    mean, std = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
    # |x - m| / s: (0, 1), (1, 3) -> excess over k = 1.5: (0, 0), (0, 1.5) -> 2.25 / 4 values
    assert float(band_excess(x0, mask, mean, std, 1.5)[0]) == pytest.approx(2.25 / 4)


def test_the_benign_band_changes_with_sigma(data):
    """The band is set by the path noise sigma. Measured: the same data and seed give a
    different spread of benign terminal points at sigma = 0 and 0.3 (only sigma differs, so
    without it the two runs would be identical). Analytic: centre 0, width sqrt(1 + sigma^2)."""
    train, val, _, _ = data
    bands = {}
    for sigma in (0.0, 0.3):
        det = baselines.make_detector("packet_cfm", seed=3, sigma=sigma,
                                      **FAST["packet_cfm"]).fit(train, val)
        bands[sigma] = det.module.band_std.numpy().copy()
        np.testing.assert_allclose(bands[sigma], det.history["band_std"], rtol=1e-4, atol=1e-6)
    rel = np.abs(bands[0.3] - bands[0.0]) / bands[0.0]
    assert rel.max() > 0.02, rel
    analytic = baselines.make_detector("packet_cfm", seed=3, sigma=0.3, band="analytic",
                                       **dict(FAST["packet_cfm"], epochs=1)).fit(train, val)
    np.testing.assert_allclose(analytic.module.band_std.numpy(), np.sqrt(1.09), rtol=1e-6)
    np.testing.assert_array_equal(analytic.module.band_mean.numpy(), 0.0)


def test_packet_cfm_band_and_terminal_scores_by_hand(data, fitted):
    _, val, test, _ = data
    det = fitted["packet_cfm"]
    sub = test.take(np.arange(8))
    batch = det._prepare(sub)[np.arange(8)]
    with torch.no_grad():
        x0 = det.terminal(batch)
    # The band was measured on the validation flows' terminal points.
    vb = det._prepare(val)[np.arange(len(val))]
    with torch.no_grad():
        v0 = det.terminal(vb)[vb.mask].double()
    np.testing.assert_allclose(det.module.band_mean.numpy(), v0.mean(0).numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(det.module.band_std.numpy(), v0.std(0, unbiased=False).numpy(),
                               rtol=1e-4, atol=1e-5)
    expected = band_excess(x0, batch.mask, det.module.band_mean, det.module.band_std,
                           det.params["band_k"])
    np.testing.assert_allclose(det.score(sub), expected.numpy(), rtol=1e-5, atol=1e-7)
    det.params["score"] = "terminal_norm"
    try:
        terminal = det.score(sub)
    finally:
        det.params["score"] = "band"
    n_values = batch.lengths * 9
    np.testing.assert_allclose(terminal, ((x0 ** 2).sum((1, 2)) / n_values).numpy(), rtol=1e-5)


# --------------------------------------------------------------------------- anomaly_transformer
def test_anomaly_criterion_is_softmax_of_minus_assdis_times_error(data, fitted):
    from janus.detectors.anomaly_attention import KL_EPS

    _, _, test, _ = data
    det = fitted["anomaly_transformer"]
    rows = np.arange(6)
    batch = det._prepare(test)[rows]
    with torch.no_grad():
        x = torch.cat([batch.cont, batch.flags], -1)
        recon, assoc = det.module(x, batch.mask)
    scores = det.score(test.take(rows))
    for i in range(len(rows)):
        n = int(batch.lengths[i])
        dis = np.zeros(n)
        for series, prior in assoc:
            s, p = series[i, :, :n, :n].double().numpy(), prior[i, :, :n, :n].double().numpy()
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
            kl = lambda a, b: (a * (np.log(a + KL_EPS) - np.log(b + KL_EPS))).sum(-1)
            dis += (kl(p, s) + kl(s, p)).mean(0) / len(assoc)
        err = ((recon[i, :n] - x[i, :n]) ** 2).mean(-1).double().numpy()
        w = np.exp(-50.0 * dis - (-50.0 * dis).max())
        expected = (w / w.sum() * err).sum()
        assert scores[i] == pytest.approx(expected, rel=1e-4)


def test_the_minimax_gradient_minimises_over_the_prior_and_maximises_over_the_series(
        data, fitted):
    """The one loss the optimiser steps on gives the prior's scale (sigma) +lambda/2 of the
    discrepancy's gradient and nothing of the reconstruction, and the series association's
    projection (Q, K) the reconstruction's gradient minus lambda/2 of the discrepancy's."""
    from janus.detectors.anomaly_attention import symmetric_kl

    _, val, _, _ = data
    det = fitted["anomaly_transformer"]
    lam = det.params["lambda"]
    batch = det._prepare(val)[np.arange(64)]
    m = batch.mask.float()
    params = dict(det.module.named_parameters())
    sigma, qkv = params["layers.0.attn.sigma.weight"], params["layers.0.attn.qkv.weight"]

    def grads(loss):
        return [g if g is not None else torch.zeros_like(w) for g, w in zip(
            torch.autograd.grad(loss, [sigma, qkv], allow_unused=True, retain_graph=True),
            (sigma, qkv))]

    g_sigma, g_qkv = grads(det.minimax_loss(batch))
    # The same terms rebuilt from the network's outputs: AssDis through the prior only,
    # through the series only, and the reconstruction error.
    x = torch.cat([batch.cont, batch.flags], -1)
    recon, assoc = det.module(x, batch.mask)
    prior_only = sum(symmetric_kl(s.detach(), p) for s, p in assoc) / len(assoc)
    series_only = sum(symmetric_kl(s, p.detach()) for s, p in assoc) / len(assoc)
    d_sigma, _ = grads((prior_only * m).sum() / m.sum())
    _, d_qkv = grads((series_only * m).sum() / m.sum())
    r_sigma, r_qkv = grads((((recon - x) ** 2).mean(-1) * m).sum() / m.sum())
    assert r_sigma.abs().max() == 0  # sigma shapes only the prior, which rec never sees
    assert d_sigma.abs().max() > 1e-6 and d_qkv.abs().max() > 1e-6
    torch.testing.assert_close(g_sigma, 0.5 * lam * d_sigma, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(g_qkv, r_qkv - 0.5 * lam * d_qkv, rtol=1e-4, atol=1e-7)


def test_without_the_discrepancy_the_prior_is_never_trained(data):
    """lambda = 0 leaves sigma at its initial value; lambda > 0 trains it so that the prior
    moves towards the series association (a lower AssDis than the initial prior gives)."""
    from janus.detectors.base import seed_everything

    train, val, _, _ = data
    settings = dict(FAST["anomaly_transformer"], epochs=4)
    seed_everything(1)
    init = baselines.make_detector("anomaly_transformer", seed=1, **settings).build()
    sig = "layers.0.attn.sigma.weight"
    nets = {lam: baselines.make_detector("anomaly_transformer", seed=1, **settings,
                                         **{"lambda": lam}).fit(train, val)
            for lam in (0.0, 3.0)}
    np.testing.assert_array_equal(nets[0.0].module.state_dict()[sig], init.state_dict()[sig])
    det = nets[3.0]
    assert (det.module.state_dict()[sig] - init.state_dict()[sig]).abs().max() > 1e-3
    batch = det._prepare(val)[np.arange(len(val))]
    m = batch.mask.float()

    def mean_dis():
        with torch.no_grad():
            return float((det.parts(batch)["series_dis"] * m).sum() / m.sum())

    trained = mean_dis()
    for layer, fresh in zip(det.module.layers, init.layers):
        layer.attn.sigma.load_state_dict(fresh.attn.sigma.state_dict())
    assert mean_dis() > trained


# --------------------------------------------------------------------------- the step
def test_cli_run_reads_packets_and_scores_like_score(tmp_path):
    ds = mixed_dataset(tmp_path / "ds", 500, 100, T, seed=2)
    ids = np.arange(600, dtype=np.int64)
    write_npz(tmp_path / "s.npz", train=ids[:350], val=ids[350:450], test=ids[450:],
              meta=np.array("{}"))
    common = ["--detector", "packet_cfm", "--data", str(ds), "--splits", str(tmp_path / "s.npz"),
              "--seed", "1", "--epochs", "2", "--param", "d_model=16", "--param", "n_layers=1"]
    out = tmp_path / "run.parquet"
    assert baselines.main(["run", *common, "--out", str(tmp_path / "m"), "--score-data", str(ds),
                           "--score-splits", str(tmp_path / "s.npz"), "--score-out",
                           str(out)]) == 0
    meta = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert meta["history"]["n_train"] == 350 and meta["params"]["epochs"] == 2
    single = tmp_path / "score.parquet"
    assert baselines.main(["score", "--model", str(tmp_path / "m"), "--data", str(ds),
                           "--splits", str(tmp_path / "s.npz"), "--out", str(single)]) == 0
    assert pq.read_table(out).equals(pq.read_table(single))
    table = pq.read_table(out)
    np.testing.assert_array_equal(table.column("flow_id").to_numpy(), ids[350:])
    s = table.column("score").to_numpy()  # val (100 benign), then test: 50 benign, 100 attacks
    # Two epochs of a tiny model: enough to show the scores sit on the right rows.
    assert metrics.auroc(np.r_[np.zeros(50), np.ones(100)].astype(int), s[100:]) > 0.65


def test_cli_names_the_missing_packet_file(tmp_path, capsys):
    ds = mixed_dataset(tmp_path / "ds", 60, 0, T)
    (ds / PACKETS_FILE).unlink()
    ids = np.arange(60, dtype=np.int64)
    write_npz(tmp_path / "s.npz", train=ids[:40], val=ids[40:50], test=ids[50:],
              meta=np.array("{}"))
    rc = baselines.main(["train", "--detector", "anomaly_transformer", "--data", str(ds),
                         "--splits", str(tmp_path / "s.npz"), "--out", str(tmp_path / "m")])
    assert rc == 2
    assert f"{PACKETS_FILE}: not found" in capsys.readouterr().err
