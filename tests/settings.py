"""Test settings: the real settings, with a private data directory and test mode on."""

import os
import tempfile

os.environ.setdefault("PROVENANCE_TESTING", "1")
os.environ.setdefault("PROVENANCE_DATA_DIR", tempfile.mkdtemp(prefix="provenance-test-"))

from provenance.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users only

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run "inside" it unless told.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# No persistent connections in tests: live-server threads and worker processes must let the test DB be dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
