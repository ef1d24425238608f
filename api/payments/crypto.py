"""The signature and encryption scheme of payments-v1. Pure functions, no I/O, no clock.

Everything here is done by the `cryptography` library; this module only says
which bytes are signed and how they are encoded.

- Requests (API -> provider) are signed with the merchant's RSA key:
  SHA256-with-RSA (PKCS#1 v1.5) over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`,
  where URL is the path with its query string and BODY is empty for a GET.
  The signature goes, base64-encoded, into the `Authorization` header.
- Notifications and responses (provider -> API) are signed with the provider's
  platform key over `TIMESTAMP\\nNONCE\\nBODY\\n`, sent in the
  `Wechatpay-Signature` header, with `Wechatpay-Serial` naming the key.
- Notification resources are encrypted with AES-256-GCM under the 32-byte
  API v3 key; the GCM nonce and associated data travel next to the
  base64 ciphertext (which ends with the 16-byte tag).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEME: Final = "WECHATPAY2-SHA256-RSA2048"
RESOURCE_ALGORITHM: Final = "AEAD_AES_256_GCM"
APIV3_KEY_BYTES: Final = 32


class CryptoError(ValueError):
    """A key that cannot be used, or a ciphertext that does not decrypt."""


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The merchant's RSA private key from PEM (PKCS#8 or PKCS#1, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise CryptoError(f"not a PEM private key: {err}") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CryptoError("the private key is not RSA")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """A platform public key from a PEM `PUBLIC KEY` or an X.509 `CERTIFICATE`."""
    try:
        key: object = (
            x509.load_pem_x509_certificate(pem).public_key()
            if b"-----BEGIN CERTIFICATE-----" in pem
            else serialization.load_pem_public_key(pem)
        )
    except (ValueError, TypeError) as err:
        raise CryptoError(f"not a PEM public key or certificate: {err}") from err
    if not isinstance(key, rsa.RSAPublicKey):
        raise CryptoError("the public key is not RSA")
    return key


def apiv3_key_bytes(key: str | bytes) -> bytes:
    """The API v3 key as the 32 bytes AES-256 needs (it is configured as 32 ASCII characters)."""
    raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
    if len(raw) != APIV3_KEY_BYTES:
        raise CryptoError(f"the API v3 key must be {APIV3_KEY_BYTES} bytes, got {len(raw)}")
    return raw


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the merchant signs for one request. `url` is the path plus `?query` if any."""
    head = f"{method.upper()}\n{url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the provider signs for a notification or a response: `ts\\nnonce\\nbody\\n`."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256-with-RSA (PKCS#1 v1.5), base64. Deterministic for a given key and message."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True if `signature_b64` is a valid SHA256-with-RSA signature of `message`."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def authorization(mchid: str, serial_no: str, timestamp: str, nonce: str, signature: str) -> str:
    """The `Authorization` header value, parameters in the order of the contract's vector."""
    return (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of an `Authorization` header of our scheme, or None if it is not one."""
    scheme, _, params = value.strip().partition(" ")
    if scheme != AUTH_SCHEME:
        return None
    out: dict[str, str] = {}
    for part in params.split(","):
        key, eq, quoted = part.strip().partition("=")
        if not eq or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            return None
        out[key] = quoted[1:-1]
    return out


def encrypt_resource(key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """AES-256-GCM; returns base64 of ciphertext followed by the 16-byte tag."""
    sealed = AESGCM(apiv3_key_bytes(key)).encrypt(
        nonce.encode("utf-8"), plaintext, associated_data.encode("utf-8")
    )
    return base64.b64encode(sealed).decode("ascii")


def decrypt_resource(key: bytes, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """The plaintext of a resource; `CryptoError` if it was tampered with or the key is wrong."""
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(apiv3_key_bytes(key)).decrypt(
            nonce.encode("utf-8"), sealed, associated_data.encode("utf-8")
        )
    except (binascii.Error, ValueError, InvalidTag) as err:
        raise CryptoError("the resource does not decrypt") from err
