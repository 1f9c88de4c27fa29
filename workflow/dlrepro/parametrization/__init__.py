"""Width parametrizations: standard (SP), NTK and maximal update (muP), and the coordinate check.

A parametrization says how the initialisation, an output multiplier and the learning
rate of every parameter scale with width. Following microsoft/mup (Yang et al. 2022,
"Tensor Programs V", arXiv:2203.03466), it is *applied to a model* rather than written
into it: :func:`apply_parametrization` compares each parameter's shape with the same
parameter of a base-width model, and the dimensions that differ are the "infinite" ones.
That gives every parameter a role:

========  ==================================  ===========================================
role      infinite dimensions                 examples
========  ==================================  ===========================================
input     fan_out only                        first Linear of the MLP, token/position embeddings, first conv
hidden    fan_in and fan_out                  Linear width -> width, attention, MLP blocks, conv channels -> channels
output    fan_in only                         MLP readout, ``lm_head``
vector    its one dimension                   biases, LayerNorm/RMSNorm gains
fixed     none                                everything at the base width; finite-size biases
========  ==================================  ===========================================

For ``nn.Embedding`` the layout is (fan_in, fan_out) = (num_embeddings, embedding_dim);
every other matrix is laid out like ``nn.Linear.weight``, (fan_out, fan_in). Weights with
more dimensions are convolution kernels, (fan_out, fan_in, *kernel) (transposed
convolutions: (fan_in, fan_out, *kernel)); the kernel dimensions must be finite, count
into the base fan_in of the LeCun init, and the role follows from fan_in and fan_out as
for matrices (mup does the same: the width multiplier of a kernel is its input channels').
An embedding tied to the readout (one tensor registered in an ``nn.Embedding`` and a
linear readout, mup's ``MuSharedReadout``) is an input weight whose readout gets the
output multiplier; under muP the two roles agree on init and learning rate, under SP the
embedding's rules apply, and NTK refuses it.

The abc-table
-------------
With ``m_in = fan_in / base_fan_in`` and ``m_out = fan_out / base_fan_out`` (1 for finite
dimensions), base init std ``s`` and base learning rate ``eta``, the three parametrizations
are, written in "SP form" (all weights used as they are, one output multiplier):

=======  ===========  ============  ==============  ========================
role     quantity     SP            NTK             muP
=======  ===========  ============  ==============  ========================
input    init std     s             s               s
         SGD lr       eta           eta             eta * m_out
         Adam lr      eta           eta             eta
hidden   init std     s / √m_in     s / √m_in       s / √m_in
         SGD lr       eta           eta / m_in      eta * m_out / m_in
         Adam lr      eta           eta / √m_in     eta / m_in
output   init std     s / √m_in     s / √m_in       s, output multiplier 1 / m_in
         SGD lr       eta           eta / m_in      eta * m_in
         Adam lr      eta           eta / √m_in     eta
vector   init         bias 0, gain unchanged (all three)
         SGD lr       eta           eta             eta * m_out
         Adam lr      eta           eta             eta
=======  ===========  ============  ==============  ========================

(For input weights ``m_in = 1``, so "s / √m_in" and "s" coincide; the table states the
rule every weight of SP and NTK follows.) Attention logits are scaled by
``attn_mult / sqrt(head_dim)`` under SP and NTK and by ``attn_mult / head_dim`` under muP
(TP V, Definition 4.1); with ``attn_mult = sqrt(base head_dim)`` muP coincides with SP at
the base width. Everything else is relative to the base width, so at the base width all
three parametrizations are the same model with the same optimiser.

Sources. muP: TP V Table 3 (SGD and Adam columns); the multiplier form used here, with a
width-independent readout init and an output multiplier ``1 / m_in``, is TP V's
equivalent formulation (App. J / Table 8) as implemented by microsoft/mup
(``MuReadout``, ``MuSGD``, ``MuAdam``). SP: TP V Table 3 (grey entries): fan-in init, one
global learning rate. NTK (Jacot et al. 2018): the layer computes ``(w / sqrt(fan_in)) x``
with ``w ~ N(0, 1)`` (times the base gain) and one global learning rate. We use the
abc-symmetry of Yang & Hu 2021 ("Tensor Programs IV", arXiv:2011.14522, §3): a weight
``W = n^-a w`` with ``w ~ N(0, n^-2b)`` trained with lr ``eta n^-c`` gives the same
function and the same training trajectory after ``(a, b, c) -> (a + t, b - t, c - 2t)``
for SGD and ``(a, b, c) -> (a + t, b - t, c - t)`` for Adam (exact up to Adam's epsilon,
which would have to scale like the gradient). Moving the NTK multiplier ``n^-1/2`` into
the weight therefore gives SP's init with lr ``eta / m_in`` (SGD) or ``eta / √m_in``
(Adam). We implement NTK in this SP form because it needs no forward hooks or
``torch.nn.utils.parametrize`` wrappers: the forward pass is identical under all three
parametrizations and only the initialisation, one multiplier and the optimiser's
parameter groups differ, which is also what makes the MLP and the transformer accept it
unchanged.

Initialisation: ``init="table"`` redraws every weight from the table (Gaussian, seeded);
``init="model"`` keeps the model's own initialisation and rescales each parameter
relative to the base model, as mup's ``set_base_shapes`` (see :func:`apply_parametrization`);
GPT-2's ``std / sqrt(2 n_layer)`` on the residual projections then survives in every
parametrization. ``zero_init_readout`` and ``zero_init_query`` zero the readout and the
attention queries (TP V §D.2, mutransformers' options).

Weight decay: :func:`make_optimizer` keeps ``lr * weight_decay`` of every group at its
base value (microsoft/mup's default), so the per-step shrink factor does not depend on
width; 1-D parameters (biases, gains) are not decayed (nanoGPT's convention) unless
``decay_vectors=True`` (what ``mup.MuAdamW`` does).

Requirements on the model: every readout (an output weight, or an embedding tied to the
readout) must be multiplied by the output multiplier: either its module has a float
attribute ``output_mult`` that multiplies its input (:class:`Readout`, :class:`SharedReadout`,
mup's ``MuReadout``), or the model has ``output_mult`` multiplying the readout's matmul
(``W x``, not its bias) and names the module in ``readout_modules`` (not needed when it
has only one readout). A readout nothing multiplies is refused under muP, naming the
parameter. Attention modules expose ``attn_scale`` and ``head_dim`` (and, for
``zero_init_query``, ``q_proj`` or a fused ``c_attn`` with ``n_head``).

Layout of the package: :mod:`~dlrepro.parametrization.table` (the abc-table, no torch),
:mod:`~dlrepro.parametrization.roles` (base shapes -> roles),
:mod:`~dlrepro.parametrization.apply` (init, multipliers, the :class:`Plan`),
:mod:`~dlrepro.parametrization.optim` (parameter groups),
:mod:`~dlrepro.parametrization.layers` (readout modules),
:mod:`~dlrepro.parametrization.coord` (coordinate check, figure, command line).

Coordinate check
----------------
:func:`coord_check` trains a model for a few steps at several widths and records, after
every step, the RMS of each layer's output on a fixed probe batch, and the RMS of its
change since initialisation. Layers are the outputs of every ``nn.Linear``,
convolution and ``nn.Embedding`` (pre-activations) except the readout, plus ``logits`` (the model's
output, after the output multiplier). Under muP the curves are flat in width; under SP
(Adam or SGD with a width-independent lr) the hidden layers and logits grow with width.

Table ``coord_check.csv`` (one row per parametrization, width, seed, step and layer):

- ``parametrization``: ``sp`` | ``ntk`` | ``mup``
- ``width``: the model's width (int)
- ``seed``: the seed of the initialisation and data (int)
- ``step``: number of optimiser steps taken (0 = at initialisation)
- ``layer``: module name (``layers.0``, ``transformer.h.0.attn.c_attn``, ...) or ``logits``
- ``rms``: ``sqrt(mean(h^2))`` of that layer's output on the probe batch
- ``delta_rms``: ``sqrt(mean((h - h_0)^2))``, ``h_0`` the output at step 0

Command line (``main``)::

    coord-check --params '<json>' --out coord_check.csv
    plot --table coord_check.csv --out coord_check.png [--step N]

``--params`` holds the keys of :class:`CoordCheckParams`; the figure (PNG and PDF) has
one column per parametrization, the RMS (top) and its change (bottom) against width,
one line per layer, at the last step (or ``--step``).
"""

from dlrepro.parametrization.apply import INITS, ParamPlan, Plan, apply_parametrization
from dlrepro.parametrization.coord import (
    TABLE_COLUMNS,
    CoordCheckParams,
    coord_check,
    main,
    plot_coord_check,
    run_coord_check,
    teacher_data,
)
from dlrepro.parametrization.optim import make_optimizer
from dlrepro.parametrization.roles import ParamInfo, infer_roles
from dlrepro.parametrization.table import (
    OPTIMIZERS,
    PARAMETRIZATIONS,
    ROLE_TABLE,
    ROLES,
    Rule,
    Scaling,
    layer_scaling,
)

__all__ = [
    "INITS", "OPTIMIZERS", "PARAMETRIZATIONS", "ROLES", "ROLE_TABLE", "TABLE_COLUMNS",
    "CoordCheckParams", "ParamInfo", "ParamPlan", "Plan", "Readout", "Rule", "Scaling", "SharedReadout",
    "apply_parametrization", "coord_check", "infer_roles", "layer_scaling", "main", "make_optimizer",
    "plot_coord_check", "run_coord_check", "teacher_data",
]


def __getattr__(name: str):
    """``Readout`` and ``SharedReadout`` import torch, so they load on first use."""
    if name in ("Readout", "SharedReadout"):
        from dlrepro.parametrization import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
