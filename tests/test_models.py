"""The bpAI-TAC network: shapes, cropping, bias and binning, variants, nonlinearity modules."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from bpaitac.data.sequence import one_hot
from bpaitac.model.network import (
    ACC_HEADS,
    ACC_OUTPUTS,
    BpAITAC,
    ModelSpec,
    build_model,
    count_parameters,
    load_model,
    resolve_device,
    save_model,
    spec_from_config,
)

ROOT = Path(__file__).resolve().parent.parent


def tiny(**kw) -> BpAITAC:
    torch.manual_seed(0)
    spec = dict(filters=8, dilated_blocks=2, acc_head="conv", n_tasks=3)
    return BpAITAC(ModelSpec(**{**spec, **kw}))


def seqs(b=4, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return one_hot(torch.randint(0, 5, (b, 1000), generator=g))


def test_one_hot_maps_bases_and_n():
    x = one_hot(torch.tensor([[0, 1, 2, 3, 4]], dtype=torch.uint8))
    assert x.shape == (1, 4, 5)
    assert x[0, :, :4].tolist() == torch.eye(4).tolist()
    assert x[0, :, 4].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("head", ACC_HEADS)
@pytest.mark.parametrize("bin_size", [1, 5, 10, 20])
def test_output_shapes_for_every_head_and_bin(head, bin_size):
    model = tiny(acc_head=head, bin_size=bin_size)
    logits, log_counts = model(seqs(2))
    assert logits.shape == (2, 3, {1: 250, 5: 50, 10: 25, 20: 12}[bin_size])
    assert log_counts.shape == (2, 3)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_paper_scale_parameter_count(batchnorm):
    f, d, t = 300, 9, 90
    bn = 2 * f if batchnorm else 0  # BN weight and bias per channel
    expected = (
        (4 * 25 * f + f)  # input conv
        + d * (f * f * 3 + f + bn)  # dilated blocks
        + (f * t * 25 + t)  # profile head
        + 3 * (f * f * 3 + f + bn)  # accessibility convs
        + (f * 8 * t + t)  # final linear on 8 positions
    )
    spec = dict(filters=f, dilated_blocks=d, acc_head="conv", n_tasks=t, batchnorm=batchnorm)
    model = build_model(spec)
    assert count_parameters(model) == expected
    assert 4.0e6 < expected < 4.3e6  # "about 4 million parameters"


def test_dilations_double_from_two():
    model = tiny(dilated_blocks=4)
    assert [blk.conv.dilation[0] for blk in model.blocks] == [2, 4, 8, 16]
    assert len(tiny(dilated_blocks=0).blocks) == 0  # the `base` body


def test_profile_head_is_a_same_padded_conv_cropped_to_the_centre():
    model = tiny()
    x = seqs(3)
    same = nn.Conv1d(8, 3, 25, padding=12)
    same.load_state_dict(model.profile_conv.state_dict())
    with torch.no_grad():
        expected = same(model.body(x))[:, :, 375:625]
        logits, _ = model(x)
    torch.testing.assert_close(logits, expected)


def test_body_keeps_length_and_is_residual():
    model = tiny()
    h = model.body(seqs(1))
    assert h.shape == (1, 8, 1000)
    block = model.blocks[0]
    z = torch.randn(2, 8, 1000)
    conv = block.conv(z)
    mean, var = conv.mean((0, 2), keepdim=True), conv.var((0, 2), unbiased=False, keepdim=True)
    normed = (conv - mean) / torch.sqrt(var + 1e-5)  # train mode: batch statistics
    torch.testing.assert_close(block(z), z + torch.relu(normed))
    plain = tiny(batchnorm=False).blocks[0]
    torch.testing.assert_close(plain(z), z + torch.relu(plain.conv(z)))


def test_batchnorm_follows_every_residual_and_accessibility_conv():
    model = tiny(dilated_blocks=3)
    assert all(isinstance(b.bn, nn.BatchNorm1d) for b in model.blocks)
    kinds = [type(m).__name__ for m in model.acc_head.layers]
    assert kinds == ["MaxPool1d", "Conv1d", "BatchNorm1d", "ReLU"] * 3
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 3 + 3 and len({id(m) for m in bns}) == 6  # each its own module
    plain = tiny(dilated_blocks=3, batchnorm=False)
    assert not [m for m in plain.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [type(m).__name__ for m in plain.acc_head.layers] == ["MaxPool1d", "Conv1d", "ReLU"] * 3
    # Without BN the state dict keeps the layout of networks built before BN existed.
    assert "acc_head.layers.4.weight" in plain.state_dict()
    assert not any("running" in k for k in plain.state_dict())


def test_eval_mode_uses_running_statistics_not_the_batch():
    model = tiny()
    x = seqs(6)
    model.train()
    model(x)  # updates the running statistics
    model.eval()
    with torch.no_grad():
        logits, acc = model(x)
        one_logits, one_acc = model(x[:1])
    torch.testing.assert_close(one_acc, acc[:1])  # independent of the rest of the batch
    torch.testing.assert_close(one_logits, logits[:1])
    running = model.blocks[0].bn.running_mean.clone()
    with torch.no_grad():
        model(seqs(3, seed=5))
    assert torch.equal(running, model.blocks[0].bn.running_mean)  # eval never updates them


def test_bias_logits_are_added_to_every_task():
    model = tiny()
    x, bias = seqs(2), torch.randn(2, 250)
    with torch.no_grad():
        plain, acc = model(x)
        biased, acc_b = model(x, bias)
    torch.testing.assert_close(biased - plain, bias.unsqueeze(1).expand_as(plain))
    torch.testing.assert_close(acc, acc_b)  # bias touches only the profile head


def test_binning_sums_logits_including_bias_before_softmax():
    fine = tiny(bin_size=1)
    coarse = tiny(bin_size=10)
    coarse.load_state_dict(fine.state_dict())
    x, bias = seqs(2), torch.randn(2, 250)
    with torch.no_grad():
        a, _ = fine(x, bias)
        b, _ = coarse(x, bias)
    torch.testing.assert_close(b, a.reshape(2, 3, 25, 10).sum(-1))
    coarse20 = tiny(bin_size=20)
    coarse20.load_state_dict(fine.state_dict())
    with torch.no_grad():
        c, _ = coarse20(x, bias)
    torch.testing.assert_close(c, a[:, :, 5:245].reshape(2, 3, 12, 20).sum(-1))  # central 240
    probs = coarse.profile_probs(x, bias)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("acc_output", ACC_OUTPUTS)
@pytest.mark.parametrize("head", ACC_HEADS)
def test_every_nonlinearity_is_its_own_module_called_once(head, acc_output):
    model = tiny(acc_head=head, acc_output=acc_output)
    calls: dict[int, int] = {}

    def count(mod, inputs, output):
        calls[id(mod)] = calls.get(id(mod), 0) + 1

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in relus + bns:
        m.register_forward_hook(count)
    model(seqs(1))
    output_relu = 1 if acc_output == "relu_linear" else 0
    assert len(relus) == 1 + 2 + (3 if head == "conv" else 0) + output_relu
    assert len(bns) == 2 + (3 if head == "conv" else 0)
    assert sorted(calls.values()) == [1] * (len(relus) + len(bns))
    assert len({id(m) for m in relus + bns}) == len(relus) + len(bns)


def test_accessibility_head_variants_differ_in_size():
    sizes = {h: count_parameters(tiny(acc_head=h).acc_head) for h in ACC_HEADS}
    assert sizes["globpool"] == 8 * 3 + 3
    assert sizes["max50"] == 8 * 20 * 3 + 3
    assert sizes["fc"] == 8 * 1000 * 3 + 3
    assert sizes["conv"] == 3 * (8 * 8 * 3 + 8 + 2 * 8) + 8 * 8 * 3 + 3  # conv + BN per block


@pytest.mark.parametrize("acc_output", ACC_OUTPUTS)
@pytest.mark.parametrize("head", ACC_HEADS)
def test_count_head_starts_as_the_mean_predictor(head, acc_output):
    model = tiny(acc_head=head, acc_output=acc_output)
    model.init_count_head(torch.tensor([1.0, 2.0, 3.0]))
    _, log_counts = model(seqs(2))
    torch.testing.assert_close(log_counts, torch.tensor([[1.0, 2.0, 3.0]] * 2))
    own = model.accessibility_output(seqs(2))
    expected = [1.0, 2.0, 3.0] if acc_output == "log" else np.expm1([1.0, 2.0, 3.0]).tolist()
    torch.testing.assert_close(own, torch.tensor([expected] * 2))
    with pytest.raises(ValueError, match="offsets"):
        model.init_count_head(torch.zeros(2))


def test_relu_linear_output_is_the_log_of_one_plus_a_rectified_linear_count():
    """acc_output relu_linear (the authors' code): counts ReLU(z) >= 0, forward log(1 + counts)."""
    model = tiny(acc_output="relu_linear").eval()
    x = seqs(3)
    with torch.no_grad():
        model.acc_head.linear.bias.copy_(torch.tensor([-50.0, 0.5, 20.0]))
        counts = model.accessibility_output(x)
        _, log_counts = model(x)
    assert (counts[:, 0] == 0).all() and (counts >= 0).all()
    torch.testing.assert_close(log_counts, torch.log1p(counts))
    log_model = tiny(acc_output="log").eval()
    log_model.load_state_dict(model.state_dict())  # the same parameters: no extra ones
    with torch.no_grad():
        z = log_model.accessibility_output(x)
        torch.testing.assert_close(log_model(x)[1], z)
    torch.testing.assert_close(counts, torch.relu(z))


def test_input_relu_switch_follows_text_or_code():
    """input_relu true (the paper's text) rectifies the first convolution; false (the authors'
    code) passes it on as it is; the parameters are the same."""
    x = seqs(2)
    text, code = tiny(), tiny(input_relu=False)
    code.load_state_dict(text.state_dict())
    assert isinstance(text.input_relu, nn.ReLU) and isinstance(code.input_relu, nn.Identity)
    with torch.no_grad():
        first = text.input_conv(x)
        torch.testing.assert_close(code.body(x), code.blocks(first))
        torch.testing.assert_close(text.body(x), text.blocks(torch.relu(first)))


def test_spec_validation_names_the_config_key():
    with pytest.raises(ValueError, match="acc_head"):
        ModelSpec(8, 1, "attention", 3)
    with pytest.raises(ValueError, match="bin"):
        ModelSpec(8, 1, "conv", 3, bin_size=3)
    with pytest.raises(ValueError, match="expected one-hot"):
        tiny()(torch.zeros(1, 4, 500))


def test_spec_defaults_match_the_architecture_schema():
    schema = yaml.safe_load((ROOT / "workflow/schemas/train.schema.yaml").read_text())
    props = schema["$defs"]["architecture"]["properties"]
    defaults = {f.name: f.default for f in dataclasses.fields(ModelSpec)}
    for name, prop in props.items():
        if "default" in prop and name != "acc_head":  # acc_head is required in ModelSpec
            assert defaults[name] == prop["default"], name
    spec = spec_from_config({"filters": 8, "dilated_blocks": 1}, 3)
    assert spec.batchnorm is True and spec.acc_head == props["acc_head"]["default"]
    plain = spec_from_config({"filters": 8, "dilated_blocks": 1, "batchnorm": False}, 3)
    assert plain.batchnorm is False


def test_spec_from_config_and_save_load_round_trip(tmp_path):
    spec = spec_from_config({"filters": 8, "dilated_blocks": 1, "acc_head": "max50"}, 5, 5)
    assert spec == ModelSpec(8, 1, "max50", 5, bin_size=5)
    torch.manual_seed(1)
    model = build_model(spec)
    model(seqs(4))  # train mode: moves the BN running statistics off their initial values
    save_model(tmp_path / "m" / "model.pt", model, {"name": "x", "targets": list("abcde")})
    loaded, meta = load_model(tmp_path / "m" / "model.pt")
    assert meta["name"] == "x" and meta["model_spec"]["bin_size"] == 5
    assert any(k.endswith("running_var") for k in model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    assert not loaded.training  # loaded for prediction: BN from its running statistics
    assert not list((tmp_path / "m").glob(".*tmp*"))  # no temp files left
    with pytest.raises(FileNotFoundError, match="run the training rule"):
        load_model(tmp_path / "missing.pt")


def test_model_files_from_before_batchnorm_load_without_it(tmp_path):
    plain = build_model(dict(filters=8, dilated_blocks=1, acc_head="conv", n_tasks=2,
                             batchnorm=False))  # fmt: skip
    save_model(tmp_path / "model.pt", plain, {"name": "old"})
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["spec"]["model_spec"]["batchnorm"]  # as written before the key existed
    torch.save(payload, tmp_path / "model.pt")
    loaded, _ = load_model(tmp_path / "model.pt", "auto")
    assert loaded.spec.batchnorm is False


def test_model_files_from_before_the_head_switches_load_as_log_heads(tmp_path):
    old = build_model(dict(filters=8, dilated_blocks=1, acc_head="conv", n_tasks=2,
                           acc_output="log"))  # fmt: skip
    save_model(tmp_path / "model.pt", old, {"name": "old"})
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    for key in ("input_relu", "acc_output"):
        del payload["spec"]["model_spec"][key]  # as written before the keys existed
    torch.save(payload, tmp_path / "model.pt")
    loaded, _ = load_model(tmp_path / "model.pt")
    assert loaded.spec.acc_output == "log" and loaded.spec.input_relu is True
    with pytest.raises(ValueError, match="acc_output"):
        ModelSpec(8, 1, "conv", 2, acc_output="exp")


def test_resolve_device_auto_cpu_cuda_and_unknown_names():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"config key `device`: 'gpu'; use cpu, cuda, auto"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")  # this machine: no GPU
        with pytest.raises(RuntimeError, match="no CUDA device is visible"):
            resolve_device("cuda")


class _AccessibilityOutput(nn.Module):
    def __init__(self, model: BpAITAC) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.accessibility_output(x)


class _FunctionalReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)  # a nonlinearity DeepSHAP cannot see


def _shap_warnings(model: BpAITAC) -> list[str]:
    import warnings

    from tangermeme.deep_lift_shap import deep_lift_shap

    g = torch.Generator().manual_seed(3)
    x = one_hot(torch.randint(0, 4, (2, 1000), generator=g))  # no N: shuffles need one-hot columns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deep_lift_shap(
            _AccessibilityOutput(model.eval()),
            x,
            target=1,
            n_shuffles=3,
            random_state=0,
            warning_threshold=1e-4,
            device="cpu",
        )
    return [str(w.message) for w in caught if "onvergence" in str(w.message)]


@pytest.mark.parametrize("acc_output", ACC_OUTPUTS)
@pytest.mark.parametrize("head", ["conv", "globpool"])
def test_deepshap_converges_on_the_accessibility_head(head, acc_output):
    model, broken = (tiny(acc_head=head, acc_output=acc_output) for _ in range(2))
    for m in (model, broken):
        with torch.no_grad():
            m.acc_head.linear.bias.add_(10.0)  # a live output ReLU, as after training starts
    assert _shap_warnings(model) == []
    broken.blocks[0].relu = _FunctionalReLU()  # negative control: the check can fail
    assert _shap_warnings(broken)
