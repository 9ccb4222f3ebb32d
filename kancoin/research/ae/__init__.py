"""The autoencoder study (``kancoin ae-study``): ``data`` (the study sets and their loaders),
``models`` (the KAN, CNN and MLP autoencoders and parameter matching), ``study`` (training,
measurement, the three comparisons, tables) and ``plots``."""
