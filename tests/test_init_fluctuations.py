"""Kernel fluctuations at initialisation: samplers, simulation against exact results,
the 1/n theory, and the depth dependence for Gaussian versus orthogonal weights."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dlrepro.init.cli import main, params_from_json
from dlrepro.init.curves import draw_groups, fit_slopes
from dlrepro.init.fluctuations import (
    FluctuationParams,
    asymptotic_slope,
    gaussian_moments,
    run_fluctuations,
    simulate_kernels,
    summarize_kernels,
    theory_fluctuations,
)
from dlrepro.init.inits import INITS, TanhMLP, get_init, project, register_init, sample_weights


@pytest.fixture(scope="module")
def both_draws():
    """Width 32, depth 8 (l/n <= 1/4), 1500 draws: reliable to a few per cent."""
    params = FluctuationParams(widths=[32], depth=8, n_inits=1500, seed=3)
    return run_fluctuations(params)


@pytest.fixture(scope="module")
def both_inits(both_draws):
    return both_draws[0]


def _slopes(run, fit_from):
    table, draws = run
    return fit_slopes(draw_groups(draws, None), table, fit_from, 300, 0, asymptotic_slope)


# --- samplers ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_out,n_in", [(16, 16), (24, 10), (10, 24)])
def test_orthogonal_weights_are_scaled_semi_orthogonal(n_out, n_in):
    w = sample_weights("orthogonal", 5, n_out, n_in, c_w=2.0, generator=torch.Generator().manual_seed(0))
    assert w.shape == (5, n_out, n_in)
    if n_out >= n_in:
        gram, target = w.transpose(1, 2) @ w, 2.0 * n_out / n_in * torch.eye(n_in, dtype=w.dtype)
    else:
        gram, target = w @ w.transpose(1, 2), 2.0 * torch.eye(n_out, dtype=w.dtype)
    torch.testing.assert_close(gram, target.expand_as(gram), atol=1e-12, rtol=0)
    # same second moment as the Gaussian ensemble: E[W_ij^2] = C_W / n_in
    assert w.square().mean().item() == pytest.approx(2.0 / n_in, rel=1e-12)


def test_orthogonal_is_haar_not_biased_by_qr_signs():
    # Without the sign correction, LAPACK's QR makes diag(Q) systematically signed.
    w = sample_weights("orthogonal", 4000, 8, 8, generator=torch.Generator().manual_seed(1))
    diag = torch.diagonal(w, dim1=-2, dim2=-1)
    assert abs(diag.mean().item()) < 4 * math.sqrt(1 / 8 / diag.numel())
    assert diag.square().mean().item() == pytest.approx(1 / 8, rel=0.05)


def test_gaussian_weights_variance_and_seed():
    g = torch.Generator().manual_seed(5)
    w = sample_weights("gaussian", 200, 20, 50, c_w=1.5, generator=g)
    assert w.var().item() == pytest.approx(1.5 / 50, rel=0.02)
    again = sample_weights("gaussian", 200, 20, 50, c_w=1.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(w, again)


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown init 'uniform'"):
        get_init("uniform")
    with pytest.raises(ValueError, match="already registered"):
        register_init("gaussian")(lambda *a: None)
    with pytest.raises(ValueError, match="n_out"):
        sample_weights("gaussian", 1, 0, 3)


def test_registry_accepts_a_new_init_by_name():
    @register_init("test-scaled-gaussian")
    def _sampler(n_draws, n_out, n_in, c_w, generator=None, dtype=torch.float64, device="cpu"):
        return 2.0 * torch.randn((n_draws, n_out, n_in), generator=generator, dtype=dtype) * math.sqrt(c_w / n_in)

    try:
        model = TanhMLP(4, 6, 2).double().initialize("test-scaled-gaussian", generator=torch.Generator().manual_seed(0))
        assert model.layers[1].weight.shape == (6, 6)
        _, theory = theory_fluctuations("test-scaled-gaussian", 6, 3, 4)
        assert np.isnan(theory).all()  # no theory registered for it
    finally:
        del INITS["test-scaled-gaussian"]


# --- simulation against exact finite-width results ----------------------------------------


def test_gaussian_first_two_layers_match_exact_finite_width_formulas():
    n, k1 = 16, 1.0
    g_hat, z4 = simulate_kernels("gaussian", n, 2, 6000, input_dim=10, input_kernel=k1, seed=0)
    table = summarize_kernels(g_hat, z4, n)
    # layer 1: G_hat = K1 chi^2_n / n exactly => n Var / mean^2 = 2, V = 0
    first = table.iloc[0]
    assert first.kernel_mean == pytest.approx(k1, rel=0.02)
    assert abs(first.normalized_variance - 2.0) < 4 * first.normalized_variance_se
    assert abs(first.four_point_vertex) < 0.3
    # layer 2: G_hat = G_sigma chi^2_n/n, G_sigma = mean of n i.i.d. tanh^2 => exact:
    s1, s2, _ = gaussian_moments(k1)
    exact = 2 + (n + 2) / n * (s2 - s1**2) / s1**2
    second = table.iloc[1]
    assert second.kernel_mean == pytest.approx(s1, rel=0.02)
    assert abs(second.normalized_variance - exact) < 4 * second.normalized_variance_se


@pytest.mark.parametrize("input_dim", [8, 64])
def test_orthogonal_first_layer_fluctuation_is_the_projection_term(input_dim):
    n = 16
    g_hat, z4 = simulate_kernels("orthogonal", n, 1, 4000, input_dim=input_dim, seed=2)
    row = summarize_kernels(g_hat, z4, n).iloc[0]
    exact = 2.0 * max(0, input_dim - n) / (input_dim + 2)  # Beta-distributed projection
    _, theory = theory_fluctuations("orthogonal", n, 1, input_dim)
    assert theory[0] == pytest.approx(exact)
    if exact == 0:  # norm preserved exactly
        assert row.normalized_variance < 1e-20
    else:
        assert abs(row.normalized_variance - exact) < 4 * row.normalized_variance_se


# --- theory --------------------------------------------------------------------------------


def test_theory_has_tanh_asymptotics():
    depth = 3000
    kernels, gauss = theory_fluctuations("gaussian", 100, depth, 100)
    _, orth = theory_fluctuations("orthogonal", 100, depth, 100)
    layers = np.arange(1, depth + 1)
    assert kernels[-1] * 2 * depth == pytest.approx(1.0, rel=0.05)  # K ~ 1/(2l)
    assert np.polyfit(layers[-1000:], gauss[-1000:], 1)[0] == pytest.approx(2 / 3, abs=0.01)
    assert orth[-1] < 1e-3 and orth[-1] < orth[100]  # decays: no growth with depth
    assert get_init("gaussian").asymptotic_slope == pytest.approx(2 / 3)


def test_theory_matches_rsh_four_point_recursion_for_gaussian():
    # Independent check: V' = C_W^2 Var(tanh^2) + chi^2 V, F = 2 + V/K^2 (RYH eq. 4.90).
    kernels, normalized = theory_fluctuations("gaussian", 50, 12, 50, input_kernel=0.7)
    k, v = 0.7, 0.0
    for layer in range(12):
        assert kernels[layer] == pytest.approx(k, rel=1e-10)
        assert normalized[layer] == pytest.approx(2 + v / k**2, rel=1e-8)
        s1, s2, sz2 = gaussian_moments(k)
        chi = (sz2 - k * s1) / (2 * k**2)
        k, v = s1, (s2 - s1**2) + chi**2 * v


# --- the claims: Gaussian grows with slope ~2/3, orthogonal does not grow ------------------


def test_gaussian_fluctuations_grow_with_the_theory_slope(both_inits, both_draws):
    slopes = _slopes(both_draws, 0.0).set_index("init")
    gauss = slopes.loc["gaussian"]
    assert gauss.theory_slope == pytest.approx(0.62, abs=0.06)  # 2/3 with finite-depth corrections
    assert abs(gauss.fitted_slope - gauss.theory_slope) < 0.2
    table = both_inits[both_inits["init"] == "gaussian"]
    deviation = (table.normalized_variance - table.theory_normalized_variance).abs()
    assert (deviation < 4 * table.normalized_variance_se + 0.12 * table.theory_normalized_variance).all()


def test_orthogonal_fluctuations_do_not_grow(both_inits, both_draws):
    orth = both_inits[both_inits["init"] == "orthogonal"].set_index("layer")
    gauss = both_inits[both_inits["init"] == "gaussian"].set_index("layer")
    slope = _slopes(both_draws, 0.25).set_index("init").loc["orthogonal"]
    assert slope.fitted_slope < 0.01
    assert orth.normalized_variance.max() < 0.4
    assert (orth.normalized_variance.loc[4:] < 0.1 * gauss.normalized_variance.loc[4:]).all()
    # depth-independent four-point vertex near -2
    assert orth.four_point_vertex.loc[3:].between(-2.3, -1.4).all()


def test_kernel_mean_follows_infinite_width_kernel(both_inits):
    rel = (both_inits.kernel_mean / both_inits.theory_kernel - 1).abs()
    assert (rel < 0.1).all()  # 1/n corrections and sampling noise


# --- CLI, params, determinism -----------------------------------------------------------------


def test_params_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown key.*'widht'"):
        params_from_json(FluctuationParams, '{"widht": [8]}')
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        FluctuationParams(inits=["xavier"])
    with pytest.raises(ValueError, match="widths"):
        FluctuationParams(widths=[0])
    with pytest.raises(ValueError, match="n_inits"):
        FluctuationParams(n_inits=2)
    with pytest.raises(ValueError, match="input_kernel"):
        FluctuationParams(input_kernel=0.0)


def test_cli_fluctuations_and_slopes_are_deterministic(tmp_path):
    params = '{"widths": [8], "depth": 6, "n_inits": 64, "chunk_size": 20, "seed": 7}'
    for name in ("a", "b"):
        assert main(["fluctuations", "--params", params, "--out", str(tmp_path / f"{name}.csv"),
                     "--draws", str(tmp_path / f"{name}_draws.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a_draws.csv").read_bytes() == (tmp_path / "b_draws.csv").read_bytes()
    table = pd.read_csv(tmp_path / "a.csv")
    assert list(table.columns[:6]) == ["init", "width", "input_dim", "layer", "n_inits", "kernel_mean"]
    assert len(table) == 2 * 6
    other = '{"widths": [8], "depth": 6, "n_inits": 64, "chunk_size": 20, "seed": 8}'
    main(["fluctuations", "--params", other, "--out", str(tmp_path / "c.csv"), "--draws", str(tmp_path / "c_d.csv")])
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    analyse = ["analyse", "--fluctuations", str(tmp_path / "a.csv"), "--fluctuation-draws",
               str(tmp_path / "a_draws.csv"), "--params", '{"n_resamples": 50}']
    for name in ("s", "t"):
        assert main(analyse + ["--slopes", str(tmp_path / f"{name}.csv"),
                               "--shapes", str(tmp_path / f"{name}_shapes.csv")]) == 0
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "t.csv").read_bytes()
    assert (tmp_path / "s_shapes.csv").read_bytes() == (tmp_path / "t_shapes.csv").read_bytes()
    slopes = pd.read_csv(tmp_path / "s.csv")
    assert set(slopes["init"]) == {"gaussian", "orthogonal"}
    assert slopes.set_index("init").loc["gaussian", "asymptotic_theory_slope"] == pytest.approx(2 / 3)
    assert main(["plot", "--kind", "fluctuations", "--csv", str(tmp_path / "a.csv"),
                 "--shapes", str(tmp_path / "s_shapes.csv"), "--out", str(tmp_path / "fig")]) == 0  # fmt: skip
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").exists()


# --- the direct sampler and intervals over draws ------------------------------------------------


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("n_out,n_in", [(12, 12), (20, 8), (8, 20)])
def test_direct_projection_matches_the_weight_matrix_distribution(init, n_out, n_in):
    """W @ h drawn directly has the moments of an explicit weight draw: the per-draw
    squared norm (its mean and spread) and the first coordinate's variance."""
    gen = torch.Generator().manual_seed(4)
    h = torch.randn((1, n_in), generator=gen, dtype=torch.float64).expand(6000, n_in)
    direct = project(init, h, n_out, c_w=1.5, generator=gen)
    matrix = torch.bmm(sample_weights(init, 6000, n_out, n_in, 1.5, gen), h.unsqueeze(-1)).squeeze(-1)
    for z in (direct, matrix):
        assert z.shape == (6000, n_out)
    norms_d, norms_m = direct.square().sum(1), matrix.square().sum(1)
    expected = 1.5 * n_out / n_in * h[0].square().sum().item()
    assert norms_d.mean().item() == pytest.approx(expected, rel=0.03)
    assert norms_m.mean().item() == pytest.approx(expected, rel=0.03)
    spread_d, spread_m = norms_d.std().item(), norms_m.std().item()
    assert spread_d == pytest.approx(spread_m, rel=0.08, abs=1e-9 * expected)
    assert direct[:, 0].var().item() == pytest.approx(matrix[:, 0].var().item(), rel=0.08)


def test_direct_sampler_simulation_agrees_with_matrix_sampler():
    curves = {}
    for sampler in ("matrix", "direct"):
        g_hat, z4 = simulate_kernels("gaussian", 16, 6, 3000, 16, seed=5, sampler=sampler)
        curves[sampler] = summarize_kernels(g_hat, z4, 16)
    a, b = curves["matrix"], curves["direct"]
    se = np.hypot(a.normalized_variance_se, b.normalized_variance_se)
    assert (np.abs(a.normalized_variance - b.normalized_variance) < 4 * se).all()
    with pytest.raises(ValueError, match="sampler"):
        simulate_kernels("gaussian", 4, 2, 4, 4, sampler="fast")


def test_slope_interval_resamples_draws_and_is_wider_than_ols(both_draws):
    """Depths share their draws, so the interval over draws is wider than the
    least-squares error that treats depths as independent; it covers the theory slope."""
    slopes = _slopes(both_draws, 0.0).set_index("init")
    gauss = slopes.loc["gaussian"]
    assert gauss.slope_ci_lo < gauss.fitted_slope < gauss.slope_ci_hi
    assert gauss.slope_se > 2 * gauss.ols_se
    assert gauss.slope_ci_lo < gauss.theory_slope < gauss.slope_ci_hi


def test_width_sweep_cli_is_deterministic_and_extrapolates(tmp_path):
    params = '{"widths": [8, 16, 32], "depth": 8, "n_inits": 400, "n_resamples": 50, "seed": 2}'
    for name in ("a.csv", "b.csv"):
        assert main(["width-sweep", "--params", params, "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    table = pd.read_csv(tmp_path / "a.csv").set_index("kind")
    measured = table.loc["measured"].set_index("width")
    assert sorted(measured.index) == [8, 16, 32]
    assert (measured.ci_lo <= measured.fitted_slope).all() and (measured.fitted_slope <= measured.ci_hi).all()
    drop = table.loc["narrow_minus_wide"]
    assert drop.fitted_slope == pytest.approx(measured.loc[8, "fitted_slope"] - measured.loc[32, "fitted_slope"])
    extra = table.loc["extrapolated"]
    assert extra.asymptotic_theory_slope == pytest.approx(2 / 3) and np.isfinite(extra.fitted_slope)
    with pytest.raises(ValueError, match="at least two distinct"):
        params_from_json(__import__("dlrepro.init.sweep", fromlist=["x"]).WidthSweepParams, '{"widths": [8]}')
