"""The parameters of the language-model collapse stage: the ``--params`` JSON of ``python -m
dlrepro collapse train|sample|evaluate`` (:class:`LMParams`) and its sections.

Kept apart from the command-line module so that the code that consumes a section (the
Lightning module reads :class:`OptimConfig`, the planner's probe builds one) imports it
without importing the commands. The schema's ``collapse.models``, ``collapse.optim``,
``collapse.sampling`` and ``collapse.eval`` hold the same defaults (``tests/test_defaults.py``
checks that they agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dlrepro.errors import ParamsError

FORBIDDEN_COMPUTE = ("seed", "epochs", "max_steps")  # set by the stage, not by compute


@dataclass
class ModelParams:
    """Architecture (``TransformerConfig`` without the vocabulary, which the data set gives)."""

    arch: str = "gpt2"
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    block_size: int = 128
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    init_std: float = 0.02


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay (the same for every generation)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # on matrices and embeddings; none on biases and norm gains
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final lr = min_lr_ratio * lr
    batch_size: int = 32  # windows of block_size tokens per step
    epochs: float = 1.0  # passes over the training stream (accumulate: a growing stream)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        checks = {
            "lr": self.lr > 0,
            "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "weight_decay": self.weight_decay >= 0,
            "warmup_steps": isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "batch_size": isinstance(self.batch_size, int) and self.batch_size >= 1,
            "epochs": self.epochs > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ParamsError(f"optim.{name}: invalid value {getattr(self, name)!r}")


@dataclass
class SamplingParams:
    temperature: float = 1.0  # the paper's main setting (Sec. 2.1)
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None  # None -> block_size - 1 (the cache's limit)
    batch_size: int = 64
    device: str = "auto"  # "cpu" | "cuda" | "auto"; bf16 autocast on CUDA
    stats_max_documents: int | None = None  # diversity statistics on a sample; None = all


@dataclass
class EvalParams:
    batch_size: int = 32
    val_max_windows: int = 256  # validation estimate during/after training
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("batch_size", "val_max_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamsError(f"eval.{name} must be an int >= 1, got {value!r}")


@dataclass
class LMParams:
    """The ``--params`` JSON of ``train``, ``sample`` and ``evaluate`` (every section optional)."""

    name: str = "lm"  # the model's label in tables and figures
    model: ModelParams = field(default_factory=ModelParams)
    optim: OptimConfig = field(default_factory=OptimConfig)
    compute: dict = field(default_factory=dict)  # TrainSettings fields (dlrepro.training)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    eval: EvalParams = field(default_factory=EvalParams)

    @classmethod
    def from_json(cls, text: str) -> "LMParams":
        from dlrepro.cliutil import load_json

        raw = load_json(text)
        if not isinstance(raw, dict):
            raise ParamsError(f"--params must be a JSON object, got {type(raw).__name__}")
        reject_unknown(raw, cls, "params")
        sections = {"model": ModelParams, "optim": OptimConfig, "sampling": SamplingParams, "eval": EvalParams}
        kwargs = {}
        for key, value in raw.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise ParamsError(f"params.{key} must be an object, got {value!r}")
                reject_unknown(value, sections[key], f"params.{key}")
                kwargs[key] = sections[key](**value)
            else:
                kwargs[key] = value
        params = cls(**kwargs)
        bad = sorted(set(params.compute) & set(FORBIDDEN_COMPUTE))
        if bad:
            raise ParamsError(
                f"params.compute.{bad[0]} is set by the collapse stage (seed: the chain seed; "
                "epochs: params.optim.epochs); remove it"
            )
        if not isinstance(params.name, str) or not params.name:
            raise ParamsError(f"params.name must be a non-empty string, got {params.name!r}")
        return params


def reject_unknown(d: dict, cls, where: str) -> None:
    known = [f.name for f in fields(cls)]
    for key in d:
        if key not in known:
            raise ParamsError(f"unknown key {where}.{key!r}; known keys: {known}")
