"""Self-supervised feature extractors (ElEx): MoCo v2 building blocks and the Ray Train loop."""
