"""Pretext tasks that sslkit builds from registered ones: a mix such as ``rotation+context``
(:mod:`.composite`, its options and presets in :mod:`.mix_config`)."""
