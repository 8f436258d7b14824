"""Code shared by kdcd, scd and ctad: wire formats, Kerberos/PKINIT codec, crypto and PKI."""
