"""Tests of janus/model.py: causal mask, padding masks, AdaLN-Zero init, config."""

from __future__ import annotations

import pytest
import torch

from janus.errors import ConfigError
from janus.flowmatch import MASK
from janus.model import JanusNet, ModelConfig, timestep_embedding

T = 6


def _net(causal: bool = True, seed: int = 0) -> JanusNet:
    torch.manual_seed(seed)
    net = JanusNet(ModelConfig(max_packets=T, d_model=16, n_layers=2, n_heads=2, causal=causal))
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
def test_padding_never_reaches_valid_outputs(causal: bool) -> None:
    net = _net(causal=causal)
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
