"""The n-fold function of RFC 3961 5.1, used to stretch key-derivation constants to a block."""

from math import lcm


def nfold(data: bytes, nbytes: int) -> bytes:
    """Fold (or stretch) `data` to `nbytes` octets.

    Concatenate lcm(len, nbytes) / len copies of the input, copy i rotated right by 13*i bits,
    then add the nbytes-sized chunks with one's-complement (end-around carry) addition.
    """
    if not data or nbytes <= 0:
        raise ValueError("n-fold needs non-empty input and a positive output length")
    in_bits = len(data) * 8
    in_mask = (1 << in_bits) - 1
    value = int.from_bytes(data, "big")
    total_bytes = lcm(len(data), nbytes)

    stream = 0
    for i in range(total_bytes // len(data)):
        shift = (13 * i) % in_bits
        rotated = ((value >> shift) | (value << (in_bits - shift))) & in_mask
        stream = (stream << in_bits) | rotated

    out_bits = nbytes * 8
    out_mask = (1 << out_bits) - 1
    total = 0
    for _ in range(total_bytes // nbytes):
        total += stream & out_mask
        stream >>= out_bits
    while total >> out_bits:
        total = (total & out_mask) + (total >> out_bits)
    return total.to_bytes(nbytes, "big")
