"""Hidden-state dumps for offline training: writing (``eagle3 dump-hidden``) and reading.

The reader API is what training imports::

    from eagle3cli.dump import open_dump
    dump = open_dump(path)
    for sample in dump.iter_samples():
        aux_hidden, last_hidden = sample.states(torch.bfloat16)  # decoded when the dump is float8

The writer lives in :mod:`eagle3cli.dump.runner` (it imports the model stack lazily).
"""

from eagle3cli.dump.reader import HiddenStateDump, open_dump, open_growing_dump
from eagle3cli.dump.shard_file import HiddenSample

__all__ = ["HiddenSample", "HiddenStateDump", "open_dump", "open_growing_dump"]
