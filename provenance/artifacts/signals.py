"""Signals of the artifacts app."""

from django.dispatch import Signal

#: Sent inside the storing transaction with ``rows``, the :class:`~provenance.artifacts.models.Evidence` rows just
#: stored (payloads still in memory), so that what indexes evidence does it where it is stored: in parallel
#: worker tasks, not once at the end of a scan.
evidence_stored = Signal()
