"""The bpAI-TAC network: shapes, cropping, bias and binning, variants, nonlinearity modules."""

import pytest
import torch
from torch import nn

from bpaitac.models import (
    ACC_HEADS,
    BpAITAC,
    ModelSpec,
    build_model,
    count_parameters,
    load_model,
    one_hot,
    save_model,
    spec_from_config,
)


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


def test_paper_scale_parameter_count():
    f, d, t = 300, 9, 90
    expected = (
        (4 * 25 * f + f)  # input conv
        + d * (f * f * 3 + f)  # dilated blocks
        + (f * t * 25 + t)  # profile head
        + 3 * (f * f * 3 + f)  # accessibility convs
        + (f * 8 * t + t)  # final linear on 8 positions
    )
    model = build_model(dict(filters=f, dilated_blocks=d, acc_head="conv", n_tasks=t))
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
    z = torch.randn(1, 8, 1000)
    torch.testing.assert_close(block(z), z + torch.relu(block.conv(z)))


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


@pytest.mark.parametrize("head", ACC_HEADS)
def test_every_nonlinearity_is_its_own_module_called_once(head):
    model = tiny(acc_head=head)
    calls: dict[int, int] = {}

    def count(mod, inputs, output):
        calls[id(mod)] = calls.get(id(mod), 0) + 1

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for m in relus:
        m.register_forward_hook(count)
    model(seqs(1))
    assert len(relus) == 1 + 2 + (3 if head == "conv" else 0)
    assert sorted(calls.values()) == [1] * len(relus)
    assert len({id(m) for m in relus}) == len(relus)


def test_accessibility_head_variants_differ_in_size():
    sizes = {h: count_parameters(tiny(acc_head=h).acc_head) for h in ACC_HEADS}
    assert sizes["globpool"] == 8 * 3 + 3
    assert sizes["max50"] == 8 * 20 * 3 + 3
    assert sizes["fc"] == 8 * 1000 * 3 + 3
    assert sizes["conv"] == 3 * (8 * 8 * 3 + 8) + 8 * 8 * 3 + 3


@pytest.mark.parametrize("head", ACC_HEADS)
def test_count_head_starts_as_the_mean_predictor(head):
    model = tiny(acc_head=head)
    model.init_count_head(torch.tensor([1.0, 2.0, 3.0]))
    _, log_counts = model(seqs(2))
    assert log_counts.tolist() == [[1.0, 2.0, 3.0]] * 2
    with pytest.raises(ValueError, match="offsets"):
        model.init_count_head(torch.zeros(2))


def test_spec_validation_names_the_config_key():
    with pytest.raises(ValueError, match="acc_head"):
        ModelSpec(8, 1, "attention", 3)
    with pytest.raises(ValueError, match="bin"):
        ModelSpec(8, 1, "conv", 3, bin_size=3)
    with pytest.raises(ValueError, match="expected one-hot"):
        tiny()(torch.zeros(1, 4, 500))


def test_spec_from_config_and_save_load_round_trip(tmp_path):
    spec = spec_from_config({"filters": 8, "dilated_blocks": 1, "acc_head": "max50"}, 5, 5)
    assert spec == ModelSpec(8, 1, "max50", 5, bin_size=5)
    torch.manual_seed(1)
    model = build_model(spec)
    save_model(tmp_path / "m" / "model.pt", model, {"name": "x", "targets": list("abcde")})
    loaded, meta = load_model(tmp_path / "m" / "model.pt")
    assert meta["name"] == "x" and meta["model_spec"]["bin_size"] == 5
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    assert not list((tmp_path / "m").glob(".*tmp*"))  # no temp files left
    with pytest.raises(FileNotFoundError, match="run the training rule"):
        load_model(tmp_path / "missing.pt")


class _AccessibilityOutput(nn.Module):
    def __init__(self, model: BpAITAC) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[1]


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


@pytest.mark.parametrize("head", ["conv", "globpool"])
def test_deepshap_converges_on_the_accessibility_head(head):
    assert _shap_warnings(tiny(acc_head=head)) == []
    broken = tiny(acc_head=head)
    broken.blocks[0].relu = _FunctionalReLU()  # negative control: the check can fail
    assert _shap_warnings(broken)
