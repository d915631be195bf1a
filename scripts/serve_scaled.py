"""``make serve-scaled``: two gateway processes (127.0.0.1:8001 and :8002) sharing Redis and
PostgreSQL. The work is done by :mod:`bench.cluster`, which the scale-out tests and the soak and
chaos runs use as well. Stop with Ctrl-C: every process is terminated.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: import from the repo
    sys.path.insert(0, str(REPO))

from bench.cluster import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
