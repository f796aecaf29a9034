"""A small DLRM trainer fed by the shard loader, with an optional look-ahead embedding cache.

``model``: the DLRM (EmbeddingBags, bottom/top MLPs, dot interaction); ``cache``: the device-side
mechanism of the embedding cache (the plans come from ``recprep.train.cache_plan``);
``loop``: the training loop behind ``recprep train``. Needs torch (``pip install recprep[train]``).
"""
