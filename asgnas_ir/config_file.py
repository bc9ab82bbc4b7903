"""Reading a JSON CONFIG file into its pydantic model, with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from asgnas_ir.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def load_config(cls: type[M], path: str | Path, what: str | None = None) -> M:
    """`cls` validated from the JSON file at `path`; `what` names the kind of config in errors
    (default: the class name)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"config file '{path}' does not exist")
    try:
        return cls.model_validate_json(path.read_text())
    except ValueError as exc:
        raise SpecError(f"config file '{path}' is not a valid {what or cls.__name__}:\n{exc}") from None
