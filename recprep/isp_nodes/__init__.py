"""Near-data preprocessing on the storage nodes (PreSto): the ISP emulation model (``model``,
plain data the spec validates), which node holds which split (``placement``), the ISP worker
(``worker``) and the per-job accounting of bytes, busy seconds, energy and cost
(``accounting``). Nothing here imports Kubernetes."""
