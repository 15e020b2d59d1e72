"""KubeBYON: a hosted-Kubernetes control plane (vClusters on a host, bring your own nodes)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kubebyon")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
