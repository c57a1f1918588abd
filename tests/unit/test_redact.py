"""Redaction of the secret shapes beyond provider keys (AWS secret keys, Google keys, JWTs, bearer
tokens, generic assignments, PEM keys without an END line), the line between a literal and code,
the pre-check that keeps ordinary lines cheap, and the log book catching a key printed line by line."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings, strategies as st

from promptrail import redact as redaction
from promptrail.audit.store import AuditStore
from promptrail.redact import opens_private_key, private_key_end, redact
from promptrail.logbook import LogBook

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GOOGLE_KEY = "AIzaSyA1234567890abcdefghijklmnopqrstuv"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


@pytest.mark.parametrize("text, expected", [
    # AWS secret access keys: after the key name with =, : or whitespace, quoted or not
    (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_access_key = [REDACTED]"),
    (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", "AWS_SECRET_ACCESS_KEY=[REDACTED]"),
    (f"secret_access_key: {AWS_SECRET}", "secret_access_key: [REDACTED]"),
    (f"aws_secret_access_key    {AWS_SECRET}", "aws_secret_access_key    [REDACTED]"),
    (f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"', 'AWS_SECRET_ACCESS_KEY="[REDACTED]"'),
    (f"aws_secret_access_key = '{AWS_SECRET}'  # prod", "aws_secret_access_key = '[REDACTED]'  # prod"),
    (f'{{"SecretAccessKey": "{AWS_SECRET}", "x": 1}}', '{"SecretAccessKey": "[REDACTED]", "x": 1}'),
    (f"secret_access_key {'abcdefghij' * 4}", "secret_access_key [REDACTED]"),  # letters only: the AWS shape
    # Google API keys
    (f"key={GOOGLE_KEY}&q=1", "key=AIza[REDACTED]&q=1"),
    (f"maps {GOOGLE_KEY}", "maps AIza[REDACTED]"),
    (f"{GOOGLE_KEY}Bearer x", "AIza[REDACTED] x"),  # the whole run goes: no word starts at the marker
    # JWTs and bearer tokens
    (f"jwt {JWT} end", "jwt eyJ[REDACTED] end"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789", "Authorization: Bearer [REDACTED]"),
    ("curl -H 'authorization: bearer abc.DEF-123_xyz~789+/=='", "curl -H 'authorization: bearer [REDACTED]'"),
    (f"Authorization: Bearer {JWT}", "Authorization: Bearer [REDACTED]"),
    # generic assignments: the name stays, a literal value goes
    ("password = 'hunter2222'", "password = '[REDACTED]'"),
    ('"password": "changeme"', '"password": "[REDACTED]"'),
    ("PASSWORD=hunter2222", "PASSWORD=[REDACTED]"),
    ("DB_PASSWORD=supersecret", "DB_PASSWORD=[REDACTED]"),  # env style: a bare word is a literal
    ("export GITHUB_TOKEN=abcdefgh", "export GITHUB_TOKEN=[REDACTED]"),
    ("passwd: s3cr3t!", "passwd: [REDACTED]"),
    ("pwd=abc123", "pwd=[REDACTED]"),
    ("secret: '6+chars'", "secret: '[REDACTED]'"),
    ("token: 9f8e7d6c5b4a", "token: [REDACTED]"),
    ("api_key=abc123def456", "api_key=[REDACTED]"),
    ("x-api-key: abc123def456", "x-api-key: [REDACTED]"),
    ('{"apikey":"abc-123-def"}', '{"apikey":"[REDACTED]"}'),
    ("access_token=ya29.a0AfH6SMB", "access_token=[REDACTED]"),
    ("client_secret = `prod-42-secret`", "client_secret = `[REDACTED]`"),
    ("accessToken: 'abcDEF123456'", "accessToken: '[REDACTED]'"),
    ('SECRET_KEY = "django-insecure-abc"', 'SECRET_KEY = "[REDACTED]"'),
    ('password: str = "hunter2222"', 'password: str = "[REDACTED]"'),
    ('if password == "hunter2222":', 'if password == "[REDACTED]":'),
    ("'password' => 'hunter2222',", "'password' => '[REDACTED]',"),
    ('password = "still open at the end', 'password = "[REDACTED]'),
    ('password = "with \\" escaped quote"', 'password = "[REDACTED]"'),
    ("PaSsWoRd=hunter2222", "PaSsWoRd=[REDACTED]"),  # any case
    ("url?token=abc123&user=me ok", "url?token=[REDACTED] ok"),
    ("one token=abc123def two password='xyz789!!'", "one token=[REDACTED] two password='[REDACTED]'"),
    # PEM private keys, terminated or not
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----\nafter",
     "-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\nafter"),
    ("here: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\nAAAABG5vbmUAAAAEbm9u",
     "here: -----BEGIN PRIVATE KEY-----[REDACTED]"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK----- ok",
     "-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY----- ok"),
    ("-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----[REDACTED]"),
])
def test_secret_shapes_are_redacted_with_a_label(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    f"secret_access_key {'abcdefghij' * 4}x",    # 41 characters: not the AWS shape
    "AIzaSyA1234567890abcdefghijklmnopqrstu",    # 34 characters after AIza
    "Bearer abcdefghijklmnopqrs",                # 19 characters
    "Bearer ${TOKEN}",
    "eyJhbGciOiJIUzI1NiJ9.notapayload.sig",      # no second eyJ
    "-----BEGIN PUBLIC KEY-----\nMIIBIjAN",      # a public key is not a secret
    "-----BEGIN CERTIFICATE-----\nMIIDdzCC",
])
def test_near_misses_are_kept(text):
    assert redact(text) == text


def test_a_value_after_an_aws_key_name_that_is_not_the_aws_shape_is_still_a_literal():
    assert redact(f"secret_access_key = {AWS_SECRET[:39]}") == "secret_access_key = [REDACTED]"


@pytest.mark.parametrize("line", [
    'password = os.environ["DB_PASSWORD"]',
    "token = get_token()",
    "def secret():",
    "def get_secret(self) -> str:",
    "login(user=user, password=password)",
    "api_key=self.api_key,",
    '"token": token,',
    "token = new_token",
    "password = settings.DB_PASSWORD",
    "secret: SecretStr | None = None",
    "password: Optional[str] = None",
    "token: str = get_token()",
    "if token == expected_token:",
    "if not token: return None",
    "self.token = token or os.getenv('TOKEN')",
    "const password = req.body.password;",
    "token = await getToken();",
    "password_hash = bcrypt.hash(password)",
    "for token in tokens:",
    "max_tokens: 200000",
    "token_count = 123456",
    "TOKEN=$GITHUB_TOKEN",
    "password: ${DB_PASSWORD}",
    "TOKEN=$(gh auth token)",
    'password = ""',
    "password = 'short'",
    "Password: please enter it",
    'headers = {"Authorization": f"Bearer {token}"}',
    "tokenizer = Tokenizer()",
    "token = f\"promptrail-{event.mode if event.mode == 'checks' else 'run'}-{event.run_id}-{id(self):x}\"",
])
def test_ordinary_code_is_not_redacted(line):
    assert redact(line) == line


def test_the_rule_between_a_literal_and_code():
    # unquoted: a call, subscript, variable or shell reference is code; anything with a digit or a
    # symbol is a literal; quoted: always a literal (6+ characters)
    assert redact("token = get_token2()") == "token = get_token2()"
    assert redact("token = config['token']") == "token = config['token']"
    assert redact("token = token_v2") == "token = [REDACTED]"
    assert redact("token = 'get_token()'") == "token = '[REDACTED]'"
    assert redact("token = abc-def") == "token = [REDACTED]"
    assert redact("password: changeme") == "password: changeme"       # letters only: kept (documented)
    assert redact("PASSWORD=changeme") == "PASSWORD=[REDACTED]"       # but not in env style
    assert redact("PASSWORD = changeme") == "PASSWORD = changeme"     # spaces around =: Python


SAMPLES = {
    "anthropic": "sk-ant-api03-AbCdEf_123", "openai": "sk-proj-abcdefghijklmnopqrstuvwx",
    "aws": "AKIAABCDEFGHIJKLMNOP", "github": "ghp_" + "a" * 36, "slack": "xoxb-1234567890-abc",
    "private_key": "-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----",
    "private_key_open": "-----BEGIN EC PRIVATE KEY-----\nx", "aws_secret": f"secret_access_key {AWS_SECRET}",
    "google": GOOGLE_KEY, "jwt": JWT, "bearer": "bearer " + "a" * 24, "env": "API_KEY=abcdefgh",
    "generic": "password: hunter2222",
}


def test_every_shape_has_a_sample_and_passes_the_pre_check():
    assert set(SAMPLES) == set(redaction._KINDS)
    for kind, sample in SAMPLES.items():
        variants = {sample, sample.upper(), sample.title(), sample.swapcase()}
        for text in variants:
            match = re.compile(redaction._ALTERNATION, re.ASCII).search(text)
            if match is None:
                continue  # a case-sensitive shape in another case is simply not that shape
            assert redaction._MAYBE_SECRET.search(text.lower()), (kind, text)
            assert redact(text) != text, (kind, text)
        assert re.compile(redaction._ALTERNATION, re.ASCII).fullmatch(sample).lastgroup == kind


def test_case_insensitive_only_where_the_shape_is():
    assert redact("AUTHORIZATION: BEARER " + "A" * 30) == "AUTHORIZATION: BEARER [REDACTED]"
    assert redact("aiza" + "A" * 35) == "aiza" + "A" * 35           # Google keys start with AIza exactly
    assert redact("akiaABCDEFGHIJKLMNOP") == "akiaABCDEFGHIJKLMNOP"
    assert redact("api_\u212aey=abc123def") == "api_\u212aey=abc123def"  # the Kelvin sign is not a k


FRAGMENTS = st.sampled_from([
    "password", "PASSWORD", "PassWord", "passwd", "pwd", "token", "Token", "tOkEn", "secret", "api_key", "Api-Key",
    "APIKEY", "secret_key", "DB_", "=", ":", " = ", ": ", "==", "=>", ":=", '"', "'", "`", "\\", " ", "\t", "\n",
    "abc123", "hunter2222", "[REDACTED]", "eyJ", "eyJhbGciOiJIUzI1NiJ9.", "Bearer ", "BEARER\t", "AIza", "A" * 35,
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----",
    "sk-ant-", "sk-", "AKIA", "ABCDEFGHIJKLMNOP", "ghp_", "xoxb-", "x" * 20, "str", "Optional[str]",
    "aws_secret_access_key", "SecretAccessKey", AWS_SECRET, "get_token()", "os.environ[", "$X", "$(",
    "(", ")", ",", ";", "/", "+", ".", "[", "]", "{", "}", "ſ", "\u212a", "é",
])


@settings(max_examples=3000, deadline=None)
@given(st.lists(FRAGMENTS, max_size=14).map("".join))
def test_redaction_is_stable_and_the_fast_paths_change_nothing(text):
    once = redact(text)
    assert redact(once) == once
    # The guard in front of the alternation and the pre-check only skip work, never a secret:
    # every match starts where the pre-check finds one of its literals.
    unguarded = re.compile(redaction._ALTERNATION, re.ASCII)
    assert redaction._SECRET.sub(redaction._replace, text) == unguarded.sub(redaction._replace, text)
    for match in unguarded.finditer(text):
        assert redaction._MAYBE_SECRET.match(text[match.start():].lower())


def test_opens_private_key_and_its_end():
    begin, end = "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
    assert opens_private_key(begin) and opens_private_key(f"x {begin}\nMIIE")
    assert opens_private_key(f"{begin}\na\n{end}\n{begin}")      # a second key left open
    assert not opens_private_key(f"{begin}\na\n{end}")
    assert not opens_private_key("-----BEGIN PUBLIC KEY-----") and not opens_private_key("plain")
    assert private_key_end(f"abc{end}\nrest") == 3 + len(end)
    assert private_key_end("abc") is None and private_key_end("-----END PUBLIC KEY-----") is None


# -- the log book: a key printed one line per entry ---------------------------------------------------
class Collect:
    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def emit(self, event) -> None:
        self.texts.append((event.kind, event.text))


def write_log(tmp_path, entries: list[tuple[str, str]], **attributes) -> list[tuple[str, str]]:
    store = AuditStore(tmp_path / "audit.db")
    sink = Collect()
    book = LogBook(store, "run1", sink)
    for name, value in attributes.items():
        setattr(book, name, value)
    for kind, text in entries:
        book.add(kind, text)
    asyncio.run(book.close())
    stored = [(row["kind"], row["text"]) for row in store.log("run1")]
    store.close()
    assert stored == sink.texts  # the faces see exactly what is stored
    return stored


BEGIN, END = "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"
BODY = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "AAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBhc2Rm"]


def test_log_book_redacts_a_key_printed_line_by_line(tmp_path):
    stored = write_log(tmp_path, [("raw", "before"), ("raw", BEGIN), ("raw", BODY[0]), ("stderr", "warning: x"),
                                     ("raw", BODY[1]), ("raw", END), ("raw", "after password=hunter2222")])
    assert stored == [("raw", "before"), ("raw", "-----BEGIN PRIVATE KEY-----[REDACTED]"), ("raw", "[REDACTED]"),
                      ("stderr", "warning: x"),  # another stream: not part of the key
                      ("raw", "[REDACTED]"), ("raw", "[REDACTED]"), ("raw", "after password=[REDACTED]")]


def test_log_book_keeps_what_follows_the_end_line(tmp_path):
    stored = write_log(tmp_path, [("raw", f"key: {BEGIN}"), ("raw", f"{BODY[0]}\n{END}\nnext token=abc123"),
                                     ("raw", BEGIN), ("raw", f"{BODY[1]}\n{END} then {BEGIN}"), ("raw", BODY[0]),
                                     ("raw", END), ("raw", END)])
    assert stored == [("raw", "key: -----BEGIN PRIVATE KEY-----[REDACTED]"),
                      ("raw", "[REDACTED]\nnext token=[REDACTED]"),
                      ("raw", "-----BEGIN PRIVATE KEY-----[REDACTED]"),
                      ("raw", "[REDACTED] then -----BEGIN PRIVATE KEY-----[REDACTED]"),  # a second key opens
                      ("raw", "[REDACTED]"), ("raw", "[REDACTED]"),
                      ("raw", END)]  # an END line outside a key is no secret


def test_log_book_gives_up_on_a_key_without_end_after_its_longest_length(tmp_path):
    stored = write_log(tmp_path, [("text", f"the file starts with {BEGIN}"), ("text", "one\ntwo"),
                                     ("text", "three"), ("text", "four"), ("text", "five")], KEY_LINES_MAX=3)
    assert stored == [("text", "the file starts with -----BEGIN PRIVATE KEY-----[REDACTED]"), ("text", "[REDACTED]"),
                      ("text", "[REDACTED]"), ("text", "four"), ("text", "five")]
    assert LogBook.KEY_LINES_MAX == 500


def test_log_book_stores_what_utf8_cannot_carry_as_escapes(tmp_path):
    # A hook's non-UTF-8 byte arrives as a surrogateescape'd character, an agent's JSON may carry
    # a lone surrogate: each is stored (and sent) as its escape, and the lines after it still are.
    stored = write_log(tmp_path, [("stderr", "caf\udce9 au lait"), ("text", "odd \ud800 text"), ("text", "héllo")])
    assert stored == [("stderr", "caf\\xe9 au lait"), ("text", "odd \\ud800 text"), ("text", "héllo")]


def test_log_book_keeps_every_character_a_process_may_print(tmp_path):
    # A NUL byte, JSON-looking text, emoji: stored and sent exactly as printed, nothing cut short.
    entries = [("raw", "a\0b"), ("text", "123"), ("text", "null"), ("text", "é😀"), ("raw", "")]
    assert write_log(tmp_path, entries) == entries
