"""No secret reaches a report bundle, whatever form LXD's or Incus's YAML gives it, and
whatever shape it has in a log.

The bundle is built on the real lxd-web fixture laid out under a fake root
(tests/test_report.py), with a copied, writable LXD tree whose backup.yaml, the
``lxc config show`` output and the logs hold secrets in every form; the whole
``.tar.gz`` (decompressed: member names, INDEX.md and report.json included) is
then searched for every secret.  Folded lines are written the way Go's yaml.v2
writes them: a value longer than 80 columns continues, at a space, on the next
line indented under its key.
"""

from __future__ import annotations

import gzip
import shutil
import textwrap

import pytest

from crit_plus.report.redact import (
    MARK,
    MAX_PENDING,
    is_secret_key,
    redact,
    redact_chunks,
)

from .test_report import POOL, FakeRunner, _build, fake_root, web_fixture  # noqa: F401

BEST_WIDTH = 80


def go_fold(key, value, indent, quote=""):
    """``KEY: value`` as Go's yaml.v2 emitter writes it: past column 80, a space
    followed by a non-space becomes a line break plus the value's indentation
    (``indent`` + 2); ``quote`` is ``"`` for a double-quoted scalar."""
    line = " " * indent + key + ": " + quote
    out, spaces = [], False
    for index, char in enumerate(value):
        nxt = value[index + 1] if index + 1 < len(value) else ""
        if char == " " and not spaces and len(line) > BEST_WIDTH and nxt not in ("", " "):
            out.append(line)
            line = " " * (indent + 2)
            spaces = True
            continue
        line += char
        spaces = char == " "
    out.append(line + quote)
    return "\n".join(out) + "\n"


FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"

#: name → (YAML lines for a config mapping at indentation 0, the secret text).
FORMS = {
    "folded-plain": (go_fold("environment.DB_URL", f"{FILLER} password=S3CRET-FOLDED-PLAIN x",
                             0), "S3CRET-FOLDED-PLAIN"),
    "folded-double": (go_fold("environment.NOTE", f"{FILLER}: then S3CRET-FOLDED-DQ x", 0,
                              quote='"'), "S3CRET-FOLDED-DQ"),
    "single-quoted": ("environment.Q: 'it''s S3CRET-SINGLE'\n", "S3CRET-SINGLE"),
    "next-line": ("environment.NEXT:\n  S3CRET-NEXT-LINE\n", "S3CRET-NEXT-LINE"),
    "literal": ("environment.LIT: |\n  first\n  S3CRET-LITERAL\n", "S3CRET-LITERAL"),
    "folded-block": ("environment.FOLD: >-\n  first\n  S3CRET-FOLDED-BLOCK\n",
                     "S3CRET-FOLDED-BLOCK"),
    "keep-indicator": ("environment.KEEP: |+2\n    S3CRET-INDENTED\n\n", "S3CRET-INDENTED"),
    "tag-and-comment": ("environment.TAG: !!str | # a comment\n  S3CRET-TAGGED\n",
                        "S3CRET-TAGGED"),
    "tag-after-line": ("environment.TAG2: !!str\n  S3CRET-TAG-NEXT\n", "S3CRET-TAG-NEXT"),
    "complex-key": ("? environment.COMPLEX\n: S3CRET-COMPLEX\n", "S3CRET-COMPLEX"),
    "quoted-key": ('"environment.QK": S3CRET-QUOTED-KEY\n', "S3CRET-QUOTED-KEY"),
    "user-key": ("user.api_token: S3CRET-USER-TOKEN\n", "S3CRET-USER-TOKEN"),
    "cloud-init": ("cloud-init.user-data: |\n  #cloud-config\n  password: S3CRET-CLOUD\n",
                   "S3CRET-CLOUD"),
    "password-key": ("core.trust_password: S3CRET-TRUST\n", "S3CRET-TRUST"),
    "raw-lxc": ("raw.lxc: |\n  lxc.environment = RAW=S3CRET-RAW-LXC\n", "S3CRET-RAW-LXC"),
    "very-long": (("environment.LONG: " + "word " * 30_000 + "S3CRET-VERY-LONG\n"),
                  "S3CRET-VERY-LONG"),
}
#: Values that are not secrets and must stay.
KEPT = ("volatile.cloud-init.instance-id: 849c601a-bd56-4c80-b99a-65cccc63b0c1",
        "image.os: busybox", "environment.DB_URL", "user.api_token")

PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
       "S3CRET-PEM-BODY\n-----END OPENSSH PRIVATE KEY-----\n")
LOG_SECRETS = {
    "env-list": (('time="2026-11-25T17:41:22Z" level=error msg="Failed exec" '
                  'env="[AWS_SECRET_ACCESS_KEY=S3CRET-AWS HOME=/root]" instance=web\n'),
                 "S3CRET-AWS"),
    "env-json": ('{"level":"error","env":["LANG=C","SESSION=S3CRET-JSON-ENV"]}\n',
                 "S3CRET-JSON-ENV"),
    "authorization": ("level=error msg=\"request\" Authorization: Bearer S3CRET-BEARER\n",
                      "S3CRET-BEARER"),
    "url": ("level=error msg=\"pull https://bob:S3CRET-URL@example.com/x failed\"\n",
            "S3CRET-URL"),
    "key-value": ("level=error msg=\"db\" password=S3CRET-KV token=S3CRET-KV2\n", "S3CRET-KV"),
}


#: An error line of liblxc's log: quoted by INDEX.md and by crit-plus's own summarize.
LXC_ERROR = ("lxc web 20261125174122.000 ERROR    conf - conf.c:1:run - failed with "
             "token=S3CRET-LXC-ERROR\n")

#: The first error line of CRIU's dump.log: quoted by crit-plus's own summarize too.
DUMP_ERROR = "Error (criu/files.c:1): cannot open /run/app?token=S3CRET-DUMP-ERROR\n"


def _config_text(indent):
    return textwrap.indent("".join(text for text, _secret in FORMS.values()), " " * indent)


@pytest.fixture
def secret_root(fake_root, web_fixture):  # noqa: F811 (fixtures)
    """``fake_root`` with a writable LXD tree whose backup.yaml holds every form of
    :data:`FORMS`, and logs holding :data:`LOG_SECRETS` and a PEM private key."""
    lxd = fake_root / "var/lib/lxd"
    lxd.unlink()
    shutil.copytree(web_fixture / "var/lib/lxd", lxd, symlinks=True)
    for path in [lxd, *lxd.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    backup = fake_root / POOL / "containers/web/backup.yaml"
    text = backup.read_text()
    assert text.count("\n  config:\n") >= 1  # the instance's and each snapshot's
    backup.write_text(text.replace("\n  config:\n", "\n  config:\n" + _config_text(4)))
    logs = fake_root / "var/log/lxd"
    with open(logs / "lxd.log", "a") as stream:
        stream.writelines(text for text, _secret in LOG_SECRETS.values())
    lxc_log = logs / "web/lxc.log"
    lxc_log.write_text(PEM + lxc_log.read_text() + LXC_ERROR)  # the console error after the key
    dump_log = fake_root / POOL / "containers/web/state/dump.log"
    text = dump_log.read_text()
    first = text.index("Error (")
    dump_log.write_text(text[:first] + DUMP_ERROR + text[first:])  # summarize quotes it
    return fake_root


class SecretRunner(FakeRunner):
    """``lxc config show`` answers with :data:`FORMS` in its config."""

    def run(self, argv):
        ran = super().run(argv)
        if "config" in argv:
            body = ("architecture: x86_64\nconfig:\n  " + "\n  ".join(KEPT[:2]) + "\n"
                    + _config_text(2) + "devices: {}\n")
            ran = type(ran)(ran.argv, 0, body.encode())
        return ran


def _whole_bundle(tmp_path):
    return gzip.decompress((tmp_path / "out" / "web-report.tar.gz").read_bytes())


def test_no_secret_in_any_member_in_any_form(secret_root, tmp_path):
    _report, data, _names, _runner = _build(tmp_path, runner=SecretRunner())
    everything = _whole_bundle(tmp_path)
    secrets = [secret for _text, secret in FORMS.values()]
    secrets += [secret for _text, secret in LOG_SECRETS.values()] + [
        "S3CRET-KV2", "S3CRET-PEM-BODY", "S3CRET-LXC-ERROR", "S3CRET-DUMP-ERROR"]
    leaked = [secret for secret in secrets if secret.encode() in everything]
    assert not leaked
    for member in ("instance/backup.yaml", "instance/config.yaml"):
        text = data[member].decode()
        for kept in KEPT:
            assert kept in text, (member, kept)
        assert text.count(MARK.decode()) >= len(FORMS) - 1, member
    # The key's PEM lines are gone, its frame stays; the error after it is on the index.
    index = data["INDEX.md"].decode()
    assert "lxc.console.path configured on source host but not target" in index
    assert MARK.decode() + "-----END OPENSSH PRIVATE KEY-----" in index  # quoted, redacted
    assert "b3BlbnNzaC1rZXktdjEA" not in index
    assert "Failed exec" in index and "AWS_SECRET_ACCESS_KEY=" + MARK.decode() in index
    quoting = [name for name, text in data.items() if b"failed with token=" + MARK in text]
    assert "INDEX.md" in quoting and "logs/var/log/lxd/web/lxc.log" in quoting, quoting
    quoting = [name for name, text in data.items() if b"?token=" + MARK in text]
    assert {"checkpoint/dump.log", "crit-plus/summarize.txt"} <= set(quoting), quoting


def test_a_yaml_document_that_does_not_parse_is_not_copied(secret_root, tmp_path):
    class Broken(SecretRunner):
        def run(self, argv):
            ran = super().run(argv)
            if "config" in argv:  # a complex key that is a mapping: no YAML loader takes it
                ran = type(ran)(ran.argv, 0, b"config:\n  ? {a: b}\n  : x\n"
                                b"  environment.T: S3CRET-UNPARSED\n")
            return ran

    report, data, _names, _runner = _build(tmp_path, runner=Broken())
    assert b"S3CRET-UNPARSED" not in _whole_bundle(tmp_path)
    assert "instance/config.yaml" not in data
    assert [s for s in report.collection.skipped
            if "its secrets cannot be found" in s.why and "config show" in s.what]


def test_long_log_lines_keep_their_first_mebibyte_only():
    before = b"x" * (MAX_PENDING - 12) + b" password=S3CRET-ACROSS-THE-CUT y"
    after = b"z" * (MAX_PENDING + 10) + b" password=S3CRET-AFTER-THE-CUT\nnext line\n"
    text = before + b"\n" + after
    for size in (MAX_PENDING // 3, 4096, len(text)):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        redacted = b"".join(redact_chunks(pieces))
        assert b"S3CRET" not in redacted and b"S3CRE" not in redacted.replace(MARK, b"")
        assert redacted.endswith(b"\nnext line\n")
        assert len(redacted) < 2 * MAX_PENDING + 1000


@pytest.mark.parametrize("line, kept", [
    (b"kernel: Command line: BOOT_IMAGE=/vmlinuz root=UUID=1234 ro", True),
    (b"Error (criu/cr-restore.c:2390): Can't restore task 1", True),
    (b"  volatile.cloud-init.instance-id: 849c601a", True),
    (b"  volatile.uuid: 0d3f4ac6", True),
    (b"environment_var: kept", True),
    (b"  environment.TOKEN: abc", False),
    (b"export GITHUB_TOKEN=abc", False),
])
def test_text_rules_are_precise(line, kept):
    assert (redact(line + b"\n") == line + b"\n") is kept


def test_secret_keys():
    for key in ("environment.X", "user.api_token", "user.comment", "cloud-init.user-data",
                "cloud-init.ssh-keys.root", "core.trust_password", "powerflex.user.password",
                "pure.api.token", "user.user-data"):
        assert is_secret_key(key), key
    for key in ("volatile.cloud-init.instance-id", "volatile.base_image", "image.os",
                "security.secureboot", "volatile.eth0.apply_template", "raw.lxc", "limits.cpu"):
        assert not is_secret_key(key), key


def test_pem_block_split_over_chunks():
    text = b"before\n" + PEM.encode() + b"after\n"
    for size in (1, 7, 64):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        redacted = b"".join(redact_chunks(pieces))
        assert redacted == redact(text)
        assert b"S3CRET-PEM-BODY" not in redacted and b"b3BlbnNz" not in redacted
        assert redacted.startswith(b"before\n") and redacted.endswith(b"after\n")


def test_a_failed_config_show_keeps_its_transcript_not_its_output(secret_root, tmp_path):
    class Failing(SecretRunner):
        def run(self, argv):
            ran = super().run(argv)
            if "config" in argv:
                ran = type(ran)(ran.argv, 1, b"environment.T: S3CRET-FAILED\n",
                                b"Error: not found\n")
            return ran

    _report, data, _names, _runner = _build(tmp_path, runner=Failing())
    assert b"S3CRET-FAILED" not in _whole_bundle(tmp_path)
    transcript = data["instance/config.yaml"].decode()
    assert "# exit code 1" in transcript and "Error: not found" in transcript
    assert "output not copied" in transcript
