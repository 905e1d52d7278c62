"""The autograd engine: graph nodes, grad mode and the backward traversal (device-agnostic)."""
