"""Settings of the payments-v1 adapter, built once at start-up and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import rsa

from api.payments import crypto


@dataclass(frozen=True, slots=True)
class WechatPaySettings:
    """Who we are at the provider, and how we trust it.

    - `merchant_private_key` signs our requests; the provider knows its public
      half under `merchant_serial`.
    - `platform_keys` maps platform certificate serials to the provider's
      public keys; a notification or response is trusted only if it is signed
      by the key its `Wechatpay-Serial` names. Several serials may be listed
      while the provider rotates its certificate.
    - `apiv3_key` (32 bytes) decrypts notification resources.
    """

    base_url: str
    mchid: str
    appid: str
    merchant_serial: str
    merchant_private_key: rsa.RSAPrivateKey = field(repr=False)
    platform_keys: Mapping[str, rsa.RSAPublicKey] = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    timeout_s: float = 10.0
    verify_responses: bool = True  # check Wechatpay-Signature on every 2xx answer
    max_attempts: int = 3  # per call, on transport errors and 5xx only
    retry_backoff_s: float = 0.5  # doubled after each failed attempt
    timestamp_window_s: int = 300

    def __post_init__(self) -> None:
        keys = {serial.strip().upper(): key for serial, key in self.platform_keys.items()}
        if not keys:
            raise ValueError("at least one platform key is needed")
        object.__setattr__(self, "platform_keys", MappingProxyType(keys))
        object.__setattr__(self, "apiv3_key", crypto.apiv3_key_bytes(self.apiv3_key))
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def from_pem(
        cls,
        *,
        base_url: str,
        mchid: str,
        appid: str,
        merchant_serial: str,
        merchant_private_key_pem: bytes,
        platform_public_pems: Mapping[str, bytes],
        apiv3_key: str | bytes,
        timeout_s: float = 10.0,
        verify_responses: bool = True,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
    ) -> WechatPaySettings:
        """From PEM bytes: the merchant key, and per serial a public key or certificate."""
        return cls(
            base_url=base_url,
            mchid=mchid,
            appid=appid,
            merchant_serial=merchant_serial,
            merchant_private_key=crypto.load_private_key(merchant_private_key_pem),
            platform_keys={s: crypto.load_public_key(p) for s, p in platform_public_pems.items()},
            apiv3_key=crypto.apiv3_key_bytes(apiv3_key),
            timeout_s=timeout_s,
            verify_responses=verify_responses,
            max_attempts=max_attempts,
            retry_backoff_s=retry_backoff_s,
        )

    @classmethod
    def from_files(
        cls,
        *,
        base_url: str,
        mchid: str,
        appid: str,
        merchant_serial: str,
        merchant_private_key_path: Path,
        platform_public_paths: Mapping[str, Path],
        apiv3_key: str,
    ) -> WechatPaySettings:
        """From PEM files, as a deployment keeps them."""
        return cls.from_pem(
            base_url=base_url,
            mchid=mchid,
            appid=appid,
            merchant_serial=merchant_serial,
            merchant_private_key_pem=merchant_private_key_path.read_bytes(),
            platform_public_pems={s: p.read_bytes() for s, p in platform_public_paths.items()},
            apiv3_key=apiv3_key,
        )
