"""Work a long-lived grading worker need not repeat for every submission.

nbgrader's pipeline is written for one command per run: per submission it re-validates
the nbgrader metadata schema itself, opens a fresh SQLAlchemy engine (whose compiled
statement cache dies with it) about ten times, and builds a fresh Jinja environment that
recompiles the feedback templates. Profiled, these are about half of a worker's CPU time
per submission. The shims below keep the results identical and only remember what does
not change between submissions:

- ``cached-validate``: ``jsonschema.validate`` checks each distinct schema once, then
  validates with a cached validator (same errors, same exceptions);
- ``cached-engines``: ``nbgrader.api.create_engine`` returns one engine per database URL
  (each Gradebook still opens and closes its own session and connections);
- ``schema-where-missing``: a gradebook that holds nbgrader's whole schema is not
  re-created table by table;
- ``known-gradebook``: a SQLite gradebook file this process has opened before (for the
  same course) is not set up again on each open (tables listed, schema checked, course
  looked up, a commit);
- ``html-exporter``: :class:`CachedHTMLExporter` (the feedback exporter) shares compiled
  template bytecode across exporters; jinja2 checks each template's source checksum
  before reusing it. Its accessibility pass (alternative text for images, focusable
  cells) is done on the text instead of through a BeautifulSoup tree built and
  re-serialized for every page (~0.3 s a page): parsed again, the two pages are the same
  document. Highlighted code is remembered by its source (:class:`RememberedHighlight`),
  rendered Markdown by its source and attachments (:meth:`CachedHTMLExporter.markdown2html`);
- ``fast-dates``: jupyter_client reads the timestamps of every kernel message with
  dateutil's general ISO 8601 parser (about an eighth of the worker's time per executed
  cell); :func:`extract_dates` reads them with the standard library's, to the same
  datetimes, falling back to dateutil's for anything the standard library does not read.

Each shim reaches into another library, so each is a :class:`Patch` in :data:`PATCHES`
that names what it relies on (:class:`Target`) and the library versions it was checked
against. :func:`install` (grading workers only) checks every patch first: one whose
target moved, changed shape, or whose library is outside the checked versions is left
off with one warning per process on the ``autograder.batch`` logger, and grading goes on
through the library's own code, only slower. :class:`CachedHTMLExporter` is used by name
(nbgrader's ``GenerateFeedback.exporter_class``), so it asks :func:`active` and is
nbconvert's plain HTMLExporter when its patch is off.

What the tests (and a curious maintainer) may use: :data:`PATCHES` (each patch's name,
targets, checked versions and its ``make``, which gives the patched function from the
library's own), :func:`check`, :func:`active`, :func:`install`, :func:`installed`,
:func:`forget_checks`, :func:`installed_version`, :func:`extract_dates`,
:func:`accessible`, :func:`cache_sizes` and :func:`clear_caches`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata

import jinja2
from nbconvert.exporters import HTMLExporter

log = logging.getLogger("autograder.batch")

_lock = threading.Lock()  # the engine cache
_check_lock = threading.Lock()
_install_lock = threading.Lock()


# --- the registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Something of another library that a patch relies on: ``module``'s attribute at
    dotted ``path``. ``params``: it is callable and its parameters start with these names
    (None: any object, not necessarily callable). ``same_as``: ``"module:path"`` of the
    object it must be (e.g. a library's own function, re-exported where it is rebound)."""

    module: str
    path: str
    params: tuple[str, ...] | None = ()
    same_as: str | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.path}"


@dataclass(frozen=True)
class Patch:
    """A speed-up that depends on other libraries' internals.

    ``verified``: (distribution, lowest, below) for each library whose versions it was
    checked against: ``lowest <= version < below``. ``make``: given the first target's
    current value, returns what :func:`install` binds in its place; None when nothing is
    rebound (a subclass used by name, which asks :func:`active`).
    """

    name: str
    verified: tuple[tuple[str, str, str], ...]
    targets: tuple[Target, ...]
    make: Callable | None = None
    doc: str = field(default="", compare=False)


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: '2.13.0+cpu' -> (2, 13, 0). A pre-release
    counts as its release (so '0.10.0a1' is not below '0.10')."""
    m = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def installed_version(distribution: str) -> str | None:
    """The version of `distribution` installed in this environment; None if it is not."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _resolve(module: str, path: str):
    """The object at `module`'s dotted attribute `path`; AttributeError naming the part
    that is missing, ImportError if the module is."""
    obj = importlib.import_module(module)
    where = module
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{where}.{part} is missing")
        obj = getattr(obj, part)
        where = f"{where}.{part}"
    return obj


def _param_names(obj) -> list[str] | None:
    try:
        return list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return None


def check(patch: Patch) -> list[str]:
    """What keeps `patch` from being installed in this process ([] when nothing does).
    Imports the target modules; changes nothing."""
    problems = []
    for dist, lowest, below in patch.verified:
        found = installed_version(dist)
        if found is None:
            problems.append(f"{dist} is not installed")
        elif not _release(lowest) <= _release(found) < _release(below):
            problems.append(
                f"{dist} {found} is not among the versions it was checked with "
                f"({lowest} to below {below})"
            )
    for target in patch.targets:
        try:
            obj = _resolve(target.module, target.path)
        except ImportError as exc:
            problems.append(f"{target.module} cannot be imported ({exc})")
            continue
        except AttributeError as exc:
            problems.append(str(exc))
            continue
        if getattr(obj, "_autograder_speedup", None) == patch.name:
            continue  # this patch, installed (and checked) before
        if target.params is not None:
            if not callable(obj):
                problems.append(f"{target} is not callable")
                continue
            names = _param_names(obj) if target.params else []
            wanted = list(target.params)
            if names is None or names[: len(wanted)] != wanted:
                problems.append(
                    f"{target} takes ({', '.join(names or ['?'])}), expected "
                    f"({', '.join(wanted)}, ...)"
                )
        if target.same_as is not None:
            module, _, path = target.same_as.partition(":")
            try:
                expected = _resolve(module, path)
            except (ImportError, AttributeError) as exc:
                problems.append(f"{target} cannot be compared with {module}.{path} ({exc})")
                continue
            if obj is not expected:
                problems.append(f"{target} is no longer {module}.{path}")
    return list(dict.fromkeys(problems))  # (several targets under one that is missing)


_checked: dict[str, list[str]] = {}  # patch name -> problems (checked once per process)
_warned: dict[str, int] = {}  # patch name -> pid of the process that warned
_installed: dict[str, bool] | None = None


def _warn(patch: Patch, problems: list[str]) -> None:
    """One warning per patch and process (a forked worker warns in its own log)."""
    if _warned.get(patch.name) == os.getpid():
        return
    _warned[patch.name] = os.getpid()
    versions = ", ".join(f"{d} {installed_version(d) or 'missing'}" for d, _, _ in patch.verified)
    log.warning(
        "speed-up %r is off (grading goes on without it, slower) with %s: %s",
        patch.name,
        versions,
        "; ".join(problems),
    )


def _problems(patch: Patch) -> list[str]:
    with _check_lock:
        if patch.name not in _checked:
            try:
                _checked[patch.name] = check(patch)
            except Exception as exc:  # a check must never stop grading
                _checked[patch.name] = [f"checking failed: {type(exc).__name__}: {exc}"]
        return _checked[patch.name]


def forget_checks() -> None:
    """Forget which patches were checked and warned about in this process: :func:`active`
    checks each again (and warns again) on its next call. For after the environment
    changed under a running process (tests); what :func:`install` bound stays bound."""
    with _check_lock:
        _checked.clear()
        _warned.clear()


def active(name: str) -> bool:
    """Whether patch `name` may be used in this process (checked once; a patch that may
    not is reported by one warning)."""
    patch = PATCHES[name]
    problems = _problems(patch)
    if problems:
        _warn(patch, problems)
    return not problems


def install(only: frozenset[str] | set[str] | None = None) -> dict[str, bool]:
    """Check every patch and install those that pass, in this process (idempotent: the
    first call decides). Returns (and remembers, see :func:`installed`) which patches are
    on. `only`: install just these (for a process that needs no others: it then checks
    only theirs); the rest stay off."""
    global _installed
    with _install_lock:
        if _installed is None:
            status = {}
            for patch in PATCHES.values():
                if only is not None and patch.name not in only:
                    status[patch.name] = False
                    continue
                on = active(patch.name)
                if on and patch.make is not None:
                    try:
                        _bind(patch)
                    except Exception as exc:  # only ever costs speed
                        _checked[patch.name] = [f"installing failed: {type(exc).__name__}: {exc}"]
                        _warn(patch, _checked[patch.name])
                        on = False
                status[patch.name] = on
            _installed = status
        return dict(_installed)


def installed() -> dict[str, bool]:
    """Which patches :func:`install` turned on in this process ({} before it ran)."""
    return dict(_installed or {})


def _bind(patch: Patch) -> None:
    target = patch.targets[0]
    owner_path, _, attr = target.path.rpartition(".")
    owner = (
        _resolve(target.module, owner_path)
        if owner_path
        else importlib.import_module(target.module)
    )
    original = getattr(owner, attr)
    if getattr(original, "_autograder_speedup", None) == patch.name:
        return
    replacement = patch.make(original)
    replacement._autograder_speedup = patch.name
    setattr(owner, attr, replacement)


# --- cached-validate --------------------------------------------------------------------


def _cached_validate(original):
    """jsonschema.validate that checks each distinct schema once and keeps its validator."""
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    validators: dict[str, object] = {}

    def validate(instance, schema, cls=None, *args, **kwargs):
        if cls is not None or args or kwargs:
            return original(instance, schema, cls, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True, default=str)
        validator = validators.get(key)
        if validator is None:
            klass = validator_for(schema)
            klass.check_schema(schema)
            validator = validators[key] = klass(schema)
        error = best_match(validator.iter_errors(instance))
        if error is not None:
            raise error

    validate.__wrapped__ = original
    return validate


# --- cached-engines ---------------------------------------------------------------------


def _sqlite_database(url) -> str | None:
    """The database of a SQLite URL ('' for an in-memory or temporary one); None for any
    other backend (or what is not a URL)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(url)
    except Exception:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database == ":memory:" or "mode=memory" in database or url.query.get("mode") == "memory":
        return ""
    return database


def _database_file(url) -> tuple | None:
    """(url, device, inode) of a SQLite file database as it is now; None for anything
    else, or a file that does not exist (yet)."""
    database = _sqlite_database(url)
    if not database:
        return None
    try:
        st = os.stat(database)
    except OSError:
        return None
    return (str(url), st.st_dev, st.st_ino)


def _cached_engines(original):
    """create_engine that returns one engine per database URL and arguments, made anew
    when a SQLite file was deleted or replaced. An in-memory SQLite database is private
    to its engine, so each call for one still gets a new engine (and database)."""
    engines: dict[tuple, tuple] = {}  # key -> (engine, the file it was made for)

    def create_engine(url, *args, **kwargs):
        if _sqlite_database(url) == "":
            return original(url, *args, **kwargs)
        key = (str(url), args, tuple(sorted(kwargs.items())))
        current = _database_file(url)
        with _lock:
            engine, made_for = engines.get(key, (None, None))
            # A gradebook file deleted or replaced since: its pooled connections still
            # reach the old file, so start afresh as nbgrader would.
            if engine is not None and made_for != current:
                engine.dispose()
                engine = None
            if engine is None:
                engine = original(url, *args, **kwargs)
                engines[key] = (engine, current)
        return engine

    create_engine.__wrapped__ = original
    return create_engine


# --- schema-where-missing ---------------------------------------------------------------


def _schema_where_missing(original):
    """A Gradebook, opened about ten times per submission, re-issues nbgrader's whole
    schema each time (``create_all`` asks after every table one by one). For a SQLite
    gradebook one query of ``sqlite_master`` says whether every table is already there,
    in which case ``create_all`` would create nothing and is skipped; otherwise it runs
    as before. `original`: the MetaData's bound ``create_all``."""
    metadata_ = original.__self__
    schema = frozenset(metadata_.tables)

    def complete(engine) -> bool:
        url = getattr(engine, "url", None)
        if url is None or url.get_backend_name() != "sqlite" or not hasattr(engine, "connect"):
            return False
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            return schema <= {name for (name,) in rows}

    def create_all(bind=None, *args, **kwargs):
        if not args and not kwargs and complete(bind):
            return None
        # Through the class at call time, as `metadata.create_all(...)` would have been.
        return type(metadata_).create_all(metadata_, bind, *args, **kwargs)

    create_all.__wrapped__ = original
    return create_all


#: The patches for a process that only opens gradebooks (no notebooks, no feedback).
GRADEBOOK_PATCHES = frozenset({"cached-engines", "schema-where-missing", "known-gradebook"})


# --- known-gradebook --------------------------------------------------------------------


def _known_gradebook(original):
    """nbgrader's ``Gradebook.__init__`` that, for a SQLite gradebook file this process
    has already opened for the same course (the same file: device, inode and schema
    cookie), only opens a session on it. Otherwise every Gradebook (about ten per submission) lists the tables,
    checks the schema, looks the course up and commits: on a file nbgrader has already set
    up, none of that finds anything to do, since nbgrader drops no table and deletes no
    course. Any other database, or a file replaced since, goes through nbgrader's own."""
    known: set[tuple] = set()

    def identity(db_url):
        # The file (device, inode) and its schema cookie (bytes 40-43 of a SQLite file's
        # header; a new, empty file has none): an inode number may be reused by a file
        # made in place of a deleted one.
        found = _database_file(db_url)
        if found is None:
            return None
        try:
            with open(_sqlite_database(db_url), "rb") as f:
                header = f.read(44)
        except OSError:
            return None
        if len(header) < 44 or not header.startswith(b"SQLite format 3\0"):
            return None
        return (*found, header[40:44])

    def __init__(self, db_url, course_id="default_course", authenticator=None):
        if (identity(db_url), course_id) in known:
            api = importlib.import_module("nbgrader.api")
            self.engine = api.create_engine(db_url, echo=False, future=True)
            self.db = api.scoped_session(
                api.sessionmaker(autoflush=True, bind=self.engine, future=True)
            )
            self.course_id = course_id
            self.authenticator = authenticator
            return
        original(self, db_url, course_id, authenticator)
        found = identity(db_url)  # (set up now)
        if found is not None:
            with _lock:
                known.add((found, course_id))

    __init__.__wrapped__ = original
    return __init__


# --- fast-dates -------------------------------------------------------------------------


def extract_dates(obj):
    """jupyter_client's ``extract_dates``, with ``datetime.fromisoformat`` for the
    timestamps its pattern accepts (the same instants and offsets)."""
    if isinstance(obj, dict):
        return {k: extract_dates(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [extract_dates(o) for o in obj]
    if isinstance(obj, str):
        return _parse_date(obj)
    return obj


def _parse_date(text: str):
    from jupyter_client import jsonutil  # imported by then: this reads its messages

    if not jsonutil.ISO8601_PAT.match(text):
        return text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return jsonutil.parse_date(text)
    if parsed.tzinfo is None:
        return jsonutil.parse_date(text)  # naive: jupyter_client's own warning and zone
    return parsed


def _fast_dates(original):
    return extract_dates


# --- html-exporter ----------------------------------------------------------------------


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        data = self.store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _MemoryBytecodeCache()


NO_ALT = "No description has been provided for this image"
_TAG = re.compile(r"<(img|div)\b([^<>]*)>", re.IGNORECASE)
_CLASS = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_ALT = re.compile(r"""(?:^|\s)alt\s*=""", re.IGNORECASE)
_TABINDEX = re.compile(r"""(?:^|\s)tabindex\s*=""", re.IGNORECASE)
_FOCUSABLE = {"jp-Cell-inputWrapper", "jp-OutputArea-output"}
_RAW_TEXT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def accessible(html: str) -> tuple[str, int]:
    """What nbconvert's HTMLExporter does to every page after rendering it, done on the
    text: images without alternative text get a placeholder, input and output areas
    become focusable. Returns (page, images that had no alternative text). Tags inside
    <script> and <style> are text there, and left alone."""
    missing = 0

    def tag(m: re.Match) -> str:
        nonlocal missing
        name, attrs = m.group(1), m.group(2)
        closing = "/" if attrs.rstrip().endswith("/") else ""
        body = attrs.rstrip()[:-1] if closing else attrs
        if name.lower() == "img":
            if _ALT.search(body):
                return m.group(0)
            missing += 1
            return f'<{name} alt="{NO_ALT}"{body}{closing}>'
        c = _CLASS.search(body)
        classes = set(next(g for g in c.groups() if g is not None).split()) if c else set()
        if classes & _FOCUSABLE and not _TABINDEX.search(body):
            return f'<{name}{body} tabindex="0"{closing}>'
        return m.group(0)

    out, last = [], 0
    for raw in _RAW_TEXT.finditer(html):
        out.append(_TAG.sub(tag, html[last : raw.start()]))
        out.append(raw.group(0))
        last = raw.end()
    out.append(_TAG.sub(tag, html[last:]))
    return "".join(out), missing


HTML_EXPORTER = "html-exporter"


class CachedHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter; compiled templates are shared across instances, and the
    accessibility pass works on the text (:func:`accessible`). With the ``html-exporter``
    patch off (see :func:`active`) it is the plain HTMLExporter."""

    def _create_environment(self):
        environment = super()._create_environment()
        if active(HTML_EXPORTER):
            environment.bytecode_cache = _BYTECODE
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        if not active(HTML_EXPORTER):
            return super().from_notebook_node(nb, resources, **kw)
        # HTMLExporter.from_notebook_node, up to rendering; then `accessible`.
        from nbconvert.exporters.templateexporter import TemplateExporter
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get(
            "highlight_code", RememberedHighlight(pygments_lexer=lexer, parent=self)
        )
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources
        )
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        html, missing = accessible(html)
        if missing:
            self.log.debug("Alternative text is missing on %s image(s).", missing)
        return html, resources

    @jinja2.pass_context
    def markdown2html(self, context, source):
        # The instructor's text is the same on every page of a class: render each
        # distinct cell once. The result depends only on the source, the cell's
        # attachments and the exporter's settings; the notebook's folder matters only
        # when images are embedded from disk, which are not remembered (files change).
        if self.embed_images or not active(HTML_EXPORTER):
            return super().markdown2html(context, source)
        attachments = context.get("cell", {}).get("attachments", {})
        key = (
            source,
            json.dumps(attachments, sort_keys=True, default=str),
            self.anchor_link_text,
            self.exclude_anchor_links,
            repr(sorted(self.lexer_options.items())),
        )
        found = _MARKDOWN.get(key)
        if found is None:
            found = super().markdown2html(context, source)
            if len(_MARKDOWN) >= _MARKDOWN_MAX:
                _MARKDOWN.clear()
            _MARKDOWN[key] = found
        return found


_MARKDOWN: dict[tuple, str] = {}
_MARKDOWN_MAX = 4096


class RememberedHighlight:
    """nbconvert's Highlight2HTML, remembering what it produced: most cells of a class's
    feedback pages (the instructor's text and code, the test cells) are the same source
    on every page, and pygments took a tenth of a worker's time highlighting them again."""

    _memo: dict[tuple, str] = {}
    MAX = 4096

    def __init__(self, **kw):
        from nbconvert.filters.highlight import Highlight2HTML

        self._inner = Highlight2HTML(**kw)

    def __call__(self, source, language=None, metadata=None):
        inner = self._inner
        magics = metadata.get("magics_language") if metadata else None
        key = (
            source,
            language or inner.pygments_lexer,
            magics if isinstance(magics, str) else None,
            repr(sorted(inner.extra_formatter_options.items())),
        )
        if not isinstance(magics, str | type(None)):
            return inner(source, language, metadata)
        found = self._memo.get(key)
        if found is None:
            found = inner(source, language, metadata)
            if len(self._memo) >= self.MAX:
                self._memo.clear()
            self._memo[key] = found
        return found


def cache_sizes() -> dict[str, int]:
    """How much the feedback exporter remembers in this process: rendered Markdown cells
    (``markdown``), highlighted code (``highlight``) and compiled templates
    (``bytecode``)."""
    return {
        "markdown": len(_MARKDOWN),
        "highlight": len(RememberedHighlight._memo),
        "bytecode": len(_BYTECODE.store),
    }


def clear_caches() -> None:
    """Forget what the feedback exporter remembers (see :func:`cache_sizes`); the next
    pages render and compile anew."""
    _MARKDOWN.clear()
    RememberedHighlight._memo.clear()
    _BYTECODE.store.clear()


def warm_feedback_templates() -> None:
    """Compile nbgrader's feedback templates (and the ones they extend) into the shared
    bytecode cache by rendering a tiny notebook, before the worker processes fork, so
    that none of them compiles them."""
    import contextlib

    with contextlib.suppress(Exception):
        if not active(HTML_EXPORTER):
            return  # no shared cache to fill
        import nbformat
        from nbgrader.converters import GenerateFeedback
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        cfg = Config()
        converter = GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg)
        exporter = CachedHTMLExporter(parent=converter, config=converter.config)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# warm-up"), nbformat.v4.new_code_cell("1")]
        resources = {"nbgrader": {"notebook": "warm", "score": 0, "max_score": 0}}
        resources["nbgrader"]["late_penalty"] = 0
        exporter.from_notebook_node(nb, resources=resources)


# --- the patches ------------------------------------------------------------------------

# The versions each patch was checked with: its equivalence tests (tests/test_speedups.py)
# pass with the lowest (jsonschema 4.18.0, SQLAlchemy 2.0.0, jupyter_client 8.0.0,
# nbconvert 7.16.6: before it HTMLExporter had no lexer_options and wrote its pages
# otherwise; nbgrader 0.9.6) and with requirements.lock's. Upper: the next major where
# the targets are public API, the next minor where they are a library's internals
# (jupyter_client's session, nbconvert's exporter); nbgrader is 0.x. Keep pyproject.toml's
# bounds in step.
_NBGRADER = ("nbgrader", "0.9.6", "0.10")
_SQLALCHEMY = ("SQLAlchemy", "2.0", "3")

PATCHES: dict[str, Patch] = {
    p.name: p
    for p in (
        Patch(
            "cached-validate",
            verified=(("jsonschema", "4.18", "5"),),
            targets=(
                Target(
                    "jsonschema",
                    "validate",
                    ("instance", "schema", "cls"),
                    same_as="jsonschema.validators:validate",
                ),
                Target("jsonschema.validators", "validator_for", ("schema",)),
                Target("jsonschema.exceptions", "best_match", ("errors",)),
            ),
            make=_cached_validate,
            doc="nbgrader's metadata validation: one validator per schema",
        ),
        Patch(
            "cached-engines",
            verified=(_NBGRADER, _SQLALCHEMY),
            targets=(
                Target(
                    "nbgrader.api", "create_engine", ("url",), same_as="sqlalchemy:create_engine"
                ),
                Target("sqlalchemy.engine", "make_url", ("name_or_url",)),
                Target("sqlalchemy.engine", "Engine.dispose"),
            ),
            make=_cached_engines,
            doc="one SQLAlchemy engine per gradebook URL",
        ),
        Patch(
            "schema-where-missing",
            verified=(_NBGRADER, _SQLALCHEMY),
            targets=(
                Target(
                    "nbgrader.api", "Base.metadata.create_all", ("bind", "tables", "checkfirst")
                ),
                Target("nbgrader.api", "Base.metadata.tables", None),
                Target("sqlalchemy.engine", "Connection.exec_driver_sql", ("self", "statement")),
            ),
            make=_schema_where_missing,
            doc="nbgrader's schema created only in a gradebook that lacks a table",
        ),
        Patch(
            "known-gradebook",
            verified=(_NBGRADER, _SQLALCHEMY),
            targets=(
                Target(
                    "nbgrader.api",
                    "Gradebook.__init__",
                    ("self", "db_url", "course_id", "authenticator"),
                ),
                Target("nbgrader.api", "scoped_session", ("session_factory",)),
                Target("nbgrader.api", "sessionmaker", ("bind",)),
            ),
            make=_known_gradebook,
            doc="a gradebook file opened before (same course) is not set up again",
        ),
        Patch(
            "fast-dates",
            verified=(("jupyter_client", "8.0", "8.11"),),
            targets=(
                Target(
                    "jupyter_client.session",
                    "extract_dates",
                    ("obj",),
                    same_as="jupyter_client.jsonutil:extract_dates",
                ),
                Target("jupyter_client.jsonutil", "ISO8601_PAT.match"),
                Target("jupyter_client.jsonutil", "parse_date", ("s",)),
            ),
            make=_fast_dates,
            doc="kernel message timestamps read by datetime.fromisoformat",
        ),
        Patch(
            HTML_EXPORTER,
            verified=(("nbconvert", "7.16.6", "7.18"),),
            targets=(
                Target(
                    "nbconvert.exporters.html",
                    "HTMLExporter.from_notebook_node",
                    ("self", "nb", "resources"),
                ),
                Target(
                    "nbconvert.exporters.html",
                    "HTMLExporter._init_resources",
                    ("self", "resources"),
                ),
                Target("nbconvert.exporters.html", "HTMLExporter._create_environment", ("self",)),
                Target(
                    "nbconvert.exporters.html",
                    "HTMLExporter.markdown2html",
                    ("self", "context", "source"),
                ),
                Target("nbconvert.exporters.html", "HTMLExporter.embed_images", None),
                Target("nbconvert.exporters.html", "HTMLExporter.anchor_link_text", None),
                Target("nbconvert.exporters.html", "HTMLExporter.exclude_anchor_links", None),
                Target("nbconvert.exporters.html", "HTMLExporter.lexer_options", None),
                Target(
                    "nbconvert.exporters.templateexporter",
                    "TemplateExporter.from_notebook_node",
                    ("self", "nb", "resources"),
                ),
                Target("nbconvert.filters.highlight", "Highlight2HTML", ("pygments_lexer",)),
                Target(
                    "nbconvert.filters.highlight", "Highlight2HTML.extra_formatter_options", None
                ),
                Target(
                    "nbconvert.filters.widgetsdatatypefilter",
                    "WidgetsDataTypeFilter",
                    ("notebook_metadata", "resources"),
                ),
            ),
            doc="feedback pages: shared template bytecode, remembered highlighting and Markdown",
        ),
    )
}
