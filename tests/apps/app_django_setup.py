"""django.setup() with settings.configure(): Django's logging config imports its handlers under
logging's lock, and a traced function raising meanwhile starts an escalation."""

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()
print("ready")
