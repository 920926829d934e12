"""What the registry raises when an operation cannot be done."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why and what to do."""


class ArtifactIntegrityError(RegistryError):
    """A model's stored files no longer match the digest recorded when it was registered."""
