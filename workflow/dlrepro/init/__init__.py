"""Init-variants stage: Gaussian versus orthogonal weights in deep critical tanh networks.

Reproduces Day, Kahn & Roberts, "Feature Learning and Generalization in Deep Networks
with Orthogonal Weights" (arXiv:2310.07765):

* :mod:`.inits` - the init registry (``gaussian``, ``orthogonal``) and the tanh MLP;
* :mod:`.fluctuations` - kernel fluctuations per layer over many initialisations, with
  the leading-order 1/width theory (Gaussian: linear growth with slope 2/3 per layer;
  orthogonal: none);
* :mod:`.ntk` - the empirical NTK with ``torch.func``, its mean and normalised variance
  versus depth, and its relative change during training;
* :mod:`.training` - full-batch gradient descent with MSE loss on MNIST / CIFAR-10;
* :mod:`.plots` - figures from the tables; :mod:`.cli` - ``python -m dlrepro init ...``.
"""
