"""Losses: the identities of the paper's Methods and gradients on hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import multinomial

from bpaitac.model.losses import (
    model_loss,
    mse_log_counts,
    mse_per_base,
    multinomial_log_coef,
    per_base_targets,
    poisson_per_base,
    profile_ce,
    profile_jsd_loss,
    profile_mnll,
    profile_mnll_normalised,
    uses_counts,
    uses_profile,
)
from bpaitac.numeric import bin_profile


def random_case(seed=0, b=3, t=4, length=20):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, length, generator=g, dtype=torch.float64)
    obs = torch.poisson(torch.full((b, t, length), 1.5, dtype=torch.float64), generator=g)
    counts = obs.sum(-1) * 1.3
    log_counts = torch.randn(b, t, generator=g, dtype=torch.float64)
    return logits, obs, counts, log_counts


def test_ce_hand_computed_value_and_gradient():
    logits = torch.tensor([[[0.0, math.log(2.0)]]], requires_grad=True)  # p = 1/3, 2/3
    obs = torch.tensor([[[1.0, 3.0]]])
    loss = profile_ce(logits, obs)
    expected = -(0.25 * math.log(1 / 3) + 0.75 * math.log(2 / 3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d CE / d z = p - k / n
    assert logits.grad[0, 0].tolist() == pytest.approx([1 / 3 - 1 / 4, 2 / 3 - 3 / 4], abs=1e-6)


def test_mnll_hand_computed_gradient_is_count_weighted():
    logits = torch.tensor([[[0.0, math.log(2.0)]]], requires_grad=True)
    obs = torch.tensor([[[1.0, 3.0]]])
    profile_mnll(logits, obs).backward()
    # d MNLL / d z = n p - k
    assert logits.grad[0, 0].tolist() == pytest.approx([4 / 3 - 1, 8 / 3 - 3], abs=1e-6)


def test_mnll_is_the_multinomial_negative_log_likelihood():
    logits, obs, _, _ = random_case()
    nll = profile_mnll(logits, obs, reduction="none")
    p = torch.softmax(logits, -1).numpy()
    k = obs.numpy()
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            ref = -multinomial.logpmf(k[i, j], n=k[i, j].sum(), p=p[i, j])
            assert nll[i, j].item() == pytest.approx(ref, rel=1e-9)


def test_mnll_equals_count_weighted_ce_up_to_an_observation_constant():
    logits, obs, _, _ = random_case(seed=1)
    n = obs.sum(-1)
    mnll = profile_mnll(logits, obs, reduction="none")
    ce = profile_ce(logits, obs, reduction="none")
    const = -multinomial_log_coef(obs)
    torch.testing.assert_close(mnll, n * ce + const)
    # The constant does not depend on the prediction: same difference for other logits.
    other = logits + torch.randn_like(logits)
    diff = profile_mnll(other, obs, reduction="none") - n * profile_ce(other, obs, reduction="none")
    torch.testing.assert_close(diff, const)


def test_profile_losses_ignore_tracks_without_insertions():
    logits, obs, _, _ = random_case(seed=2, b=2, t=1)
    obs[1] = 0
    for fn in (profile_ce, profile_mnll, profile_jsd_loss):
        assert fn(logits, obs).item() == pytest.approx(fn(logits[:1], obs[:1]).item())


def test_lambda_zero_ignores_profiles():
    logits, obs, counts, log_counts = random_case(seed=3)
    logits.requires_grad_(True)
    log_counts.requires_grad_(True)
    loss = model_loss("composite_ce", 0.0, logits, log_counts, obs, counts)
    assert loss.item() == pytest.approx(mse_log_counts(log_counts, counts).item())
    other = model_loss("composite_ce", 0.0, logits * 3, log_counts, obs * 2 + 1, counts)
    assert other.item() == pytest.approx(loss.item())
    loss.backward()
    assert logits.grad is None or torch.all(logits.grad == 0)


def test_lambda_one_ignores_totals():
    logits, obs, counts, log_counts = random_case(seed=4)
    logits.requires_grad_(True)
    log_counts.requires_grad_(True)
    cases = (
        ("composite_ce", "normalised_total", profile_ce(logits, obs), True),
        ("composite_mnll", "insertions", profile_mnll(logits, obs), True),
        # The authors' MNLL weights each profile by its observed (normalised) total.
        ("composite_mnll", "normalised_total", profile_mnll_normalised(logits, obs, counts), False),
    )
    for name, weight, expected, ignores_observed_totals in cases:
        loss = model_loss(name, 1.0, logits, log_counts, obs, counts, mnll_weight=weight)
        assert loss.item() == pytest.approx(expected.item())
        other_counts = counts * 9 if ignores_observed_totals else counts
        other = model_loss(
            name, 1.0, logits, log_counts * 5 - 2, obs, other_counts, mnll_weight=weight
        )
        assert other.item() == pytest.approx(loss.item())
        loss.backward()
        assert log_counts.grad is None or torch.all(log_counts.grad == 0)


def test_composite_is_the_lambda_mixture():
    logits, obs, counts, log_counts = random_case(seed=5)
    lam = 0.3
    mse = (1 - lam) * mse_log_counts(log_counts, counts)
    loss = model_loss("composite_mnll", lam, logits, log_counts, obs, counts)
    expected = mse + lam * profile_mnll_normalised(logits, obs, counts)  # the default weighting
    assert loss.item() == pytest.approx(expected.item())
    full = model_loss(
        "composite_mnll", lam, logits, log_counts, obs, counts, mnll_weight="insertions"
    )
    assert full.item() == pytest.approx((mse + lam * profile_mnll(logits, obs)).item())
    with pytest.raises(ValueError, match="mnll_weight"):
        model_loss("composite_mnll", lam, logits, log_counts, obs, counts, mnll_weight="n")


def test_authors_mnll_is_the_normalised_total_times_the_ce():
    """mnll_weight normalised_total (nuriachandra/bpAITAC MNLLLoss): N * CE, no constant."""
    logits, obs, counts, _ = random_case(seed=6)
    obs[0, 0] = 0  # a track without insertions carries no weight
    loss = profile_mnll_normalised(logits, obs, counts, reduction="none")
    ce = profile_ce(logits, obs, reduction="none")
    torch.testing.assert_close(loss, counts * ce)
    keep = obs.sum(-1) > 0
    mean = profile_mnll_normalised(logits, obs, counts)
    assert mean.item() == pytest.approx((counts * ce)[keep].mean().item())
    z = torch.tensor([[[0.0, math.log(2.0)]]], requires_grad=True)  # p = 1/3, 2/3
    profile_mnll_normalised(z, torch.tensor([[[1.0, 3.0]]]), torch.tensor([[10.0]])).backward()
    # d (N CE) / d z = N (p - k / n)
    assert z.grad[0, 0].tolist() == pytest.approx([10 * (1 / 3 - 1 / 4), 10 * (2 / 3 - 3 / 4)])


def test_mse_log_counts_uses_log1p_and_its_gradient():
    pred = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
    counts = torch.tensor([[2.0, 0.0]])  # log1p -> log 3, 0: perfect
    loss = mse_log_counts(pred, counts)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    pred2 = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss2 = mse_log_counts(pred2, torch.tensor([[math.e - 1, 0.0]]))  # targets 1, 0
    assert loss2.item() == pytest.approx((0 + 4) / 2, rel=1e-6)
    loss2.backward()
    assert pred2.grad.tolist()[0] == pytest.approx([0.0, 2.0], abs=1e-6)  # 2 (a - y) / 2


def test_per_base_targets_scale_profile_to_one_plus_total():
    obs = torch.tensor([[[1.0, 3.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])
    counts = torch.tensor([[7.0], [3.0]])
    y = per_base_targets(obs, counts, "normalised")
    assert y[0, 0].tolist() == pytest.approx([2.0, 6.0, 0.0, 0.0])
    assert y[1, 0].tolist() == pytest.approx([1.0] * 4)  # uniform when no insertions
    # The default (the paper's "measured count data", the authors' code): the raw total n = 4.
    raw = per_base_targets(obs, counts)
    assert raw[0, 0].tolist() == pytest.approx([1.25, 3.75, 0.0, 0.0])
    assert raw[1, 0].tolist() == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="per_base_counts"):
        per_base_targets(obs, counts, "cpm")


def test_poisson_hand_computed_gradient_and_optimum():
    # Two positions, p = 1/3, 2/3; a = log(1 + N_hat); y = (k / n) * (1 + N).
    logits = torch.tensor([[[0.0, math.log(2.0)]]], requires_grad=True)
    log_counts = torch.tensor([[math.log(6.0)]], requires_grad=True)  # rates 2, 4
    obs = torch.tensor([[[1.0, 1.0]]])
    counts = torch.tensor([[3.0]])  # y = 2, 2
    loss = poisson_per_base(logits, log_counts, obs, counts, "normalised")
    expected = (2 - 2 * math.log(2)) + (4 - 2 * math.log(4))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/da sum(r - y log r) = sum r - sum y = 6 - 4; d/dz_i = r_i - y_i - p_i (sum r - sum y)
    assert log_counts.grad.item() == pytest.approx(2.0, rel=1e-6)
    assert logits.grad[0, 0].tolist() == pytest.approx([0 - 2 / 3, 2 - 4 / 3], abs=1e-6)
    # At the optimum (p = k / n, exp(a) = 1 + N) every gradient vanishes.
    z = torch.zeros(1, 1, 2, requires_grad=True)
    a = torch.tensor([[math.log(4.0)]], requires_grad=True)
    poisson_per_base(z, a, obs, counts, "normalised").backward()
    assert z.grad.abs().max().item() < 1e-6 and abs(a.grad.item()) < 1e-6
    # With raw counts (the default) the optimum is exp(a) = 1 + n, the raw insertions.
    z = torch.zeros(1, 1, 2, requires_grad=True)
    a = torch.tensor([[math.log(3.0)]], requires_grad=True)
    poisson_per_base(z, a, obs, counts).backward()
    assert z.grad.abs().max().item() < 1e-6 and abs(a.grad.item()) < 1e-6


def test_poisson_matches_torch_poisson_nll():
    logits, obs, counts, log_counts = random_case(seed=6)
    ours = poisson_per_base(logits, log_counts, obs, counts)
    y = per_base_targets(obs, counts)  # both with the default, raw counts
    log_rate = torch.log_softmax(logits, -1) + log_counts.unsqueeze(-1)
    ref = torch.nn.functional.poisson_nll_loss(log_rate, y, log_input=True, reduction="sum")
    assert ours.item() == pytest.approx(ref.item() / (obs.shape[0] * obs.shape[1]), rel=1e-9)


def test_mse_per_base_hand_computed():
    logits = torch.tensor([[[0.0, 0.0]]], requires_grad=True)  # p = 1/2, 1/2
    log_counts = torch.tensor([[math.log(4.0)]], requires_grad=True)  # rates 2, 2
    obs = torch.tensor([[[1.0, 0.0]]])
    counts = torch.tensor([[2.0]])  # y = 3, 0
    loss = mse_per_base(logits, log_counts, obs, counts, scale="linear", counts="normalised")
    assert loss.item() == pytest.approx((1 + 4) / 2, rel=1e-6)
    loss.backward()
    # d/da mean((r - y)^2) = mean(2 (r - y) r) = (2 * -1 * 2 + 2 * 2 * 2) / 2
    assert log_counts.grad.item() == pytest.approx(2.0, rel=1e-6)
    # The authors' per-base MSE (the default): of log(1 + r) and log(1 + y).
    logged = mse_per_base(logits, log_counts, obs, counts, counts="normalised")
    expected = ((math.log(3) - math.log(4)) ** 2 + math.log(3) ** 2) / 2
    assert logged.item() == pytest.approx(expected, rel=1e-6)
    # Both defaults (log1p, raw counts: y = 2, 0 from one insertion): log 3 vs log 3, log 3 vs 0.
    default = model_loss("mse", 0.5, logits, log_counts, obs, counts)
    assert default.item() == pytest.approx(math.log(3) ** 2 / 2, rel=1e-6)
    with pytest.raises(ValueError, match="per_base_mse"):
        mse_per_base(logits, log_counts, obs, counts, scale="sqrt")


def test_binning_sums_counts_and_losses_bin_observations():
    obs = torch.arange(20.0).reshape(1, 1, 20)
    assert bin_profile(obs, 5)[0, 0].tolist() == [10.0, 35.0, 60.0, 85.0]
    # 6 does not divide 20: three bins over the central 18 positions (1..18)
    assert bin_profile(obs, 6)[0, 0].tolist() == [21.0, 57.0, 93.0]
    logits = torch.zeros(1, 1, 4)
    # uniform prediction over 4 bins: CE = log 4 whatever the observed profile
    assert profile_ce(logits, obs).item() == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="cannot be binned"):
        profile_ce(torch.zeros(1, 1, 30), obs)


def test_jsd_matches_scipy_and_bounds():
    logits, obs, _, _ = random_case(seed=7, b=2, t=2)
    jsd = profile_jsd_loss(logits, obs, reduction="none")
    p = torch.softmax(logits, -1).numpy()
    q = (obs / obs.sum(-1, keepdim=True)).numpy()
    ref = np.array(
        [[jensenshannon(p[i, j], q[i, j], base=2) ** 2 for j in range(2)] for i in range(2)]
    )
    np.testing.assert_allclose(jsd.numpy(), ref, rtol=1e-6)
    same = torch.log(torch.tensor([[[1.0, 2.0, 1.0]]]))
    assert profile_jsd_loss(same, torch.tensor([[[1.0, 2.0, 1.0]]])).item() == pytest.approx(
        0, abs=1e-7
    )
    disjoint = torch.tensor([[[50.0, -50.0]]])
    assert profile_jsd_loss(disjoint, torch.tensor([[[0.0, 4.0]]])).item() == pytest.approx(1.0)


def test_bad_names_and_lambda_raise():
    logits, obs, counts, log_counts = random_case()
    with pytest.raises(ValueError, match="composite_ce"):
        model_loss("huber", 0.5, logits, log_counts, obs, counts)
    with pytest.raises(ValueError, match="lambda"):
        model_loss("composite_ce", 1.5, logits, log_counts, obs, counts)


def test_which_heads_a_loss_trains():
    assert not uses_profile("composite_ce", 0.0) and uses_counts("composite_ce", 0.0)
    assert uses_profile("composite_mnll", 1.0) and not uses_counts("composite_mnll", 1.0)
    assert uses_profile("poisson", 0.0) and uses_counts("mse", 1.0)
