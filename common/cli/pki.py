"""`kerbtel pki`: placeholder until its module lands."""


def register(subparsers) -> None:
    subparsers.add_parser("pki", help="(not yet implemented)").set_defaults(func=lambda args: 1)
