"""The recprep operator: kopf handlers (thin) over pure functions.

The modules here that build things are pure and import neither kopf nor a Kubernetes client:

- ``labels``   the one label vocabulary and the names of every child object;
- ``settings`` operator settings with defaults, overridable by ``RECPREP_*`` variables (Helm);
- ``podspec``  pieces shared by every pod the operator creates (image, security, /tmp);
- ``builders`` PreprocessJob -> Kubernetes manifests (scheduler, worker pools, driver, ConfigMap);
- ``status``   the status the operator writes: phases, progress text, conditions.

The operator never transforms data: apart from the ``recprep.spec`` model it imports nothing
from the data plane (``recprep.workloads``).
"""
