"""Backend selection and the ``none`` backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from govern.compliance.model import NoModel, open_model
from govern.compliance.model.openai import OpenAIModel
from govern.errors import ConfigError, ModelUnavailable
from govern.settings import load_settings


def test_backend_none_is_never_ready_and_every_call_is_unavailable(tmp_path: Path) -> None:
    model = open_model(
        load_settings(home=tmp_path, config=tmp_path / "none.toml", llm_backend="none")
    )
    assert isinstance(model, NoModel)
    assert not model.ready()
    assert not model.wait_ready(0.1)
    with pytest.raises(ModelUnavailable) as caught:
        model.label_logprobs("Is the sky blue?", ["yes", "no"])
    assert caught.value.http_status == 503
    assert caught.value.flight_status == "unavailable"


def test_backend_openai_is_picked_without_contacting_the_endpoint(tmp_path: Path) -> None:
    model = open_model(
        load_settings(
            home=tmp_path,
            config=tmp_path / "none.toml",
            llm_backend="openai",
            llm_openai_base_url="http://127.0.0.1:9/v1",
        )
    )
    assert isinstance(model, OpenAIModel)
    assert model.base_url == "http://127.0.0.1:9/v1"


def test_backend_openai_without_a_url_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(home=tmp_path, config=tmp_path / "none.toml", llm_backend="openai")


def test_the_model_cache_defaults_to_a_folder_under_home(tmp_path: Path) -> None:
    assert (
        load_settings(home=tmp_path, config=tmp_path / "none.toml").resolved_llm_cache_dir
        == tmp_path / "models"
    )
