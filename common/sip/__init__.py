"""Sans-I/O SIP (RFC 3261) for kerbtel: messages, SDP, transactions, dialogs, UA helpers.

Nothing here reads a clock or touches a socket. `message` parses and builds SIP messages (strict,
every malformed input raises `SipParseError` carrying the 4xx to answer with); `transaction`
holds the RFC 3261 section 17 state machines as transition tables driven by an explicit `now`;
`dialog` keeps the dialog state of RFC 3261 section 12; `ua` builds REGISTER/OPTIONS/CANCEL and
generates branches, tags and Call-IDs from an injectable rng; `sdp` is the minimal RFC 4566 subset
a B2BUA needs for audio.
"""

from common.sip.message import (
    AbsoluteUri,
    CSeq,
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    TelUri,
    Via,
    check_request,
    make_response,
    parse_message,
    parse_uri,
    response_for_error,
)

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "NameAddr",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "TelUri",
    "Via",
    "check_request",
    "make_response",
    "parse_message",
    "parse_uri",
    "response_for_error",
]
