"""`kerbtel keytab`: placeholder until its module lands."""


def register(subparsers) -> None:
    subparsers.add_parser("keytab", help="(not yet implemented)").set_defaults(func=lambda args: 1)
