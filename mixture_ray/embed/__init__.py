"""Embedding tiles with a ResNet extractor (Ray Data actors) and checking embeddings against truth."""
