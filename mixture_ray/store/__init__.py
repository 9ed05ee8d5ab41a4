"""The store layer: how stage outputs are laid out, named and read back."""
