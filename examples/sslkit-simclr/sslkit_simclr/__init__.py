"""SimCLR as an sslkit plugin: the task (:mod:`.task`), its loss (:mod:`.loss`) and a reproduction recipe."""

from .loss import nt_xent

__all__ = ["nt_xent"]
