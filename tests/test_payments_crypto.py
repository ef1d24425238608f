"""The payments-v1 signature and encryption scheme (api.payments.crypto) against the vectors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from api.payments import crypto

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "payments-v1.json").read_text(encoding="utf-8"))
ORDER = VECTORS["order_request"]
NOTE = VECTORS["notification"]
KEY = crypto.apiv3_key_bytes(VECTORS["apiv3_key"])


def merchant_key() -> rsa.RSAPrivateKey:
    return crypto.load_private_key((FIXTURES / "payments-merchant-private.pem").read_bytes())


def platform_public() -> rsa.RSAPublicKey:
    return crypto.load_public_key((FIXTURES / "payments-platform-public.pem").read_bytes())


def test_order_request_message_signature_and_authorization_are_the_vectors() -> None:
    message = crypto.request_message(
        ORDER["method"], ORDER["path"], ORDER["timestamp"], ORDER["nonce"], ORDER["body"].encode()
    )
    assert message == ORDER["signed_message"].encode()
    signature = crypto.sign(merchant_key(), message)
    header = crypto.authorization(
        "1230000109", ORDER["merchant_serial"], ORDER["timestamp"], ORDER["nonce"], signature
    )
    assert header == ORDER["authorization"]
    merchant_public = crypto.load_public_key(
        (FIXTURES / "payments-merchant-public.pem").read_bytes()
    )
    assert crypto.verify(merchant_public, message, signature)


def test_authorization_header_parses_back() -> None:
    params = crypto.parse_authorization(ORDER["authorization"])
    assert params is not None
    assert params["mchid"] == "1230000109"
    assert params["serial_no"] == ORDER["merchant_serial"]
    assert params["timestamp"] == ORDER["timestamp"]
    assert params["nonce_str"] == ORDER["nonce"]
    assert crypto.parse_authorization("Bearer abc") is None
    assert crypto.parse_authorization(f"{crypto.AUTH_SCHEME} mchid=1230000109") is None


def test_notification_signature_verifies_over_the_vector_message() -> None:
    headers = NOTE["headers"]
    message = crypto.response_message(
        headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], NOTE["body"].encode()
    )
    assert message == NOTE["signed_message"].encode()
    assert crypto.verify(platform_public(), message, headers["Wechatpay-Signature"])
    assert not crypto.verify(platform_public(), message + b" ", headers["Wechatpay-Signature"])
    assert not crypto.verify(platform_public(), message, "not base64!")
    assert not crypto.verify(platform_public(), message, base64.b64encode(b"\0" * 256).decode())


def test_resource_decrypts_to_the_vector_content_and_encrypts_back() -> None:
    resource = json.loads(NOTE["body"])["resource"]
    plain = crypto.decrypt_resource(
        KEY, resource["nonce"], resource["associated_data"], resource["ciphertext"]
    )
    assert json.loads(plain) == NOTE["decrypted_resource"]
    sealed = crypto.encrypt_resource(KEY, resource["nonce"], resource["associated_data"], plain)
    assert sealed == resource["ciphertext"]


@pytest.mark.parametrize(
    ("key", "nonce", "associated_data", "ciphertext"),
    [
        (b"0" * 32, None, None, None),  # wrong API v3 key
        (None, "fdasflkja485", None, None),  # wrong nonce
        (None, None, "refund", None),  # wrong associated data
        (None, None, None, "XSai" + "A" * 8),  # tampered / truncated
        (None, None, None, "%%% not base64"),
    ],
)
def test_resource_that_does_not_decrypt_is_a_crypto_error(
    key: bytes | None, nonce: str | None, associated_data: str | None, ciphertext: str | None
) -> None:
    resource = json.loads(NOTE["body"])["resource"]
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_resource(
            key or KEY,
            nonce or resource["nonce"],
            associated_data or resource["associated_data"],
            ciphertext or resource["ciphertext"],
        )


def test_apiv3_key_must_be_32_bytes() -> None:
    assert crypto.apiv3_key_bytes(VECTORS["apiv3_key"]) == VECTORS["apiv3_key"].encode()
    with pytest.raises(crypto.CryptoError):
        crypto.apiv3_key_bytes("short")


def test_platform_key_loads_from_a_certificate_too() -> None:
    private = crypto.load_private_key((FIXTURES / "payments-platform-private.pem").read_bytes())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payments-v1 test platform")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(int(VECTORS["platform_serial"], 16))
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    key = crypto.load_public_key(cert.public_bytes(serialization.Encoding.PEM))
    assert key.public_numbers() == platform_public().public_numbers()


def test_keys_that_are_not_rsa_or_not_pem_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(crypto.CryptoError):
        crypto.load_private_key(ec_pem)
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(ec_public)
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
