"""The Simplified Chinese catalogue is complete, well-formed and used by the admin.

The catalogue (locale/zh_Hans/LC_MESSAGES/django.po) must translate every string of our own
code: this test fails when code adds a string nobody translated yet. That is on purpose; run

    .venv/bin/python manage.py makemessages -l zh_Hans --ignore=.venv --ignore=node_modules \
        --ignore=static/vendor --ignore=staticfiles --ignore=var --ignore=bench

translate the new (empty or fuzzy) entries, then `manage.py compilemessages --ignore=.venv`, and
commit both the .po and the .mo.

Two help texts ("10 for 10% off") make xgettext guess python-format although they are never
%-formatted; their entries carry "#, no-python-format" so that msgfmt accepts a Chinese text
without a "% o". makemessages puts the guessed flag back and marks them fuzzy: check them and
restore "no-python-format" (or mark the source lines with a "# xgettext:no-python-format" comment).
"""

import gettext
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from tests.factories import MemberFactory, UserFactory

LOCALE_DIR = Path(settings.BASE_DIR) / "locale"
PO_PATH = LOCALE_DIR / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO_PATH = PO_PATH.with_suffix(".mo")

# Directories makemessages must not scan (the same --ignore list as in the module docstring).
NOT_OUR_CODE = {".venv", "node_modules", "staticfiles", "var", "bench", "locale", ".git", "__pycache__"}
NOT_OUR_CODE_PATHS = {Path("static") / "vendor"}


# A small .po reader --------------------------------------------------------------------------


@dataclass
class Entry:
    line: int
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: str = ""
    msgstr_plural: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def translations(self) -> list[str]:
        if self.msgid_plural is None:
            return [self.msgstr]
        return [self.msgstr_plural[n] for n in sorted(self.msgstr_plural)] or [""]

    def __str__(self) -> str:
        context = f"[{self.msgctxt}] " if self.msgctxt else ""
        return f"line {self.line}: {context}{self.msgid!r}"


_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    text = text.strip()
    assert text.startswith('"') and text.endswith('"'), text
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), "\\" + m.group(1)), text[1:-1])


def parse_po(path: Path) -> list[Entry]:
    """Entries of a .po file, the header (msgid "") included, obsolete (#~) ones marked."""
    entries: list[Entry] = []
    entry: Entry | None = None
    seen: set[str] = set()  # keywords the current entry already has
    target: tuple[str, int | None] | None = None
    flags: set[str] = set()

    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            entry, target = None, None
            continue
        if line.startswith("#,"):
            flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            assert entry is not None and target is not None, f"{path}:{line_no}: continuation without keyword"
            value = line
        else:
            keyword, _, value = line.partition(" ")
            if keyword == "msgctxt" or (keyword == "msgid" and (entry is None or "msgid" in seen)):
                entry, seen = Entry(line=line_no, flags=flags, obsolete=obsolete), set()
                entries.append(entry)
                flags = set()
            assert entry is not None, f"{path}:{line_no}: {keyword} outside an entry"
            match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            if match:
                target = ("msgstr_plural", int(match.group(1)))
                entry.msgstr_plural[target[1]] = ""
            elif keyword in {"msgctxt", "msgid", "msgid_plural", "msgstr"}:
                target = (keyword, None)
                setattr(entry, keyword, "")
            else:
                raise AssertionError(f"{path}:{line_no}: unexpected {keyword!r}")
            seen.add(keyword)
        name, index = target
        if name == "msgstr_plural":
            entry.msgstr_plural[index] += _unquote(value)
        else:
            setattr(entry, name, getattr(entry, name) + _unquote(value))
    return entries


def catalogue() -> tuple[Entry, list[Entry]]:
    entries = [entry for entry in parse_po(PO_PATH) if not entry.obsolete]
    header = [entry for entry in entries if entry.msgid == "" and entry.msgctxt is None]
    assert len(header) == 1, "the catalogue needs exactly one header entry"
    return header[0], [entry for entry in entries if entry is not header[0]]


# Placeholders --------------------------------------------------------------------------------

NAMED = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifrxXoeEgGc]")
POSITIONAL = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrxXoeEgGc]")
BRACES = re.compile(r"\{[A-Za-z_0-9]*\}")
HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def placeholders(text: str, *, python_format: bool) -> Counter:
    found = Counter(NAMED.findall(text))
    rest = NAMED.sub("", text.replace("%%", ""))
    if python_format:
        found.update(f"%{m[-1]}" for m in POSITIONAL.findall(rest))
    found.update(BRACES.findall(text))
    found.update(tag.split()[0].rstrip(">").lower() for tag in HTML_TAG.findall(text))
    return found


# (a) The catalogue --------------------------------------------------------------------------


def test_the_header_declares_simplified_chinese_with_one_plural_form():
    header, _ = catalogue()
    fields = dict(line.split(": ", 1) for line in header.msgstr.splitlines() if ": " in line)
    assert fields.get("Language") == "zh_Hans"
    assert fields.get("Plural-Forms") == "nplurals=1; plural=0;"
    assert "charset=UTF-8" in fields.get("Content-Type", "")
    assert "fuzzy" not in header.flags, "a fuzzy header makes msgfmt and Django ignore the whole file"


def test_every_entry_is_translated_and_none_is_fuzzy():
    _, entries = catalogue()
    assert len(entries) > 500, "the catalogue looks truncated"
    fuzzy = [str(entry) for entry in entries if "fuzzy" in entry.flags]
    empty = [str(entry) for entry in entries if not all(text.strip() for text in entry.translations)]
    assert not fuzzy, "fuzzy entries (check and remove the flag):\n" + "\n".join(fuzzy)
    assert not empty, "untranslated entries:\n" + "\n".join(empty)


def test_plural_entries_have_the_one_chinese_form():
    _, entries = catalogue()
    for entry in entries:
        if entry.msgid_plural is not None:
            assert sorted(entry.msgstr_plural) == [0], entry


def test_translations_keep_the_placeholders_and_tags_of_the_english():
    _, entries = catalogue()
    mismatches = []
    for entry in entries:
        python_format = "python-format" in entry.flags
        source = entry.msgid_plural if entry.msgid_plural is not None else entry.msgid
        expected = placeholders(source, python_format=python_format)
        if entry.msgid_plural is not None:
            # The single Chinese form serves every count, so it takes the plural's placeholders.
            assert placeholders(entry.msgid, python_format=python_format).keys() <= expected.keys(), entry
        for text in entry.translations:
            got = placeholders(text, python_format=python_format)
            if got != expected:
                mismatches.append(f"{entry}\n    expected {dict(expected)}, got {dict(got)} in {text!r}")
    assert not mismatches, "placeholder mismatches:\n" + "\n".join(mismatches)


def test_placeholder_check_catches_a_dropped_or_renamed_placeholder():
    assert placeholders("%(count)d keys revoked.", python_format=True) == Counter({"count": 1})
    assert placeholders("已吊销 %(cnt)d 个密钥。", python_format=True) == Counter({"cnt": 1})
    assert placeholders("Select this object for an action - {}", python_format=False) == Counter({"{}": 1})
    assert placeholders("down %(pct)d%% and %s", python_format=True) == Counter({"pct": 1, "%s": 1})
    # "10% off" in a string that is never %-formatted is not a placeholder.
    assert placeholders("e.g. 10 for 10% off.", python_format=False) == Counter()


def test_the_compiled_catalogue_matches_the_po_file():
    # The .mo is committed so that a machine without gettext still shows Chinese; it must be current.
    _, entries = catalogue()
    with MO_PATH.open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)._catalog
    stale = []
    for entry in entries:
        key = f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt is not None else entry.msgid
        if entry.msgid_plural is None:
            if compiled.get(key) != entry.msgstr:
                stale.append(str(entry))
        elif compiled.get((key, 0)) != entry.msgstr_plural.get(0):
            stale.append(str(entry))
    assert not stale, "django.mo is out of date; run compilemessages. Differs for:\n" + "\n".join(stale[:20])


def _copy_our_code(destination: Path) -> None:
    root = Path(settings.BASE_DIR)
    for dirpath, dirnames, filenames in os.walk(root):
        relative = Path(dirpath).relative_to(root)
        dirnames[:] = [
            name
            for name in dirnames
            if name not in NOT_OUR_CODE and not name.startswith(".") and relative / name not in NOT_OUR_CODE_PATHS
        ]
        for name in filenames:
            if name.endswith((".py", ".html", ".txt")):
                (destination / relative).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, destination / relative / name)


@pytest.mark.skipif(
    not (shutil.which("xgettext") and shutil.which("msgmerge") and shutil.which("msguniq")),
    reason="gettext tools are not installed",
)
def test_every_string_of_our_code_is_in_the_catalogue(tmp_path, monkeypatch):
    """makemessages over a copy of the code, merged into a copy of the catalogue, adds nothing new."""
    _copy_our_code(tmp_path / "code")
    copied_po = tmp_path / "code" / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
    copied_po.parent.mkdir(parents=True)
    shutil.copy2(PO_PATH, copied_po)
    monkeypatch.chdir(tmp_path / "code")
    with override_settings(LOCALE_PATHS=[tmp_path / "code" / "locale"]):
        call_command("makemessages", locale=["zh_Hans"], verbosity=0)

    def key(entry: Entry) -> tuple[str | None, str]:
        return entry.msgctxt, entry.msgid

    _, committed = catalogue()
    translated = {key(entry) for entry in committed if all(text.strip() for text in entry.translations)}
    merged = [entry for entry in parse_po(copied_po) if not entry.obsolete and entry.msgid]
    missing = [str(entry) for entry in merged if key(entry) not in translated]
    assert not missing, (
        "strings in the code that the zh_Hans catalogue does not translate yet "
        "(run makemessages, translate, compilemessages):\n" + "\n".join(missing)
    )


# (b) The admin in Chinese and in English ------------------------------------------------------

PAGES = {
    "admin:index": {
        "zh-hans": ["会员运营 CRM", "营销活动", "积分与权益", "运营工作台", "行为事件", "导入任务"],
        "en": ["Member Ops CRM", "Campaigns", "Loyalty", "Operations desk", "Behaviour events"],
    },
    "admin:members_member_changelist": {
        "zh-hans": ["会员运营 CRM", "为所选会员添加标签", "导出所选会员（CSV）", "最近活跃", "30 至 90 天前"],
        "en": [
            "Member Ops CRM",
            "Add tags to the selected members",
            "Export the selected members (CSV)",
            "30 to 90 days ago",
        ],
    },
    "admin:members_importjob_add": {
        "zh-hans": ["导入内容", "试运行", "跳过无效行", "中文表头", "英文表头"],
        "en": ["Check the file and report; write nothing.", "Chinese header", "English header"],
    },
}


@pytest.fixture
def superuser(db):
    return UserFactory(username="admin-i18n", is_superuser=True)


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", sorted(PAGES))
@pytest.mark.parametrize("language, other", [("zh-hans", "en"), ("en", "zh-hans")])
def test_admin_pages_show_our_strings_in_the_browser_language(client, superuser, url_name, language, other):
    MemberFactory()
    client.force_login(superuser)

    response = client.get(reverse(url_name), headers={"accept-language": language})

    assert response.status_code == 200
    content = response.content.decode()
    assert f'<html lang="{language}"' in content
    for text in PAGES[url_name][language]:
        assert text in content, f"{text!r} missing from {url_name} in {language}"
    for text in PAGES[url_name][other]:
        if text not in PAGES[url_name][language]:
            assert text not in content, f"{text!r} ({other}) shown on {url_name} in {language}"


@pytest.mark.django_db
def test_chinese_browsers_with_a_region_get_simplified_chinese(client, superuser):
    client.force_login(superuser)
    content = client.get(reverse("admin:index"), headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "会员运营 CRM" in content.content.decode()


# (c) The language switcher -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_language_switcher_overrides_the_browser_language(client, superuser):
    client.force_login(superuser)
    index = reverse("admin:index")

    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": index})
    assert response.status_code == 302 and response["Location"] == index
    content = client.get(index, headers={"accept-language": "en"}).content.decode()
    assert '<html lang="zh-hans"' in content
    assert "营销活动" in content and "Campaigns" not in content

    client.post(reverse("set_language"), {"language": "en", "next": index})
    content = client.get(index, headers={"accept-language": "zh-hans"}).content.decode()
    assert '<html lang="en"' in content
    assert "Campaigns" in content and "营销活动" not in content
