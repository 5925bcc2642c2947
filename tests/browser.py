"""A real browser for the HTML pages' tests: Debian's ``chromium``, headless, driven over
the DevTools protocol with a small standard-library WebSocket client (one browser for a
whole test session: pages load one after the other in one tab).

:class:`Browser` loads a page and returns what a person would see: the rendered DOM
(queried with JavaScript after the load), console messages and uncaught exceptions,
JavaScript dialogs (``alert`` would show one), the time the load took, a screenshot.
:func:`png_pixels` decodes a PNG (8-bit RGB/RGBA, what Chromium writes) for a blank
check without any imaging library.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib

#: The flags of every start: no sandbox (root in CI), no GPU, nothing fetched from the
#: network (no QUIC, no component updates, no sync, no background networking).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--window-size=1280,800",
         "--remote-debugging-port=0")
NAMES = ("chromium", "chromium-browser")
START_TIMEOUT = 30.0
LOAD_TIMEOUT = 60.0


def find_chromium():
    """The chromium executable on $PATH, or None."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: masked text frames out,
    unmasked (possibly fragmented, possibly long) text frames in."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=LOAD_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"DevTools refused the WebSocket: {status!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def _read(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def receive(self):
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: nothing to answer for DevTools
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self):
        self.sock.close()


class Loaded:
    """What loading one page gave: console ``errors`` (console.error, uncaught
    exceptions, the browser's own error log lines, a refused resource), ``dialogs``
    (alert, confirm...), ``seconds`` from navigation start until the page, loaded and laid
    out, has been painted."""

    def __init__(self):
        self.errors, self.dialogs, self.messages, self.seconds = [], [], [], None


class Browser:
    """One headless chromium with one tab; :meth:`load` a file, :meth:`query` its DOM."""

    def __init__(self, executable, directory=None):
        self.profile = tempfile.mkdtemp(prefix="crit-plus-chromium-", dir=directory)
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.port = self._port()
            self.ws = _WebSocket(self.port, self._page_path())
        except BaseException:
            self.close()
            raise
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                  deviceScaleFactor=1, mobile=False)

    def _port(self):
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            try:
                with open(marker) as handle:
                    first = handle.readline().strip()
                if first:
                    return int(first)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def _page_path(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request("GET", "/json/list")
            targets = json.loads(connection.getresponse().read())
            connection.close()
            for target in targets:
                if target.get("type") == "page":
                    url = target["webSocketDebuggerUrl"]
                    return url[url.index("/devtools/"):]
            time.sleep(0.05)
        raise TimeoutError("chromium opened no page")

    def call(self, method, **params):
        """Send one DevTools command and return its result (events seen meanwhile kept)."""
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def _wait_event(self, name, timeout=LOAD_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, event in enumerate(self.events):
                if event["method"] == name:
                    return self.events.pop(index)
            message = json.loads(self.ws.receive())
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"no {name} within {timeout} s")

    def load(self, path):
        """Open the file ``path``; wait for its load event; return :class:`Loaded`."""
        self.events.clear()
        self.call("Page.navigate", url="file://" + os.path.abspath(path))
        self._wait_event("Page.loadEventFired")
        loaded = Loaded()
        # rendered: the load event, then a layout of the whole page and two animation
        # frames (the first paint is done); performance.now() counts from navigation start
        painted = self.call("Runtime.evaluate", awaitPromise=True, returnByValue=True,
                            expression="new Promise(done => { document.body.offsetHeight; "
                                       "requestAnimationFrame(() => requestAnimationFrame("
                                       "() => done(performance.now()))); })")
        loaded.seconds = painted["result"]["value"] / 1000
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", "")))
                                for arg in params.get("args", ()))
                loaded.messages.append((params.get("type"), text))
                if params.get("type") in ("error", "assert"):
                    loaded.errors.append(f"console.{params.get('type')}: {text}")
            elif method == "Runtime.exceptionThrown":
                loaded.errors.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                loaded.messages.append((entry.get("level"), entry.get("text")))
                if entry.get("level") == "error":
                    loaded.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                loaded.dialogs.append(params.get("message"))
                self.call("Page.handleJavaScriptDialog", accept=True)
        return loaded

    def query(self, expression):
        """The value of a JavaScript ``expression`` in the page (as JSON)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self):
        """A PNG of the viewport (1280x800)."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self):
        """Stop chromium (this process only) and remove its profile."""
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data):
    """``(width, height, channels, rows)`` of an 8-bit, non-interlaced RGB or RGBA PNG;
    ``rows`` are the unfiltered scanlines (bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack("!I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack("!IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = header
    assert depth == 8 and color in (2, 6) and not interlace, header
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, previous = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def _unfilter(kind, line, previous, bpp):
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, previous))
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        else:
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            line[i] = (line[i] + pred) & 0xFF


def luminance_variance(png):
    """The variance of the pixels' luminance (0..255 scale): 0 for a blank page."""
    width, height, channels, rows = png_pixels(png)
    total = squares = count = 0
    for row in rows[::4]:
        for x in range(0, width * channels, channels * 4):
            value = (299 * row[x] + 587 * row[x + 1] + 114 * row[x + 2]) // 1000
            total += value
            squares += value * value
            count += 1
    mean = total / count
    return squares / count - mean * mean
