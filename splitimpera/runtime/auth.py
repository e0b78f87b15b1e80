"""The shared token of the real split run: where it comes from, how long it must be, how it is checked.

The token is read from a file (``--token-file``) or the environment variable
:data:`TOKEN_ENV`, never from the command line, where every user of the machine can read
it (``/proc/PID/cmdline``). A server's token has at least :data:`MIN_TOKEN_CHARS`
characters. Tokens are compared in constant time (of their SHA-256 digests, so the
length does not show either), and each wrong token makes the next answer to a wrong token
wait twice as long, up to a cap, so guessing runs at a few tries a second at most.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from pathlib import Path

from ..errors import UserError

TOKEN_ENV = "SPLITIMPERA_TOKEN"
MIN_TOKEN_CHARS = 16


def read_token(token_file: str | None, field: str = "--token-file") -> str | None:
    """The token from ``token_file`` (its first line, stripped), else from :data:`TOKEN_ENV`,
    else None. UserError naming ``field`` when the file cannot be read or is empty."""
    if token_file:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot read {token_file}: {e.strerror or e}", field=field) from None
        except UnicodeDecodeError:
            raise UserError(f"{token_file} is not UTF-8 text", field=field) from None
        token = (text.splitlines() or [""])[0].strip()
        if not token:
            raise UserError(f"{token_file} holds no token (its first line is empty)", field=field)
        return token
    return os.environ.get(TOKEN_ENV) or None


def check_server_token(token: str | None, field: str = "--token-file") -> None:
    """UserError unless ``token`` is None or has at least :data:`MIN_TOKEN_CHARS` characters."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UserError(f"the token has {len(token)} characters; give at least {MIN_TOKEN_CHARS} (e.g. "
                        "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`)", field=field)


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests: neither content nor length leaks through timing)."""
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def token_problem(given: str, expected: str) -> str:
    """What is wrong with a refused token, in the device's terms."""
    if not expected:
        return (f"this server takes no token (started without one): drop --token-file and ${TOKEN_ENV}, "
                "or start the server with that token")
    if not given:
        return f"this server requires a token: give the server's (--token-file or ${TOKEN_ENV})"
    return f"wrong token: give the server's (--token-file or ${TOKEN_ENV})"


class Backoff:
    """How long to wait before answering a wrong token: ``first_s``, doubling with each wrong
    token since the last right one, at most ``cap_s``. After ``cap_s`` without a wrong
    token it starts again from ``first_s``."""

    def __init__(self, first_s: float, cap_s: float):
        self.first_s, self.cap_s = first_s, cap_s
        self._lock = threading.Lock()
        self._failures = 0
        self._last = 0.0

    def failed(self) -> float:
        """Record a wrong token; returns the wait (s) before answering it."""
        with self._lock:
            now = time.monotonic()
            if now - self._last > self.cap_s + self.first_s:
                self._failures = 0
            self._last = now
            self._failures += 1
            return min(self.cap_s, self.first_s * 2 ** min(self._failures - 1, 30))

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
