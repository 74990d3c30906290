"""The fused DeepLIFT/SHAP of :func:`bpaitac.interpret.attribution.deep_shap` against
tangermeme's ``deep_lift_shap`` called once per output (:func:`deep_shap_tangermeme`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bpaitac.data.sequence import one_hot
from bpaitac.interpret import attribution as attr
from bpaitac.model.network import ACC_HEADS, ACC_OUTPUTS, build_model


def lineage_wrapper(head: str, acc_output: str, seed: int = 1) -> attr.LineageAccessibility:
    """A tiny network (6 tasks, 3 lineages) with non-trivial BN statistics and a live output."""
    torch.manual_seed(seed)
    model = build_model(
        {
            "filters": 8,
            "dilated_blocks": 2,
            "acc_head": head,
            "n_tasks": 6,
            "acc_output": acc_output,
        }
    )
    with torch.no_grad():
        model.acc_head.linear.bias.add_(1.0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    mat = np.zeros((6, 3), dtype=np.float32)
    mat[np.arange(6), np.arange(6) % 3] = 1.0
    return attr.LineageAccessibility(model.eval(), mat)


def sequences(n: int, length: int = 1000, seed: int = 0) -> torch.Tensor:
    return one_hot(torch.randint(0, 4, (n, length), generator=torch.Generator().manual_seed(seed)))


def assert_same(new: attr.Attributions, ref: attr.Attributions) -> None:
    scale = np.abs(ref.hypothetical).max()
    assert scale > 1e-4  # not trivially zero
    np.testing.assert_allclose(new.hypothetical, ref.hypothetical, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(new.output, ref.output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.deltas, ref.deltas, rtol=0, atol=1e-5)


@pytest.mark.parametrize("acc_output", ACC_OUTPUTS)
@pytest.mark.parametrize("head", ACC_HEADS)
def test_deep_shap_equals_tangermeme_per_output(head, acc_output):
    wrapper = lineage_wrapper(head, acc_output)
    x = sequences(5)
    kw = {"n_shuffles": 4, "seed": 7, "batch_size": 8}  # batches split a sequence's references
    new = attr.deep_shap(wrapper, x, **kw)
    ref = attr.deep_shap_tangermeme(wrapper, x, **kw)
    assert new.hypothetical.shape == (5, 3, 4, 1000)
    assert_same(new, ref)
    assert new.n_warnings == 0 and np.abs(new.deltas).max() < 1e-4


def test_deep_shap_module_called_twice_and_given_references():
    class Twice(nn.Module):
        """One ReLU and one max-pool module, each called twice per forward pass."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv1d(4, 6, 5), nn.Conv1d(6, 6, 3)
            self.relu, self.pool = nn.ReLU(), nn.MaxPool1d(4, 2)  # overlapping windows
            self.linear = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pool(self.relu(self.conv1(x)))
            h = self.pool(self.relu(self.conv2(h)))
            return self.linear(h.mean(-1))

    torch.manual_seed(0)
    model = Twice()
    x = sequences(3, length=200, seed=2)
    refs = attr.references_for(x, 5, seed=3)
    new = attr.deep_shap(model, x, n_shuffles=5, seed=0, references=refs, batch_size=64)
    ref = attr.deep_shap_tangermeme(model, x, n_shuffles=5, seed=0, references=refs)
    assert_same(new, ref)


def test_deep_shap_refuses_a_nonlinearity_without_a_rule():
    model = nn.Sequential(nn.Conv1d(4, 2, 5), nn.Tanh(), nn.AdaptiveAvgPool1d(1), nn.Flatten())
    with pytest.raises(ValueError, match="Tanh"):
        attr.deep_shap(model, sequences(2, length=50), n_shuffles=2, seed=0)

    # An unused module of such a type (the network's profile softmax) is no obstacle.
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(4, 2, 5), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
            self.spare = nn.Softmax(dim=-1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)[:, :, 0]

    res = attr.deep_shap(Unused(), sequences(2, length=50), n_shuffles=2, seed=0)
    assert res.hypothetical.shape == (2, 2, 4, 50)
