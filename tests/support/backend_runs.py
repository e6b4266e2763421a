"""mlbox-bench run in process on a backend's model, as the backend unit tests run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlbox_bench.cli import main

# A short run whose verdict no test reads (--allow-invalid): tests check what it logged.
SHORT = ["--duration", "0.3", "--samples", "32", "--allow-invalid"]


def bench(*args: str) -> tuple[int, dict[str, Any] | None]:
    """(exit code, result.json or None) of mlbox-bench with these arguments."""
    out = Path(args[args.index("--output-dir") + 1])
    rc = main(list(args))
    path = out / "result.json"
    return rc, json.loads(path.read_text()) if path.is_file() else None
