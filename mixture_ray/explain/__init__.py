"""Explainability by clustering activations: NMF over post-ReLU conv feature maps of slides."""
