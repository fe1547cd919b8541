"""Print the runtime requirements of setup.py, with TensorFlow swapped for the CPU-only wheel.

Why: the image installs the package's dependencies in their own layer (rebuilt only when setup.py
changes) and wants `tensorflow-cpu` (no CUDA kernels: 1.3 GB installed against 1.9 GB for `tensorflow`
2.21), while setup.py stays the single list of dependencies.

Usage: python requirements_from_setup.py EGG_INFO_DIR [TENSORFLOW_PACKAGE]
(EGG_INFO_DIR is what `python setup.py egg_info --egg-base DIR` wrote: DIR/digitrec.egg-info).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_TENSORFLOW = re.compile(r"^tensorflow(?=$|[\s<>=!~;\[])")


def runtime_requirements(requires_txt: str, tensorflow_package: str = "tensorflow-cpu") -> list[str]:
    """Requirement lines outside `[extra]` sections, TensorFlow renamed to `tensorflow_package`.

    setuptools writes a requirement with an environment marker under a `[:marker]` section; it is a
    runtime requirement too, printed as `name; marker` so pip still evaluates the marker.
    """
    lines: list[str] = []
    marker: str | None = ""  # "" = unconditional, None = inside an extra (skipped)
    for raw in requires_txt.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            marker = section[1:] if section.startswith(":") else None
            continue
        if line and marker is not None:
            requirement = _TENSORFLOW.sub(tensorflow_package, line)
            lines.append(f"{requirement}; {marker}" if marker else requirement)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    requires = Path(argv[1]) / "requires.txt"
    if not requires.is_file():
        print(f"requirements_from_setup: {requires} not found (run setup.py egg_info first)", file=sys.stderr)
        return 2
    tensorflow_package = argv[2] if len(argv) == 3 else "tensorflow-cpu"
    print("\n".join(runtime_requirements(requires.read_text(encoding="utf-8"), tensorflow_package)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
