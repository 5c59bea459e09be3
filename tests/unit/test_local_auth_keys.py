"""The local server's key checks: accepted keys are remembered, refused ones never are."""

from __future__ import annotations

import pytest

from tinker_actors.local import _auth
from tinker_actors.local._auth import Authenticator, AuthError, principal_of


def test_an_accepted_key_gives_its_principal_every_time() -> None:
    auth = Authenticator()
    first = auth.check("tml-a", raw_key_allowed=True)
    assert first == auth.check("tml-a", raw_key_allowed=True) == principal_of("tml-a")
    assert auth.check("tml-b", raw_key_allowed=True) == principal_of("tml-b") != first


@pytest.mark.parametrize("key", ["nope", "tml-other", ""])
def test_a_refused_key_is_refused_every_time(key: str) -> None:
    auth = Authenticator(api_keys=frozenset({"tml-good"}))
    for _ in range(3):
        with pytest.raises(AuthError):
            auth.check(key, raw_key_allowed=True)
    assert auth.check("tml-good", raw_key_allowed=True) == principal_of("tml-good")


def test_keys_beyond_the_remembered_ones_are_still_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_auth, "_MAX_ACCEPTED", 2)
    auth = Authenticator()
    keys = [f"tml-{i}" for i in range(5)]
    assert [auth.check(k, raw_key_allowed=True) for k in keys] == [principal_of(k) for k in keys]
    assert [auth.check(k, raw_key_allowed=True) for k in keys] == [principal_of(k) for k in keys]
    with pytest.raises(AuthError):
        auth.check("not-a-key", raw_key_allowed=True)
