#!/usr/bin/python3
"""Django's command-line utility for the test site (migrate, collectstatic,
createsuperuser); the tests run it with /usr/bin/python3."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
