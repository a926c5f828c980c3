"""Pure-PyTorch networks, state-dict compatible with the official releases (one module per family)."""
