"""The autoscaler dashboard: a read-only web page, its JSON API and Prometheus metrics, served by
``recprep run --dashboard`` and by the operator (``history``: what a job's looks give; ``metrics``:
the same as Prometheus metrics; ``server``: the HTTP server; ``local``: a local run's looks)."""
