"""Pictures of a run: attention maps (RotNet Figure 3), first-layer filters (Figure 4), curves.

Rendered with Pillow and numpy only (matplotlib is not a dependency of sslkit).
"""
