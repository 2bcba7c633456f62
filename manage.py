#!/usr/bin/env python
"""Django's command-line utility.

Run through :func:`provenance.cli.run_manage`: ``--help`` works without SECRET_KEY, and missing settings or a
database that is not migrated are a one-line message with exit status 2 instead of a traceback.
"""

import sys


def main() -> None:
    from provenance.cli import run_manage

    sys.exit(run_manage(sys.argv))


if __name__ == "__main__":
    main()
