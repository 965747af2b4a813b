"""Work a long-lived grading worker need not repeat for every submission.

nbgrader's pipeline is written for one command per run: per submission it re-validates
the nbgrader metadata schema itself, opens a fresh SQLAlchemy engine (whose compiled
statement cache dies with it) about ten times, and builds a fresh Jinja environment that
recompiles the feedback templates. Profiled, these are about half of a worker's CPU time
per submission. The shims below keep the results identical and only remember what does
not change between submissions:

- ``jsonschema.validate`` checks each distinct schema once, then validates with a cached
  validator (same errors, same exceptions);
- ``nbgrader.api.create_engine`` returns one engine per database URL (each Gradebook
  still opens and closes its own session and connections), and a gradebook that holds
  nbgrader's whole schema is not re-created table by table (:func:`_schema_where_missing`);
- :class:`CachedHTMLExporter` (the feedback exporter) shares compiled template bytecode
  across exporters; jinja2 checks each template's source checksum before reusing it. Its
  accessibility pass (alternative text for images, focusable cells) is done on the text
  instead of through a BeautifulSoup tree built and re-serialized for every page (~0.3 s
  a page): parsed again, the two pages are the same document. Highlighted code is
  remembered by its source (:class:`RememberedHighlight`), rendered Markdown by its
  source and attachments (:meth:`CachedHTMLExporter.markdown2html`);
- jupyter_client reads the timestamps of every kernel message with dateutil's general
  ISO 8601 parser (about an eighth of the worker's time per executed cell);
  :func:`extract_dates` reads them with the standard library's, to the same datetimes,
  falling back to dateutil's for anything the standard library does not read.

They are installed by :func:`install` in grading workers only.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime

import jinja2
from nbconvert.exporters import HTMLExporter

_installed = False
_lock = threading.Lock()


def _cached_validate():
    import jsonschema
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    original = jsonschema.validate
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
    jsonschema.validate = validate


def _database_file(url) -> tuple | None:
    """(url, device, inode) of a SQLite file database as it is now; None for anything
    else, or a file that does not exist (yet)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(url)
    except Exception:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    try:
        st = os.stat(url.database)
    except OSError:
        return None
    return (str(url), st.st_dev, st.st_ino)


def _cached_engines():
    import nbgrader.api as nbapi

    original = nbapi.create_engine
    engines: dict[tuple, tuple] = {}  # key -> (engine, the file it was made for)

    def create_engine(url, *args, **kwargs):
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
    nbapi.create_engine = create_engine


def _schema_where_missing():
    """A Gradebook, opened about ten times per submission, re-issues nbgrader's whole
    schema each time (``create_all`` asks after every table one by one). For a SQLite
    gradebook one query of ``sqlite_master`` says whether every table is already there,
    in which case ``create_all`` would create nothing and is skipped; otherwise it runs
    as before."""
    import nbgrader.api as nbapi

    metadata = nbapi.Base.metadata
    schema = frozenset(metadata.tables)

    def complete(engine) -> bool:
        url = getattr(engine, "url", None)
        if url is None or url.get_backend_name() != "sqlite":
            return False
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            return schema <= {name for (name,) in rows}

    def create_all(bind=None, *args, **kwargs):
        if not args and not kwargs and complete(bind):
            return None
        return type(metadata).create_all(metadata, bind, *args, **kwargs)

    metadata.create_all = create_all


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


class CachedHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter; compiled templates are shared across instances, and the
    accessibility pass works on the text (:func:`accessible`)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _BYTECODE
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
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
        if self.embed_images:
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


def warm_feedback_templates() -> None:
    """Compile nbgrader's feedback templates (and the ones they extend) into the shared
    bytecode cache by rendering a tiny notebook, before the worker processes fork, so
    that none of them compiles them."""
    import contextlib

    with contextlib.suppress(Exception):
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


def _fast_dates() -> None:
    from jupyter_client import session

    session.extract_dates = extract_dates


def install() -> None:
    """Install the shims in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    _cached_validate()
    _cached_engines()
    _schema_where_missing()
    _fast_dates()
