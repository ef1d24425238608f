"""The provider's side of payments-v1 on the wire. Pure: no I/O, no clock.

Written from the contract, apart from `api.payments`, so the simulator and the
API's adapter cannot agree on a wrong reading of the scheme; tests check both
against the contract's vectors. The `cryptography` library does the crypto:

- merchant requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=...,
  nonce_str=...,signature=...,timestamp=...,serial_no=...`, a SHA256-with-RSA
  (PKCS#1 v1.5) signature over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`;
- the provider signs notifications and responses with its platform key over
  `TIMESTAMP\\nNONCE\\nBODY\\n` (headers `Wechatpay-Signature`,
  `Wechatpay-Timestamp`, `Wechatpay-Nonce`, `Wechatpay-Serial`);
- notification resources are AES-256-GCM under the 32-byte API v3 key.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME: Final = "WECHATPAY2-SHA256-RSA2048"
CHINA_TIME: Final = timezone(timedelta(hours=8))
SIGNATURE_WINDOW_S: Final = 300
VECTOR_MCHID: Final = "1230000109"
VECTOR_APPID: Final = "wxd678efh567hg6787"


@dataclass(frozen=True)
class ProviderAccount:
    """One merchant at the provider, and the provider's own keys.

    The provider knows the merchant's public key (under `merchant_serial`) and
    holds the platform private key (under `platform_serial`) and the API v3
    key. `merchant_private_pem` is set only when the keys were made here: it is
    what the API must be configured with to talk to this simulator.
    """

    mchid: str
    appid: str
    merchant_serial: str
    merchant_public_key: rsa.RSAPublicKey = field(repr=False)
    platform_serial: str
    platform_private_key: rsa.RSAPrivateKey = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    merchant_private_pem: bytes | None = field(default=None, repr=False)

    @property
    def platform_public_pem(self) -> bytes:
        """The platform public key the API verifies notifications with."""
        return self.platform_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def generate(
        cls,
        *,
        mchid: str = VECTOR_MCHID,
        appid: str = VECTOR_APPID,
        rng: random.Random | None = None,
    ) -> ProviderAccount:
        """Fresh RSA-2048 keys, serials and API v3 key (for a demo or a test)."""
        rng = rng or random.Random()
        merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alphabet = string.ascii_letters + string.digits
        return cls(
            mchid=mchid,
            appid=appid,
            merchant_serial=f"{rng.getrandbits(160):040X}",
            merchant_public_key=merchant.public_key(),
            platform_serial=f"{rng.getrandbits(160):040X}",
            platform_private_key=platform,
            apiv3_key="".join(rng.choice(alphabet) for _ in range(32)).encode("ascii"),
            merchant_private_pem=merchant.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    @classmethod
    def from_vectors(cls, folder: Path) -> ProviderAccount:
        """The contract's test keys (`payments-v1.json` and `payments-*.pem` in `folder`)."""
        vectors = json.loads((folder / "payments-v1.json").read_text(encoding="utf-8"))
        merchant_public = serialization.load_pem_public_key(
            (folder / "payments-merchant-public.pem").read_bytes()
        )
        platform_private = serialization.load_pem_private_key(
            (folder / "payments-platform-private.pem").read_bytes(), password=None
        )
        if not isinstance(merchant_public, rsa.RSAPublicKey) or not isinstance(
            platform_private, rsa.RSAPrivateKey
        ):
            raise ValueError("the vector keys are not RSA")
        return cls(
            mchid=VECTOR_MCHID,
            appid=VECTOR_APPID,
            merchant_serial=vectors["merchant_serial"],
            merchant_public_key=merchant_public,
            platform_serial=vectors["platform_serial"],
            platform_private_key=platform_private,
            apiv3_key=vectors["apiv3_key"].encode("ascii"),
            merchant_private_pem=(folder / "payments-merchant-private.pem").read_bytes(),
        )


def canonical_json(value: Any) -> bytes:
    """Compact UTF-8 JSON with non-ASCII kept, as in the contract's vectors."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def rfc3339(epoch_s: float) -> str:
    """`2026-11-22T20:01:30+08:00`: provider times are China time, whole seconds."""
    return datetime.fromtimestamp(int(epoch_s), CHINA_TIME).isoformat(timespec="seconds")


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def signature_headers(
    private_key: rsa.RSAPrivateKey, serial: str, timestamp: str, nonce: str, body: bytes
) -> dict[str, str]:
    """The provider's signature headers over `body` (a notification or a response)."""
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Signature": sign(private_key, message),
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
    }


def parse_authorization(value: str) -> dict[str, str] | None:
    scheme, _, params = value.strip().partition(" ")
    if scheme != SCHEME:
        return None
    out: dict[str, str] = {}
    for part in params.split(","):
        key, eq, quoted = part.strip().partition("=")
        if not eq or len(quoted) < 2 or not (quoted.startswith('"') and quoted.endswith('"')):
            return None
        out[key] = quoted[1:-1]
    return out


def check_merchant_request(
    account: ProviderAccount,
    method: str,
    url: str,
    body: bytes,
    authorization: str | None,
    now_s: int,
) -> str | None:
    """Why a merchant request's signature is refused, or None if it is good.

    `url` is the request's path with `?query` as received.
    """
    if not authorization:
        return "missing Authorization"
    params = parse_authorization(authorization)
    if params is None:
        return f"Authorization is not {SCHEME} with quoted parameters"
    needed = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
    missing = [name for name in needed if not params.get(name)]
    if missing:
        return f"Authorization lacks {', '.join(missing)}"
    if params["mchid"] != account.mchid:
        return f"unknown mchid {params['mchid']}"
    if params["serial_no"].upper() != account.merchant_serial.upper():
        return f"unknown merchant certificate serial {params['serial_no']}"
    stamp = params["timestamp"]
    if not stamp.isdigit() or abs(int(stamp) - now_s) > SIGNATURE_WINDOW_S:
        return f"timestamp {stamp} is more than {SIGNATURE_WINDOW_S} s from now"
    message = f"{method}\n{url}\n{stamp}\n{params['nonce_str']}\n".encode() + body + b"\n"
    try:
        signature = base64.b64decode(params["signature"], validate=True)
        account.merchant_public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return "signature does not verify"
    return None


def encrypt(apiv3_key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """AES-256-GCM; base64 of ciphertext followed by the 16-byte tag."""
    sealed = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(sealed).decode("ascii")


def notification_body(
    *,
    event_id: str,
    create_time: str,
    event_type: str,
    summary: str,
    original_type: str,
    resource: bytes,
    apiv3_key: bytes,
    resource_nonce: str,
) -> bytes:
    """A notification body, fields in the order of the contract's vector.

    `resource` is the plaintext JSON; `original_type` ("transaction" or
    "refund") is also the associated data.
    """
    return canonical_json(
        {
            "id": event_id,
            "create_time": create_time,
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": encrypt(apiv3_key, resource_nonce, original_type, resource),
                "associated_data": original_type,
                "nonce": resource_nonce,
            },
        }
    )
