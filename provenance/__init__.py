"""Provenance: a self-hosted dashboard for software supply-chain trust."""

from provenance.celery import app as celery_app

__all__ = ("celery_app",)
