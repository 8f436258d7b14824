"""Kerberos principal names (RFC 4120 6.2) as one immutable value used by every layer.

The ASN.1 codec, keytabs, credential caches and certificates all carry principals; they convert
to and from this class so that quoting rules and name types live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class NameType(IntEnum):
    """RFC 4120 6.2 name types (plus RFC 6111 NT-WELLKNOWN)."""

    UNKNOWN = 0
    PRINCIPAL = 1
    SRV_INST = 2
    SRV_HST = 3
    SRV_XHST = 4
    UID = 5
    X500_PRINCIPAL = 6
    SMTP_NAME = 7
    ENTERPRISE = 10
    WELLKNOWN = 11


class PrincipalSyntaxError(ValueError):
    """A principal string does not follow the 'comp/comp@REALM' syntax."""


_ESCAPES = {"/": "\\/", "@": "\\@", "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\b": "\\b", "\0": "\\0"}
_UNESCAPES = {"/": "/", "@": "@", "\\": "\\", "n": "\n", "t": "\t", "b": "\b", "0": "\0"}


_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def _quote(component: str) -> str:
    return component.translate(_ESCAPE_TABLE)


@dataclass(frozen=True, slots=True)
class Principal:
    """A principal: name components, realm and name type.

    Equality includes the name type because RFC 8636 and MIT's PKINIT hash the name-type as sent;
    use `same_name()` for the comparison Kerberos itself makes (components and realm only).
    """

    components: tuple[str, ...]
    realm: str
    name_type: int = NameType.PRINCIPAL

    def __post_init__(self) -> None:
        if not self.components:
            raise PrincipalSyntaxError("principal has no name components")
        if not isinstance(self.components, tuple):
            object.__setattr__(self, "components", tuple(self.components))

    @classmethod
    def parse(cls, text: str, default_realm: str | None = None, name_type: int | None = None) -> Principal:
        """Parse MIT's display syntax ('sc/sc1.example.test@EXAMPLE.TEST', with backslash escapes).

        Without an explicit name type, 'krbtgt/...' becomes NT-SRV-INST and anything else
        NT-PRINCIPAL, which is what MIT's krb5_parse_name does.
        """
        components: list[str] = []
        current: list[str] = []
        realm: str | None = None
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    raise PrincipalSyntaxError(f"trailing backslash in principal {text!r}")
                nxt = text[i + 1]
                if nxt not in _UNESCAPES:
                    raise PrincipalSyntaxError(f"unknown escape \\{nxt} in principal {text!r}")
                current.append(_UNESCAPES[nxt])
                i += 2
                continue
            if ch == "/" and realm is None:
                components.append("".join(current))
                current = []
            elif ch == "@" and realm is None:
                components.append("".join(current))
                current = []
                realm = ""
            elif ch in "/@":
                raise PrincipalSyntaxError(f"unescaped {ch!r} in the realm of principal {text!r}")
            else:
                current.append(ch)
            i += 1
        if realm is None:
            components.append("".join(current))
            if default_realm is None:
                raise PrincipalSyntaxError(f"principal {text!r} has no realm and no default realm was given")
            realm = default_realm
        else:
            realm = "".join(current)
            if not realm:
                raise PrincipalSyntaxError(f"principal {text!r} has an empty realm")
        if any(c == "" for c in components) and components != [""]:
            raise PrincipalSyntaxError(f"principal {text!r} has an empty name component")
        if components == [""]:
            raise PrincipalSyntaxError(f"principal {text!r} has no name")
        if name_type is None:
            name_type = NameType.SRV_INST if components[0] == "krbtgt" and len(components) == 2 else NameType.PRINCIPAL
        return cls(tuple(components), realm, int(name_type))

    @classmethod
    def krbtgt(cls, realm: str, issuing_realm: str | None = None) -> Principal:
        """The ticket-granting service principal krbtgt/REALM@REALM (NT-SRV-INST)."""
        return cls(("krbtgt", realm), issuing_realm or realm, NameType.SRV_INST)

    @property
    def name(self) -> str:
        """The components joined with '/', without the realm (quoted)."""
        return "/".join(_quote(c) for c in self.components)

    def default_salt(self) -> str:
        """RFC 4120 4 / MIT 'normal' salt: the realm followed by every name component."""
        return self.realm + "".join(self.components)

    def same_name(self, other: Principal) -> bool:
        """Kerberos name equality: components and realm, name type ignored (RFC 4120 6.2)."""
        return self.components == other.components and self.realm == other.realm

    def with_name_type(self, name_type: int) -> Principal:
        return Principal(self.components, self.realm, int(name_type))

    def __str__(self) -> str:
        return f"{self.name}@{_quote(self.realm)}"
