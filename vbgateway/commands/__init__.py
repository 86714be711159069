"""Subcommands of the ``vbgateway`` command, one module each.

Each module has ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code.
"""

__all__: list[str] = []
