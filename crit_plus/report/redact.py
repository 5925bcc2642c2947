"""Environment variables and cloud-init data out of text gathered for a report.

LXD and Incus keep an instance's environment in its configuration
(``environment.NAME: value`` in ``lxc config show`` and ``backup.yaml``) and
hand it to liblxc as ``lxc.environment = NAME=value`` (in ``lxc.conf`` of the
instance's log directory, and in liblxc's trace logs).  Every line of text a
report copies from the machine goes through a :class:`Redactor`: the
variable's name stays (it helps), its value is replaced by :data:`MARK`,
including the continuation lines of a YAML block value (``environment.X: |``).
cloud-init's data (``cloud-init.user-data`` and the older ``user.user-data``
and friends) is hidden the same way: it carries passwords and keys.
"""

from __future__ import annotations

import re

#: What a redacted value is replaced with.
MARK = b"<redacted by crit-plus>"

#: Configuration keys whose values are hidden: the environment, and cloud-init's
#: data (user-data holds passwords and keys often enough), in its current
#: (``cloud-init.*``) and its older (``user.user-data``, ...) spelling.
_SECRET_KEY = (rb"(?:environment\.[^\s:=\"']+|cloud-init\.[^\s:=\"']+"
               rb"|user\.(?:user-data|vendor-data|network-config|meta-data))")
_CONFIG_KEY = re.compile(
    rb"""^([ \t-]*)(.*?["']?""" + _SECRET_KEY + rb"""["']?\s*[:=][ \t]*)(?=\S)([^\r\n]*)""")
#: Words one of which every line with a value to hide holds (whole runs of lines
#: without any pass unread).
_WORDS = (b"environment", b"cloud-init.", b"user.user-data", b"user.vendor-data",
          b"user.network-config", b"user.meta-data")
_LXC_KEY = re.compile(rb"(lxc\.environment\s*=[ \t]*(?:[^\s=]+=)?)(?=\S)[^\r\n]*")
_BLOCK_START = re.compile(rb"^[|>][-+0-9]*\s*$")
_INDENT = re.compile(rb"^[ \t]*")


def _mentions_secret(data):
    """True if ``data`` holds one of :data:`_WORDS` (it may have a value to hide)."""
    return any(word in data for word in _WORDS)


class Redactor:
    """Redacts a text one line (bytes, with its newline) at a time; keeps the
    state a YAML block value needs across lines."""

    def __init__(self):
        self._block_indent = None  # indentation of the key whose block value is being hidden

    def line(self, line):
        """``line`` with environment values replaced by :data:`MARK`."""
        if self._block_indent is not None:
            body = line.rstrip(b"\r\n")
            indent = len(_INDENT.match(body).group())
            if not body.strip() or indent > self._block_indent:
                if not body.strip():
                    return line
                return body[:indent] + MARK + line[len(body):]
            self._block_indent = None
        if not _mentions_secret(line):
            return line
        match = _CONFIG_KEY.match(line)
        if match:
            if _BLOCK_START.match(match.group(3)):
                self._block_indent = len(match.group(1))
            line = line[:match.start(3)] + MARK + line[match.end(3):]
        return _LXC_KEY.sub(lambda m: m.group(1) + MARK, line)


    @property
    def idle(self):
        """True unless inside a YAML block value being hidden."""
        return self._block_indent is None


#: Bytes of one line kept waiting for its end; a longer line is redacted in pieces.
MAX_PENDING = 1 << 20


def redact_chunks(chunks):
    """Redact a text arriving as byte ``chunks`` (of any size): yields redacted
    byte chunks.  Runs of whole lines without any of :data:`_WORDS` pass as
    they are."""
    redactor, pending = Redactor(), b""
    for chunk in chunks:
        data = pending + chunk
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0 and len(data) <= MAX_PENDING:
            pending = data
            continue
        whole, pending = (data[:end + 1], data[end + 1:]) if end >= 0 else (data, b"")
        if redactor.idle and not _mentions_secret(whole):
            yield whole
        else:
            yield b"".join(redactor.line(line) for line in whole.splitlines(keepends=True))
    if pending:
        yield redactor.line(pending)


def redact(data):
    """``data`` (bytes, any number of lines) with its environment values redacted."""
    return b"".join(redact_chunks([data]))


__all__ = ["MARK", "MAX_PENDING", "Redactor", "redact", "redact_chunks"]
