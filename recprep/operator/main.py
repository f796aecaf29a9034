"""Running the operator: ``recprep operator`` (kopf with the handlers of ``handlers``)."""

from __future__ import annotations

import logging


def run(
    *,
    namespace: str | None = None,
    liveness: str | None = None,
    standalone: bool = False,
    verbose: bool = False,
) -> None:
    """Run kopf until it is stopped (SIGINT/SIGTERM).

    ``namespace`` watches one namespace (a Role suffices); None watches all of them (a
    ClusterRole). ``standalone`` skips kopf's peering (no KopfPeering objects needed; the chart
    runs one replica with strategy Recreate, so two operators never handle the same job).
    ``liveness`` is kopf's probe endpoint, e.g. ``http://0.0.0.0:8080/healthz``.
    """
    import kopf

    from . import handlers  # registers the handlers in kopf's default registry
    from .settings import Settings

    # Settings first: a bad RECPREP_* value is one clear error (SettingsError names the
    # variable and the key) before kopf starts, not a traceback in every handler. They and the
    # namespace (the follower looks where kopf watches) go to the handlers in kopf's memo.
    memo = handlers.operator_memo(Settings.from_env(), namespace)
    # kopf's log format and levels (INFO, DEBUG if verbose) replace the CLI's basic handler,
    # which would print every line twice.
    logging.getLogger().handlers.clear()
    kopf.configure(verbose=verbose)
    kopf.run(
        standalone=standalone,
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else (),
        liveness_endpoint=liveness,
        memo=memo,
    )
