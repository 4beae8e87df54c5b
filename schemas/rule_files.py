"""One loader for the YAML files people edit: survivorship, curation and segment rules, settings.

A file is parsed into a pydantic model, so every key is checked (the models refuse unknown keys,
so a typo is an error rather than ignored) before any data is read. A mistake is reported in one
error that names the file, then each problem as ``field.path: reason (line N)``: the line of the
key (or list item) at fault, found by composing the YAML document, which keeps every node's
position. A key that is missing has no line of its own; it gets the line of the mapping that
lacks it, or none when that mapping is the whole file.

The offending value is left out of the message unless the caller says its files hold no personal
data (``show_values``): a settings file can hold a database password, a segment predicate an
email address, and error messages end up in logs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Model = TypeVar("Model", bound=BaseModel)


class RuleFileError(ValueError):
    """A YAML file that cannot be used as it is; the message names the file, line and field."""


def load_rule_file(
    path: Path,
    model: type[Model],
    *,
    error: type[ValueError] = RuleFileError,
    label: Callable[[Any], str] | None = None,
    show_values: bool = False,
) -> Model:
    """``path`` parsed and validated as ``model``, or ``error`` naming each problem's place.

    ``label`` names the document inside the file from its parsed content (a segment by its
    name), between the file and the problems; ``show_values`` puts each offending scalar in the
    message, for files that hold only rule and source names. An empty file is an empty mapping.
    """
    root, data = _compose(path, error)
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as err:
        problems = "; ".join(_problem(e, root, show_values) for e in err.errors())
        where = f"{label(data)}: " if label else ""
        raise error(f"{path}: {where}{problems}") from None


def _compose(path: Path, error: type[ValueError]) -> tuple[yaml.Node | None, Any]:
    """The file's node tree (positions) and its plain value, from one parse."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the file ({err.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as err:  # the problem and its line, not the text around it
        at = f" (line {err.problem_mark.line + 1})" if err.problem_mark else ""
        raise error(f"{path}: not valid YAML: {err.problem or err.context}{at}") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({type(err).__name__})") from None
    finally:
        loader.dispose()


def _problem(error: ErrorDetails, root: yaml.Node | None, show_values: bool) -> str:
    """One pydantic error as ``field.path: reason (line N)``, the reason without the input."""
    field = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    shown = show_values and error["type"] != "missing" and isinstance(value, str | int | float)
    reason = (f"'{value}': " if shown else "") + error["msg"].removeprefix("Value error, ")
    line = _line_of(root, error["loc"])
    return (f"{field}: {reason}" if field else reason) + (f" (line {line})" if line else "")


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest key or list item of ``loc`` that the document has.

    Parts the document does not have (a missing key, pydantic's ``[key]`` or union tags) end
    the walk, so the line is that of the nearest enclosing key; ``None`` for the whole file.
    """
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == str(part)]
            if not found:
                break
            key, node = found[-1]  # a repeated key: YAML keeps the last, so does the model
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
