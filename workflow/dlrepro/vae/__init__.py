"""Model collapse beyond text: a convolutional VAE on MNIST, retrained on its own samples.

Modules: :mod:`.model` (ConvVAE, SmallCNN), :mod:`.data` (memory-mapped image arrays,
mixes of pools), :mod:`.module` (Lightning modules), :mod:`.metrics` (test -ELBO, sample
quality), :mod:`.cli` (``python -m dlrepro vae``), :mod:`.plots` (figures from the
summary table and from the sample arrays).
"""
