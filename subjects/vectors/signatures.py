"""``signatures.json``: plain Ed25519 and the Merkle batch scheme, valid and broken."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jetmesh.identity import (
    KEY_HEADER,
    MSG_ID_HEADER,
    PATH_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
)

from .common import (
    BILLING,
    KB,
    MERKLE_DOMAIN,
    NOW,
    OLD,
    OTHER_ROOT,
    REVOKED,
    ROOT,
    SCHEME_MERKLE,
    STRAY,
    UNREGISTERED,
    Case,
    b64e,
    case,
    certificate,
    event,
    file_header,
    merkle,
    revocation,
    signed,
    ulid,
)


def signatures() -> dict[str, Any]:
    registry = {
        BILLING.kid: certificate(BILLING, n=1),
        KB.kid: certificate(KB, n=2),
        STRAY.kid: certificate(STRAY, root=OTHER_ROOT, n=3),
        OLD.kid: certificate(OLD, iat=NOW - 10 * 86_400, n=4),
        REVOKED.kid: certificate(REVOKED, n=7),
        f"revoked.{REVOKED.kid}": revocation(REVOKED),
    }
    cases: list[Case] = []
    data = event(1)
    cases.append(case("plain-valid", data, signed(data, BILLING, ulid(1)), None))
    flipped = data.replace(b'"kind":"event"', b'"kind":"evenT"')
    cases.append(
        case(
            "plain-flipped-byte",
            flipped,
            signed(data, BILLING, ulid(1)),
            "bad-signature",
            note="one byte of the signed message changed after signing",
        )
    )
    wrong_kid = signed(data, BILLING, ulid(1)) | {KEY_HEADER: KB.kid}
    cases.append(
        case(
            "plain-wrong-key-id",
            data,
            wrong_kid,
            "bad-signature",
            note="signed by billing, Mesh-Key names kb's (registered) key",
        )
    )
    unknown = signed(data, UNREGISTERED, ulid(1))
    cases.append(case("plain-unknown-key-id", data, unknown, "unknown-key"))
    malformed_kid = signed(data, BILLING, ulid(1)) | {KEY_HEADER: "not a key id"}
    cases.append(case("plain-malformed-key-id", data, malformed_kid, "unknown-key"))
    missing = signed(data, BILLING, ulid(1))
    del missing[SIGNATURE_HEADER]
    cases.append(case("plain-missing-signature", data, missing, "unsigned"))
    no_key = signed(data, BILLING, ulid(1))
    del no_key[KEY_HEADER]
    cases.append(case("plain-missing-key", data, no_key, "unsigned"))
    unknown_scheme = signed(data, BILLING, ulid(1)) | {SCHEME_HEADER: "rsa"}
    cases.append(case("unknown-scheme", data, unknown_scheme, "unsigned"))
    bad_b64 = signed(data, BILLING, ulid(1))
    bad_b64[SIGNATURE_HEADER] = bad_b64[SIGNATURE_HEADER][:-2] + "+/"
    cases.append(
        case(
            "plain-bad-base64url",
            data,
            bad_b64,
            "bad-signature",
            note="characters outside the base64url alphabet",
        )
    )
    padded = signed(data, BILLING, ulid(1))
    padded[SIGNATURE_HEADER] += "=="
    cases.append(
        case(
            "plain-padded-base64url",
            data,
            padded,
            "bad-signature",
            note="base64url must be unpadded",
        )
    )
    data_stray = event(2, sender="stray")
    cases.append(
        case(
            "untrusted-root",
            data_stray,
            signed(data_stray, STRAY, ulid(2)),
            "untrusted-certificate",
            note="the certificate is signed by an untrusted root",
        )
    )
    data_old = event(3, sender="old")
    cases.append(
        case("expired-certificate", data_old, signed(data_old, OLD, ulid(3)), "expired-key")
    )
    data_revoked = event(4, sender="revoked")
    cases.append(
        case(
            "revoked-key",
            data_revoked,
            signed(data_revoked, REVOKED, ulid(4)),
            "revoked-key",
            note="a valid certificate, but revoked.<kid> in the registry, revoked before now",
        )
    )
    batch = [event(10 + i) for i in range(3)]
    root, paths = merkle(batch)
    signature = b64e(BILLING.signing_key().sign(MERKLE_DOMAIN + root).signature)

    def merkle_headers(
        index: int, path: Sequence[bytes], count: int = len(batch)
    ) -> dict[str, str]:
        return {
            MSG_ID_HEADER: ulid(10 + index),
            SCHEME_HEADER: SCHEME_MERKLE,
            KEY_HEADER: BILLING.kid,
            SIGNATURE_HEADER: signature,
            PATH_HEADER: f"{index}/{count}/{b64e(b''.join(path))}",
        }

    for index in (0, 2):
        cases.append(
            case(
                f"merkle-valid-leaf-{index}",
                batch[index],
                merkle_headers(index, paths[index]),
                None,
                note=f"leaf {index} of a batch of {len(batch)}",
            )
        )
    wrong = [paths[0][0][:-1] + bytes([paths[0][0][-1] ^ 1]), *paths[0][1:]]
    cases.append(
        case(
            "merkle-wrong-proof",
            batch[0],
            merkle_headers(0, wrong),
            "bad-signature",
            note="one bit of the first sibling hash flipped",
        )
    )
    cases.append(
        case(
            "merkle-wrong-index",
            batch[0],
            merkle_headers(1, paths[0]),
            "bad-signature",
            note="leaf 0's path presented as leaf 1's",
        )
    )
    cases.append(
        case(
            "merkle-wrong-count",
            batch[2],
            merkle_headers(2, paths[2], count=4),
            "bad-signature",
            note="the path does not fit a batch of 4",
        )
    )
    cases.append(
        case(
            "merkle-other-message",
            event(99),
            merkle_headers(0, paths[0]),
            "bad-signature",
            note="a message that is not a leaf of the batch",
        )
    )
    no_path = merkle_headers(0, paths[0])
    del no_path[PATH_HEADER]
    cases.append(case("merkle-missing-path", batch[0], no_path, "bad-signature"))
    keys = [ROOT, BILLING, KB, STRAY, OLD, REVOKED, UNREGISTERED]
    return file_header(keys, registry) | {"cases": cases}
