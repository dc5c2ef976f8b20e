from pathlib import Path

import pytest

from search.config.preflight import checked_settings
from search.config.usage import UsageError
from search.config.wandb_mode import resolve_wandb_mode, wandb_has_credentials


@pytest.fixture
def no_wandb_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment where W&B is not configured: no key, no mode, an empty netrc."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_auto_is_offline_without_credentials(no_wandb_config: Path) -> None:
    assert not wandb_has_credentials()
    assert resolve_wandb_mode("auto") == "offline"


def test_auto_is_online_with_an_api_key(
    no_wandb_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_auto_is_online_after_wandb_login(no_wandb_config: Path) -> None:
    no_wandb_config.write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert resolve_wandb_mode("auto") == "online"


def test_auto_respects_the_users_wandb_mode(
    no_wandb_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"


def test_explicit_modes_are_kept(no_wandb_config: Path) -> None:
    assert [resolve_wandb_mode(m) for m in ("offline", "disabled")] == ["offline", "disabled"]


def test_online_without_credentials_is_a_usage_error(no_wandb_config: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--wandb online needs W&B credentials"):
        checked_settings(["--wandb", "online", "--storage-path", str(tmp_path)])
