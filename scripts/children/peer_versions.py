"""Runs in the peer's environment: the installed versions of the named distributions, as JSON
(those not installed left out).

    python scripts/children/peer_versions.py NAME ...
"""

import importlib.metadata
import json
import sys


def main(*names: str) -> dict:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
