"""The settings ``manage.py`` and the test suite use: the installed package's own (``energy.settings``).

Kept at the top of the checkout so that ``DJANGO_SETTINGS_MODULE=settings`` works from here;
the installed ``energyctl`` uses ``energy.settings`` directly.
"""

from energy.settings import *  # noqa: F403
