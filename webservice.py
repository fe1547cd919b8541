"""Start the digitrec web service: `python webservice.py [--host H] [--port P] [--data-dir D]`.

Kept at the top level because the seeds were started this way; it is the same as `digitrec serve`.
"""

from __future__ import annotations

import argparse
import sys

from digitrec.errors import DigitrecError
from digitrec.runtime import verbosity
from digitrec.service.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webservice.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    verbosity.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    verbosity.configure(args.verbose)
    try:
        return run(args)
    except DigitrecError as exc:
        print(f"webservice.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from digitrec.runtime.process_exit import exit_process

    exit_process(main())
