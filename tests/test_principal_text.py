"""Principal display text: MIT's krb5_unparse_name escapes, and parse() reading them back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.principal import Principal, PrincipalSyntaxError


@pytest.mark.parametrize(
    ("components", "realm", "text"),
    [
        (("sc", "sc1.example.test"), "EXAMPLE.TEST", "sc/sc1.example.test@EXAMPLE.TEST"),
        (("a/b", "c@d"), "EXAMPLE.TEST", "a\\/b/c\\@d@EXAMPLE.TEST"),
        (("back\\slash",), "R\\EALM", "back\\\\slash@R\\\\EALM"),
        (("tab\there", "nl\nz", "bs\bz", "nul\0z"), "R", "tab\\there/nl\\nz/bs\\bz/nul\\0z@R"),
        (("plain-ünïcode",), "ÉXAMPLE", "plain-ünïcode@ÉXAMPLE"),
    ],
)
def test_display_text_escapes_like_mit(components, realm, text):
    principal = Principal(components, realm)
    assert str(principal) == text
    assert Principal.parse(text).same_name(principal)


@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
    st.text(min_size=1, max_size=12),
)
def test_parse_reads_back_what_str_writes(components, realm):
    principal = Principal(tuple(components), realm)
    assert Principal.parse(str(principal)).same_name(principal)


def test_unknown_escape_is_refused():
    with pytest.raises(PrincipalSyntaxError, match="unknown escape"):
        Principal.parse("a\\qb@R")
