"""Data: what a spec means, images in RAM or streamed, batched on-device augmentation.

Modules, each importing only those listed before it (and the layers below sslkit.data):
``datasets`` (ImageData, the seeded splits), ``batches`` (Batch, padding), ``augment`` (crops and
normalisation on the device), ``folders`` (a folder decoded into RAM), ``store/`` (packed stores),
``training`` (what the training loop reads: RAM or a streamed store, batch by batch), ``opener``
(the one dispatch: registered name | packed store | folder); ``builtin``, ``imagenet``, ``sample``
and ``plugin`` register the built-in datasets.
"""
