"""Model collapse of an E(3)-equivariant conformer diffusion model (replace vs accumulate).

Modules: ``dataset`` (RDKit/GEOM conformer sets, storage, batches), ``egnn`` (the
network), ``diffusion`` (schedule, loss, sampler), ``module`` (LightningModule),
``metrics`` (fixed-noise test loss, COV-R / MAT-R), ``plots`` and ``cli``.
"""

from dlrepro.errors import ParamsError


def require_positive_int(obj: object, *names: str) -> None:
    """Raise :class:`~dlrepro.errors.ParamsError` naming the field unless every ``obj.<name>`` is an int >= 1."""
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ParamsError(f"{type(obj).__name__}.{name} must be an int >= 1, got {value!r}")
