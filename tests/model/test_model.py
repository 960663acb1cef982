"""Tests of janus/model/network.py: causal mask, padding masks, AdaLN-Zero init, config."""

from __future__ import annotations

import pytest
import torch

from janus.errors import ConfigError
from janus.model.flowmatch import MASK
from janus.model.network import JanusNet, ModelConfig, timestep_embedding

T = 6


def _net(seed: int = 0, **cfg) -> JanusNet:
    torch.manual_seed(seed)
    net = JanusNet(ModelConfig(max_packets=T, d_model=16, n_layers=2, n_heads=2, **cfg))
    # Zero-initialised modulation/heads make every output 0; randomise them so that the
    # tests see real attention paths.
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
    return net.eval()


def _inputs(b: int = 3, n: int = T, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    flow = torch.randn(b, 20, generator=g)
    cont = torch.randn(b, n, 3, generator=g)
    disc = torch.randint(0, 3, (b, n, 6), generator=g)
    return flow, cont, disc, torch.full((b,), n), torch.rand(b, generator=g), torch.rand(b, generator=g)


@torch.no_grad()
@pytest.mark.parametrize("j", [0, 2, T - 1])
def test_causal_outputs_before_a_packet_ignore_it(j: int) -> None:
    net = _net()
    flow, cont, disc, lengths, tc, td = _inputs()
    vf, vp, lg = net(flow, cont, disc, lengths, tc, td)
    cont2, disc2 = cont.clone(), disc.clone()
    cont2[:, j] += 5.0
    disc2[:, j] = MASK
    vf2, vp2, lg2 = net(flow, cont2, disc2, lengths, tc, td)
    torch.testing.assert_close(vf2, vf)  # the FLOW token sees only itself
    torch.testing.assert_close(vp2[:, :j], vp[:, :j])
    torch.testing.assert_close(lg2[:, :j], lg[:, :j])
    assert not torch.allclose(vp2[:, j], vp[:, j])  # the packet itself does change


@torch.no_grad()
def test_full_attention_lets_earlier_tokens_see_later_packets() -> None:
    net = _net(causal=False)
    flow, cont, disc, lengths, tc, td = _inputs()
    vf, vp, _ = net(flow, cont, disc, lengths, tc, td)
    cont2 = cont.clone()
    cont2[:, T - 1] += 5.0
    vf2, vp2, _ = net(flow, cont2, disc, lengths, tc, td)
    assert not torch.allclose(vf2, vf) and not torch.allclose(vp2[:, 0], vp[:, 0])


@torch.no_grad()
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("packets_see_flow", [False, True])
def test_padding_never_reaches_valid_outputs(causal: bool, packets_see_flow: bool) -> None:
    net = _net(causal=causal, packets_see_flow=packets_see_flow)
    flow, cont, disc, _, tc, td = _inputs()
    lengths = torch.tensor([2, 4, 3])
    short = net(flow, cont[:, :4], disc[:, :4], lengths, tc, td)
    garbage_c, garbage_d = cont.clone(), disc.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage_c[i, n:] = 100.0
        garbage_d[i, n:] = 1
    long = net(flow, garbage_c, garbage_d, lengths, tc, td)
    torch.testing.assert_close(long[0], short[0], rtol=1e-5, atol=1e-6)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(long[1][i, :n], short[1][i, :n], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(long[2][i, :n], short[2][i, :n], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_adaln_zero_initialisation_outputs_zero() -> None:
    torch.manual_seed(0)
    net = JanusNet(ModelConfig(max_packets=T, d_model=16, n_layers=2, n_heads=2))
    vf, vp, lg = net(*_inputs())
    assert vf.abs().max() == 0 and vp.abs().max() == 0 and lg.abs().max() == 0
    assert vf.shape == (3, 20) and vp.shape == (3, T, 3) and lg.shape == (3, T, 6)


def test_too_many_packets_is_an_error() -> None:
    net = _net()
    flow, cont, disc, lengths, tc, td = _inputs(n=T + 1)
    with pytest.raises(ValueError, match="exceed the model's max_packets"):
        net(flow, cont, disc, lengths, tc, td)


def test_config_roundtrip_and_validation() -> None:
    cfg = ModelConfig(d_model=64, n_heads=8, causal=False, lambda_disc=0.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


def test_timestep_embedding_closed_form() -> None:
    e = timestep_embedding(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(e[1, :4], torch.cos(500.0 * freqs))


# Flow features derived from the flags or the direction: the flag head must not read them.
_FLAG_DERIVED = ("syn_count", "fin_count", "rst_count", "psh_count", "fwd_ratio", "fwd_size_mean",
                 "fwd_size_max", "fwd_size_std", "bwd_size_mean", "bwd_size_max", "bwd_size_std")


@torch.no_grad()
@pytest.mark.parametrize("j", [1, 3, T - 1])
def test_packet_outputs_ignore_later_packets_even_through_the_flow_token(j: int) -> None:
    """Packet i's velocity and logits depend on P1..Pi only: a later packet changes, and so do
    the flow features computed from it (all 20 move), and outputs 1..j-1 stay bit for bit."""
    net = _net()
    flow, cont, disc, lengths, tc, td = _inputs()
    vf, vp, lg = net(flow, cont, disc, lengths, tc, td)
    flow2, cont2, disc2 = flow + 3.0, cont.clone(), disc.clone()
    cont2[:, j:] += 5.0
    disc2[:, j:] = 1 - disc2[:, j:].clamp(max=1)
    vf2, vp2, lg2 = net(flow2, cont2, disc2, lengths, tc, td)
    torch.testing.assert_close(vp2[:, :j], vp[:, :j], rtol=0, atol=0)
    torch.testing.assert_close(lg2[:, :j], lg[:, :j], rtol=0, atol=0)
    assert not torch.allclose(vp2[:, j], vp[:, j]) and not torch.allclose(lg2[:, j], lg[:, j])
    assert not torch.allclose(vf2, vf)  # the FLOW token does read its own features


@torch.no_grad()
@pytest.mark.parametrize("causal", [True, False])
def test_flag_head_does_not_read_the_flag_counts(causal: bool) -> None:
    from janus.contract import FLOW_FEATURES

    net = _net(causal=causal)
    flow, cont, disc, lengths, tc, td = _inputs()
    _, vp, lg = net(flow, cont, disc, lengths, tc, td)
    flow2 = flow.clone()
    for name in _FLAG_DERIVED:
        flow2[:, FLOW_FEATURES.index(name)] += 4.0
    _, vp2, lg2 = net(flow2, cont, disc, lengths, tc, td)
    torch.testing.assert_close(lg2, lg, rtol=0, atol=0)
    torch.testing.assert_close(vp2, vp, rtol=0, atol=0)
    # The ablation that lets packets read the FLOW token does see them: the test has teeth.
    legacy = _net(causal=causal, packets_see_flow=True)
    _, _, lg_a = legacy(flow, cont, disc, lengths, tc, td)
    _, _, lg_b = legacy(flow2, cont, disc, lengths, tc, td)
    assert not torch.allclose(lg_a, lg_b)


@torch.no_grad()
def test_flow_apart_layout_equals_its_explicit_mask() -> None:
    """The fast FLOW-apart path computes the same attention as the explicit boolean mask."""
    net = _net()
    flow, cont, disc, lengths, tc, td = _inputs()
    fast = net(flow, cont, disc, lengths, tc, td)
    pos = torch.arange(T + 1)
    allowed = ((pos[:, None] == 0) & (pos[None, :] == 0)) | (
        (pos[:, None] > 0) & (pos[None, :] > 0) & (pos[None, :] <= pos[:, None]))
    net.attention = lambda lengths, n_pkt: allowed[None, None].expand(len(lengths), 1, -1, -1)
    slow = net(flow, cont, disc, lengths, tc, td)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_old_checkpoint_configs_rebuild_the_layout_they_were_trained_with() -> None:
    cfg = ModelConfig().to_dict()
    assert cfg["packets_see_flow"] is False
    del cfg["packets_see_flow"]
    assert ModelConfig.from_dict(cfg).packets_see_flow is True
