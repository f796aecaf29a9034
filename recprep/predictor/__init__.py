"""The predictive autoscaler's brain: signals, demand forecast, pool planner and the policies it is
measured against (pure code: no Kubernetes, no data plane). ``sim`` is the simulated cluster the
policies are compared on (``bench/autoscale.py``)."""
