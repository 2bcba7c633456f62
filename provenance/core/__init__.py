"""Framework-free core: OCI client, verification, trust roots. No Django, no Celery imports here."""
