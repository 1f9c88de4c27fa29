"""Empirical NTK: torch.func result against an autograd-per-output reference and a
finite difference, the fast layer-average path against the generic one, and the depth
dependence for Gaussian versus orthogonal weights."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dlrepro.init.cli import main, params_from_json
from dlrepro.init.curves import draw_groups, fit_slopes
from dlrepro.init.inits import TanhMLP
from dlrepro.init.ntk import NTKParams, empirical_ntk, ntk_layer_average, relative_ntk_change, run_ntk


def _tiny(init="gaussian", c_b=0.2, n_out=3):
    gen = torch.Generator().manual_seed(11)
    return TanhMLP(5, 4, 3, n_out=n_out).double().initialize(init, c_w=1.0, c_b=c_b, generator=gen)


def _reference_ntk(model, x, scales):
    """Theta from one autograd.grad call per (input, output), per-parameter weights."""
    names = [name for name, _ in model.named_parameters()]
    rows = []
    for a in range(x.shape[0]):
        out = model(x[a : a + 1])[0]
        for i in range(out.shape[0]):
            grads = torch.autograd.grad(out[i], list(model.parameters()), retain_graph=True)
            rows.append(torch.cat([math.sqrt(scales[n]) * g.flatten() for n, g in zip(names, grads)]))
    jac = torch.stack(rows)
    n_in, n_out = x.shape[0], model.layers[-1].out_features
    return (jac @ jac.T).reshape(n_in, n_out, n_in, n_out).permute(0, 2, 1, 3)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_empirical_ntk_matches_autograd_per_output_reference(init):
    model = _tiny(init)
    scales = model.lr_scales(lambda_w=0.8, lambda_b=0.3)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = {name: p.detach() for name, p in model.named_parameters()}
    theta = empirical_ntk(model, params, x, lr_scales=scales)
    assert theta.shape == (4, 4, 3, 3)
    torch.testing.assert_close(theta, _reference_ntk(model, x, scales), atol=1e-12, rtol=1e-10)
    # symmetric and positive semi-definite as a (4*3) x (4*3) matrix
    flat = theta.permute(0, 2, 1, 3).reshape(12, 12)
    torch.testing.assert_close(flat, flat.T)
    assert torch.linalg.eigvalsh(flat).min() > -1e-10


def test_empirical_ntk_cross_kernel_matches_finite_differences():
    model = _tiny()
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    x1 = torch.randn(1, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x2 = torch.randn(1, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    theta = empirical_ntk(model, params, x1, x2)[0, 0]
    # central differences of f(x1), f(x2) along every parameter coordinate
    eps, jac1, jac2 = 1e-6, [], []
    for name, value in params.items():
        for k in range(value.numel()):
            columns = []
            for sign in (1, -1):
                shifted = dict(params)
                bumped = value.clone().flatten()
                bumped[k] += sign * eps
                shifted[name] = bumped.reshape(value.shape)
                columns.append(torch.func.functional_call(model, shifted, (torch.cat([x1, x2]),)))
            diff = (columns[0] - columns[1]) / (2 * eps)
            jac1.append(diff[0])
            jac2.append(diff[1])
    reference = torch.stack(jac1, 1) @ torch.stack(jac2, 1).T
    torch.testing.assert_close(theta, reference, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_layer_average_fast_path_equals_generic_ntk(depth):
    model = TanhMLP(6, 5, 3).double().initialize("orthogonal", c_b=0.3, generator=torch.Generator().manual_seed(4))
    scales = model.lr_scales(0.7, 0.5)
    params = {name: p.detach() for name, p in model.named_parameters()}
    sub = {k: v for k, v in params.items() if int(k.split(".")[1]) < depth}
    x = torch.randn(6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    generic = empirical_ntk(model, sub, x[None], lr_scales=scales, n_layers=depth)[0, 0]
    fast = ntk_layer_average(model, params, x, scales, depth)
    assert fast.item() == pytest.approx(generic.diagonal().mean().item(), rel=1e-12)


def test_relative_ntk_change():
    theta = torch.eye(3)
    assert relative_ntk_change(theta, theta) == 0.0
    assert relative_ntk_change(theta, 2 * theta) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def ntk_run():
    params = NTKParams(widths=[16], depths=[1, 2, 4, 8, 12], n_inits=300, chunk_size=100, seed=1)
    return run_ntk(params)


@pytest.fixture(scope="module")
def ntk_table(ntk_run):
    return ntk_run[0]


def test_depth_one_ntk_is_deterministic(ntk_table):
    # Theta_ii = lambda_b + lambda_W |x|^2 / n_0 = 1 + 1 for the unit input kernel
    first = ntk_table[ntk_table["depth"] == 1]
    assert np.allclose(first["ntk_mean"], 2.0)
    assert np.allclose(first["ntk_normalized_variance"], 0.0, atol=1e-20)


def test_gaussian_ntk_variance_grows_orthogonal_stays_small(ntk_table, ntk_run):
    gauss = ntk_table[ntk_table["init"] == "gaussian"].set_index("depth")
    orth = ntk_table[ntk_table["init"] == "orthogonal"].set_index("depth")
    g = gauss["ntk_normalized_variance"]
    assert (np.diff(g.to_numpy()) > 0).all()  # grows with depth
    assert g.loc[12] > 0.4
    assert (orth["ntk_normalized_variance"].loc[4:] < 0.25 * g.loc[4:]).all()
    # mean NTK is the same for both at leading order in 1/n
    assert np.allclose(orth["ntk_mean"], gauss["ntk_mean"], rtol=0.05)
    slopes = fit_slopes(draw_groups(None, ntk_run[1]), None, fit_from=0.0, n_resamples=200, seed=0).set_index("init")
    assert set(slopes["quantity"]) == {"ntk_normalized_variance"}
    assert slopes.loc["gaussian", "fitted_slope"] > 5 * max(slopes.loc["orthogonal", "fitted_slope"], 0.001)
    # the per-draw table reproduces the summary's normalised variance
    assert np.allclose(ntk_table.sort_values(["init", "depth"])["ntk_normalized_variance"],
                       ntk_run[1].groupby(["init", "depth"])["ntk"].agg(lambda v: 16 * v.var() / v.mean() ** 2))
    assert slopes.loc["gaussian", "slope_ci_lo"] > 0


def test_ntk_params_and_cli(tmp_path):
    with pytest.raises(ValueError, match="unknown key.*'depth'"):
        params_from_json(NTKParams, '{"depth": 3}')
    with pytest.raises(ValueError, match="strictly increasing"):
        NTKParams(depths=[4, 2])
    params = '{"widths": [6], "depths": [1, 3], "n_inits": 8, "chunk_size": 4}'
    out, draws = tmp_path / "ntk.csv", tmp_path / "ntk_draws.csv"
    assert main(["ntk", "--params", params, "--out", str(out), "--draws", str(draws)]) == 0
    first, first_draws = out.read_bytes(), draws.read_bytes()
    assert main(["ntk", "--params", params, "--out", str(out), "--draws", str(draws)]) == 0
    assert out.read_bytes() == first and draws.read_bytes() == first_draws
    assert list(pd.read_csv(draws).columns) == ["init", "width", "draw", "depth", "ntk"]
    table = pd.read_csv(out)
    assert list(table.columns) == ["init", "width", "depth", "n_inits", "ntk_mean", "ntk_normalized_variance",
                                   "ntk_normalized_variance_se"]  # fmt: skip
    assert main(["plot", "--kind", "ntk", "--csv", str(out), "--out", str(tmp_path / "ntk.png")]) == 0
    assert (tmp_path / "ntk.png").exists() and (tmp_path / "ntk.pdf").exists()
