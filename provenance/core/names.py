"""The names an image place goes by: one function for policies, dry runs, pages, exports and the CLI alike.

A place is (registry host, repository, digest). Its names are the full reference with the registry host, with
and without each tag and the digest, spelled as Sigstore policy-controller spells them (go-containerregistry's
normalisation): Docker Hub is ``index.docker.io`` whichever alias was used (``docker.io``,
``registry-1.docker.io``), and its one-segment repositories live under ``library/``.

An OCI image layout has no registry: its images are named ``oci-layout/<layout name>`` (the directory's or tar
file's name without ``.tar``/``.tar.gz``), so a policy glob ``oci-layout/**`` covers every layout and
``oci-layout/demo-fleet`` one of them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DOCKER_HUB", "LAYOUT_REGISTRY", "full_name", "image_names", "normalize_registry"]

DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "registry-1.docker.io", "index.docker.io"})
LAYOUT_REGISTRY = "oci-layout"


def normalize_registry(registry: str) -> str:
    """A registry host as policy-controller names it (Docker Hub's aliases are ``index.docker.io``)."""
    host = registry.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def full_name(registry: str, repository: str) -> str:
    """``registry/repository``, normalised: ``index.docker.io/library/nginx``, ``oci-layout/demo-fleet``."""
    host = normalize_registry(registry) if registry else LAYOUT_REGISTRY
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return f"{host}/{repository}"


def image_names(registry: str, repository: str, digest: str, tags: Iterable[str] = ()) -> tuple[str, ...]:
    """The names a policy glob is matched against: the full name alone, with the digest, and with each tag.

    ``registry`` is the host the place lives on ("" or :data:`LAYOUT_REGISTRY` for an OCI layout).
    """
    base = full_name(registry, repository)
    return (base, f"{base}@{digest}", *(f"{base}:{tag}" for tag in tags))
