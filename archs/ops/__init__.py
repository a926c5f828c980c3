"""Portable ops (upfirdn2d, fused leaky ReLU, deformable conv fallbacks) in plain PyTorch."""
