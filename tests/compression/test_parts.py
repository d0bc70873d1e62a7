"""The pieces checked against values computed another way: storage, schedules, factorization, quantization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from litlab.compression import artifacts, compact_storage, quant_backend, sparse_storage
from litlab.compression.lowrank import factorize
from litlab.compression.pruning import global_masks, prunable_weights, sparsity_at
from litlab.models.cnn import CNN
from litlab.models.mlp import MLP
from litlab.models.rnn import RNN


def test_sparse_pack_roundtrip():
    t = torch.randn(37, 19)
    t[t.abs() < 1.0] = 0
    packed = sparse_storage.pack(t)
    assert torch.equal(sparse_storage.unpack(packed), t)
    assert packed["mask"].numel() == -(-t.numel() // 8)


def test_cubic_schedule_ends_at_amount():
    values = [sparsity_at(s, 100, 0.9, "cubic", 0.5) for s in range(0, 101, 10)]
    assert values[0] == 0 and values[-1] == pytest.approx(0.9) and values == sorted(values)
    assert sparsity_at(50, 100, 0.9, "cubic", 0.5) == pytest.approx(0.9)


def test_global_masks_prune_smallest_over_all_layers():
    weights = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([0.5, 4.0, 5.0])}
    masks = global_masks(weights, 0.5)
    assert masks["a"].tolist() == [False, False, True] and masks["b"].tolist() == [False, True, True]


def test_prunable_weights_skip_biases_and_norms():
    names = set(prunable_weights(CNN((1, 8, 8), 3, channels=(4,), hidden_size=8)))
    assert names == {"features.0.0.weight", "head.0.weight", "head.3.weight"}
    assert set(prunable_weights(RNN((5, 3), 2, cell="gru"))) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"}


def test_full_rank_factorization_is_exact():
    layer = nn.Linear(12, 8)
    x = torch.randn(5, 12)
    with torch.no_grad():
        assert torch.allclose(factorize(layer, 8)(x), layer(x), atol=1e-5)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        assert torch.allclose(factorize(conv, 6)(x), conv(x), atol=1e-5)


def test_static_int8_cnn_close_to_float():
    net = CNN((1, 8, 8), 4, channels=(8,), hidden_size=8).eval()
    x = torch.randn(32, 1, 8, 8)
    prepared = quant_backend.static_prepare(net, x)
    with torch.no_grad():
        prepared(x)
        q = quant_backend.static_convert(prepared)
        assert (q(x).argmax(1) == net(x).argmax(1)).float().mean() > 0.9


def _int8_states() -> dict[str, dict]:
    torch.manual_seed(0)
    cnn, x = CNN((1, 8, 8), 3, channels=(4, 8), hidden_size=8).eval(), torch.randn(8, 1, 8, 8)
    prepared = quant_backend.static_prepare(cnn, x)
    quant_backend.run(prepared, x)
    lstm = quant_backend.dynamic_int8(RNN((5, 3), 2, cell="lstm").eval())
    return {"static": artifacts.storable_state(quant_backend.static_convert(prepared)),
            "dynamic": artifacts.storable_state(quant_backend.dynamic_int8(MLP((1, 8, 8), 3, hidden_sizes=[16]).eval())),
            "lstm": artifacts.storable_state(lstm)}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        if a.is_quantized:
            same_params = (a.qscheme() == b.qscheme() and (torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
                           and torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points())
                           if a.qscheme() == torch.per_channel_affine else
                           (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point())))
            return b.is_quantized and a.dtype == b.dtype and same_params and torch.equal(a.int_repr(), b.int_repr())
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("kind", ["static", "dynamic", "lstm"])
def test_compact_storage_roundtrip_is_exact(tmp_path, kind):
    state = _int8_states()[kind]
    writer = compact_storage.Writer()
    specs = {k: writer.spec(v) for k, v in state.items()}
    path = tmp_path / "state.pt"
    torch.save({"meta": compact_storage.encode_json(specs), "blobs": writer.blobs()}, path)
    stored = torch.load(path, weights_only=True)
    reader = compact_storage.Reader(stored["blobs"])
    back = {k: reader.value(s) for k, s in compact_storage.decode_json(stored["meta"]).items()}
    assert set(back) == set(state) and all(_same(state[k], back[k]) for k in state)
    # observers give float32 per-channel scales: stored as float32, which loses nothing
    assert "float64" not in stored["blobs"]


def test_compact_storage_keeps_float64_scales_that_float32_would_round():
    w = torch.quantize_per_channel(torch.randn(3, 4), torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
                                   torch.zeros(3, dtype=torch.int64), 0, torch.qint8)
    writer = compact_storage.Writer()
    spec = writer.spec(w)
    assert _same(compact_storage.Reader(writer.blobs()).value(spec), w) and spec["scales"]["blob"] == "float64"


def test_latencies_warm_every_net_up_then_time_them_in_alternation():
    """Timed one after the other, the net timed first paid the process's one-off costs: a pruned
    MLP came out 2x faster than its dense original. Every net is warmed up before any is timed,
    and the rounds rotate their order."""
    from litlab.compression.measure import Measure, latencies_ms

    calls = []

    class Recorder(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append(self.name)
            return x

    nets = {"before": Recorder("before"), "after": Recorder("after")}
    timed = latencies_ms(nets, torch.zeros(1, 4), Measure(threads=1, warmup=2, repeats=4))
    assert set(timed) == {"before", "after"} and all(v >= 0 for v in timed.values())
    assert calls[:4] == ["before", "before", "after", "after"]  # warm-up of both first
    assert calls[4:] == ["before", "after", "after", "before", "before", "after", "after", "before"]


def test_lowrank_keeps_the_head_the_forward_calls_last_and_frozen_layers_frozen():
    """skip_last kept the last *registered* Linear (a net defining its head first lost a hidden
    layer and had its head factorized), and factor pairs of a frozen layer were trained."""
    from types import SimpleNamespace

    from litlab.compression.lowrank import LowRank, candidates

    class HeadFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(16, 3)
            self.l1 = torch.nn.Linear(8, 16)
            self.l2 = torch.nn.Linear(16, 16)

        def forward(self, x):
            return self.head(torch.relu(self.l2(torch.relu(self.l1(x)))))

    net = HeadFirst()
    assert sorted(candidates(net, False, True, torch.zeros(1, 8))) == ["l1", "l2"]
    assert sorted(candidates(net, False, True)) == ["head", "l1"]  # no example: the registration order
    net.l1.weight.requires_grad_(False)
    pair = factorize(net.l1, 4)
    assert [p.requires_grad for p in pair.parameters()] == [False, False, True]  # the bias stays trainable
    assert LowRank(rank=2).check(net, SimpleNamespace(input_shape=(8,))) is None  # the data's sample finds the head


def test_learned_scales_count_as_parameters_and_quantization_constants_do_not():
    """A learned ``layer_scale`` (ConvNeXt) was left out of compression.json's params: the test
    for quantization constants matched any key ending in "scale"."""
    from litlab.compression.measure import count_params

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.layer_scale = nn.Parameter(torch.full((3,), 0.5))
            self.bn = nn.BatchNorm1d(3)

    net = Scaled()
    # batch norm: weight and bias (zeros) count, running statistics do not
    assert count_params(net.state_dict()) == (15 + 3 + 6, 15 + 3 + 3)
    quantized = torch.ao.nn.quantized.Linear(4, 3)  # its scale and zero_point are constants, not weights
    assert count_params(quantized.state_dict())[0] == 15


def test_fx_quantization_constants_are_not_parameters():
    """FX's converted nets name their constants 0_input_scale_0 / 0_input_zero_point_0."""
    from litlab.compression.measure import count_params

    state = {"0_input_scale_0": torch.tensor(0.1), "0_input_zero_point_0": torch.tensor(0),
             "fc.weight": torch.ones(3, 4), "fc.layer_scale": torch.ones(3)}
    assert count_params(state) == (15, 15)
