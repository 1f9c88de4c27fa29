"""E(n)-equivariant graph network (EGNN, Satorras, Hoogeboom & Welling 2021) that predicts
the noise on 3-D coordinates, conditioned on the molecular graph and the diffusion time.

One readable file in the spirit of nanoGPT's ``model.py``. Molecules are small, so a batch
is dense: ``B`` molecules padded to ``N`` atoms with a mask, every pair of atoms of a
molecule is an edge, and the graph enters through pair features (bond type, topological
distance; :func:`dlrepro.conformers.dataset.pair_features`). Layer ``l`` (EGNN eq. 3-6)::

    m_ij   = phi_e(h_i, h_j, rbf(|x_i - x_j|), a_ij)              (messages, invariant)
    x_i   <- x_i + mean_j (x_i - x_j) / (|x_i - x_j| + 1) * C tanh(phi_x(m_ij))   (equivariant)
    h_i   <- h_i + phi_h(h_i, sum_j m_ij)                          (invariant)

Distances enter through Gaussian radial basis functions (``rbf``, as SchNet, Schuett et
al. 2017: ``RBF_CENTRES`` centres on 0..``RBF_MAX`` model units) plus ``log(1 + d)``
instead of EGNN's raw squared distance: the basis resolves bond lengths far better at
the same width, and the logarithm keeps far-apart atoms visible without large
activations. The bounded coordinate step ``C tanh(.)`` (``C = COORD_RANGE``) and the
normalised difference ``(x_i - x_j) / (|x_i - x_j| + 1)`` is EDM's (Hoogeboom et al.
2022) stabilisation. The predicted noise is ``x_L - x_0`` projected onto the
centre-of-mass-free subspace, so it rotates with the input, ignores translations and is
permutation-equivariant; padded atoms never influence real ones.

The first linear map of ``phi_e`` acts on a concatenation; it is written as a sum of
linear maps of its parts (``src(h_i) + dst(h_j) + ...``), which is the same function but
avoids materialising ``[B, N, N, 2H]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from dlrepro.conformers import require_positive_int
from dlrepro.conformers.dataset import ATOM_FEATURES, EDGE_FEATURES


@dataclass
class EGNNConfig:
    hidden: int = 48
    layers: int = 3

    def __post_init__(self) -> None:
        require_positive_int(self, "hidden", "layers")


def remove_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract each molecule's centre (mean over its real atoms); padded atoms stay zero."""
    m = mask.unsqueeze(-1)
    mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    return (x - mean) * m


RBF_CENTRES = 24
RBF_MAX = 12.0
COORD_RANGE = 3.0  # largest coordinate step of one layer (model units)


# Lower bound on the Gaussians' exponent. exp(-80) = 1.8e-35 is still a normal float32;
# below about -87.3 exp underflows, and PyTorch's CPU exp takes a slow path there (measured
# 24 ms vs 0.3 ms for 600k values, with or without denormal flushing). Most of a molecule's
# distance-centre pairs lie that far out, so the clamp makes the basis several times
# cheaper; it changes each such feature by less than 1e-34 and its gradient from a value
# below 1e-34 to zero (``python -m benchmarks denormals`` measures both sides).
RBF_MIN_EXPONENT = -80.0


def rbf(dist: torch.Tensor) -> torch.Tensor:
    """Distance features [..., 1] -> [..., RBF_CENTRES + 1]: Gaussian basis and log(1 + d)."""
    centres = torch.linspace(0.0, RBF_MAX, RBF_CENTRES, device=dist.device, dtype=dist.dtype)
    width = RBF_MAX / (RBF_CENTRES - 1)
    exponent = (-(((dist - centres) / width) ** 2)).clamp(min=RBF_MIN_EXPONENT)
    return torch.cat([torch.exp(exponent), torch.log1p(dist)], dim=-1)


class EGNNLayer(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        # phi_e, first layer split by input: h_i, h_j, distance, pair features
        self.src = nn.Linear(hidden, hidden)
        self.dst = nn.Linear(hidden, hidden, bias=False)
        self.dist = nn.Linear(RBF_CENTRES + 1, hidden, bias=False)
        self.pair = nn.Linear(EDGE_FEATURES, hidden, bias=False)
        self.edge_mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1, bias=False))
        nn.init.xavier_uniform_(self.coord_mlp[-1].weight, gain=0.001)  # start near the identity
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h, x, pairs, edge_mask):
        # h [B,N,H], x [B,N,3], pairs [B,N,N,E], edge_mask [B,N,N] (no self, no padding)
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # [B,N,N,3], x_i - x_j
        dist = diff.pow(2).sum(-1, keepdim=True).add(1e-8).sqrt()  # [B,N,N,1]
        m = self.src(h).unsqueeze(2) + self.dst(h).unsqueeze(1) + self.dist(rbf(dist)) + self.pair(pairs)
        m = self.edge_mlp(m) * edge_mask.unsqueeze(-1)  # [B,N,N,H]
        n_neighbours = edge_mask.sum(-1, keepdim=True).clamp(min=1)  # [B,N,1]
        step = COORD_RANGE * torch.tanh(self.coord_mlp(m)) * edge_mask.unsqueeze(-1)
        x = x + (diff / (dist + 1) * step).sum(2) / n_neighbours
        h = h + self.node_mlp(torch.cat([self.norm(h), m.sum(2) / n_neighbours], dim=-1))
        return h, x


class EGNN(nn.Module):
    """Noise predictor ``eps(x_t, t, graph)`` for a batch of padded molecules."""

    def __init__(self, config: EGNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(ATOM_FEATURES + 1, config.hidden)  # atom features + time
        self.layers = nn.ModuleList(EGNNLayer(config.hidden) for _ in range(config.layers))

    def forward(self, x: torch.Tensor, t: torch.Tensor, atoms: torch.Tensor, pairs: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """x [B,N,3] noisy coordinates, t [B] time in [0, 1], atoms [B,N,F], pairs [B,N,N,E],
        mask [B,N] -> predicted noise [B,N,3], centre-free, zero on padding."""
        b, n = mask.shape
        eye = torch.eye(n, dtype=mask.dtype, device=mask.device)
        edge_mask = mask.unsqueeze(2) * mask.unsqueeze(1) * (1 - eye)
        h = self.embed(torch.cat([atoms, t.view(b, 1, 1).expand(b, n, 1).to(atoms.dtype)], dim=-1))
        h = h * mask.unsqueeze(-1)
        x0 = x
        for layer in self.layers:
            h, x = layer(h, x, pairs, edge_mask)
            h = h * mask.unsqueeze(-1)
        return remove_mean(x - x0, mask)
