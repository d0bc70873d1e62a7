"""Every net runs forward and backward on every data kind at tiny size."""

from __future__ import annotations

import pytest
import torch

from litlab.errors import LitlabError
from litlab.models.cnn import CNN
from litlab.models.mlp import MLP
from litlab.models.rnn import RNN
from litlab.models.torchvision_nets import TorchvisionNet, resnet18_small

SHAPES = {"gray8": (1, 8, 8), "rgb16": (3, 16, 16), "seq": (12, 3), "seq1": (20, 1)}
NETS = {
    "mlp": lambda s, k: MLP(s, k, hidden_sizes=[16]),
    "cnn": lambda s, k: CNN(s, k, channels=[8, 16], hidden_size=16),
    "lstm": lambda s, k: RNN(s, k, cell="lstm", hidden_size=8),
    "gru_bi": lambda s, k: RNN(s, k, cell="gru", hidden_size=8, num_layers=2, bidirectional=True),
    "resnet18": resnet18_small,
    "torchvision_mobilenet": lambda s, k: TorchvisionNet(s, k, name="mobilenet_v3_small"),
}
IMAGE_ONLY = {"resnet18", "torchvision_mobilenet"}


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("net_name", NETS)
def test_forward_backward(net_name, shape_name):
    shape = SHAPES[shape_name]
    if net_name in IMAGE_ONLY and len(shape) == 2:
        with pytest.raises(LitlabError, match="image model.*sequences"):
            NETS[net_name](shape, 5)
        return
    torch.manual_seed(0)
    net = NETS[net_name](shape, 5)
    x = torch.randn(4, *shape)
    out = net(x)
    assert out.shape == (4, 5)
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_unknown_torchvision_name_lists_choices():
    with pytest.raises(LitlabError, match="model.net.name='nope'.*resnet18"):
        TorchvisionNet((3, 32, 32), 10, name="nope")


def test_cnn_uses_1d_convolutions_on_sequences():
    net = CNN((12, 3), 4)
    assert any(isinstance(m, torch.nn.Conv1d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.Conv2d) for m in net.modules())


def test_torchvision_net_on_small_images_traces_for_export():
    """Small inputs are upsampled to a size fixed at build time: tracing (TorchScript, ONNX) works
    and gives the eager outputs (it used to fail on round() of a traced shape)."""
    net = TorchvisionNet((1, 8, 8), 3, name="mobilenet_v3_small").eval()
    assert net.upsample_to == (32, 32)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        traced = torch.jit.trace(net, (x,), check_trace=False)
        assert torch.allclose(traced(x), net(x), atol=1e-5)


def test_a_torchvision_net_that_needs_larger_images_says_so_when_built():
    """AlexNet, Inception, ViTs and MaxViT failed in the first validation step with a shape error."""
    from litlab.build import check_runs

    with pytest.raises(LitlabError, match=r"model\.net\.name=alexnet cannot take 32x32 images \(RuntimeError: .*\)\. "
                                          r"Raise model\.net\.min_size"):
        check_runs(TorchvisionNet((1, 8, 8), 10, name="alexnet"), (1, 8, 8), "model.net")
    net = TorchvisionNet((1, 8, 8), 10, name="alexnet", min_size=63)
    check_runs(net, (1, 8, 8), "model.net")
    assert net.training  # the check leaves the net as it was built
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_vit_given_another_size_is_told_the_one_it_takes():
    """The advice was to raise model.net.min_size, which cannot help a non-square or larger image."""
    from litlab.build import check_runs

    with pytest.raises(LitlabError, match=r"model\.net\.name=vit_b_32 takes 224x224 images only and would get "
                                          r"224x448 .* data\.image_size=224 for an image folder"):
        check_runs(TorchvisionNet((3, 8, 16), 10, name="vit_b_32", min_size=224), (3, 8, 16), "model.net")


def test_torchvision_batch_norm_momentum_is_pytorchs_default_unless_kept():
    """mobilenet_v3_small's 0.01 left its statistics behind over a short run: test/acc 0.10 on digits."""
    def momenta(net):
        return {m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta(TorchvisionNet((1, 8, 8), 10, name="mobilenet_v3_small")) == {0.1}
    assert momenta(TorchvisionNet((1, 8, 8), 10, name="mobilenet_v3_small", bn_momentum=None)) == {0.01}
    with pytest.raises(LitlabError, match=r"model\.net\.bn_momentum must be a number in \(0, 1\] or null, got 0"):
        TorchvisionNet((1, 8, 8), 10, name="mobilenet_v3_small", bn_momentum=0)


@pytest.mark.parametrize("make,key", [
    (lambda: CNN((4, 1), 3, channels=[0]), r"model\.net\.channels \(each\) must be a positive integer, got 0"),
    (lambda: MLP((4,), 3, hidden_sizes=[8, 0]), r"model\.net\.hidden_sizes \(each\) must be a positive integer, got 0"),
    (lambda: RNN((4, 2), 3, bidirectional="maybe"), r"model\.net\.bidirectional must be true or false, got 'maybe'"),
    # no conv block trained at chance; a negative min_size meant "no upsampling"
    (lambda: CNN((1, 8, 8), 3, channels=[]), r"model\.net\.channels is empty"),
    (lambda: TorchvisionNet((3, 8, 8), 3, min_size=-3), r"model\.net\.min_size must be a positive integer, got -3"),
    # torchvision's own keys, tried with +model.net.weights=DEFAULT: "unexpected keyword argument"
    (lambda: TorchvisionNet((3, 8, 8), 3, weights="DEFAULT"), r"model\.net\.weights=DEFAULT: litlab trains resnet18 "
                                                               r"from random weights; it neither downloads"),
    (lambda: TorchvisionNet((3, 8, 8), 3, pretrained=True), r"model\.net\.pretrained=True"),
    # a local file was told it "would be downloaded"; model=resnet18 said "unexpected keyword argument"
    (lambda: TorchvisionNet((3, 8, 8), 3, weights="/tmp/w.pth"), r"weights=/tmp/w\.pth: .* nor loads them from a file"),
    (lambda: resnet18_small((3, 8, 8), 3, pretrained=True), r"model\.net\.pretrained=True: litlab trains resnet18"),
])
def test_net_settings_that_cannot_work_name_their_key(make, key):
    """A zero-width CNN and a string flag crashed in the first validation step; a zero-width MLP
    trained a constant model at chance."""
    with pytest.raises(LitlabError, match=key):
        make()


def test_a_net_that_cannot_run_a_sample_fails_when_built():
    from litlab.build import check_runs

    net = torch.nn.Linear(5, 3)
    with pytest.raises(LitlabError, match=r"model\.net: my\.Net built with these settings cannot run a sample of "
                                          r"shape \(4,\) \(RuntimeError: .*\)\. Check the model\.net\.\* keys"):
        check_runs(net, (4,), "my.Net")
    assert net.training
    check_runs(net, (5,), "my.Net")  # a net that runs passes, in training mode again
    assert net.training
