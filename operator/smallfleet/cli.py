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
    "render": ("smallfleet.core.render.cli", "Print the manifests the operator would apply"),
    "validate": ("smallfleet.validate", "Check manifests offline, with line-precise messages"),
    "fetch": ("smallfleet.fetch", "Download, verify and unpack a model artifact (init container)"),
    "agent": ("smallfleet.agent", "Fetch artifacts into a pool server's repository (sidecar)"),
    "capacity-advice": (
        "smallfleet.advice",
        "Where one more GPU would save the fleet the most carbon (grams per week)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="smallfleet", description="smallfleet operator and tools")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = argv[0] if argv else None
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            add: Callable[[argparse.ArgumentParser], None] = importlib.import_module(
                module
            ).add_arguments
            add(p)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = importlib.import_module(
        COMMANDS[args.command][0]
    ).run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
