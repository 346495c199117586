"""Pre-processors x -> x_hat in front of the foundation: identity, vanilla, cropd, arae, vae, encoder_only, advcl.

One interface: `fit_preprocessor(config, train_images, workdir)` gives a FittedPreprocessor whose
module maps images to images (encoder_only, a baseline classifier, maps images to logits).
"""

from ..schema.preprocessor import ARCH_PRESETS, KINDS, TRAINED_KINDS, resolve_preprocessor_config
from .fit import FittedPreprocessor, build_preprocessor, fit_preprocessor, load_preprocessor, save_preprocessor
from .masked_autoencoder import EncoderOnlyClassifier, MaskedAutoencoder, checkerboard_noise

__all__ = [
    "ARCH_PRESETS",
    "KINDS",
    "TRAINED_KINDS",
    "EncoderOnlyClassifier",
    "FittedPreprocessor",
    "MaskedAutoencoder",
    "build_preprocessor",
    "checkerboard_noise",
    "fit_preprocessor",
    "load_preprocessor",
    "resolve_preprocessor_config",
    "save_preprocessor",
]
