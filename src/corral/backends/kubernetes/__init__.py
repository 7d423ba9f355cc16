"""The Kubernetes backend: components as Kubernetes objects (see ``backend``).

``render`` and ``containers`` turn a workload into manifests (pure, schema-validated in
the tests), ``states`` maps what the cluster reports onto Corral's statuses (pure),
``watch`` keeps caches current by watches, ``cluster`` reads nodes and found objects,
``backend`` drives the official client. ``KubernetesBackend`` imports the client only
when built, so ``dryrun`` needs no cluster.
"""

from corral.backends.kubernetes.settings import KubeSettings

__all__ = ["KubeSettings", "KubernetesBackend"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "KubernetesBackend":
        from corral.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend
    raise AttributeError(name)
