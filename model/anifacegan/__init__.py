"""AniFaceGAN (Wu et al., NeurIPS 2022) reimplemented: checkpoint-compatible with the official MIT release."""
