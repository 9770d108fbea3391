"""The `smallfleet` command: run the operator, render, validate, fetch.

Each subcommand lives in its own module and is imported only when used, so
`smallfleet fetch` in an init container does not pay for kopf or the
Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Final

# subcommand -> (module, function taking the parsed args and returning an exit code, help)
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "run": ("smallfleet.handlers.main", "Run the operator"),
    "render": ("smallfleet.render.cli", "Print the manifests the operator would apply"),
    "validate": ("smallfleet.validate", "Check manifests offline, with line-precise messages"),
    "fetch": ("smallfleet.fetch", "Download, verify and unpack a model artifact (init container)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smallfleet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add: Callable[[argparse.ArgumentParser], None] = importlib.import_module(module).add_arguments
        add(p)
    args = parser.parse_args(argv)
    chosen = importlib.import_module(COMMANDS[args.command][0])
    run: Callable[[argparse.Namespace], int] = chosen.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
