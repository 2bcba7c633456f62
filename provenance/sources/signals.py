"""Signals other apps listen to, so that they need not reach into scanning.

``scan_finished(sender=Scan, scan=<Scan>)`` is sent once per scan, after its results and policy verdicts are
stored and committed (also for a failed scan: check ``scan.state``). Receivers must not raise: a receiver's
error is logged and the scan stays as it is.
"""

from __future__ import annotations

import django.dispatch

scan_finished = django.dispatch.Signal()
