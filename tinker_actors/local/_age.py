"""age encryption of external-weights exports (``age_encryption_recipients``), with pyrage.

The service encrypts every exported file to the recipients and stores it with a ``.age``
suffix; clients decrypt with ``age -d -i <identity>`` or pyrage (tinker-cookbook's
``weights.download`` does). Recipients are native ``age1...`` X25519 keys or SSH public keys
(``ssh-ed25519 ...``, ``ssh-rsa ...``), at most 10 (the request type checks the count).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["AGE_SUFFIX", "encrypt_directory", "parse_recipients"]

AGE_SUFFIX = ".age"


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:
        raise InvalidInputError(
            "this server cannot encrypt exports: install pyrage (pip install "
            "'tinker-actors[server]'), or leave age_encryption_recipients unset"
        ) from None
    return pyrage


def parse_recipients(keys: Sequence[str]) -> list[Any]:
    """Parse recipient keys into pyrage recipients.

    Raises:
        InvalidInputError: a key that is neither an age X25519 key nor an SSH public key (the
            message says which, by position, without echoing more than its start).
    """
    pyrage = _pyrage()
    recipients = []
    for i, key in enumerate(keys):
        text = key.strip()
        try:
            if text.startswith("age1"):
                recipients.append(pyrage.x25519.Recipient.from_str(text))
            elif text.startswith("ssh-"):
                recipients.append(pyrage.ssh.Recipient.from_str(text))
            else:
                raise ValueError(text)
        except (pyrage.RecipientError, ValueError):
            raise InvalidInputError(
                f"age_encryption_recipients[{i}] ({text[:12]!r}...) is not an age public key "
                "(age1...) or an SSH public key (ssh-ed25519 / ssh-rsa ...)"
            ) from None
    return recipients


def encrypt_directory(directory: Path, recipients: Sequence[Any]) -> int:
    """Replace every file under ``directory`` by its encryption ``<name>.age``; return bytes."""
    pyrage = _pyrage()
    total = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        target = path.with_name(path.name + AGE_SUFFIX)
        pyrage.encrypt_file(str(path), str(target), list(recipients))
        path.unlink()
        total += target.stat().st_size
    return total
