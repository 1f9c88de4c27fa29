"""Model definitions, one readable file per model (in the spirit of nanoGPT's model.py).

- ``dlrepro.models.transformer``: decoder-only transformer, GPT-2 and Llama styles,
  with a preallocated KV cache (used by the model-collapse stage).
- ``dlrepro.models.mlp``: the MLP of the width (muP) stage.
- ``dlrepro.models.cnn``: the small CNN of the width stage (channel count = width).

Nothing is imported here, so that importing one model does not import the others (nor
torch): the names below let config validation check choices without importing torch.
"""

ARCHS = ("gpt2", "llama")  # dlrepro.models.transformer
ACTIVATION_NAMES = ("relu", "gelu", "tanh")  # the keys of dlrepro.models.mlp.ACTIVATIONS
