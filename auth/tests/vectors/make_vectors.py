#!/usr/bin/env python3
"""Known answers for vfnvme-auth, computed with Python's standard library only (hashlib, hmac,
base64, zlib, pow): an implementation independent of the Rust crates the code uses.

Each value follows the definitions of NVMe Base Specification 2.0 section 8.13 (DH-HMAC-CHAP)
and NVMe/TCP TP 8011 / 8018 (TLS PSK), in the byte order Linux (drivers/nvme/common/auth.c,
drivers/nvme/host/auth.c), SPDK (lib/nvme/nvme_auth.c) and libnvme (src/nvme/linux.c) use.
Run: python3 make_vectors.py > vectors.json
"""
import base64
import hashlib
import hmac
import json
import struct
import zlib

from ffdhe_primes import prime

HASHES = {1: "sha256", 2: "sha384", 3: "sha512"}
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000"
SUBNQN = "nqn.2024-01.io.vfnvme:ram"


def H(hash_id, data):
    return hashlib.new(HASHES[hash_id], data).digest()


def HMAC(hash_id, key, data):
    return hmac.new(key, data, HASHES[hash_id]).digest()


def representation(prefix, transform, key):
    """`DHHC-1:0N:` / `NVMeTLSkey-1:0N:` + base64(key || CRC-32 little-endian) + `:`."""
    crc = struct.pack("<I", zlib.crc32(key) & 0xFFFFFFFF)
    return f"{prefix}:{transform:02d}:{base64.b64encode(key + crc).decode()}:"


def transform_key(transform, key, nqn):
    """Section 8.13.5.7: HMAC(H, secret, NQN || "NVMe-over-Fabrics"), or the secret as is."""
    if transform == 0:
        return key
    return HMAC(transform, key, nqn.encode() + b"NVMe-over-Fabrics")


def augmented(hash_id, challenge, session_key):
    """Ca = HMAC(H, H(g^xy mod p), C)."""
    if session_key is None:
        return challenge
    return HMAC(hash_id, H(hash_id, session_key), challenge)


def response(hash_id, key, challenge, session_key, seq, tid, scc, role, nqn1, nqn2):
    """HMAC(Kx, Ca || le32 seq || le16 tid || SC_C || role || NQN1 || 0x00 || NQN2)."""
    data = (
        augmented(hash_id, challenge, session_key)
        + struct.pack("<IHB", seq, tid, scc)
        + role
        + nqn1.encode()
        + b"\x00"
        + nqn2.encode()
    )
    return HMAC(hash_id, key, data)


def hkdf_extract(hash_id, ikm):
    return HMAC(hash_id, bytes(hashlib.new(HASHES[hash_id]).digest_size), ikm)


def hkdf_expand_label(hash_id, prk, label, context, length):
    """RFC 8446 section 7.1 HkdfLabel into RFC 5869 HKDF-Expand."""
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = HMAC(hash_id, prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def hexs(b):
    return b.hex()


def dhchap_vectors():
    out = []
    for transform, key_len in ((0, 32), (1, 32), (2, 48), (3, 64)):
        key = bytes((7 * i + transform) & 0xFF for i in range(key_len))
        host_key = transform_key(transform, key, HOSTNQN)
        ctrl_key = transform_key(transform, key, SUBNQN)
        for hash_id in (1, 2, 3):
            hl = hashlib.new(HASHES[hash_id]).digest_size
            c1 = bytes((0x10 + i) & 0xFF for i in range(hl))
            c2 = bytes((0xF0 - i) & 0xFF for i in range(hl))
            out.append(
                {
                    "secret": representation("DHHC-1", transform, key),
                    "key": hexs(key),
                    "transformed_host_key": hexs(host_key),
                    "transformed_ctrl_key": hexs(ctrl_key),
                    "hash": hash_id,
                    "seq1": 0x01020304,
                    "seq2": 0x0A0B0C0D,
                    "tid": 0xBEEF,
                    "c1": hexs(c1),
                    "c2": hexs(c2),
                    "host_response": hexs(
                        response(hash_id, host_key, c1, None, 0x01020304, 0xBEEF, 0,
                                 b"HostHost", HOSTNQN, SUBNQN)
                    ),
                    "ctrl_response": hexs(
                        response(hash_id, ctrl_key, c2, None, 0x0A0B0C0D, 0xBEEF, 0,
                                 b"Controller", SUBNQN, HOSTNQN)
                    ),
                }
            )
    return out


def dh_vectors():
    out = []
    for group, bits in ((1, 2048), (2, 3072), (3, 4096), (4, 6144), (5, 8192)):
        p = prime(bits)
        n = bits // 8
        x_host = int.from_bytes(bytes(range(1, 33)), "big") | (1 << 255)
        x_ctrl = int.from_bytes(bytes(range(101, 133)), "big") | (1 << 255)
        y_host = pow(2, x_host, p)
        y_ctrl = pow(2, x_ctrl, p)
        shared = pow(y_ctrl, x_host, p)
        assert shared == pow(y_host, x_ctrl, p)
        session = shared.to_bytes(n, "big")
        hash_id = 1 + (group % 3)
        hl = hashlib.new(HASHES[hash_id]).digest_size
        key = bytes(range(32))
        c1 = bytes((0x10 + i) & 0xFF for i in range(hl))
        c2 = bytes((0xF0 - i) & 0xFF for i in range(hl))
        out.append(
            {
                "group": group,
                "host_private": format(x_host, "x"),
                "ctrl_private": format(x_ctrl, "x"),
                "host_public": hexs(y_host.to_bytes(n, "big")),
                "ctrl_public": hexs(y_ctrl.to_bytes(n, "big")),
                "shared": hexs(session),
                "hash": hash_id,
                "key": hexs(key),
                "c1": hexs(c1),
                "c2": hexs(c2),
                "augmented_c1": hexs(augmented(hash_id, c1, session)),
                "host_response": hexs(
                    response(hash_id, key, c1, session, 7, 3, 0, b"HostHost", HOSTNQN, SUBNQN)
                ),
                "ctrl_response": hexs(
                    response(hash_id, key, c2, session, 8, 3, 0, b"Controller", SUBNQN, HOSTNQN)
                ),
            }
        )
    return out


def tls_vectors():
    out = []
    for hmac_id, key_len in ((0, 32), (0, 48), (1, 32), (2, 48)):
        configured = bytes((3 * i + 1 + hmac_id) & 0xFF for i in range(key_len))
        cipher = hmac_id if hmac_id else (1 if key_len == 32 else 2)
        if hmac_id == 0:
            retained = configured
        else:
            prk = hkdf_extract(hmac_id, configured)
            retained = hkdf_expand_label(hmac_id, prk, b"HostNQN", HOSTNQN.encode(), key_len)
        identity0 = f"NVMe0R{cipher:02d} {HOSTNQN} {SUBNQN}"
        prk = hkdf_extract(cipher, retained)
        tls_psk0 = hkdf_expand_label(cipher, prk, b"nvme-tls-psk", identity0.encode(), key_len)
        digest = base64.b64encode(
            HMAC(cipher, retained, f"{HOSTNQN} {SUBNQN} NVMe-over-Fabrics".encode())
        ).decode()
        identity1 = f"NVMe1R{cipher:02d} {HOSTNQN} {SUBNQN} {digest}"
        tls_psk1 = hkdf_expand_label(
            cipher, prk, b"nvme-tls-psk", f"{cipher:02d} {digest}".encode(), key_len
        )
        out.append(
            {
                "interchange": representation("NVMeTLSkey-1", hmac_id, configured),
                "configured": hexs(configured),
                "hmac": hmac_id,
                "cipher": cipher,
                "retained": hexs(retained),
                "identity_v0": identity0,
                "tls_psk_v0": hexs(tls_psk0),
                "digest": digest,
                "identity_v1": identity1,
                "tls_psk_v1": hexs(tls_psk1),
            }
        )
    return out


if __name__ == "__main__":
    doc = {
        "made_by": "auth/tests/vectors/make_vectors.py (Python hashlib/hmac/zlib/base64)",
        "host_nqn": HOSTNQN,
        "subsystem_nqn": SUBNQN,
        "dhchap": dhchap_vectors(),
        "dh": dh_vectors(),
        "tls": tls_vectors(),
    }
    print(json.dumps(doc, indent=1))
