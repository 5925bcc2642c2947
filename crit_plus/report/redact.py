"""Secrets out of what a report copies from the machine.

Two ways, by what the text is:

- **YAML documents** (``backup.yaml``, ``lxc config show``): parsed with
  PyYAML's safe loader and written again with the value of every sensitive key
  replaced by :data:`MARK`, whatever its YAML form (plain, quoted, folded over
  several lines as Go's YAML writes values longer than 80 columns, on the line
  after its key, a block scalar with a tag or a comment, a complex ``? key``).
  A document that does not parse is not copied (:class:`RedactionError`).
  Sensitive keys (:func:`is_secret_key`): ``environment.*`` (the instance's
  environment), ``user.*`` (free-form user data, which LXD hands to the
  instance), ``cloud-init.*`` (user-data, vendor-data, network-config,
  ssh-keys), and any key naming a password, secret, token, credential, API or
  private key (``core.trust_password``, ``powerflex.user.password``,
  ``pure.api.token``).  ``volatile.*`` keys are LXD's own bookkeeping
  (``volatile.cloud-init.instance-id`` is an identifier, not a secret) and
  stay.  Every other string goes through the text rules below.

- **Text** (logs, program output, host files): line by line, secrets found by
  their shape (:class:`Redactor`): ``lxc.environment = NAME=value``,
  environment lists (``env="[NAME=value ...]"``, ``"env":["NAME=value"]``),
  ``KEY: value`` / ``KEY=value`` / ``"KEY":"value"`` for the sensitive keys
  above and ``NAME=value`` whose name holds one of those words
  (``AWS_SECRET_ACCESS_KEY=...``), ``Authorization:`` headers and ``Bearer``
  tokens, passwords in URLs (``scheme://user:PASSWORD@host``), PEM private-key
  blocks (``-----BEGIN ... PRIVATE KEY-----`` to its ``END`` line), and the
  lines indented under a sensitive ``KEY:`` (a YAML value's continuation).
  Names stay (they help); values become :data:`MARK`.  A line longer than
  :data:`MAX_PENDING` keeps its first :data:`MAX_PENDING` bytes (redacted);
  the rest is not copied.
"""

from __future__ import annotations

import functools
import re

#: What a redacted value is replaced with.
MARK = b"<redacted by crit-plus>"
MARK_TEXT = MARK.decode()
#: What replaces the rest of a line longer than :data:`MAX_PENDING`.
CUT = b" <rest of a line over 1 MiB not copied by crit-plus>"
#: Bytes of one line kept waiting for its end; the rest of a longer line is dropped.
MAX_PENDING = 1 << 20
#: A YAML document larger than this is not copied (see sources.backup.MAX_BACKUP_BYTES).
MAX_YAML = 1 << 20


class RedactionError(ValueError):
    """A document could not be parsed, so its secrets cannot be found: not copied."""


# -- which keys are sensitive ------------------------------------------------------------------

#: Words that make a key or variable name sensitive wherever they are in it.
_WORDS = (rb"passw(?:or)?d|passphrase|secret|token|credential|api[-_.]?key|private[-_.]?key"
          rb"|access[-_.]?key|auth[-_.]?key|authorization|cookie")
#: Key prefixes whose every key is sensitive.
_PREFIXES = (b"environment.", b"user.", b"cloud-init.")
_SECRET_WORD = re.compile(_WORDS, re.IGNORECASE)


def is_secret_key(key):
    """True if the value of configuration key ``key`` (str or bytes) is hidden."""
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    elif not isinstance(key, bytes):
        key = str(key).encode()
    key = key.strip().lower()
    return key.startswith(_PREFIXES) or _SECRET_WORD.search(key) is not None


# -- text rules --------------------------------------------------------------------------------

#: Where a sensitive key may be, in a lowercased line: a prefix, or a word of a name.
_KEY_HIT = re.compile(rb"(environment|user|cloud-init)\.|" + _WORDS)
#: From a hit: the rest of the name, ``:`` (the value is the rest of the line) or ``=`` (up
#: to the next ``name=`` field or quote), and the value, maybe quoted.
_AFTER_HIT = re.compile(
    rb"[^\s:=\"'<>\[\]{},]*[\"']?[ \t]*(?:(:)|=)[ \t]*"
    rb"(\"(?:[^\"\\\r\n]|\\.)*\"?|'[^'\r\n]*'?"
    rb"|(?(1)[^\r\n]*|(?:(?![ \t]+[\w.-]+=)[^\"\r\n])*))")
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_LXC_ENV = re.compile(rb"(lxc\.environment\s*=[ \t]*(?:[^\s=]+=)?)(?=\S)[^\r\n]*")
_ENV_LIST = re.compile(rb"(?<![\w.-])(?:env|envs|environ|environment)[\"']?[ \t]*[:=][ \t]*",
                       re.IGNORECASE)
_ENV_ITEM = re.compile(rb"(?:^|(?<=[\s,\[\"']))[A-Za-z_][A-Za-z0-9_]*=")
#: What follows an environment list's marker: a quoted string, a bracketed list, a word.
_ENV_EXTENT = re.compile(rb"\"((?:[^\"\\]|\\.)*)|'([^']*)|\[([^\]]*)|\{([^}]*)|(\S*)")
_BEARER = re.compile(rb"(\bbearer[ \t]+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(rb"(\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:)[^/\s@\"']+(?=@)",
                           re.IGNORECASE)
_PEM_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(rb"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
#: A YAML-looking ``KEY:`` at the start of a line (after its indentation and ``- ``).
_LINE_KEY = re.compile(rb"^([ \t]*)(?:-[ \t]+)*[\"']?([^\s\"':][^\"':]*?)[\"']?[ \t]*:(?:[ \t]|$)")
_INDENT = re.compile(rb"^[ \t]*")
#: Lowercase words one of which a line with a secret holds: chunks without any pass unread.
_TRIGGERS = (b"env", b"user.", b"cloud-init.", b"pass", b"secret", b"token", b"credential",
             b"key", b"authorization", b"cookie", b"bearer", b"://")


_ANY_TRIGGER = re.compile(b"|".join(re.escape(word) for word in _TRIGGERS + (b"-----begin",)))


def _mentions_secret(data):
    """True if ``data`` may hold a value to hide (one of :data:`_TRIGGERS`)."""
    lowered = data.lower()
    return any(word in lowered for word in _TRIGGERS)


def _line_end(data, position):
    """The index just after the line starting at ``position`` (its end included)."""
    newline = data.find(b"\n", position)
    carriage = data.find(b"\r", position, len(data) if newline < 0 else newline)
    if carriage >= 0:
        return carriage + 2 if data[carriage + 1:carriage + 2] == b"\n" else carriage + 1
    return len(data) if newline < 0 else newline + 1


def _env_list_values(extent):
    """``extent`` (an environment list's text) with every ``NAME=value``'s value hidden."""
    items = list(_ENV_ITEM.finditer(extent))
    if not items:
        return extent
    out = [extent[:items[0].start()]]
    for item, following in zip(items, items[1:] + [None]):
        value = extent[item.end():following.start() if following else len(extent)]
        separator = value[len(value.rstrip(b" \t,\"']}")):]
        out.append(item.group() + MARK + separator)
    return b"".join(out)


def _redact_env_lists(line):
    """Hide the values of ``env=[...]``-style environment lists in ``line``."""
    out, position = [], 0
    for marker in _ENV_LIST.finditer(line):
        if marker.start() < position:
            continue
        extent = _ENV_EXTENT.match(line, marker.end())
        start, stop = extent.span(extent.lastindex)
        out += [line[position:start], _env_list_values(line[start:stop])]
        position = stop
    if not out:
        return line
    out.append(line[position:])
    return b"".join(out)


def _redact_key_values(body, lowered):
    """Hide the values of sensitive ``KEY: value`` / ``KEY=value`` in ``body``."""
    out, position = [], 0
    for hit in _KEY_HIT.finditer(lowered):
        start = hit.start()
        if start < position or (hit.group(1) and start and lowered[start - 1] in _NAME_BYTES):
            continue  # inside a value already hidden; a prefix not at a name's start
        after = _AFTER_HIT.match(body, start)
        if after is None or not after.group(2):
            continue
        value = after.group(2)
        quoted = value[:1] in (b'"', b"'") and len(value) > 1 and value[-1:] == value[:1]
        out += [body[position:after.start(2)], value[:1] + MARK + value[:1] if quoted else MARK]
        position = after.end(2)
    if not out:
        return body
    out.append(body[position:])
    return b"".join(out)


def redact_line_text(body):
    """The shape rules (no state across lines) applied to one line ``body`` (bytes)."""
    lowered = body.lower()
    if b"lxc.environment" in body:
        body = _LXC_ENV.sub(lambda m: m.group(1) + MARK, body)
    if b"env" in lowered:
        body = _redact_env_lists(body)
    if _KEY_HIT.search(lowered):
        body = _redact_key_values(body, body.lower())
    if b"bearer" in lowered:
        body = _BEARER.sub(lambda m: m.group(1) + MARK, body)
    if b"://" in body:
        body = _URL_PASSWORD.sub(lambda m: m.group(1) + MARK, body)
    return body


class Redactor:
    """Redacts a text one line (bytes, with its line end) at a time; keeps the
    state that spans lines: inside a PEM private key, inside the value of a
    sensitive ``KEY:`` (lines indented deeper than the key)."""

    def __init__(self):
        self._pem = False
        self._key_indent = None

    @property
    def idle(self):
        """True unless inside a value that spans lines."""
        return not self._pem and self._key_indent is None

    def line(self, line):
        """``line`` with its secrets replaced by :data:`MARK`."""
        body = line.rstrip(b"\r\n")
        end = line[len(body):]
        if self._key_indent is not None:
            indent = len(_INDENT.match(body).group())
            if not body.strip():
                return line
            if indent > self._key_indent:
                return body[:indent] + MARK + end
            self._key_indent = None
        if self._pem or (_mentions_secret(body) or b"-----BEGIN" in body):
            body = self._pem_blocks(body)
        if not _mentions_secret(body):
            return body + end
        key = _LINE_KEY.match(body)
        if key and is_secret_key(key.group(2)):
            self._key_indent = len(key.group(1))
        return redact_line_text(body) + end

    def block(self, data):
        """Redact ``data`` (whole lines): yields redacted pieces; runs of lines
        without any of :data:`_TRIGGERS` pass as they are."""
        lowered, position, size = data.lower(), 0, len(data)
        while position < size:
            if self.idle:
                hit = _ANY_TRIGGER.search(lowered, position)
                if hit is None:
                    yield data[position:]
                    return
                start = max(data.rfind(b"\n", position, hit.start()),
                            data.rfind(b"\r", position, hit.start())) + 1
                if start > position:
                    yield data[position:start]
                    position = start
            end = _line_end(data, position)
            yield self.line(data[position:end])
            position = end

    def _pem_blocks(self, body):
        out, position = [], 0
        while True:
            if self._pem:
                found = _PEM_END.search(body, position)
                if found is None:
                    out.append(MARK if position < len(body) else b"")
                    return b"".join(out)
                out.append(MARK + found.group())
                position, self._pem = found.end(), False
            found = _PEM_BEGIN.search(body, position)
            if found is None:
                out.append(body[position:])
                return b"".join(out)
            out.append(body[position:found.end()])
            position, self._pem = found.end(), True


def redact_chunks(chunks):
    """Redact a text arriving as byte ``chunks`` (of any size): yields redacted
    byte chunks.  Runs of whole lines with no sign of a secret pass as they are;
    of a line longer than :data:`MAX_PENDING` the rest is dropped (:data:`CUT`)."""
    redactor, pending, dropping = Redactor(), b"", False
    for chunk in chunks:
        if dropping:  # the rest of an overlong line, up to its end (kept)
            ends = [index for index in (chunk.find(b"\n"), chunk.find(b"\r")) if index >= 0]
            if not ends:
                continue
            chunk, dropping = chunk[min(ends):], False
        data = pending + chunk
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0 and len(data) <= MAX_PENDING:
            pending = data
            continue
        if end < 0:  # one line longer than MAX_PENDING: its start, then nothing up to its end
            yield redactor.line(data[:MAX_PENDING]) + CUT
            pending, dropping = b"", True
            continue
        whole, pending = data[:end + 1], data[end + 1:]
        yield b"".join(redactor.block(whole))
        if len(pending) > MAX_PENDING:
            yield redactor.line(pending[:MAX_PENDING]) + CUT
            pending, dropping = b"", True
    if pending:
        yield redactor.line(pending)


def redact(data):
    """``data`` (bytes, any number of lines) with its secrets redacted."""
    return b"".join(redact_chunks([data]))


# -- YAML documents ----------------------------------------------------------------------------

def _clean(value):
    """A scalar with the text rules applied (strings and bytes), else as it is."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        cleaned = redact(raw)
        return value if cleaned == raw else cleaned.decode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return redact(value)
    return value


def _hidden(key, value):
    """The value kept for ``key``: :data:`MARK_TEXT` for a sensitive key with a value."""
    if is_secret_key(key) and value not in (None, ""):
        return MARK_TEXT
    return value


def redact_values(document):
    """Hide the secrets of a parsed YAML ``document`` in place (see the module's
    docstring); shared nodes (anchors) are visited once.  Returns ``document``."""
    stack, seen = [document], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            items = [(_clean(key), _clean(_hidden(key, value))) for key, value in node.items()]
            node.clear()
            for key, value in items:
                node[key] = value
        elif isinstance(node, list):
            node[:] = [_clean(value) for value in node]
        elif isinstance(node, set):
            cleaned = {_clean(value) for value in node}
            node.clear()
            node.update(cleaned)
            continue
        else:
            continue
        values = node.values() if isinstance(node, dict) else node
        stack.extend(value for value in values if isinstance(value, (dict, list, set)))
    return document


@functools.lru_cache(maxsize=1)
def _dumper():
    """PyYAML's safe dumper, writing strings of several lines as ``|`` blocks."""
    from ..sources.backup import _yaml

    yaml, _loader = _yaml()

    class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
        """The safe dumper, multi-line strings as literal blocks."""

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def redact_yaml(data, name="the document"):
    """``data`` (bytes of one YAML document) written again with its secrets
    hidden.  Raises :class:`RedactionError` (one line naming ``name``) when it is
    larger than :data:`MAX_YAML` or does not parse: it must not be copied then."""
    from ..sources.backup import BackupError, _yaml, parse_yaml

    if len(data) > MAX_YAML:
        raise RedactionError(f"{name} is {len(data)} bytes, more than the {MAX_YAML} "
                             "crit-plus parses to find its secrets")
    try:
        document = parse_yaml(data, name)
    except BackupError as error:
        raise RedactionError(str(error)) from None
    if document is None:
        return data if not data.strip() else b""
    yaml, _loader = _yaml()
    try:
        text = yaml.dump(redact_values(document), Dumper=_dumper(), default_flow_style=False,
                         sort_keys=False, allow_unicode=True, width=1 << 16)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        raise RedactionError(f"{name} cannot be written again: {error}") from None
    return text.encode("utf-8", "backslashreplace")


__all__ = ["CUT", "MARK", "MARK_TEXT", "MAX_PENDING", "MAX_YAML", "RedactionError", "Redactor",
           "is_secret_key", "redact", "redact_chunks", "redact_line_text", "redact_values",
           "redact_yaml"]
