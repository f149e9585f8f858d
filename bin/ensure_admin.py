#!/usr/bin/env python
"""Create the superuser `admin` when the database has no superuser, and print how to log in.

`make run` calls this after `migrate`. The generated password is kept in var/admin-password
(git-ignored, readable by the owner only) so that every later run prints it again, and so that a
fresh database (say, PostgreSQL after SQLite) gets the same login. A password changed in the
admin is never overwritten: the script then says so instead of printing a stale one.
"""

import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

USERNAME = "admin"
ADMIN_URL = "http://127.0.0.1:8000/admin/"


def main() -> None:
    password_file = Path(settings.VAR_DIR) / "admin-password"
    user_model = get_user_model()
    stored = password_file.read_text().strip() if password_file.exists() else ""

    if not user_model.objects.filter(is_superuser=True).exists():
        password = stored or secrets.token_urlsafe(12)
        if user_model.objects.filter(username=USERNAME).exists():
            sys.exit(f"A user '{USERNAME}' exists but is not a superuser; run `manage.py createsuperuser`.")
        user_model.objects.create_superuser(USERNAME, f"{USERNAME}@example.com", password)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.touch(mode=0o600)
        password_file.write_text(password + "\n")
        stored = password
        print(f"Created the superuser '{USERNAME}'.")

    admin = user_model.objects.filter(username=USERNAME, is_superuser=True).first()
    if admin is not None and stored and admin.check_password(stored):
        lines = [f"Admin:    {ADMIN_URL}", f"Username: {USERNAME}", f"Password: {stored}", f"(kept in {password_file})"]
    else:
        lines = [
            f"Admin:    {ADMIN_URL}",
            "Log in with your superuser; to set a new password for one, run",
            ".venv/bin/python manage.py changepassword <username>",
        ]
    width = max(len(line) for line in lines) + 4
    print("=" * width)
    for line in lines:
        print(f"  {line}")
    print("=" * width, flush=True)


if __name__ == "__main__":
    main()
