"""The architecture record: a model's module tree as JSON data in its file (docs/format.md).

A record names only minidnn's own layer types (``layers.registry``) and two containers:
``Sequential`` (children applied in order: also any Model that keeps the default ``forward``)
and ``Residual`` (``post(main(x) + shortcut(x))``). Reading one never imports, unpickles or
evaluates anything: the JSON is bounded in size, depth and node count, typed strictly, and every
parameter's shape is computed from it (and compared with the stored tensors by the caller)
before a single layer is constructed.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

from ..errors import ConfigError, ModelFileError
from ..layers.base import Module, Sequential
from ..layers.model import Model
from ..layers.registry import INT_MAX, LAYER_TYPES, TensorShape, layer_type_name
from ..layers.residual import Residual

MAX_TEXT = 1 << 20          # characters of JSON (ResNet-32's record is about 20 KB)
MAX_DEPTH = 32              # nesting of modules
MAX_NODES = 10_000          # modules in one model
MAX_NAME = 64               # characters of a child's name
MAX_VALUES = 1 << 28        # parameter and buffer values a record may declare (1 GiB of float32)
MAX_INPUT_DIMS = 8
CONTAINERS = ("Sequential", "Residual")
RESIDUAL_CHILDREN = ("main", "shortcut", "post")
RECORD_KEYS = {"zoo", "input_shape", "num_classes", "module"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# attributes a child name must not shadow on the container it is assigned to
RESERVED = set(dir(Model)) | set(dir(Sequential)) | set(dir(Residual)) | {
    "training", "backend", "config", "arch", "metadata"}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ---------------------------------------------------------------------- writing
def _flow(m: Module) -> str | None:
    """'Sequential' or 'Residual' if ``m`` computes what that container does, else None."""
    for base, kind in ((Residual, "Residual"), (Model, "Sequential"), (Sequential, "Sequential")):
        if isinstance(m, base):
            t = type(m)
            same = t.forward is base.forward and t.backward is base.backward
            return kind if same else None
    return None


def _not_recordable(model: Module, path: str, why: str) -> ModelFileError:
    cls = type(model).__name__
    return ModelFileError(
        f"cannot record the architecture of {cls}: {repr(path) if path else 'the model'} {why}. "
        f"A file records minidnn layers inside Sequential, Residual or a Model without its own "
        f"forward(). Save the weights only with minidnn.save(model, path, architecture=False) "
        f"and load them into the class: minidnn.load(path, model={cls}(...))")


def _node(m: Module, path: str, root: Module) -> dict:
    kind = layer_type_name(m)
    if kind is not None:
        try:
            return {"type": kind, "config": LAYER_TYPES[kind].check_config(m.layer_config())}
        except ConfigError as exc:
            raise _not_recordable(root, path, f"has an argument a file cannot hold ({exc})") \
                from None
    kind = _flow(m)
    if kind is None:
        why = (f"is a {type(m).__name__} with its own forward()" if isinstance(
            m, (Model, Sequential, Residual)) else f"is a {type(m).__name__}, not a minidnn layer")
        raise _not_recordable(root, path, why)
    if m._params or m._buffers:
        own = sorted(set(m._params) | set(m._buffers))
        raise _not_recordable(root, path, f"holds tensors of its own ({own}) beside its children")
    if kind == "Residual" and set(m._modules) - set(RESIDUAL_CHILDREN):
        raise _not_recordable(root, path, f"is a Residual with children other than "
                                          f"{RESIDUAL_CHILDREN}: {sorted(m._modules)}")
    return {"type": kind, "children": [dict(name=name, **_node(c, _join(path, name), root))
                                       for name, c in m._modules.items()]}


def is_zoo_model(model: Module) -> bool:
    """Whether ``model`` is exactly the zoo class registered under its ``arch`` (so a file can
    rebuild it by name; a subclass or a user class of the same name is not, nor a model whose
    layer widths were changed, e.g. by channel pruning: ``architecture_edited``)."""
    from ..models import MODELS
    return MODELS.get(getattr(model, "arch", None)) is type(model) \
        and not getattr(model, "architecture_edited", False)


MODES = ("require", "try", "skip")


def record_architecture(model: Module, mode: str = "require") -> dict:
    """The record of ``model``, checked as a reader would check it.

    ``mode`` 'require': ModelFileError (naming the part that cannot be described and suggesting
    a weights-only save) when the module tree cannot be recorded, except for a zoo model, which
    loads by name anyway; 'try': ``module`` is null then; 'skip': ``module`` is null (weights
    only: the file loads into an instance of the class).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    zoo = is_zoo_model(model)
    module = None
    if mode != "skip":
        try:
            module = _node(model, "", model)
            if module["type"] != "Sequential":
                raise _not_recordable(model, "", "does not apply its children in order")
        except ModelFileError:
            if mode == "require" and not zoo:
                raise
            module = None
    num_classes = getattr(model, "num_classes", None)
    record = {"zoo": zoo, "input_shape": [int(s) for s in getattr(model, "input_shape", ())],
              "num_classes": num_classes if isinstance(num_classes, int) else None,
              "module": module}
    check_record(record, f"cannot save {type(model).__name__}: its architecture")
    return record


# ---------------------------------------------------------------------- reading
def parse_architecture(text: str, where: str) -> dict:
    """The validated record in ``text`` (JSON); ModelFileError naming ``where`` otherwise."""
    if len(text) > MAX_TEXT:
        raise ModelFileError(f"{where}: {len(text):,} characters, more than {MAX_TEXT:,}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{where}: not valid JSON ({type(exc).__name__})") from None
    return check_record(value, where)


def _int(value: Any, low: int, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= INT_MAX:
        raise ModelFileError(f"{where}: {what} must be an integer in [{low}, {INT_MAX}], "
                             f"got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_record(record: Any, where: str) -> dict:
    """``record`` if it is a valid architecture record (bounded, strictly typed)."""
    if not isinstance(record, dict) or set(record) != RECORD_KEYS:
        keys = sorted(map(str, record)) if isinstance(record, dict) else type(record).__name__
        raise ModelFileError(f"{where}: must be an object with keys {sorted(RECORD_KEYS)}, "
                             f"got {_short(keys)}")
    if not isinstance(record["zoo"], bool):
        raise ModelFileError(f"{where}: 'zoo' must be true or false")
    shape = record["input_shape"]
    if not isinstance(shape, list) or len(shape) > MAX_INPUT_DIMS:
        raise ModelFileError(f"{where}: input_shape must be a list of at most {MAX_INPUT_DIMS} "
                             f"integers")
    for s in shape:
        _int(s, 1, "input_shape", where)
    if record["num_classes"] is not None:
        _int(record["num_classes"], 1, "num_classes", where)
    module = record["module"]
    if module is not None:
        counter = [0]
        _check_node(module, "", 0, counter, where)
        if module["type"] != "Sequential":
            raise ModelFileError(f"{where}: the model itself must be a Sequential, got "
                                 f"{module['type']!r}")
    return record


def _check_node(node: Any, path: str, depth: int, counter: list[int], where: str) -> None:
    at = f"{where} at {path!r}" if path else f"{where} at the model"
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise ModelFileError(f"{where}: more than {MAX_NODES:,} modules")
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{at}: modules nested deeper than {MAX_DEPTH}")
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise ModelFileError(f"{at}: a module must be an object with a string 'type'")
    kind = node["type"]
    named = {"name"} if path else set()
    if kind in LAYER_TYPES:
        if set(node) != named | {"type", "config"}:
            raise ModelFileError(f"{at}: a {kind} has keys {sorted(named | {'type', 'config'})}, "
                                 f"got {_short(sorted(map(str, node)))}")
        try:
            LAYER_TYPES[kind].check_config(node["config"])
        except ConfigError as exc:
            raise ModelFileError(f"{at}: {exc}") from None
        return
    if kind not in CONTAINERS:
        raise ModelFileError(f"{at}: unknown layer type {_short(kind)} (minidnn has "
                             f"{', '.join(sorted(LAYER_TYPES) + list(CONTAINERS))})")
    if set(node) != named | {"type", "children"} or not isinstance(node["children"], list):
        raise ModelFileError(f"{at}: a {kind} has keys {sorted(named | {'type', 'children'})} "
                             f"with a list of children")
    names = [_check_name(child, kind, at) for child in node["children"]]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{at}: duplicate child names")
    if kind == "Residual" and "main" not in names:
        raise ModelFileError(f"{at}: a Residual needs a 'main' child")
    for name, child in zip(names, node["children"]):
        _check_node(child, _join(path, name), depth + 1, counter, where)


def _check_name(child: Any, kind: str, at: str) -> str:
    name = child.get("name") if isinstance(child, dict) else None
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME.fullmatch(name) \
            or name in RESERVED:
        raise ModelFileError(f"{at}: invalid child name {_short(name)} (letters, digits and _, "
                             f"at most {MAX_NAME} characters, not a Module attribute)")
    if kind == "Residual" and name not in RESIDUAL_CHILDREN:
        raise ModelFileError(f"{at}: a Residual's children are {RESIDUAL_CHILDREN}, got {name!r}")
    return name


# ---------------------------------------------------------------------- shapes and building
def _leaves(node: dict, path: str) -> Iterator[tuple[str, dict]]:
    if node["type"] in LAYER_TYPES:
        yield path, node
        return
    for child in node["children"]:
        yield from _leaves(child, _join(path, child["name"]))


def expected_tensors(record: dict, where: str) -> tuple[dict[str, TensorShape],
                                                        dict[str, TensorShape]]:
    """(parameters, buffers) by dotted name, as the record's model would have them.

    ModelFileError if together they exceed MAX_VALUES (checked before anything is allocated).
    """
    params: dict[str, TensorShape] = {}
    buffers: dict[str, TensorShape] = {}
    total = 0
    for path, leaf in _leaves(record["module"], ""):
        entry = LAYER_TYPES[leaf["type"]]
        for into, shapes in ((params, entry.params(leaf["config"])),
                             (buffers, entry.buffers(leaf["config"]))):
            for name, spec in shapes.items():
                into[_join(path, name)] = spec
                total += spec.numel
    if total > MAX_VALUES:
        raise ModelFileError(f"{where}: declares {total:,} parameter and buffer values, more than "
                             f"this minidnn loads ({MAX_VALUES:,})")
    return params, buffers


def _build(node: dict) -> Module:
    kind = node["type"]
    if kind in LAYER_TYPES:
        return LAYER_TYPES[kind].cls(**node["config"])
    children = {c["name"]: _build(c) for c in node["children"]}
    if kind == "Residual":
        return Residual(children["main"], children.get("shortcut"), children.get("post"))
    return Sequential(**children)


def build_from_record(record: dict, where: str) -> Model:
    """A Model made of the record's layers (weights freshly initialized; the caller installs
    the file's); ModelFileError if a layer's constructor refuses its config."""
    model = Model()
    try:
        for child in record["module"]["children"]:
            setattr(model, child["name"], _build(child))
    except ConfigError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    if record["input_shape"]:
        object.__setattr__(model, "input_shape", tuple(record["input_shape"]))
    if record["num_classes"] is not None:
        object.__setattr__(model, "num_classes", record["num_classes"])
    return model


# ---------------------------------------------------------------------- reporting
def format_architecture(record: dict) -> list[str]:
    """One line per module of the record: dotted name, type and arguments."""
    lines = []

    def walk(node: dict, path: str, depth: int) -> None:
        kind = node["type"]
        if kind in LAYER_TYPES:
            args = ", ".join(f"{k}={node['config'][k]}" for k in LAYER_TYPES[kind].args)
            lines.append(f"  {'  ' * depth}{path:<24} {kind}({args})")
            return
        if path:
            lines.append(f"  {'  ' * depth}{path:<24} {kind}"
                         + (" post(main(x) + shortcut(x))" if kind == "Residual" else ""))
        for child in node["children"]:
            walk(child, child["name"], depth + (1 if path else 0))

    walk(record["module"], "", 0)
    return lines
