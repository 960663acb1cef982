"""Tests of janus/deploy/attribution.py and explain.py: shares sum to the distance, the
manipulated packet is found, and the CLI prints the breakdown and a figure."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from janus.contract import CHANNELS, SCORE_COLUMNS, SIZE
from janus.deploy import attribution as A
from janus.deploy.explain import FlowKey, parse_flow
from janus.deploy.model import load_model
from janus.errors import ConfigError
from janus.evaluation.aggregate import AggregateOptions, Aggregator


def _identity_agg(columns, sided="one") -> Aggregator:
    k = len(columns)
    return Aggregator(method="oas", columns=tuple(columns), options=AggregateOptions(sided=sided),
                      keep=np.arange(k), offset=np.zeros(k), mean=np.zeros(k), std=np.ones(k),
                      precision=np.eye(k), location=np.zeros(k))


def test_contributions_closed_form_and_sum_to_the_squared_distance() -> None:
    agg = _identity_agg(["terminal_packet", "disc_nll_syn"])
    s = np.array([[3.0, 4.0], [-2.0, 1.0]])
    m, d2 = A.column_contributions(agg, s)
    # P = I: m_j = u_j^2 with u clipped at 0 (one-sided).
    assert np.allclose(m, [[9.0, 16.0], [0.0, 1.0]]) and np.allclose(d2, [25.0, 1.0])
    names, shares = A.top_columns(agg.columns, agg.keep, m, d2, n_top=2)
    assert names[0].tolist() == ["disc_nll_syn", "terminal_packet"]
    assert np.allclose(shares[0], [0.64, 0.36])
    # A correlated precision: the parts still sum to d^2 = apply()^2.
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 2))
    agg.precision = q @ q.T + np.eye(2)
    agg.options = AggregateOptions(sided="two")
    x = rng.normal(size=(20, 2))
    m, d2 = A.column_contributions(agg, x)
    assert np.allclose(m.sum(1), agg.apply(x) ** 2) and np.allclose(d2, agg.apply(x) ** 2)


def test_packet_attribution_shares_each_column_over_its_terms() -> None:
    agg = _identity_agg(["terminal_packet", "disc_nll_syn"])
    L = 4
    sq = np.zeros((1, L, 3))
    sq[0, 2, 0] = 6.0  # packet 2's size carries the whole terminal_packet column
    nll = np.zeros((1, L, 6))
    nll[0, :, 1] = [1.0, 1.0, 2.0, 0.0]  # syn NLL per packet
    n = np.array([L])
    scores10 = np.zeros((1, 10))
    scores10[0, SCORE_COLUMNS.index("terminal_packet")] = sq.sum() / (3 * L)
    scores10[0, SCORE_COLUMNS.index("disc_nll_syn")] = nll[0, :, 1].sum() / L
    sel = [SCORE_COLUMNS.index(c) for c in agg.columns]
    m, d2 = A.column_contributions(agg, scores10[:, sel])
    a, rel = A.packet_attribution(agg.columns, m, scores10, sq, nll, n)
    assert np.isclose(a.sum(), d2[0])  # every part of both columns belongs to a packet
    assert np.isclose(a[0, 2, SIZE], m[0, 0])
    syn = CHANNELS.index("syn")
    assert np.allclose(a[0, :, syn], m[0, 1] * np.array([1, 1, 2, 0]) / 4)
    i, ch, share = A.top_packet(a, rel, d2, n)
    expect = (2, "size") if m[0, 0] > m[0, 1] / 2 else (2, "syn")
    assert (int(i[0]), ch[0]) == expect and 0 < share[0] <= 1


def test_the_manipulated_packet_is_named(tiny_model) -> None:
    from janus.model.data import load_dataset

    model = load_model(tiny_model.folder)
    ds = load_dataset(tiny_model.data)
    all_lengths = ds.packets.lengths()
    rows = np.flatnonzero(all_lengths == 8)[:20]
    lengths = all_lengths[rows]
    packets = ds.packets.packets(rows).copy()
    packets[:, 5, SIZE] = 60_000.0  # a 60 kB frame, far outside every benign size
    from janus.capture.features import compute_flow_features

    feats = compute_flow_features(packets, lengths)
    out = model.score_arrays(packets, lengths, feats)
    base = model.score_arrays(ds.packets.packets(rows), lengths, ds.features[rows])
    assert (out.scalar > base.scalar).all()
    # Most flows name the packet and channel (naming at random: 1/8 and 1/9 of them).
    assert (out.packet == 5).mean() >= 0.8 and (out.channel == "size").mean() >= 0.8


def test_parse_flow() -> None:
    assert parse_flow("10.0.0.1:40000-10.0.0.2:80/tcp") == FlowKey("10.0.0.1", 40000, "10.0.0.2", 80, 6)
    assert parse_flow("[2001:DB8::1]:53-2001:db8::2:5353/17") == FlowKey("2001:db8::1", 53, "2001:db8::2", 5353, 17)
    for bad in ("10.0.0.1:1-10.0.0.2:2", "10.0.0.1-10.0.0.2:2/tcp", "a:1-b:2/tcp", "1.1.1.1:1-2.2.2.2:2/xyz"):
        with pytest.raises(ConfigError):
            parse_flow(bad)


def _explain(capsys, *args) -> tuple[int, str, str]:
    from janus.deploy import explain

    capsys.readouterr()
    status = explain.main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_explain_cli_by_row_and_by_flow(tiny_model, tmp_path, capsys) -> None:
    from janus.deploy.detect import write_tables

    alerts = tmp_path / "a.parquet"
    model = load_model(tiny_model.folder)
    write_tables(alerts, model.iter_capture([tiny_model.other]), None)
    df = pl.read_parquet(alerts)
    row = int(np.flatnonzero(df["alert"].to_numpy())[0])
    flow = df.row(row, named=True)
    png = tmp_path / "f.png"
    status, out, err = _explain(capsys, tiny_model.other, "--model", tiny_model.folder, "--alerts", alerts,
                                "--row", row, "--figure", png)
    assert status == 0, err[-2000:]
    assert f"score {flow['score']:.4f}" in out and "ALERT" in out
    assert f"top packet {flow['top_packet']} channel {flow['top_channel']}" in out
    assert out.count("\nflow ") == 0  # exactly one flow: the row pins its start time
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    # By 5-tuple, given the other way round.
    spec = f"{flow['dst_ip']}:{flow['dst_port']}-{flow['src_ip']}:{flow['src_port']}/{flow['proto']}"
    status, out, err = _explain(capsys, tiny_model.other, "--model", tiny_model.folder, "--flow", spec,
                                "--figure", tmp_path / "g.png")
    assert status == 0 and f"score {flow['score']:.4f}" in out, err[-2000:]
    status, out, err = _explain(capsys, tiny_model.other, "--model", tiny_model.folder, "--flow",
                                "10.9.9.9:1-10.9.9.8:2/tcp")
    assert status == 2 and "no flow" in err and not (tmp_path / "explain.png").exists()
