"""The CRIU schema: every pycriu import of crit-plus happens here.

pycriu is CRIU's own Python library.  It carries the protobuf message classes
generated from CRIU's ``images/*.proto`` and the magic table.  It is not on
PyPI: distributions ship it inside their ``criu`` package, often in a system
directory that a virtual environment does not see.  This module finds it and
loads *only that package*, never the whole system path.

Search order (the first that loads wins):

1. ``$CRIT_PLUS_PYCRIU``: a directory holding a ``pycriu`` package (or the
   package directory itself).  The value ``system`` skips steps 2 and 3.
2. crit-plus's own current schema, built from CRIU's sources by
   ``make schema`` (``scripts/build-pycriu``) into
   ``$XDG_DATA_HOME/crit-plus/schema`` (``~/.local/share/crit-plus/schema``).
3. ``import pycriu`` from the running interpreter.
4. The distribution's directories (``/usr/lib/python3/dist-packages`` on
   Debian and Ubuntu, ``site-packages`` on Fedora and others).

Compatibility rules that depend on the schema version also live here:
:data:`FIELD_OVERLAYS` names fields that newer CRIUs write but an older schema
does not know (CRIU 4.2's 64-bit pagemap page count is the one that matters).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from . import schema_index
from .errors import PycriuNotFound

ENV_VAR = "CRIT_PLUS_PYCRIU"
#: The CRIU whose schema ``make schema`` builds (scripts/build-pycriu).
CURRENT_CRIU = "4.2.1"
SCHEMA_MARKER = "CRIT_PLUS_SCHEMA"
INSTALL_HINT = (
    "pycriu (CRIU's Python library) was not found: install your distribution's "
    "criu package (Debian/Ubuntu: apt-get install criu), or run `make schema` "
    f"to build a current one, or point ${ENV_VAR} at a directory holding pycriu"
)


@dataclass(frozen=True)
class FieldOverlay:
    """A field a newer CRIU writes that an older schema may not know.

    ``renames`` maps field numbers whose meaning changed to their new names
    (CRIU 4.2 turned pagemap field 2 into ``compat_nr_pages``).
    """

    number: int
    name: str
    kind: str  # "uint64", "uint32", "bool", "int64", "bytes", "string"
    since: str
    renames: dict = field(default_factory=dict)


#: Fields named here are decoded by name even when the loaded schema lacks them.
FIELD_OVERLAYS = {
    "pagemap_entry": (
        FieldOverlay(5, "nr_pages", "uint64", "4.2", renames={2: "compat_nr_pages"}),
    ),
}


def _distribution_dirs():
    """Directories where distributions install pycriu, most likely first."""
    import glob  # only when crit-plus's own schema is not there

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    patterns = [
        "/usr/lib/python3/dist-packages",
        f"/usr/lib/{version}/site-packages",
        f"/usr/lib64/{version}/site-packages",
        "/usr/lib/python3*/site-packages",
        "/usr/lib64/python3*/site-packages",
        "/usr/local/lib/python3*/dist-packages",
    ]
    seen = []
    for pattern in patterns:
        for directory in sorted(glob.glob(pattern), reverse=True):
            if directory not in seen:
                seen.append(directory)
    return seen


def own_schema_dir() -> str:
    """Where ``make schema`` installs the current pycriu for crit-plus."""
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data_home, "crit-plus", "schema")


def _package_dir(directory):
    """Return the pycriu package directory in or at ``directory``, or None."""
    for candidate in (os.path.join(directory, "pycriu"), directory):
        if os.path.isfile(os.path.join(candidate, "images", "pb.py")) and os.path.isfile(
            os.path.join(candidate, "__init__.py")
        ):
            return candidate
    return None


def _candidates():
    """Yield (origin, package_dir_or_None) in search order."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    if chosen and chosen != "system":
        yield "environment", _package_dir(chosen)
        return
    if not chosen:
        yield "crit-plus", _package_dir(own_schema_dir())
        spec = importlib.util.find_spec("pycriu")
        if spec is not None and spec.submodule_search_locations:
            yield "importable", _package_dir(list(spec.submodule_search_locations)[0])
    for directory in _distribution_dirs():
        package = _package_dir(directory)
        if package:
            yield "distribution", package


def _load_package(package_dir, lazy):
    """Import the pycriu package at ``package_dir`` as ``pycriu``.

    Only that directory becomes importable; its parent (for instance the whole
    system dist-packages) is never put on ``sys.path``.  The package's ``__init__``
    is not run: it also loads the RPC client and its messages, which crit-plus
    never uses.  With ``lazy`` (the schema has an index), ``pycriu.images`` is
    created without running its ``__init__`` either, which builds every message
    class of every ``.proto`` file: modules are imported when a message they
    define is first asked for (:meth:`Schema.message_class`), and the whole
    package when anything else of it is (:func:`_complete_on_use`).
    """
    existing = sys.modules.get("pycriu")
    if existing is not None:
        loaded_from = os.path.dirname(existing.__file__ or "")
        if os.path.realpath(loaded_from) == os.path.realpath(package_dir):
            return existing
        raise PycriuNotFound(
            f"another pycriu is already loaded from {loaded_from}; "
            f"cannot also load {package_dir} in one process"
        )
    module = _package_module("pycriu", package_dir)
    aliases = _SameModuleFinder(os.path.join(package_dir, "images"))
    try:
        with aliases:
            if lazy:
                images = _package_module("pycriu.images", os.path.join(package_dir, "images"))
                _complete_on_use(images, aliases)
                # a schema the installed protobuf cannot load fails here, not later
                importlib.import_module("pycriu.images.opts_pb2")
            else:
                images = importlib.import_module("pycriu.images")
        module.images = images
        module.__version__ = _package_version(package_dir)
    except Exception:
        for name in [n for n in sys.modules if n == "pycriu" or n.startswith("pycriu.")]:
            del sys.modules[name]
        for name in aliases.aliased:  # the next candidate must not find these
            sys.modules.pop(name, None)
        raise
    module.__dict__["_crit_plus_aliases"] = aliases
    return module


def _package_module(name, directory):
    """The package ``name`` at ``directory``, in ``sys.modules``, its ``__init__`` not run."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(directory, "__init__.py"), submodule_search_locations=[directory]
    )
    if spec is None:
        raise PycriuNotFound(f"{directory}: not an importable package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module


def _complete_on_use(images, aliases):
    """Make the partly loaded ``pycriu.images`` run its own ``__init__`` (every message
    class, ``load``, ``pb2dict``...) the first time a name it lacks is asked for, so
    that code using pycriu itself (crit's, the tests' oracle) sees the whole package."""

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        del images.__getattr__
        with aliases:
            images.__spec__.loader.exec_module(images)
        return getattr(images, name)

    images.__getattr__ = __getattr__


class _SameModuleFinder:
    """While pycriu loads, ``import opts_pb2`` gets ``pycriu.images.opts_pb2``.

    protoc's generated modules import each other by their top-level names
    (``import opts_pb2``, found through the images directory pycriu's
    ``__init__`` puts on ``sys.path``), while pycriu's ``pb.py`` imports them
    relative to the package: without this, each of the ~45 .proto files that
    others import would run twice, as two modules (10 to 15 ms of every command).

    A context manager: it is on ``sys.meta_path`` only while crit-plus imports
    generated modules (:func:`_load_package`, :meth:`Schema.message_class`).
    """

    def __init__(self, images_dir: str) -> None:
        self.images_dir = images_dir
        self.aliased: list[str] = []  # the top-level names given the package's modules
        self._specs: dict[str, Any] = {}
        self._depth = 0  # nested uses: on sys.meta_path until the outermost ends

    def __enter__(self) -> _SameModuleFinder:
        if not self._depth:
            sys.meta_path.insert(0, self)
        self._depth += 1
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._depth -= 1
        if not self._depth:
            sys.meta_path.remove(self)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """A spec whose module is the package's copy of ``name``, for a generated module."""
        if "." in name or not name.endswith("_pb2") or \
                not os.path.isfile(os.path.join(self.images_dir, name + ".py")):
            return None
        return importlib.util.spec_from_loader(name, self)  # type: ignore[arg-type]

    def create_module(self, spec: Any) -> Any:
        """The module, imported (once) as part of ``pycriu.images``."""
        module = importlib.import_module(f"pycriu.images.{spec.name}")
        self._specs[spec.name] = module.__spec__
        self.aliased.append(spec.name)
        return module

    def exec_module(self, module: Any) -> None:
        """Nothing to run (the module ran as part of the package); its own
        ``__spec__``, which the import machinery replaced, is put back."""
        module.__spec__ = self._specs.pop(module.__name__.rpartition(".")[2])


def _package_version(package_dir):
    """``__version__`` of the pycriu at ``package_dir`` (its ``version.py``), or None."""
    if not os.path.isfile(os.path.join(package_dir, "version.py")):
        return None
    try:
        return getattr(importlib.import_module("pycriu.version"), "__version__", None)
    except Exception:  # noqa: BLE001 - a broken version.py does not make the schema unusable
        return None


class Schema:
    """The loaded pycriu: message classes, magic table and the CRIU version.

    Get the process-wide instance with :func:`get_schema`.
    """

    def __init__(self, pycriu: Any, origin: str, package_dir: str,
                 index: dict[str, str] | None = None) -> None:
        self.pycriu = pycriu
        #: pycriu's ``images`` package; with an index, its ``__init__`` runs (every
        #: message class built) only when a name it lacks is asked for
        self.images = pycriu.images
        self.origin = origin
        self.package_dir = package_dir
        self._index = index
        self._aliases = pycriu.__dict__.get("_crit_plus_aliases") or \
            _SameModuleFinder(os.path.join(package_dir, "images"))
        magic = self._module("magic")
        self.magic_by_name = dict(magic.by_name)
        self.magic_by_value = dict(magic.by_val)
        self._batch_classes: dict[str, Any] = {}
        #: message → JSON functions generated by :class:`decoders.jsonform.Converter`,
        #: kept with the schema they were made for
        self.json_functions: dict[Any, Any] = {}

    def _module(self, name: str) -> Any:
        """pycriu's module ``pycriu.images.<name>``, imported on first use."""
        module = sys.modules.get(f"pycriu.images.{name}")
        if module is None:
            with self._aliases:
                module = importlib.import_module(f"pycriu.images.{name}")
        return module

    def message_class(self, name: str) -> Any:
        """Return the message class called ``name`` (e.g. ``core_entry``), or None.

        With the schema's index (``make schema``), only the generated module that
        defines it is imported (with the modules it imports), the first time.
        """
        if self._index is None:
            return getattr(self._module("pb"), name, None)
        module = self._index.get(name)
        return None if module is None else getattr(self._module(module), name, None)

    @property
    def pb2dict(self) -> Any:
        """pycriu's ``pb2dict`` module: the value-name tables of crit's JSON."""
        return self._module("pb2dict")

    def batch_class(self, message_class: Any) -> Any:
        """A message type holding ``repeated <message_class> e = 1``.

        Entries of an image, re-framed as that repeated field, parse in one
        call into protobuf's C code instead of one Python call per entry.
        """
        name = message_class.DESCRIPTOR.full_name
        batch = self._batch_classes.get(name)
        if batch is None:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

            pool = message_class.DESCRIPTOR.file.pool or descriptor_pool.Default()
            batch_name = "crit_plus_batch_" + name.replace(".", "_")
            try:
                descriptor = pool.FindMessageTypeByName(batch_name)
            except KeyError:
                proto = descriptor_pb2.FileDescriptorProto(
                    name=batch_name + ".proto", dependency=[message_class.DESCRIPTOR.file.name]
                )
                message = proto.message_type.add(name=batch_name)
                message.field.add(name="e", number=1, label=3, type=11, type_name="." + name)
                pool.Add(proto)
                descriptor = pool.FindMessageTypeByName(batch_name)
            batch = message_factory.GetMessageClass(descriptor)
            self._batch_classes[name] = batch
        return batch

    def criu_options(self, field_descriptor: Any) -> Any:
        """Return the ``(criu)`` field options CRIU attaches to a field."""
        return field_descriptor.GetOptions().Extensions[self._module("opts_pb2").criu]

    @functools.cached_property
    def criu_version(self) -> str | None:
        """The CRIU version this schema comes from, or None if it cannot be told."""
        marker = os.path.join(self.package_dir, SCHEMA_MARKER)
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as handle:
                return handle.read().strip() or None
        version = getattr(self.pycriu, "__version__", None)
        if version:
            return str(version)
        return _package_manager_version(self.package_dir)

    def overlays_for(self, message_name: str, descriptor: Any) -> tuple[FieldOverlay, ...]:
        """Overlays of ``message_name`` whose field number the schema does not know."""
        known = descriptor.fields_by_number
        return tuple(o for o in FIELD_OVERLAYS.get(message_name, ()) if o.number not in known)

    def describe(self) -> str:
        """One line: where pycriu came from and which CRIU it speaks."""
        version = self.criu_version or "unknown version"
        return f"pycriu {version} ({self.origin}: {self.package_dir})"


def _package_manager_version(package_dir):
    """Ask dpkg or rpm which version of the package owning ``package_dir`` is installed."""
    import subprocess  # rarely needed: a pycriu without version.py or marker

    queries = (
        (["dpkg-query", "-S", package_dir], ["dpkg-query", "-W", "-f", "${Version}"]),
        (["rpm", "-qf", "--qf", "%{NAME}\n", package_dir], ["rpm", "-q", "--qf", "%{VERSION}"]),
    )
    for owner_query, version_query in queries:
        try:
            owner = subprocess.run(owner_query, capture_output=True, text=True, timeout=5)
            if owner.returncode != 0 or not owner.stdout.strip():
                continue
            package = owner.stdout.split(":")[0].strip().splitlines()[0]
            version = subprocess.run(
                version_query + [package], capture_output=True, text=True, timeout=5
            )
            if version.returncode == 0 and version.stdout.strip():
                return version.stdout.strip().split("-")[0].split(":")[-1]
        except (OSError, subprocess.SubprocessError):
            continue
    return None


@functools.lru_cache(maxsize=1)
def get_schema() -> Schema:
    """Find, load and return the process-wide :class:`Schema`.

    Raises :class:`PycriuNotFound` with an install hint when none loads.  The
    result is cached because a pycriu registers its messages in protobuf's
    process-wide descriptor pool: one process can hold only one.
    """
    failures = []
    for origin, package_dir in _candidates():
        if package_dir is None:
            continue
        index = schema_index.read(package_dir)
        try:
            return Schema(_load_package(package_dir, lazy=index is not None), origin,
                          package_dir, index)
        except PycriuNotFound:
            raise
        except Exception as error:  # noqa: BLE001 - a broken or incompatible pycriu: try the next
            failures.append(f"{package_dir}: {type(error).__name__}: {error}")
    detail = ("; tried " + "; ".join(failures)) if failures else ""
    raise PycriuNotFound(INSTALL_HINT + detail)
