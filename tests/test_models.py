"""Every registered model builds, runs forward and backward at its input size, and has its documented size."""

from __future__ import annotations

import pytest
import torch

from feredge.models import create_model, list_models, model_info
from feredge.models.profile import count_macs, count_params

EXPECTED_PARAMS = {"vgg-a": 29_890_759, "mmnet": 23_967_680, "multitask-cnn": 2_398_162}


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    spec = model_info(name).input_spec
    x = torch.randn(2, spec.channels, spec.size, spec.size)
    out = model(x)
    assert out.shape == (2, 7)
    outputs = model.forward_all(x) if hasattr(model, "forward_all") else {"emotion": out}
    sum(o.sum() for o in outputs.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    if hasattr(model, "forward_all"):
        heads = model.forward_all(x)
        assert {k: v.shape[1] for k, v in heads.items()} == model_info(name).heads


@pytest.mark.parametrize("name, expected", EXPECTED_PARAMS.items())
def test_documented_param_counts(name, expected):
    assert count_params(create_model(name)) == expected


def test_resmasking_size():
    n = count_params(create_model("resmasking"))
    assert abs(n - 137.8e6) / 137.8e6 < 0.01


def test_edge_model_budget():
    model = create_model("feredge-s")
    assert count_params(model) <= 5_000_000
    assert count_macs(model, (1, 48, 48)) <= 0.3e9
    ops = {type(m).__name__ for m in model.modules()}
    assert ops <= {"EdgeNet", "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "BasicBlock", "Identity",
                   "AdaptiveAvgPool2d", "Flatten", "Dropout", "Linear"}


def test_vgg_a_rejects_48px():
    with pytest.raises(RuntimeError):
        create_model("vgg-a")(torch.zeros(1, 1, 48, 48))


def test_mmnet_fusion_modes_differ():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    outs = {}
    for fuse in ("add", "avg", "max", "none"):
        torch.manual_seed(1)
        m = create_model("mmnet", fuse=fuse).eval()
        outs[fuse] = m.stages(x)
    assert not torch.allclose(outs["add"], outs["none"])
    assert not torch.allclose(outs["add"], outs["max"])


def test_unknown_model_message():
    from feredge.errors import FeredgeError

    with pytest.raises(FeredgeError, match="unknown model 'nope'; available: .*feredge-s"):
        create_model("nope")


def test_resmasking_pretrained_from_local_file(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet34

    ref = resnet34(weights=None)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "r34.safetensors"))
    model = create_model("resmasking", pretrained=tmp_path / "r34.safetensors")
    assert torch.equal(model.stem[0].weight, ref.conv1.weight)
    save_file({"conv1.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    from feredge.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a torchvision resnet34 state dict"):
        create_model("resmasking", pretrained=tmp_path / "bad.safetensors")


def test_nano_fuses_to_plain_convolutions_with_the_same_outputs():
    from feredge.models.nano import RepBlock, fuse_for_deploy

    torch.manual_seed(0)
    model = create_model("feredge-n")
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    fused = fuse_for_deploy(model)
    x = torch.randn(4, 1, 48, 48)
    torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
    blocks = [m for m in fused.modules() if isinstance(m, RepBlock)]
    assert blocks and all(b.fused is not None and not hasattr(b, "conv1") for b in blocks)
    assert model.features[0].conv3.weight.requires_grad  # the original keeps training form
    assert count_params(fused) < count_params(model) < 600_000


def test_nano_exports_as_conv_relu_only(tmp_path):
    import onnx

    from feredge.export.onnx import simplify, torch_to_onnx

    model = create_model("feredge-n").eval()
    proto = simplify(torch_to_onnx(model, model_info("feredge-n").input_spec, None))
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "Reshape"}, ops
    assert sum(n.op_type == "Conv" for n in proto.graph.node) == len(model.features)
    onnx.checker.check_model(proto)


def test_edge_architecture_knobs_export_within_budget():
    """The campaign's proxies (squeeze-excitation, depth, width) stay ≤ 5 M parameters, start every block as
    the identity, and export to ONNX with the same outputs."""
    import numpy as np
    import onnxruntime as ort

    from feredge.export.onnx import simplify, torch_to_onnx

    spec = model_info("feredge-s").input_spec
    base = count_params(create_model("feredge-s"))
    for kwargs in ({"se": 4}, {"depths": [2, 3, 3, 2]}, {"widths": [56, 112, 224, 280]}):
        torch.manual_seed(0)
        model = create_model("feredge-s", **kwargs).eval()
        assert base < count_params(model) <= 5_000_000, kwargs
        block = model.features[-1]
        x = torch.randn(2, block.body[0].in_channels, 3, 3).relu()
        assert torch.equal(block(x), torch.relu(block.shortcut(x)))
        proto = simplify(torch_to_onnx(model, spec, None))
        if "se" in kwargs:
            assert {"Sigmoid", "Mul"} <= {n.op_type for n in proto.graph.node}
        faces = torch.randn(3, 1, 48, 48)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: faces.numpy()})[0]
        np.testing.assert_allclose(got, model(faces).detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("kwargs, field", [({"se": -1}, "se"), ({"depths": [2, 2, 2]}, "one entry per stage"),
                                           ({"widths": [48, 0, 192, 256]}, "widths"), ({"stem": 0}, "stem"),
                                           ({"drop": 1.5}, "drop"), ({"se": True}, "se")])
def test_edge_knobs_that_would_build_another_network_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        create_model("feredge-s", **kwargs)
